"""Quality classifier on real text: extracted sample WARC pages against Wikipedia articles (no Ray)."""

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from classifiers.quality import (
    NEGATIVE_LABEL,
    POSITIVE_LABEL,
    QualityModel,
    load_quality_model,
    preprocess,
    roc_auc,
    train_quality_model,
)
from stages.documents import count_documents, read_documents, write_documents
from stages.extract import extract_warc
from stages.quality_classifier import DROP_REASON, build_training_set, score_documents, write_reference_url_list
from stages.wikipedia import REFERENCE_SCHEMA, extract_wikipedia, normalize_url
from tests.support import SAMPLES

# Small enough for seconds of training: quantised model of a few hundred KB.
TRAIN_KWARGS = dict(seed=7, epoch=25, lr=0.1, word_ngrams=2, dim=32, bucket=100_000, min_count=1,
                    holdout_fraction=0.2, cutoff=10_000)


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl")
    paths = []
    for warc in sorted((SAMPLES / "warc").glob("*.warc.gz")):
        path = out / f"{warc.name}.parquet"
        extract_warc(str(warc), str(path))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def wikipedia(tmp_path_factory):
    out = tmp_path_factory.mktemp("wikipedia")
    articles, references = out / "articles.parquet", out / "references.parquet"
    extract_wikipedia(
        str(SAMPLES / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"),
        str(articles),
        str(references),
    )
    return str(articles), str(references)


@pytest.fixture(scope="module")
def training_set(crawl, wikipedia):
    articles, references = wikipedia
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = build_training_set(crawl, [references], [articles], min_chars=1000, max_examples=10_000, seed=3)
    data.info["_warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return data.positives, data.negatives, data.info, data.stats


@pytest.fixture(scope="module")
def trained(training_set, tmp_path_factory):
    positives, negatives, info, _ = training_set
    path = tmp_path_factory.mktemp("model") / "quality.ftz"
    card = train_quality_model(positives, negatives, path, sources=info, **TRAIN_KWARGS)
    return path, card


def test_training_set_falls_back_to_wikipedia_articles(training_set, crawl, wikipedia):
    positives, negatives, info, stats = training_set
    assert info["positive_source"] == "wikipedia_articles"
    assert info["crawl_cited"] < info["min_positives"]
    assert any("FALLING BACK" in w for w in info["_warnings"])
    assert len(positives) == len(negatives) == info["positives"] == info["negatives"] > 20
    article_texts = {d["text"] for d in read_documents(wikipedia[0])}
    crawl_texts = {d["text"] for path in crawl for d in read_documents(path)}
    assert set(positives) <= article_texts
    assert set(negatives) <= crawl_texts
    assert len(set(positives)) == len(positives) and len(set(negatives)) == len(negatives)
    assert all(len(t) >= 1000 for t in positives + negatives)
    # Every page read is an example or a counted drop.
    assert stats.docs_in == sum(count_documents(p) for p in crawl) + count_documents(wikipedia[0])
    assert stats.docs_out == 2 * len(positives)
    assert stats.dropped["too_short"] > 0 and stats.dropped["positive_not_sampled"] + stats.dropped["negative_not_sampled"] > 0
    stats.check()


def test_cited_crawl_pages_are_the_positives_when_found(crawl, wikipedia, tmp_path):
    """A references shard citing some of the sample pages (written as Wikipedia editors would, with
    www. and trailing slashes) makes those pages the positives, matched via normalize_url."""
    pages = [d for path in crawl for d in read_documents(path) if d["url"] and len(d["text"]) >= 1000]
    cited = pages[::3][:12]
    rows = []
    for i, doc in enumerate(cited):
        url = doc["url"].replace("://", "://www.", 1) if "://www." not in doc["url"] else doc["url"]
        url = url + "/" if not url.endswith("/") and "?" not in url else url
        rows.append({"url": url, "normalized_url": normalize_url(url), "article_id": f"wikipedia/enwiki/{i}",
                     "article_title": "t", "language": "en", "kind": "ref"})
    refs = tmp_path / "refs.parquet"
    write_documents(refs, rows, REFERENCE_SCHEMA)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        data = build_training_set(crawl, [str(refs)], [wikipedia[0]], min_positives=5, seed=1)
    positives, negatives = data.positives, data.negatives
    assert data.info["positive_source"] == "cited_crawl_pages"
    cited_texts = {d["text"] for d in cited}
    assert set(positives) <= cited_texts and len(positives) >= 5
    assert not set(negatives) & cited_texts
    assert len(negatives) == len(positives)
    # Deterministic sampling: the same seed, the same sets in the same order.
    again = build_training_set(crawl, [str(refs)], [wikipedia[0]], min_positives=5, seed=1)
    assert again.positives == positives and again.negatives == negatives
    # Wikipedia is not read: every document accounted for is a crawl page.
    assert data.stats.docs_in == data.info["crawl_documents"] == sum(count_documents(p) for p in crawl)
    assert "language_not_selected" not in data.stats.dropped


def test_reference_url_list(wikipedia, tmp_path):
    out = tmp_path / "urls.txt"
    n = write_reference_url_list([wikipedia[1]], str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == n > 100
    normalised = {d["normalized_url"] for d in read_documents(wikipedia[1])}
    assert len(normalised) == n
    assert {normalize_url(u) for u in lines} == normalised


def test_model_and_card(trained, training_set):
    path, card = trained
    assert path.is_file() and path.stat().st_size == card["model_bytes"]
    assert card["model_bytes"] < 20_000_000  # quantised; unquantised is far larger
    assert card["unquantised_model_bytes"] > card["model_bytes"]
    assert json.loads(Path(f"{path}.json").read_text()) == json.loads(json.dumps(card))
    assert card["data"]["sources"]["positive_source"] == "wikipedia_articles"
    assert card["data"]["heldout_positives"] > 0 and card["data"]["heldout_negatives"] > 0
    assert card["data"]["train_positives"] + card["data"]["heldout_positives"] == len(training_set[0])
    assert card["threshold"] == 0.25 and card["threshold_reason"]
    assert card["fasttext_version"].startswith("fasttext")
    assert card["hyperparameters"]["thread"] == 1 and card["hyperparameters"]["seed"] == 7
    assert card["preprocessing"]["function"] == "classifiers.quality.preprocess"
    m = card["heldout_metrics"]
    for key in ("precision", "recall", "f1", "accuracy", "roc_auc"):
        assert 0.0 <= m[key] <= 1.0, key
    held = m["true_positives"] + m["false_negatives"]
    assert held == card["data"]["heldout_positives"]
    assert m["recall"] == pytest.approx(m["true_positives"] / held)


def test_same_preprocessing_at_apply_time(trained, training_set):
    path, _ = trained
    model = QualityModel(path)
    assert model.model.get_labels() and set(model.model.get_labels()) == {POSITIVE_LABEL, NEGATIVE_LABEL}
    texts = training_set[0][:4] + training_set[1][:4]
    raw = model.predict_proba(texts)
    assert raw.dtype == np.float32 and ((raw >= 0) & (raw <= 1)).all()
    # predict_proba applies preprocess: pre-processed input gives identical scores (idempotent) ...
    assert np.array_equal(raw, model.predict_proba([preprocess(t) for t in texts]))
    # ... and equals fastText on preprocess(text) directly.
    labels, probs = model.model.predict([preprocess(t) for t in texts], k=2)
    direct = [min(1.0, dict(zip(l, p)).get(POSITIVE_LABEL, 0.0)) for l, p in zip(labels, probs)]
    assert np.allclose(raw, direct)
    assert preprocess("A  B\n\tC") == "a b c"
    assert len(preprocess(" ".join(["w"] * 5000)).split()) == 1000
    assert load_quality_model(str(path)) is load_quality_model(str(path))


def test_training_is_reproducible(trained, training_set, tmp_path):
    """Same texts and settings, same model, byte for byte: fastText trains in a fresh process whose
    malloc returns zeroed memory, so the part of the input matrix fastText leaves uninitialised no
    longer varies (and no longer diverges into NaN)."""
    path, card = trained
    again = train_quality_model(training_set[0], training_set[1], tmp_path / "again.ftz", sources={}, **TRAIN_KWARGS)
    assert again["data"] == {**card["data"], "sources": {}}
    assert (tmp_path / "again.ftz").read_bytes() == path.read_bytes()
    assert again["heldout_metrics"] == card["heldout_metrics"]


def test_nan_training_is_retried_then_reported(training_set, tmp_path):
    """A learning rate this large makes fastText hit NaN for real on every attempt."""
    with pytest.raises(RuntimeError, match="failed 3 times with NaN"):
        train_quality_model(training_set[0][:30], training_set[1][:30], tmp_path / "nan.ftz", lr=1000.0,
                            quantize=False, retries=3, dim=16, bucket=1000)
    assert not (tmp_path / "nan.ftz").exists()


def test_roc_auc_matches_pairwise_count(trained, training_set):
    scores = QualityModel(trained[0]).predict_proba(training_set[0][:15] + training_set[1][:15]).astype(np.float64)
    scores = np.round(scores, 1)  # force ties
    labels = np.array([True] * 15 + [False] * 15)
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in itertools.product(scores[labels], scores[~labels])]
    assert roc_auc(labels, scores) == pytest.approx(sum(pairs) / len(pairs))


def test_score_documents(trained, crawl, tmp_path):
    path, _ = trained
    shard = crawl[-3]  # web-pages-2019-2021: multilingual news and blogs
    scores = QualityModel(path).predict_proba([d["text"] for d in read_documents(shard)])
    threshold = float(np.median(scores))  # both outcomes occur
    out, dropped = tmp_path / "kept.parquet", tmp_path / "dropped.parquet"
    stats = score_documents(shard, str(out), model=str(path), threshold=threshold, dropped_path=str(dropped))
    kept, gone = list(read_documents(out)), list(read_documents(dropped))
    assert stats.docs_in == count_documents(shard) == len(kept) + len(gone)
    assert stats.docs_out == len(kept) > 0 and stats.dropped == {DROP_REASON: len(gone)} and gone
    assert all(d["quality_score"] >= threshold for d in kept)
    assert all(d["quality_score"] < threshold and d["drop_reason"] == DROP_REASON for d in gone)
    from pyarrow import parquet as pq

    assert pq.read_schema(out).field("quality_score").type == pa.float32()
    # The default threshold, 0.25, runs too and the invariant holds.
    default = score_documents(shard, str(tmp_path / "default.parquet"), model=str(path))
    assert default.docs_in == stats.docs_in
