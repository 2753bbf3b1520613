"""A shard's remote files, staged on the worker's local disk for the stage functions.

The stage functions read and write local paths (parquet writers, fastText, SentencePiece and
numpy all want them). For a shard whose inputs or outputs are remote, `Scratch.staged` copies its
inputs into a scratch folder that mirrors the store (`<scratch>/s3/<bucket>/<key>`), hands the
stage the local paths, and, once the stage returns, uploads every file the stage wrote there:
its output, and what it writes beside it (the wikipedia stage's references, the tokenizer's
Hugging Face export). The file that marks the output complete goes last. A stage that raises
publishes nothing; the runner records the shard's row only after `staged` has returned, so a
shard killed mid-upload is not finished and is recomputed by the next run.

Local paths are used in place: a run on one machine copies nothing. The scratch folder holds one
shard's inputs and outputs at a time (a fused chain's stages share it: the langid step reads the
extract step's output where it was written) and is removed when the task ends.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from pipeline.storage.files import list_files, remove
from pipeline.storage.locations import is_remote, resolve, scheme_of, settings

TRANSFER_THREADS = 8  # a folder's files (token parts, a repository) move several at a time


def _download(fs: pafs.FileSystem, path: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def _upload(local: Path, uri: str) -> None:
    fs, target = resolve(uri)
    pafs.copy_files(str(local), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


class Scratch:
    """A local folder standing in for the remote files of one task."""

    def __init__(self) -> None:
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="llama-data-", dir=settings().scratch_dir))
        return self._root

    def local(self, uri: str | None) -> str | None:
        """Where `uri` lives in the scratch folder (a local path stays as it is)."""
        if uri is None or not is_remote(uri):
            return uri
        parts = urlsplit(str(uri))
        return str(self.root / scheme_of(uri) / parts.netloc / parts.path.strip("/"))

    def remote(self, local: Path) -> str:
        scheme, netloc, *rest = local.relative_to(self.root).parts
        return f"{scheme}://{netloc}/{'/'.join(rest)}"

    def fetch(self, uri: str) -> None:
        """Copy a remote file, or a folder's files, into the scratch folder, unless it is there
        already (fetched, or written by an earlier stage of the task)."""
        if not is_remote(uri) or Path(self.local(uri)).exists():
            return
        target = Path(self.local(uri))
        fs, path = resolve(uri)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.NotFound:
            raise FileNotFoundError(f"input {uri} not found")
        if kind == pafs.FileType.File:
            _download(fs, path, target)
            return
        # A folder: its files one by one (pyarrow's folder copy does not make the subfolders).
        files = [info.path for info in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                 if info.type == pafs.FileType.File]
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(lambda file: _download(fs, file, target / file[len(path):].lstrip("/")), files))
        target.mkdir(parents=True, exist_ok=True)  # an empty folder is still an input that exists

    @contextmanager
    def staged(self, task, marker: str) -> Iterator:
        """`task` (a ShardTask) with local paths, its inputs fetched; on a clean exit, what the
        stage wrote is published, `marker` (the output's completion file) last."""
        for uri in task.inputs:
            self.fetch(uri)
        local = dataclasses.replace(
            task,
            inputs=[self.local(uri) for uri in task.inputs],
            output=self.local(task.output),
            dropped=self.local(task.dropped),
        )
        for path in (local.output, local.dropped):
            if path is not None and is_remote(task.output):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        before = self._snapshot()
        yield local
        if self._root is not None:
            written = [p for p, stamp in self._snapshot().items() if before.get(p) != stamp]
            self._publish(written, task.output, marker)

    def _snapshot(self) -> dict[Path, tuple[int, int]]:
        if self._root is None:
            return {}
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in self._root.rglob("*") if p.is_file()}

    def _publish(self, written: list[Path], output: str, marker: str) -> None:
        marker_path = Path(self.local(marker)) if is_remote(marker) else None
        output_dir = Path(self.local(output))
        if is_remote(output) and output_dir.is_dir():
            # A previous attempt's files that this one did not write would sit beside the new ones.
            fresh = {self.remote(p) for p in written}
            for stale in list_files(output, recursive=True):
                if stale not in fresh:
                    remove(stale)
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(lambda p: _upload(p, self.remote(p)), [p for p in written if p != marker_path]))
        if marker_path in written:
            _upload(marker_path, self.remote(marker_path))

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
