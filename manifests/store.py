"""Reading and writing stage manifests at RUN_DIR/manifests/<stage>.parquet.

Recording a finished shard must cost the same at shard 10 and at shard 100,000, so a shard's row
is written alone, as a small JSON file under `RUN_DIR/manifests/<stage>.rows/`; a reader merges those
with the stage's table (a row file overrides the table's row of the same shard). The runner folds
them into the table when a stage starts and when it ends (`write_manifest`), the one cost that
grows with the stage, paid twice a stage instead of once a shard. A run killed in between leaves
its row files, and the next run reads them as finished shards.

The run directory may be local or on object storage (pipeline.storage): each file is written
whole, so a reader sees a row or a table before or after a write, never half of one.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.schema import MANIFEST_SCHEMA, TALLY_COLUMNS
from pipeline import storage
from pipeline.storage import Location, location

# Reading row files left by a killed run from object storage: one request each, so several at once.
READ_THREADS = 16


class ManifestError(ValueError):
    """A manifest row breaks the schema or the accounting invariant."""


def manifest_path(run_dir: str | Path, stage: str) -> Path | Location:
    return location(run_dir) / "manifests" / f"{stage}.parquet"


def rows_dir(run_dir: str | Path, stage: str) -> Path | Location:
    """Where rows recorded since the stage's table was last written wait to be folded into it."""
    return location(run_dir) / "manifests" / f"{stage}.rows"


def check_row(row: dict) -> None:
    dropped = sum(dict(row["dropped"]).values())
    if row["docs_in"] != row["docs_out"] + dropped:
        raise ManifestError(
            f"{row['stage']}/{row['shard']}: docs_in={row['docs_in']} != "
            f"docs_out={row['docs_out']} + dropped={dropped}"
        )


def _table(rows: list[dict]) -> pa.Table:
    for row in rows:
        check_row(row)
    return pa.Table.from_pylist([{**r, **_tallies_as_lists(r)} for r in rows], schema=MANIFEST_SCHEMA)


def _tallies_as_lists(row: dict) -> dict:
    return {column: [{key: name, "count": count} for name, count in sorted(dict(row[column]).items())]
            for column, key in TALLY_COLUMNS.items()}


def _tallies_as_dicts(row: dict) -> dict:
    return {column: {item[key]: item["count"] for item in row[column]} for column, key in TALLY_COLUMNS.items()}


