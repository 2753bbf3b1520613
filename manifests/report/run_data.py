"""What the report needs from a run's manifests: per stage, totals, drops and counters by name,
the failed shards, and an even spread of finished shards to sample.

A Common Crawl run has ~90,000 shards a stage: only the columns the report uses are read, totals
are computed in Arrow rather than row by row, and only a bounded number of rows becomes Python
objects (the sampled shards, the first shard of each drop reason, the first failures).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from manifests.schema import DONE, TALLY_COLUMNS
from manifests.store import read_manifest_table, stages_recorded
from pipeline import storage
from pipeline.storage import Location, location

COLUMNS = ["shard", "output", "docs_in", "docs_out", "dropped", "bytes_out", "tokens", "counters", "seconds",
           "status", "error", "finished_at"]
SAMPLE_SHARDS = 32  # finished shards per stage whose outputs the report may read
FAILURES_LISTED = 200  # failed shards listed per stage (all are counted)

# Each source's document stages in pipeline order (pipeline.registry.SOURCE_DOCUMENTS ends them);
# tokenize names its shards "<source>/<shard>".
SOURCE_STAGES = {
    "common_crawl": ("extract", "langid", "line_dedup", "perplexity", "quality", "near_dedup", "quality_classifier"),
    "wikipedia": ("wikipedia",),
    "arxiv": ("arxiv",),
    "stackexchange": ("stackexchange",),
    "github": ("github", "github_dedup"),
    "books": ("books", "books_dedup"),
}


@dataclass
class StageSummary:
    stage: str
    shards: int = 0
    done: int = 0
    docs_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    tokens: int | None = None
    seconds: float = 0.0
    dropped: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)
    # Shards named "<source>/<shard>" (tokenize): documents and tokens per source.
    by_source: dict[str, Counter] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)  # {shard, error} of the first FAILURES_LISTED
    failed_count: int = 0
    first_finished: datetime | None = None
    last_finished: datetime | None = None
    sample: list[dict] = field(default_factory=list)  # {shard, output} of an even spread of done shards
    reason_shards: dict[str, str] = field(default_factory=dict)  # the first done shard with each drop reason


@dataclass
class RunData:
    run_dir: Path | Location
    stages: dict[str, StageSummary]  # in the order they first finished a shard, which is pipeline order

    def get(self, stage: str) -> StageSummary | None:
        return self.stages.get(stage)

    @property
    def failed_count(self) -> int:
        return sum(s.failed_count for s in self.stages.values())

    def path(self, *parts: str) -> str:
        path = self.run_dir
        for part in parts:  # a Location (object storage) has `/` but not joinpath
            path = path / part
        return str(path)


def _tallies(column: pa.ChunkedArray, key: str) -> tuple[Counter, dict[str, int]]:
    """Summed counts by name, and the first row holding each name."""
    cells = column.combine_chunks()
    entries = pc.list_flatten(cells)
    table = pa.table({"name": pc.struct_field(entries, key), "count": pc.struct_field(entries, "count"),
                      "row": pc.list_parent_indices(cells)})
    grouped = table.group_by("name").aggregate([("count", "sum"), ("row", "min")]).to_pydict()
    return (Counter(dict(zip(grouped["name"], grouped["count_sum"]))),
            dict(zip(grouped["name"], grouped["row_min"])))


def summarise_stage(run_dir, stage: str) -> StageSummary:
    rows = read_manifest_table(run_dir, stage, COLUMNS)
    summary = StageSummary(stage, shards=rows.num_rows)
    if not rows.num_rows:
        return summary
    times = pc.min_max(rows["finished_at"]).as_py()
    summary.first_finished, summary.last_finished = times["min"], times["max"]
    ok = pc.equal(rows["status"], DONE)
    failed = rows.filter(pc.invert(ok))
    summary.failed_count = failed.num_rows
    summary.failed = [{"shard": r["shard"], "error": r["error"] or "(no error recorded)"}
                      for r in failed.slice(0, FAILURES_LISTED).select(["shard", "error"]).to_pylist()]
    done = rows.filter(ok)
    summary.done = done.num_rows
    if not done.num_rows:
        return summary
    summary.docs_in, summary.docs_out, summary.bytes_out, summary.seconds, summary.tokens = (
        pc.sum(done[c]).as_py() for c in ("docs_in", "docs_out", "bytes_out", "seconds", "tokens"))
    summary.dropped, first_rows = _tallies(done["dropped"], TALLY_COLUMNS["dropped"])
    summary.counters, _ = _tallies(done["counters"], TALLY_COLUMNS["counters"])
    summary.reason_shards = {reason: done["shard"][row].as_py() for reason, row in first_rows.items()}
    keep_every = -(-done.num_rows // SAMPLE_SHARDS)
    summary.sample = done.take(list(range(0, done.num_rows, keep_every))).select(["shard", "output"]).to_pylist()
    per_source = done.filter(pc.match_substring(done["shard"], "/"))
    for row in per_source.select(["shard", "docs_in", "docs_out", "tokens"]).to_pylist():
        summary.by_source.setdefault(row["shard"].split("/", 1)[0], Counter()).update(
            {"docs_in": row["docs_in"], "docs_out": row["docs_out"], "tokens": row["tokens"] or 0})
    return summary


def gather(run_dir: str | Path) -> RunData:
    run_dir = location(run_dir)
    stages = stages_recorded(run_dir)
    if not stages and not storage.exists(str(run_dir)):
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    summaries = [summarise_stage(run_dir, stage) for stage in stages]
    summaries = [s for s in summaries if s.shards]
    summaries.sort(key=lambda s: s.first_finished)
    return RunData(run_dir, {s.stage: s for s in summaries})
