"""Quality classification of Common Crawl pages, as LLaMA/RedPajama did it.

Training data: pages Wikipedia cites as references (positives) against random CC pages
(negatives), both at least 1,000 characters. The reference pages are the pages the
`reference_pages` stage fetched from a crawl's index (`stages.references`), and crawl pages whose
normalised URL (`stages.wikipedia.normalize_url`, the same function that wrote the references'
`normalized_url`) is in the references shards: few cited pages turn up in an ordinary crawl
sample. With too few cited pages, `build_training_set` falls back to Wikipedia article text as
positives (as GPT-3 did) and says so, loudly and in the model card.

Scoring adds `quality_score` (float32 p(reference)) to every document and drops those under the
threshold (RedPajama: 0.25) with reason `quality_below_threshold`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from classifiers.quality import DEFAULT_THRESHOLD, load_quality_model, train_quality_model
from stages.accounting import ShardStats
from stages.documents import atomic_dir, atomic_path, filter_shard, read_documents
from stages.wikipedia import normalize_url, original_url

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
    """Write the distinct reference URLs (one per normalised URL: the cited page's own URL as first
    written in an article, unwrapped from the Wayback Machine, sorted) to `out_path`, one per line;
    return how many.

    This is the list to take to the Common Crawl URL index (CDX server, index.commoncrawl.org, or
    the columnar index on S3) to find the WARC records of the cited pages; the `reference_pages`
    stage does that for a sample of them (RedPajama used ~300K such pages of at least 1,000
    characters). `kinds` restricts to some reference kinds (`ref`, `template`, `external_link`);
    all by default.
    """
    urls = _reference_urls(references_paths, set(kinds) if kinds else None)
    lines = sorted(original_url(url).replace("\n", " ") for url in urls.values())
    with atomic_path(out_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for url in lines:
                f.write(url + "\n")
    return len(lines)


@dataclass
class TrainingSet:
    positives: list[str]
    negatives: list[str]
    info: dict  # where the data came from and how much of it, for the model card
    stats: ShardStats  # every document read: used as an example, or dropped with its reason


def build_training_set(
    crawl_paths: list[str],
    references_paths: list[str],
    wikipedia_paths: list[str],
    *,
    languages: list[str] | None = None,
    min_chars: int = 1000,
    max_examples: int = 300_000,
    seed: int = 0,
    min_positives: int = MIN_CITED_POSITIVES,
    reference_pages_paths: list[str] = (),
) -> TrainingSet:
    """The positives and negatives for `classifiers.quality.train_quality_model`.

    Positives: crawl pages whose normalised URL is cited in the references shards, and the cited
    pages fetched from a crawl's index (`reference_pages_paths`, the reference_pages stage's
    output), of at least `min_chars` characters, deduplicated by text. Negatives: other crawl pages
    of at least `min_chars` (the same length floor, so length alone does not give the class away),
    not cited, deduplicated, chosen by sha1(seed, id) order; as many as there are positives, at
    most `max_examples` each. `positive_source` names the kinds of cited page used
    (`fetched_reference_pages`, `cited_crawl_pages`, joined by `+`). With fewer than
    `min_positives` cited pages, Wikipedia articles (in `languages`, all by default) join them as
    positives (`positive_source: "wikipedia_articles"`, with a warning), which teaches "looks like
    Wikipedia" rather than "looks like a cited page". Wikipedia is read only in that case.
    """
    cited = set(_reference_urls(references_paths))
    stats = ShardStats()
    seen: set[bytes] = set()
    positive_pool: list[tuple[str, str]] = []
    negative_pool: list[tuple[str, str]] = []

    def admit(text: str) -> bool:
        if len(text) < min_chars:
            stats.drop("too_short")
            return False
        key = _text_key(text)
        if key in seen:
            stats.drop("duplicate_text")
            return False
        seen.add(key)
        return True

    for path in crawl_paths:
        for doc in read_documents(path, columns=["id", "url", "text"]):
            stats.docs_in += 1
            text = doc["text"] or ""
            if admit(text):
                is_cited = bool(doc["url"]) and normalize_url(doc["url"]) in cited
                (positive_pool if is_cited else negative_pool).append((_sample_key(seed, doc["id"]), text))
    crawl_cited = len(positive_pool)
    fetched = 0
    for path in reference_pages_paths:
        for doc in read_documents(path, columns=["id", "text"]):
            stats.docs_in += 1
            fetched += 1
            if admit(doc["text"] or ""):
                positive_pool.append((_sample_key(seed, doc["id"]), doc["text"]))
    fetched_cited = len(positive_pool) - crawl_cited
    info: dict = {
        "min_chars": min_chars,
        "max_examples": max_examples,
        "seed": seed,
        "min_positives": min_positives,
        "crawl_paths": list(crawl_paths),
        "references_paths": list(references_paths),
        "reference_urls": len(cited),
        "crawl_documents": stats.docs_in - fetched,
        "crawl_cited": crawl_cited,
        "reference_pages_paths": list(reference_pages_paths),
        "fetched_reference_pages": fetched,
        "fetched_cited": fetched_cited,
    }
    if crawl_cited + fetched_cited >= min_positives:
        kinds = (("fetched_reference_pages", fetched_cited), ("cited_crawl_pages", crawl_cited))
        info["positive_source"] = "+".join(kind for kind, n in kinds if n)
    else:
        message = (
            f"only {crawl_cited + fetched_cited} cited pages of >= {min_chars} chars ({crawl_cited} in the crawl, "
            f"{fetched_cited} of {fetched} fetched from a crawl index; minimum {min_positives}): FALLING BACK to "
            "Wikipedia article text as positives; the classifier will learn 'looks like Wikipedia', not 'looks "
            "like a cited reference page'. Set stages.reference_pages.index to a crawl's CDX index (or raise its "
            "max_urls) to fetch more cited pages."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
        info.update(positive_source="wikipedia_articles", fallback_reason=message,
                    wikipedia_paths=list(wikipedia_paths), wikipedia_languages=languages)
        for path in wikipedia_paths:
            for doc in read_documents(path, columns=["id", "text", "language"]):
                stats.docs_in += 1
                if languages is not None and doc["language"] not in languages:
                    stats.drop("language_not_selected")
                elif admit(doc["text"] or ""):
                    positive_pool.append((_sample_key(seed, doc["id"]), doc["text"]))
    n = min(len(positive_pool), len(negative_pool), max_examples)
    if n == 0:
        raise ValueError(
            f"no training data: {len(positive_pool)} positives ({info['positive_source']}), "
            f"{len(negative_pool)} negative crawl pages of >= {min_chars} chars"
        )
    positives = [text for _, text in sorted(positive_pool)[:n]]
    negatives = [text for _, text in sorted(negative_pool)[:n]]
    stats.docs_out = 2 * n
    stats.drop("positive_not_sampled", len(positive_pool) - n)
    stats.drop("negative_not_sampled", len(negative_pool) - n)
    info.update(positive_candidates=len(positive_pool), negative_candidates=len(negative_pool),
                positives=n, negatives=n)
    return TrainingSet(positives, negatives, info, stats.check())


def _paths_relative_to(info: dict, run_dir: str) -> dict:
    """The card's input paths relative to the run directory when they are in it, so that a moved
    or uploaded run directory's card still names its inputs (and two runs write the same card)."""
    prefix = run_dir.rstrip("/") + "/"
    return {key: [path.removeprefix(prefix) for path in value] if key.endswith("_paths") else value
            for key, value in info.items()}


