"""Document shards: parquet files of documents, written atomically.

A document is a dict with at least `id`, `source` and `text`; each stage adds its own columns.
Shards are written to a temporary name beside the destination and renamed when complete, so a
reader never sees a half-written shard and an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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


def write_documents(path: str | Path, documents: Iterable[dict], schema: pa.Schema) -> int:
    """Stream `documents` into a parquet shard at `path`; return the bytes written."""
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            batch: list[dict] = []
            for doc in documents:
                batch.append(doc)
                if len(batch) == ROWS_PER_BATCH:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
        return tmp.stat().st_size


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
