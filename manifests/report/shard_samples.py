"""Score distributions read from a bounded sample of shards: the stage's even spread of finished
shards (run_data.SAMPLE_SHARDS at most), only the score columns, at most MAX_ROWS rows a shard."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.report.run_data import RunData
from pipeline import storage

MAX_ROWS = 20_000


@dataclass
class Sample:
    """Values of some columns from `shards_read` of a stage's `shards_total` finished shards."""

    shards_read: int = 0
    shards_total: int = 0
    values: dict[str, list] = field(default_factory=dict)

    @property
    def basis(self) -> str:
        return f"from {self.shards_read:,} of {self.shards_total:,} shards"


def read_columns(path: str, columns: list[str], max_rows: int = MAX_ROWS) -> dict[str, list] | None:
    """Those of `columns` the parquet file has, up to `max_rows` rows; None if there is no file, or
    none that reads (a failed run's shard may be damaged: the report must still open)."""
    try:
        return _read_columns(path, columns, max_rows) if storage.exists(path) else None
    except (OSError, pa.ArrowException):
        return None


def _read_columns(path: str, columns: list[str], max_rows: int) -> dict[str, list]:
    with storage.open_input_file(path) as file:
        parquet = pq.ParquetFile(file)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        values: dict[str, list] = {c: [] for c in present}
        if not present:
            return values
        rows = 0
        for batch in parquet.iter_batches(batch_size=4096, columns=present):
            for column in present:
                values[column] += batch.column(column).to_pylist()[: max_rows - rows]
            rows += batch.num_rows
            if rows >= max_rows:
                break
    return values


def sample_stage(run: RunData, stage: str, columns: list[str], *, dropped: bool = False) -> Sample:
    """The columns from the stage's sampled output shards, or from their dropped documents
    (RUN_DIR/dropped/<stage>/<shard>.parquet, written when run.keep_dropped is on)."""
    summary = run.get(stage)
    sample = Sample(shards_total=summary.done if summary else 0, values={c: [] for c in columns})
    for row in summary.sample if summary else []:
        path = run.path("dropped", stage, f"{row['shard']}.parquet") if dropped else row["output"]
        values = read_columns(path, columns)
        if values is None:
            continue
        sample.shards_read += 1
        for column, column_values in values.items():
            sample.values[column] += column_values
    return sample


def perplexity_histograms(run: RunData) -> tuple[dict[str, Counter], Sample]:
    """{language: {rounded perplexity: documents}} from the sampled shards' histograms, which the
    perplexity_score stage writes beside its scores (`<shard>.histogram.json`)."""
    summary = run.get("perplexity_score")
    sample = Sample(shards_total=summary.done if summary else 0)
    histograms: dict[str, Counter] = {}
    for row in summary.sample if summary else []:
        path = row["output"].removesuffix(".parquet") + ".histogram.json"
        try:
            histogram = json.loads(storage.read_text(path)) if storage.exists(path) else None
        except (OSError, ValueError):
            histogram = None
        if histogram is None:
            continue
        sample.shards_read += 1
        for language, counts in histogram.items():
            histograms.setdefault(language, Counter()).update({float(k): v for k, v in counts.items()})
    return histograms, sample


def perplexity_cutoffs(run: RunData) -> dict[str, dict]:
    """{language: {head, tail, documents, ...}}: the run-wide bucket cutoffs."""
    summary = run.get("perplexity_cutoffs")
    if not summary or not summary.sample or not storage.exists(summary.sample[0]["output"]):
        return {}
    return json.loads(storage.read_text(summary.sample[0]["output"]))
