"""Models loaded once per worker process, however many shards it runs."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

Model = TypeVar("Model")


def cached_per_file_version(load: Callable[[str], Model]) -> Callable[[str], Model]:
    """`load(path)`, memoised on the file's path, size and modification time: a file rewritten at
    the same path (a model retrained by a rerun in the same run directory, in a long-lived Ray
    worker) is loaded afresh. A missing file goes straight to `load`, which raises its own error."""

    @functools.lru_cache(maxsize=4)
    def load_version(path: str, size: int, mtime_ns: int) -> Model:
        return load(path)

    @functools.wraps(load)
    def cached(path: str) -> Model:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return load(path)
        return load_version(str(path), stat.st_size, stat.st_mtime_ns)

    return cached
