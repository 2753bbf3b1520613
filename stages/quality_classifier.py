"""Quality classification of Common Crawl pages, as LLaMA/RedPajama did it.

Training data: pages Wikipedia cites as references (positives) against random CC pages
(negatives), both at least 1,000 characters. The reference pages are crawl pages whose normalised
URL (`stages.wikipedia.normalize_url`, the same function that wrote the references'
`normalized_url`) is in the references shards. Few cited pages turn up in an ordinary crawl
sample; to fetch them, write the URL list with `write_reference_url_list` and look them up in the
Common Crawl URL index. With too few cited pages, `build_training_set` falls back to Wikipedia
article text as positives (as GPT-3 did) and says so, loudly and in the model card.

Scoring adds `quality_score` (float32 p(reference)) to every document and drops those under the
threshold (RedPajama: 0.25) with reason `quality_below_threshold`.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterator

import pyarrow as pa

from classifiers.quality import DEFAULT_THRESHOLD, load_quality_model
from stages.accounting import ShardStats
from stages.documents import atomic_path, filter_shard, read_documents
from stages.wikipedia import normalize_url

log = logging.getLogger(__name__)

SCORE_BATCH = 1024
DROP_REASON = "quality_below_threshold"
MIN_CITED_POSITIVES = 50


def _sample_key(seed: int, doc_id: str) -> str:
    return hashlib.sha1(f"{seed}\0{doc_id}".encode()).hexdigest()


def _text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


def _reference_urls(references_paths: list[str], kinds: set[str] | None = None) -> dict[str, str]:
    """normalized_url -> the URL as first written, over all references shards."""
    urls: dict[str, str] = {}
    for path in references_paths:
        for row in read_documents(path, columns=["url", "normalized_url", "kind"]):
            if kinds is None or row["kind"] in kinds:
                urls.setdefault(row["normalized_url"], row["url"])
    return urls


def write_reference_url_list(references_paths: list[str], out_path: str, *, kinds: list[str] | None = None) -> int:
    """Write the distinct reference URLs (one per normalised URL, as first written in the
    article, sorted) to `out_path`, one per line; return how many.

    This is the list to take to the Common Crawl URL index (CDX server, index.commoncrawl.org, or
    the columnar index on S3) to find the WARC records of the cited pages: look each URL up in a
    crawl's index, fetch the records by (filename, offset, length), extract them with
    `stages.extract.extract_warc`, and pass those shards as `crawl_paths` to `build_training_set`
    (RedPajama used ~300K such pages of at least 1,000 characters). `kinds` restricts to some
    reference kinds (`ref`, `template`, `external_link`); all by default.
    """
    urls = _reference_urls(references_paths, set(kinds) if kinds else None)
    lines = sorted(urls.values())
    with atomic_path(out_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for url in lines:
                f.write(url.replace("\n", " ").strip() + "\n")
    return len(lines)


def build_training_set(
    crawl_paths: list[str],
    references_paths: list[str],
    wikipedia_paths: list[str],
    *,
    min_chars: int = 1000,
    max_examples: int = 300_000,
    seed: int = 0,
    min_positives: int = MIN_CITED_POSITIVES,
) -> tuple[list[str], list[str], dict]:
    """(positives, negatives, info) for `classifiers.quality.train_quality_model`.

    Positives: crawl pages whose normalised URL is cited in the references shards, of at least
    `min_chars` characters, deduplicated by text. Negatives: other crawl pages of at least
    `min_chars` (the same length floor, so length alone does not give the class away), not cited,
    deduplicated, chosen by sha1(seed, id) order; as many as there are positives, at most
    `max_examples` each. With fewer than `min_positives` cited pages, the positives are Wikipedia
    article texts instead (`positive_source: "wikipedia_articles"`, with a warning), which teaches
    "looks like Wikipedia" rather than "looks like a cited page".
    """
    cited = set(_reference_urls(references_paths))
    seen: set[bytes] = set()
    cited_pages: list[tuple[str, str]] = []
    other_pages: list[tuple[str, str]] = []
    counts = {"crawl_documents": 0, "crawl_short": 0, "crawl_duplicate_text": 0, "crawl_cited": 0}
    for path in crawl_paths:
        for doc in read_documents(path, columns=["id", "url", "text"]):
            counts["crawl_documents"] += 1
            text = doc["text"] or ""
            if len(text) < min_chars:
                counts["crawl_short"] += 1
                continue
            key = _text_key(text)
            if key in seen:
                counts["crawl_duplicate_text"] += 1
                continue
            seen.add(key)
            is_cited = bool(doc["url"]) and normalize_url(doc["url"]) in cited
            counts["crawl_cited"] += is_cited
            (cited_pages if is_cited else other_pages).append((_sample_key(seed, doc["id"]), text))

    info: dict = {
        "min_chars": min_chars,
        "max_examples": max_examples,
        "seed": seed,
        "min_positives": min_positives,
        "crawl_paths": list(crawl_paths),
        "references_paths": list(references_paths),
        "reference_urls": len(cited),
        **counts,
    }
    if len(cited_pages) >= min_positives:
        info["positive_source"] = "cited_crawl_pages"
        positive_pool = cited_pages
    else:
        message = (
            f"only {len(cited_pages)} crawl pages of >= {min_chars} chars are cited by Wikipedia "
            f"(minimum {min_positives}): FALLING BACK to Wikipedia article text as positives; the "
            "classifier will learn 'looks like Wikipedia', not 'looks like a cited reference page'. "
            "Fetch the cited pages via write_reference_url_list + the Common Crawl index to avoid this."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
        info["positive_source"] = "wikipedia_articles"
        info["fallback_reason"] = message
        info["wikipedia_paths"] = list(wikipedia_paths)
        positive_pool = []
        for path in wikipedia_paths:
            for doc in read_documents(path, columns=["id", "text"]):
                text = doc["text"] or ""
                if len(text) < min_chars:
                    continue
                key = _text_key(text)
                if key in seen:
                    continue
                seen.add(key)
                positive_pool.append((_sample_key(seed, doc["id"]), text))
    n = min(len(positive_pool), len(other_pages), max_examples)
    if n == 0:
        raise ValueError(
            f"no training data: {len(positive_pool)} positives ({info['positive_source']}), "
            f"{len(other_pages)} negative crawl pages of >= {min_chars} chars"
        )
    positives = [text for _, text in sorted(positive_pool)[:n]]
    negatives = [text for _, text in sorted(other_pages)[:n]]
    info["positive_candidates"] = len(positive_pool)
    info["negative_candidates"] = len(other_pages)
    info["positives"] = len(positives)
    info["negatives"] = len(negatives)
    return positives, negatives, info


def score_documents(
    input_path: str,
    output_path: str,
    *,
    model: str,
    threshold: float = DEFAULT_THRESHOLD,
    dropped_path: str | None = None,
) -> ShardStats:
    """Add `quality_score` (p(reference), float32) to each document; keep those >= `threshold`."""
    classifier = load_quality_model(str(model))

    def judge(batch: list[dict]) -> Iterator[tuple[dict, str | None]]:
        scores = classifier.predict_proba([d["text"] or "" for d in batch])
        for doc, score in zip(batch, scores):
            yield {**doc, "quality_score": float(score)}, DROP_REASON if score < threshold else None

    fields = [pa.field("quality_score", pa.float32())]
    return filter_shard(input_path, output_path, fields, judge, dropped_path=dropped_path, batch_size=SCORE_BATCH)
