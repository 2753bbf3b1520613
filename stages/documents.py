"""Document shards: parquet files of documents, written atomically.

A document is a dict with at least `id`, `source` and `text`; each stage adds its own columns.
Shards are written to a temporary name beside the destination and renamed when complete, so a
reader never sees a half-written shard and an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stages.accounting import ShardStats

ROWS_PER_BATCH = 1024


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; move it to `path` (replacing a stale one) only
    if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            stale = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:8]}")
            os.replace(path, stale)
            os.replace(tmp, path)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ShardWriter:
    """Writes documents to a parquet shard a batch at a time; the shard appears at `path` only
    when the writer closes without error (use it as a context manager)."""

    def __init__(self, path: str | Path, schema: pa.Schema):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
        self._batch: list[dict] = []
        self.bytes_written = 0

    def write(self, doc: dict) -> None:
        self._batch.append(doc)
        if len(self._batch) == ROWS_PER_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_batch(pa.RecordBatch.from_pylist(self._batch, schema=self.schema))
            self._batch = []

    def close(self) -> int:
        """Finish the shard and rename it into place; return its size in bytes."""
        self._flush()
        self._writer.close()
        self.bytes_written = self._tmp.stat().st_size
        os.replace(self._tmp, self.path)
        return self.bytes_written

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_documents(path: str | Path, documents: Iterable[dict], schema: pa.Schema) -> int:
    """Stream `documents` into a parquet shard at `path`; return the bytes written."""
    with ShardWriter(path, schema) as writer:
        for doc in documents:
            writer.write(doc)
    return writer.bytes_written


class DroppedDocuments:
    """The audit side output: documents a stage drops, each with its `drop_reason`.

    With `path` None (auditing off, as for large runs) it writes nothing.
    """

    def __init__(self, path: str | Path | None, schema: pa.Schema):
        reason = pa.field("drop_reason", pa.string(), nullable=False)
        self._writer = ShardWriter(path, schema_with(schema, reason)) if path else None

    def add(self, doc: dict, reason: str) -> None:
        if self._writer:
            self._writer.write({**doc, "drop_reason": reason})

    def __enter__(self) -> "DroppedDocuments":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer:
            self._writer.__exit__(exc_type, exc, tb)


def read_document_batches(
    path: str | Path, columns: list[str] | None = None, batch_size: int = ROWS_PER_BATCH
) -> Iterator[list[dict]]:
    """Stream the documents of a parquet shard in lists of up to `batch_size`."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
        yield batch.to_pylist()


def read_documents(path: str | Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Stream the documents of a parquet shard, one batch in memory at a time."""
    for batch in read_document_batches(path, columns):
        yield from batch


def count_documents(path: str | Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def schema_with(base: pa.Schema, *fields: pa.Field) -> pa.Schema:
    """`base` plus `fields`, for stages that add columns to the documents they pass on."""
    for f in fields:
        base = base.append(f)
    return base


# The columns every document has, whatever its source; each source adds its own metadata with
# `schema_with` (the tokenizer and the mixture read only these).
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # unique across the whole run: "<source>/<collection>/<key>"
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)

WEB_DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("warc_record_id", pa.string()),
        pa.field("date", pa.string()),
        pa.field("text", pa.string(), nullable=False),
    ]
)


def filter_shard(
    input_path: str | Path,
    output_path: str | Path,
    new_fields: list[pa.Field],
    judge: Callable[[list[dict]], Iterable[tuple[dict, str | None]]],
    *,
    dropped_path: str | Path | None = None,
    batch_size: int = ROWS_PER_BATCH,
) -> ShardStats:
    """The common shape of a per-document stage: `judge` sees a batch of documents and returns
    each one, with its `new_fields` added, beside the reason to drop it (None to keep it)."""
    stats = ShardStats()
    schema = schema_with(pq.read_schema(input_path), *new_fields)

    def kept(dropped: DroppedDocuments) -> Iterator[dict]:
        for batch in read_document_batches(input_path, batch_size=batch_size):
            stats.docs_in += len(batch)
            for doc, reason in judge(batch):
                if reason:
                    stats.drop(reason)
                    dropped.add(doc, reason)
                else:
                    stats.docs_out += 1
                    yield doc

    with DroppedDocuments(dropped_path, schema) as dropped:
        stats.bytes_out = write_documents(output_path, kept(dropped), schema)
    return stats.check()
