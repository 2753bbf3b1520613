"""CCNet's perplexity filter: a real KenLM 5-gram (lmplz, built by `make`) over real SentencePiece
pieces of the sample Wikipedia, the scores, the run-wide cutoffs and the buckets."""

import json
import statistics
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.ngram_lm import KenLMError, PerplexityModel, kenlm_tool, normalize, paragraphs
from pipeline.config import ConfigError, load_config
from stages.documents import WEB_DOCUMENT_SCHEMA, read_documents, schema_with, write_documents
from stages.perplexity import (LM_FILE, META_FILE, PIECES_FILE, bucket_documents, compute_cutoffs, histogram_path,
                               score_perplexity, train_perplexity_model)
from stages.perplexity.buckets import bucket_of
from stages.perplexity.scoring import log_bin
from stages.wikipedia import extract_wikipedia
from tests.support import SAMPLES, write_config

DUMP = SAMPLES / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
CCNET = SAMPLES / "ccnet"
HELD_OUT_EVERY = 10

# What the crawl filters drop: navigation, shop and spam pages, as the extract stage leaves them.
BOILERPLATE = [
    "Home\nAbout Us\nProducts\nContact\nLogin | Register\nCart (0)\nFAQ\nPrivacy Policy\nTerms of Use\nSitemap",
    "cheap viagra online buy cheap viagra best price viagra no prescription cheap cialis buy now viagra "
    "online pharmacy discount viagra cheap generic viagra",
    "Posted by admin at 10:42 PM 0 comments Labels: news, update, misc\nOlder Posts Home\nSubscribe to: Posts (Atom)",
    "Click here to download FREE!!! BEST DEALS 2019 >>> CLICK HERE <<< limited offer, act now, 100% FREE",
    "Copyright 2014 All Rights Reserved | Powered by WordPress | Theme by Themeisle\nBack to top",
]


@pytest.fixture(scope="module")
def articles(tmp_path_factory):
    """The English sample articles, every HELD_OUT_EVERY-th held out of training."""
    tmp = tmp_path_factory.mktemp("wiki")
    extract_wikipedia(str(DUMP), str(tmp / "all.parquet"), str(tmp / "refs.parquet"), languages=["en"])
    docs = list(read_documents(tmp / "all.parquet"))
    train = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY]
    held_out = [d for i, d in enumerate(docs) if not i % HELD_OUT_EVERY]
    schema = pq.read_schema(tmp / "all.parquet")
    write_documents(tmp / "train.parquet", train, schema)
    return tmp / "train.parquet", held_out


