"""A few dropped documents per drop reason beside a few kept ones, from a few shards a stage.

Dropped documents come from the audit output, RUN_DIR/dropped/<stage>/<shard>.parquet (written when
run.keep_dropped is on), read from the shards the manifest says dropped each reason; kept ones from
the stage's sampled output shards. Reads stop after MAX_SCAN_ROWS rows a file, and text is cut to
TEXT_CHARS at once, so a stage with many shards or long documents costs no more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.report.run_data import RunData, StageSummary
from pipeline import storage

PER_REASON = 3
REASONS_SHOWN = 10
FILES_READ = 4  # dropped-document files read per stage
MAX_SCAN_ROWS = 5_000
TEXT_CHARS = 600
LABEL_COLUMNS = ("url", "title", "path", "main_file")
SCORE_COLUMNS = ("language", "language_score", "perplexity", "perplexity_bucket", "cluster_size", "quality_score")


@dataclass
class Document:
    id: str
    label: str  # its URL, title or path
    scores: dict
    text: str  # at most TEXT_CHARS
    chars: int  # of the whole text


@dataclass
class StageSamples:
    stage: str
    reasons: list[str] = field(default_factory=list)  # looked for: the most frequent
    dropped: dict[str, list[Document]] = field(default_factory=dict)  # by reason, most frequent first
    kept: list[Document] = field(default_factory=list)
    files_read: int = 0
    note: str = ""  # why there are no dropped documents to show


def _document(row: dict) -> Document:
    text = row.get("text") or ""
    label = next((str(row[c]) for c in LABEL_COLUMNS if row.get(c)), "")
    scores = {c: row[c] for c in SCORE_COLUMNS if row.get(c) is not None}
    return Document(str(row.get("id", "")), label, scores, text[:TEXT_CHARS], len(text))


def _scan(path: str, wanted: dict[str, int]) -> dict[str, list[Document]]:
    """Up to wanted[reason] documents for each reason (None: any document, the kept ones)."""
    found: dict[str, list[Document]] = {}
    try:
        if storage.exists(path):
            _scan_file(path, wanted, found)
    except (OSError, pa.ArrowException):  # a failed run's damaged shard: show what was read
        pass
    return found


def _scan_file(path: str, wanted: dict[str, int], found: dict[str, list[Document]]) -> None:
    with storage.open_input_file(path) as file:
        parquet = pq.ParquetFile(file)
        names = parquet.schema_arrow.names
        columns = [c for c in ("id", "text", "drop_reason", *LABEL_COLUMNS, *SCORE_COLUMNS) if c in names]
        scanned = 0
        for batch in parquet.iter_batches(batch_size=64, columns=columns):
            reasons = batch.column("drop_reason").to_pylist() if "drop_reason" in names else [None] * batch.num_rows
            for i, reason in enumerate(reasons):
                if len(found.get(reason, [])) < wanted.get(reason, 0):
                    found.setdefault(reason, []).append(_document(batch.slice(i, 1).to_pylist()[0]))
            scanned += batch.num_rows
            if scanned >= MAX_SCAN_ROWS or all(len(found.get(r, [])) >= n for r, n in wanted.items()):
                break


def _files_for_reasons(summary: StageSummary, reasons: list[str]) -> list[str]:
    """Shards holding the reasons, the most frequent reason's first, FILES_READ at most."""
    shards: list[str] = []
    for reason in reasons:
        shard = summary.reason_shards.get(reason)
        if shard and shard not in shards and len(shards) < FILES_READ:
            shards.append(shard)
    return shards


def stage_samples(run: RunData, summary: StageSummary, audited: bool) -> StageSamples:
    reasons = [r for r, _ in summary.dropped.most_common(REASONS_SHOWN)]
    samples = StageSamples(summary.stage, reasons)
    if not storage.exists(run.path("dropped", summary.stage)):
        samples.note = ("no dropped documents: this stage writes none (it drops records or examples, not documents)"
                        if audited else "no dropped documents: run.keep_dropped was off for this run")
    else:
        for shard in _files_for_reasons(summary, reasons):
            wanted = {r: PER_REASON - len(samples.dropped.get(r, [])) for r in reasons}
            for reason, documents in _scan(run.path("dropped", summary.stage, f"{shard}.parquet"), wanted).items():
                samples.dropped.setdefault(reason, []).extend(documents)
            samples.files_read += 1
        samples.dropped = {r: samples.dropped[r] for r in reasons if r in samples.dropped}
    wanted_kept = PER_REASON * max(1, len(reasons))
    for row in summary.sample:
        if len(samples.kept) >= wanted_kept or not row["output"].endswith(".parquet"):
            break
        samples.kept += _scan(row["output"], {None: wanted_kept - len(samples.kept)}).get(None, [])
    return samples


def run_samples(run: RunData) -> list[StageSamples]:
    """For every stage that dropped anything, in pipeline order."""
    audited = storage.exists(run.path("dropped"))
    return [stage_samples(run, s, audited) for s in run.stages.values() if s.dropped]
