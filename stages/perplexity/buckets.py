"""Head, middle and tail: CCNet's perplexity buckets, and the filter that keeps some of them.

`compute_cutoffs` merges every scored shard's histogram (scoring.py) into each language's distribution and
writes `cutoffs.json`: {language: {"head": p_low, "tail": p_high, "documents": n, "from": "run"}},
where p_low and p_high are the perplexities at the configured percentiles (CCNet's 30th and 60th),
read as the upper edge of the histogram bin that reaches them; a language in the configured
`cutoffs` takes those instead (`"from": "config"`). Its cost grows with the number of shards only
through reading their histograms, a few kilobytes each.

`bucket_documents` joins a shard with its scores and names each document's bucket: `head` below
the head cutoff, `tail` at or above the tail cutoff, `middle` between (CCNet's rule), null for a
document without a score. Drop reasons: `perplexity_bucket:<bucket>` for a bucket not in
`keep_buckets`, `perplexity_unscored` for a document without a score when `drop_unscored` is set.
Counters: `bucket:<language>:<bucket>` for every document read, kept or not, which `inspect` shows.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stages.accounting import ShardStats
from stages.documents import DroppedDocuments, ROWS_PER_BATCH, atomic_path, schema_with, write_documents
from stages.perplexity.scoring import BIN_WIDTH, SCORES_SCHEMA

CUTOFFS_FILE = "cutoffs.json"


def compute_cutoffs(
    histogram_paths: list[str],
    output_path: str,
    *,
    languages: list[str],
    percentiles: tuple[float, float],
    cutoffs: dict[str, tuple[float, float]],
) -> ShardStats:
    merged: dict[str, Counter] = defaultdict(Counter)
    for path in histogram_paths:
        for lang, bins in json.loads(Path(path).read_text()).items():
            merged[lang].update({int(b): n for b, n in bins.items()})
    result = {}
    for lang in sorted(set(languages) | set(merged) | set(cutoffs)):
        documents = sum(merged[lang].values())
        if lang in cutoffs:
            head, tail = cutoffs[lang]
            result[lang] = {"head": head, "tail": tail, "documents": documents, "from": "config"}
        elif documents:
            head, tail = (_percentile(merged[lang], q) for q in percentiles)
            result[lang] = {"head": head, "tail": tail, "documents": documents, "from": "run"}
    with atomic_path(output_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    stats = ShardStats(bytes_out=Path(output_path).stat().st_size)
    stats.counters.update({f"documents:{lang}": entry["documents"] for lang, entry in result.items()})
    return stats


def _percentile(histogram: Counter, q: float) -> float:
    total, seen = sum(histogram.values()), 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= total * q / 100:
            return round(10 ** ((b + 1) * BIN_WIDTH), 1)
    raise AssertionError("unreachable: the last bin reaches every percentile")


def bucket_of(perplexity: float | None, cutoff: dict | None) -> str | None:
    if perplexity is None or cutoff is None:
        return None
    if perplexity < cutoff["head"]:
        return "head"
    return "middle" if perplexity < cutoff["tail"] else "tail"


def bucket_documents(
    input_path: str,
    scores_path: str,
    cutoffs_path: str,
    output_path: str,
    *,
    keep_buckets: list[str],
    drop_unscored: bool,
    dropped_path: str | None = None,
) -> ShardStats:
    cutoffs = json.loads(Path(cutoffs_path).read_text())
    documents, scores = pq.ParquetFile(input_path), pq.ParquetFile(scores_path)
    if documents.metadata.num_rows != scores.metadata.num_rows:
        raise ValueError(f"{scores_path} has {scores.metadata.num_rows} scores for the "
                         f"{documents.metadata.num_rows} documents of {input_path}: rerun perplexity_score")
    schema = schema_with(documents.schema_arrow, *SCORES_SCHEMA, pa.field("perplexity_bucket", pa.string()))
    stats = ShardStats()
    keep = set(keep_buckets)

    def kept(dropped: DroppedDocuments) -> Iterator[dict]:
        # Row by row: the two files' batches break at their own row-group boundaries.
        score_rows = (row for batch in scores.iter_batches(ROWS_PER_BATCH) for row in batch.to_pylist())
        for doc_batch in documents.iter_batches(ROWS_PER_BATCH):
            for doc, score in zip(doc_batch.to_pylist(), score_rows):
                stats.docs_in += 1
                language = doc.get("language")
                bucket = bucket_of(score["perplexity"], cutoffs.get(language))
                doc = {**doc, **score, "perplexity_bucket": bucket}
                stats.counters[f"bucket:{language}:{bucket or 'unscored'}"] += 1
                reason = (("perplexity_unscored" if drop_unscored else None) if bucket is None
                          else None if bucket in keep else f"perplexity_bucket:{bucket}")
                if reason:
                    stats.drop(reason)
                    dropped.add(doc, reason)
                else:
                    stats.docs_out += 1
                    yield doc

    with DroppedDocuments(dropped_path, schema) as dropped:
        stats.bytes_out = write_documents(output_path, kept(dropped), schema)
    return stats.check()
