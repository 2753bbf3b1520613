"""Perplexity of every crawl document, per language (classifiers/ngram_lm.py).

Output: a parquet file row-aligned with the input shard holding only `perplexity` (the document's,
null when it has no model or no text to score) and `paragraph_perplexity` (each scored paragraph's),
which the `perplexity` stage joins back; and beside it `<shard>.histogram.json`, the shard's
scores per language as counts of log10(perplexity) in bins of `BIN_WIDTH`, from which the cutoffs
stage takes run-wide percentiles without reading a score twice. Nothing is dropped here; documents
not scored are counted: `unscored:no_model:<lang>` and `unscored:no_text`.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from classifiers.ngram_lm import PerplexityModel
from stages.accounting import ShardStats
from stages.documents import atomic_path, read_document_batches

BIN_WIDTH = 0.01  # of log10(perplexity): a percentile read from the histogram is within 2.3%
SCORES_SCHEMA = pa.schema([pa.field("perplexity", pa.float32()),
                           pa.field("paragraph_perplexity", pa.list_(pa.float32()))])


def histogram_path(scores_path: str | Path) -> Path:
    scores_path = Path(scores_path)
    return scores_path.with_name(scores_path.name.removesuffix(".parquet") + ".histogram.json")


def log_bin(perplexity: float) -> int:
    return math.floor(math.log10(max(perplexity, 1.0)) / BIN_WIDTH)


def score_perplexity(input_path: str, output_path: str, *, models: dict[str, tuple[str, str]]) -> ShardStats:
    """`models`: {language: (pieces model, language model)}."""
    loaded = {lang: PerplexityModel(pieces, lm) for lang, (pieces, lm) in models.items()}
    stats = ShardStats()
    histograms: dict[str, Counter] = defaultdict(Counter)
    with atomic_path(output_path) as tmp, pq.ParquetWriter(tmp, SCORES_SCHEMA) as writer:
        for batch in read_document_batches(input_path, columns=["text", "language"]):
            scores, paragraphs = [], []
            for doc in batch:
                model = loaded.get(doc.get("language"))
                perplexity, per_paragraph = model.score(doc["text"]) if model else (None, [])
                if model is None:
                    stats.counters[f"unscored:no_model:{doc.get('language')}"] += 1
                elif perplexity is None:
                    stats.counters["unscored:no_text"] += 1
                else:
                    histograms[doc["language"]][log_bin(perplexity)] += 1
                scores.append(perplexity)
                paragraphs.append(per_paragraph)
            writer.write_table(pa.table({"perplexity": scores, "paragraph_perplexity": paragraphs},
                                        schema=SCORES_SCHEMA))
            stats.docs_in += len(batch)
            stats.docs_out += len(batch)
    with atomic_path(histogram_path(output_path)) as tmp:
        tmp.write_text(json.dumps({lang: {str(b): n for b, n in sorted(h.items())} for lang, h in histograms.items()},
                                  sort_keys=True) + "\n")
    stats.bytes_out = Path(output_path).stat().st_size
    for lang, histogram in histograms.items():
        stats.counters[f"scored:{lang}"] += sum(histogram.values())
    return stats.check()