def _map_as_list(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """A map<string, int64> column of a manifest written before the tallies became lists."""
    chunks = []
    for chunk in column.chunks:
        entries = pa.StructArray.from_arrays([chunk.keys, chunk.items], fields=list(target.value_type))
        chunks.append(pa.ListArray.from_arrays(chunk.offsets, entries, type=target, mask=chunk.is_null()))
    return pa.chunked_array(chunks, type=target)


def record_row(run_dir: str | Path, stage: str, row: dict) -> str:
    """Record one shard's row, atomically, in time independent of the stage's size."""
    # Named by a digest of the shard: shard names may hold "/" (tokenize's are "<source>/<shard>").
    check_row(row)
    name = hashlib.sha1(row["shard"].encode()).hexdigest()[:20]
    path = str(rows_dir(run_dir, stage) / f"{name}.json")
    # Milliseconds, as the table's timestamp column holds them: a row reads back the same either way.
    finished_at = row["finished_at"].isoformat(timespec="milliseconds")
    record = {**row, "dropped": dict(row["dropped"]), "counters": dict(row["counters"]), "finished_at": finished_at}
    storage.write_text(path, json.dumps(record))
    return path


def _recorded_row(path: str) -> dict:
    row = json.loads(storage.read_text(path))
    row["finished_at"] = datetime.fromisoformat(row["finished_at"])
    row.setdefault("node", None)
    row.setdefault("input_versions", None)
    return row


def _row_files(run_dir: str | Path, stage: str) -> list[str]:
    return [f for f in storage.list_files(rows_dir(run_dir, stage)) if f.endswith(".json")]


def write_manifest(run_dir: str | Path, stage: str, rows: list[dict]) -> str:
    """Replace the stage's manifest with `rows` (sorted by shard), atomically, and drop the row
    files recorded since: `rows` must include those still wanted (read them with read_manifest)."""
    path = str(manifest_path(run_dir, stage))
    _remove_leftover_temporaries(run_dir, stage)
    pending = _row_files(run_dir, stage)
    buffer = pa.BufferOutputStream()
    pq.write_table(_table(sorted(rows, key=lambda r: r["shard"])), buffer)
    storage.write_bytes(path, buffer.getvalue().to_pybytes())
    # Only after the table holds them: a run killed here leaves row files that repeat it.
    for row_file in pending:
        storage.remove(row_file)
    return path


def _remove_leftover_temporaries(run_dir: str | Path, stage: str) -> None:
    """The stage's row files and table a killed driver was writing (`.NAME.tmp-*`). Only on a local
    disk: an object store shows an object only once it is whole."""
    if storage.is_remote(run_dir):
        return
    table = Path(manifest_path(run_dir, stage))
    for leftover in [*table.parent.glob(f".{table.name}.*"), *Path(rows_dir(run_dir, stage)).glob(".*")]:
        leftover.unlink(missing_ok=True)


def _read_table(path: str, schema: pa.Schema) -> pa.Table:
    with storage.open_input_file(path) as file:
        table = pq.read_table(file, columns=[c for c in schema.names if c in pq.read_schema(file).names])
    for column in ("node", "input_versions"):
        if column in schema.names and column not in table.column_names:  # written before the column existed
            table = table.append_column(column, pa.nulls(len(table), MANIFEST_SCHEMA.field(column).type))
    for column in TALLY_COLUMNS:
        if column in table.column_names and pa.types.is_map(table.schema.field(column).type):
            table = table.set_column(table.schema.get_field_index(column), column,
                                     _map_as_list(table[column], MANIFEST_SCHEMA.field(column).type))
    return table.select(schema.names).cast(schema)


def read_manifest_table(run_dir: str | Path, stage: str, columns: list[str] | None = None) -> pa.Table:
    """The stage's rows as an Arrow table of `columns` (all by default), sorted by shard: its table
    and the row files recorded since, which override the table's rows of the same shard. For readers
    of many rows (a 90,000-shard stage) that need only some columns."""
    columns = list(columns or MANIFEST_SCHEMA.names)
    schema = pa.schema([MANIFEST_SCHEMA.field(c) for c in (columns if "shard" in columns else ["shard", *columns])])
    row_files = _row_files(run_dir, stage)
    with ThreadPoolExecutor(min(READ_THREADS, max(1, len(row_files)))) as pool:
        pending = [{**row, **_tallies_as_lists(row)} for row in pool.map(_recorded_row, row_files)]
    tables = [pa.Table.from_pylist(pending, schema=schema)]
    path = str(manifest_path(run_dir, stage))
    if storage.exists(path):
        table = _read_table(path, schema)
        recorded = pc.is_in(table["shard"], value_set=pa.array([r["shard"] for r in pending], pa.string()))
        tables.insert(0, table.filter(pc.invert(recorded)))
    merged = pa.concat_tables(tables)
    return merged.take(pc.sort_indices(merged["shard"])).select(columns)


def read_manifest(run_dir: str | Path, stage: str) -> list[dict]:
    """The stage's rows as dicts (`dropped` and `counters` as dicts), sorted by shard, or [] if it
    has not run."""
    return [{**row, **_tallies_as_dicts(row)} for row in read_manifest_table(run_dir, stage).to_pylist()]


def stages_recorded(run_dir: str | Path) -> list[str]:
    stages = set()
    for path in storage.list_files(location(run_dir) / "manifests", recursive=True):
        relative = path.rsplit("/manifests/", 1)[1]
        top = relative.split("/", 1)[0]
        if top.endswith(".parquet") and "/" not in relative:
            stages.add(top.removesuffix(".parquet"))
        elif top.endswith(".rows"):
            stages.add(top.removesuffix(".rows"))
    return sorted(stages)
