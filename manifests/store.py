"""Reading and writing stage manifests at RUN_DIR/manifests/<stage>.parquet."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import MANIFEST_SCHEMA
from stages.documents import atomic_path


class ManifestError(ValueError):
    """A manifest row breaks the schema or the accounting invariant."""


def manifest_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "manifests" / f"{stage}.parquet"


def check_row(row: dict) -> None:
    dropped = sum(dict(row["dropped"]).values())
    if row["docs_in"] != row["docs_out"] + dropped:
        raise ManifestError(
            f"{row['stage']}/{row['shard']}: docs_in={row['docs_in']} != "
            f"docs_out={row['docs_out']} + dropped={dropped}"
        )


def write_manifest(run_dir: str | Path, stage: str, rows: list[dict]) -> Path:
    """Replace the stage's manifest with `rows` (sorted by shard), atomically."""
    for row in rows:
        check_row(row)
    rows = sorted(rows, key=lambda r: r["shard"])
    table = pa.Table.from_pylist(
        [
            {**r, "dropped": sorted(dict(r["dropped"]).items()), "counters": sorted(dict(r["counters"]).items())}
            for r in rows
        ],
        schema=MANIFEST_SCHEMA,
    )
    path = manifest_path(run_dir, stage)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_manifest(run_dir: str | Path, stage: str) -> list[dict]:
    """The stage's rows as dicts (`dropped` as a dict), or [] if the stage has not run."""
    path = manifest_path(run_dir, stage)
    if not path.exists():
        return []
    rows = pq.read_table(path, schema=MANIFEST_SCHEMA).to_pylist()
    for row in rows:
        row["dropped"] = dict(row["dropped"])
        row["counters"] = dict(row["counters"])
    return rows


def stages_recorded(run_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(run_dir) / "manifests").glob("*.parquet"))
