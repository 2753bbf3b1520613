"""A stage's progress while its shards run: documents and bytes per second, and an ETA.

Tasks report how far their shard has got (`ProgressBoard`, a Ray actor the tasks send to without
waiting); the driver adds the shards already finished. pipeline/progress_display.py shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ray


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The latest (docs_in, docs_out, bytes_read) of each running shard, keyed by shard name."""

    def __init__(self):
        self.shards: dict[str, tuple[int, int, int]] = {}

    def update(self, shard: str, docs_in: int, docs_out: int, bytes_read: int) -> None:
        self.shards[shard] = (docs_in, docs_out, bytes_read)

    def snapshot(self, finished: list[str]) -> dict[str, tuple[int, int, int]]:
        """The reports of the shards still running, forgetting those `finished` since the last
        call, so that the board holds only the shards in flight however large the stage."""
        for shard in finished:
            self.shards.pop(shard, None)
        return dict(self.shards)


def shard_reporter(board, shard: str):
    """The callback a stage function calls with its shard's running counts."""
    return lambda docs_in, docs_out, bytes_read: board.update.remote(shard, docs_in, docs_out, bytes_read)


@dataclass
class StageProgress:
    """What the driver knows of a stage's shards: those finished, and the running ones' reports."""

    name: str
    total_shards: int
    total_bytes: int
    started: float = field(default_factory=time.monotonic)
    done_shards: int = 0
    done_docs_in: int = 0
    done_docs_out: int = 0
    done_bytes: int = 0
    running: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def finish(self, shard: str, row: dict, input_bytes: int) -> None:
        self.running.pop(shard, None)
        self.done_shards += 1
        self.done_docs_in += row["docs_in"]
        self.done_docs_out += row["docs_out"]
        self.done_bytes += input_bytes

    def rates(self) -> str:
        """Documents in and out, and megabytes read, with their rates."""
        elapsed = self._elapsed()
        docs_in = self.done_docs_in + sum(r[0] for r in self.running.values())
        docs_out = self.done_docs_out + sum(r[1] for r in self.running.values())
        text = f"{docs_in:,} docs in ({docs_in / elapsed:,.0f}/s), {docs_out:,} out"
        if self.total_bytes:
            read = self._bytes_read()
            text += f" · {read / 1e6:,.1f}/{self.total_bytes / 1e6:,.1f} MB ({read / 1e6 / elapsed:,.1f} MB/s)"
        return text

    def eta(self) -> str:
        """The time left at the rate so far: of the bytes still to read, or else of the shards."""
        share = self._bytes_read() / self.total_bytes if self.total_bytes else self.done_shards / max(self.total_shards, 1)
        return format_duration(self._elapsed() * (1 - share) / share) if share > 0 else "?"

    def line(self) -> str:
        return f"[{self.name}] {self.done_shards}/{self.total_shards} shards · {self.rates()} · ETA {self.eta()}"

    def _elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    def _bytes_read(self) -> int:
        return self.done_bytes + sum(r[2] for r in self.running.values())


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