@pytest.fixture(scope="module")
def model_dir(articles, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "en"
    stats = train_perplexity_model([str(articles[0])], str(out), language="en", vocab_size=4000, max_articles=1000,
                                   seed=0, train_memory="200M", kenlm_bin=None, num_threads=1)
    assert stats.docs_in == stats.docs_out > 50 and stats.counters["pieces"] > 100_000
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return PerplexityModel(model_dir / PIECES_FILE, model_dir / LM_FILE)


def test_normalisation_is_ccnets():
    assert normalize("  Ça coûte 12,50 €… “Très” cher！\x07 ") == 'ca coute 00,00 €... "tres" cher!'
    assert normalize("Über\tden Fluß — 1999") == "uberden fluß  -  0000"  # a tab is a control character
    assert paragraphs("First line.\n\n  \nSecond LINE 2.") == ["first line.", "second line 0."]


def test_model_folder_holds_pieces_a_binary_lm_and_what_it_was_trained_on(model_dir):
    meta = json.loads((model_dir / META_FILE).read_text())
    assert meta["language"] == "en" and meta["order"] == 5 and meta["paragraphs"] > 1000
    assert (model_dir / LM_FILE).read_bytes()[:4] == b"mmap"  # KenLM's binary format, not ARPA


def test_held_out_wikipedia_scores_lower_than_boilerplate_and_spam(articles, model):
    wiki = [model.score(d["text"])[0] for d in articles[1]]
    junk = [model.score(text)[0] for text in BOILERPLATE]
    assert statistics.median(wiki) * 2 < statistics.median(junk)
    pairs_in_order = sum(w < j for w in wiki for j in junk) / (len(wiki) * len(junk))
    assert pairs_in_order > 0.8  # the ROC AUC, from ~100 training articles


def test_document_perplexity_pools_its_paragraphs(model):
    text = "The river flows through the city.\nIt was built in 1850 by the government."
    document, per_paragraph = model.score(text)
    assert len(per_paragraph) == 2
    assert min(per_paragraph) <= document <= max(per_paragraph)
    lines = model.encode(paragraphs(text))
    log10 = sum(model.lm.score(line) for line in lines)
    length = sum(len(line.split()) + 1 for line in lines)
    assert document == round(10 ** (-log10 / length), 1)
    assert model.score("   \n ") == (None, [])


def test_ccnet_head_documents_score_below_boilerplate(model):
    docs = [json.loads(line) for f in sorted(CCNET.glob("*.jsonl")) for line in f.open()]
    assert {d["metadata"]["bucket"] for d in docs} == {"head"}
    ours = [model.score(d["text"])[0] for d in docs]
    assert statistics.median(ours) < statistics.median(model.score(t)[0] for t in BOILERPLATE)


def _crawl_shard(path: Path, texts: list[tuple[str, str | None]]) -> Path:
    schema = schema_with(WEB_DOCUMENT_SCHEMA, pa.field("language", pa.string()))
    docs = [{"id": f"cc/{i}", "source": "common_crawl", "url": f"http://example.com/{i}", "warc_record_id": None,
             "date": None, "text": text, "language": lang} for i, (text, lang) in enumerate(texts)]
    write_documents(path, docs, schema)
    return path


def test_score_cutoffs_and_buckets_account_for_every_document(articles, model_dir, tmp_path):
    texts = [(d["text"], "en") for d in articles[1]] + [(t, "en") for t in BOILERPLATE] + [("Ein Satz.", "de")]
    shard = _crawl_shard(tmp_path / "docs.parquet", texts)
    models = {"en": (str(model_dir / PIECES_FILE), str(model_dir / LM_FILE))}
    scores = tmp_path / "scores" / "docs.parquet"
    stats = score_perplexity(str(shard), str(scores), models=models)
    assert (stats.docs_in, stats.docs_out) == (len(texts), len(texts))
    assert stats.counters["unscored:no_model:de"] == 1 and stats.counters["scored:en"] == len(texts) - 1

    cutoffs_path = tmp_path / "cutoffs.json"
    compute_cutoffs([str(histogram_path(scores))], str(cutoffs_path), languages=["en"], percentiles=(30, 60),
                    cutoffs={})
    cutoffs = json.loads(cutoffs_path.read_text())
    perplexities = [p for p in pq.read_table(scores)["perplexity"].to_pylist() if p is not None]
    for q, key in ((30, "head"), (60, "tail")):  # a percentile read from the histogram: its bin's upper edge
        exact = np.percentile(perplexities, q, method="inverted_cdf")
        assert exact <= cutoffs["en"][key] <= exact * 1.03
    assert cutoffs["en"]["documents"] == len(perplexities) and "de" not in cutoffs

    out, dropped = tmp_path / "out.parquet", tmp_path / "dropped.parquet"
    stats = bucket_documents(str(shard), str(scores), str(cutoffs_path), str(out), keep_buckets=["head", "middle"],
                             drop_unscored=False, dropped_path=str(dropped))
    kept, removed = list(read_documents(out)), list(read_documents(dropped))
    assert len(kept) + len(removed) == len(texts) == stats.docs_in
    assert {d["drop_reason"] for d in removed} == {"perplexity_bucket:tail"}
    assert [d["perplexity_bucket"] for d in kept if d["language"] == "de"] == [None]
    assert stats.counters["bucket:de:unscored"] == 1
    assert sum(v for k, v in stats.counters.items() if k.startswith("bucket:en:")) == len(texts) - 1
    junk_ids = {f"cc/{i}" for i in range(len(articles[1]), len(texts) - 1)}
    assert len(junk_ids & {d["id"] for d in removed}) >= 4, "boilerplate lands in the tail"
    for d in kept + removed:
        assert d["perplexity_bucket"] == bucket_of(d["perplexity"], cutoffs.get(d["language"]))


def test_buckets_join_scores_row_by_row_across_row_groups(tmp_path):
    shard = _crawl_shard(tmp_path / "docs.parquet", [(f"text {i}", "en") for i in range(10)])
    scores = pa.table({"perplexity": [float(10 + i) for i in range(10)], "paragraph_perplexity": [[1.0]] * 10})
    pq.write_table(scores, tmp_path / "scores.parquet", row_group_size=3)
    (tmp_path / "cutoffs.json").write_text(json.dumps({"en": {"head": 13, "tail": 16}}))
    bucket_documents(str(shard), str(tmp_path / "scores.parquet"), str(tmp_path / "cutoffs.json"),
                     str(tmp_path / "out.parquet"), keep_buckets=["head", "middle", "tail"], drop_unscored=False)
    docs = list(read_documents(tmp_path / "out.parquet"))
    assert [d["perplexity"] for d in docs] == [float(10 + i) for i in range(10)]
    assert [d["perplexity_bucket"] for d in docs] == ["head"] * 3 + ["middle"] * 3 + ["tail"] * 4


def test_histogram_bins_are_log_spaced():
    assert log_bin(1.0) == 0 and log_bin(0.5) == 0
    assert log_bin(1000.0) == 300 and log_bin(999.0) == 299


def test_configured_cutoffs_replace_the_runs(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps({"en": {"250": 4}}))
    compute_cutoffs([str(tmp_path / "h.json")], str(tmp_path / "c.json"), languages=["en", "fr"],
                    percentiles=(30, 60), cutoffs={"fr": (100.0, 300.0)})
    cutoffs = json.loads((tmp_path / "c.json").read_text())
    assert cutoffs["fr"] == {"head": 100.0, "tail": 300.0, "documents": 0, "from": "config"}
    assert cutoffs["en"]["from"] == "run" and cutoffs["en"]["head"] == round(10 ** 2.51, 1)


def test_config_errors_come_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="inputs.wikipedia"):
        load_config(write_config(tmp_path, stages={"perplexity": {"enabled": True}}))
    wiki = {"wikipedia": [str(DUMP)]}
    with pytest.raises(ConfigError, match="kenlm_bin|lmplz"):
        load_config(write_config(tmp_path, stages={"perplexity": {"enabled": True, "kenlm_bin": str(tmp_path)}}),
                    inputs=wiki)
    with pytest.raises(ConfigError, match="must be below"):
        load_config(write_config(tmp_path, stages={"perplexity": {"percentiles": [60, 30]}}))
    with pytest.raises(KenLMError, match="make setup"):
        kenlm_tool("no-such-kenlm-tool")


def test_a_config_takes_the_models_a_run_trained(model_dir, tmp_path):
    models = {"en": {"pieces": str(model_dir / PIECES_FILE), "lm": str(model_dir / LM_FILE)}}
    config = load_config(write_config(tmp_path, stages={"perplexity": {"enabled": True, "models": models}}))
    assert config.stages.perplexity.models["en"].lm.endswith(LM_FILE)