MODEL_FILE = "quality.ftz"
REFERENCE_URLS_FILE = "reference_urls.txt"


def train_quality_classifier(
    crawl_paths: list[str],
    references_paths: list[str],
    wikipedia_paths: list[str],
    output_dir: str,
    *,
    languages: list[str] | None = None,
    min_chars: int = 1000,
    max_examples: int = 300_000,
    min_positives: int = MIN_CITED_POSITIVES,
    seed: int = 0,
    reference_pages_paths: list[str] = (),
    **hyperparameters,
) -> ShardStats:
    """The `quality_model` stage: write `output_dir/` with the reference URL list, the model
    (`quality.ftz`) and its card (`quality.ftz.json`), all or nothing. The stats account for every
    crawl (and, in the fallback, Wikipedia) document read; counters hold the data sizes and the
    held-out confusion counts at the default threshold (the card has them at every tenth, to choose
    the `quality_classifier` stage's threshold by). `reference_pages_paths`: the cited pages
    fetched by the reference_pages stage, positives."""
    with atomic_dir(output_dir) as tmp:
        urls = write_reference_url_list(references_paths, str(tmp / REFERENCE_URLS_FILE))
        data = build_training_set(
            crawl_paths, references_paths, wikipedia_paths, languages=languages, min_chars=min_chars,
            max_examples=max_examples, seed=seed, min_positives=min_positives,
            reference_pages_paths=reference_pages_paths,
        )
        sources = _paths_relative_to(data.info, os.path.dirname(str(output_dir)))
        card = train_quality_model(
            data.positives, data.negatives, tmp / MODEL_FILE, seed=seed, sources=sources, **hyperparameters,
        )
    metrics = card["heldout_metrics"]
    stats = data.stats
    stats.bytes_out = card["model_bytes"]
    stats.counters.update(
        reference_urls=urls,
        crawl_cited=data.info["crawl_cited"],
        fetched_reference_pages=data.info["fetched_reference_pages"],
        fetched_cited=data.info["fetched_cited"],
        wikipedia_fallback=int(data.info["positive_source"] == "wikipedia_articles"),
        **{f"heldout_{k}": metrics[k] for k in ("true_positives", "false_positives", "false_negatives", "true_negatives")},
    )
    return stats


def score_documents(
    input_path: str,
    output_path: str,
    *,
    model: str,
    threshold: float = DEFAULT_THRESHOLD,
    dropped_path: str | None = None,
) -> ShardStats:
    """Add `quality_score` (p(reference), float32) to each document; keep those >= `threshold`.
    Counters `score_0.0` ... `score_0.9` count the documents in each tenth of the score range, to
    choose a threshold by."""
    classifier = load_quality_model(str(model))
    histogram = np.zeros(10, dtype=np.int64)

    def judge(batch: list[dict]) -> Iterator[tuple[dict, str | None]]:
        scores = classifier.predict_proba([d["text"] or "" for d in batch])
        histogram[:] += np.bincount(np.minimum((scores * 10).astype(np.int64), 9), minlength=10)
        for doc, score in zip(batch, scores.tolist()):
            yield {**doc, "quality_score": score}, DROP_REASON if score < threshold else None

    fields = [pa.field("quality_score", pa.float32())]
    stats = filter_shard(input_path, output_path, fields, judge, dropped_path=dropped_path, batch_size=SCORE_BATCH)
    stats.counters.update({f"score_{i / 10:.1f}": int(n) for i, n in enumerate(histogram)})
    return stats
