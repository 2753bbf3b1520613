"""Reading and writing stage manifests at RUN_DIR/manifests/<stage>.parquet.

Recording a finished shard must cost the same at shard 10 and at shard 100,000, so a shard's row
is written alone, as a small JSON file under `RUN_DIR/manifests/<stage>.rows/`; a reader merges those
with the stage's table (a row file overrides the table's row of the same shard). The runner folds
them into the table when a stage starts and when it ends (`write_manifest`), the one cost that
grows with the stage, paid twice a stage instead of once a shard. A run killed in between leaves
its row files, and the next run reads them as finished shards.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import MANIFEST_SCHEMA
from stages.documents import atomic_path


class ManifestError(ValueError):
    """A manifest row breaks the schema or the accounting invariant."""


def manifest_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "manifests" / f"{stage}.parquet"


def rows_dir(run_dir: str | Path, stage: str) -> Path:
    """Where rows recorded since the stage's table was last written wait to be folded into it."""
    return Path(run_dir) / "manifests" / f"{stage}.rows"


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
    return pa.Table.from_pylist(
        [
            {**r, "dropped": sorted(dict(r["dropped"]).items()), "counters": sorted(dict(r["counters"]).items())}
            for r in rows
        ],
        schema=MANIFEST_SCHEMA,
    )


def record_row(run_dir: str | Path, stage: str, row: dict) -> Path:
    """Record one shard's row, atomically, in time independent of the stage's size."""
    # Named by a digest of the shard: shard names may hold "/" (tokenize's are "<source>/<shard>").
    check_row(row)
    name = hashlib.sha1(row["shard"].encode()).hexdigest()[:20]
    path = rows_dir(run_dir, stage) / f"{name}.json"
    # Milliseconds, as the table's timestamp column holds them: a row reads back the same either way.
    finished_at = row["finished_at"].isoformat(timespec="milliseconds")
    record = {**row, "dropped": dict(row["dropped"]), "counters": dict(row["counters"]), "finished_at": finished_at}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record))
    return path


def _recorded_row(path: Path) -> dict:
    row = json.loads(path.read_text())
    row["finished_at"] = datetime.fromisoformat(row["finished_at"])
    return row


def write_manifest(run_dir: str | Path, stage: str, rows: list[dict]) -> Path:
    """Replace the stage's manifest with `rows` (sorted by shard), atomically, and drop the row
    files recorded since: `rows` must include those still wanted (read them with read_manifest)."""
    path = manifest_path(run_dir, stage)
    pending = list(rows_dir(run_dir, stage).glob("*.json"))
    with atomic_path(path) as tmp:
        pq.write_table(_table(sorted(rows, key=lambda r: r["shard"])), tmp)
    # Only after the table holds them: a run killed here leaves row files that repeat it.
    for row_file in pending:
        row_file.unlink(missing_ok=True)
    return path


def read_manifest(run_dir: str | Path, stage: str) -> list[dict]:
    """The stage's rows as dicts (`dropped` as a dict), sorted by shard, or [] if it has not run."""
    path = manifest_path(run_dir, stage)
    rows: dict[str, dict] = {}
    if path.exists():
        for row in pq.read_table(path, schema=MANIFEST_SCHEMA).to_pylist():
            rows[row["shard"]] = {**row, "dropped": dict(row["dropped"]), "counters": dict(row["counters"])}
    for row_file in rows_dir(run_dir, stage).glob("*.json"):
        row = _recorded_row(row_file)
        rows[row["shard"]] = row
    return [rows[shard] for shard in sorted(rows)]


def stages_recorded(run_dir: str | Path) -> list[str]:
    manifests = Path(run_dir) / "manifests"
    return sorted({p.stem for p in manifests.glob("*.*") if p.suffix in (".parquet", ".rows")})
