"""bench/crawl_filters: its steps account for every document, alone and as a funnel, and a step added
to the list runs in the funnel. Real pages of one sample WARC; the perplexity and classifier steps
(they train models: tests/test_perplexity.py and test_quality_classifier.py test those) are left out."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.crawl_filters.corpus import CORPUS  # noqa: E402
from bench.crawl_filters.run import run_all  # noqa: E402
from bench.crawl_filters.steps import QUALITY_RULE_ORDER, Context, Step, build_steps  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from stages.documents import read_documents  # noqa: E402
from stages.extract import extract_warc  # noqa: E402


@pytest.fixture()
def context(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    return Context(load_config("configs/demo.yaml"), tmp_path)


def test_steps_alone_and_funnel(context, tmp_path):
    shard = tmp_path / "pages.parquet"
    extract_warc(str(ROOT / "samples/warc/wget-2024-academic-0.warc.gz"), str(shard), progress=lambda *_: None,
                 **context.params["extract"])
    docs = list(read_documents(shard))[:8]
    copy = {**docs[0], "id": "copy-of-first"}  # every line seen before: line dedup drops it
    docs.append(copy)
    for doc in docs:
        CORPUS[doc["id"]] = "warc"

    def drop_first(batch):  # a step returning a plain (kept, [(doc, reason)]) pair
        return batch[1:], [(batch[0], "added:first")]

    steps = build_steps(context)
    assert [s.name for s in steps if s.funnel] == ["langid", "line_dedup", "perplexity", "quality", "quality_classifier"]
    steps = [s for s in steps if s.name not in ("perplexity", "quality_classifier")]  # they train models
    assert {"gopher_repetition", "gopher_quality", "c4"} <= {s.name for s in steps if s.alone}
    steps.append(Step("added", drop_first))
    alone, funnel = run_all(steps, docs, workers=1)

    for outcome in alone:
        assert outcome.summary["docs_in"] == len(docs)
        assert outcome.summary["kept"] + outcome.summary["dropped"] == len(docs)
    line_dedup = next(o for o in alone if o.step.name == "line_dedup")
    assert ("copy-of-first", "too_short_after_line_dedup") in {(d["id"], r) for d, r in line_dedup.result.dropped}
    assert line_dedup.result.details["copy-of-first"]["after"].strip() == ""
    for before, after in zip(funnel, funnel[1:]):
        assert [d["id"] for d in after.inputs] == [d["id"] for d in before.result.kept]
    assert funnel[-1].step.name == "added" and funnel[-1].rules[0]["rule"] == "added:first"
    quality = next(o for o in funnel if o.step.name == "quality")
    assert all(r["rule"].split(":")[0] in QUALITY_RULE_ORDER for r in quality.rules)
    assert all(r["docs_in"] <= quality.summary["docs_in"] for r in quality.rules)
