"""The reference_pages stage against real servers on 127.0.0.1: pywb's CDX server over sample WARCs
(the crawl index) and a range-serving HTTP server over the same files (the crawl's data host)."""

import bz2
import json
import time
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml

from manifests.store import read_manifest
from pipeline.config import ConfigError, load_config
from pipeline.runner import run_pipeline, stage_hashes
from stages.documents import read_documents, write_documents
from stages.extract import extract_warc
from stages.references import IndexUnreachable, fetch_reference_pages
from stages.references.cdx import Capture, CdxIndex, best_capture
from stages.references.fetch import FetchFailed, HttpClient, fetch_range
from stages.references.shard import sample_reference_urls
from stages.wikipedia import REFERENCE_SCHEMA, normalize_url
from tests.servers.cdx import cdx_server, make_collection
from tests.servers.http_range import http_range_server
from tests.servers.process import free_port
from tests.support import SAMPLES, write_config

WARCS = SAMPLES / "warc"
CITED = "wget-2024-academic-1"  # its 13 distinct HTML pages are the cited pages found
SERVED = [CITED, "ia-2008-blackbook"]
INDEXED = [*SERVED, "cc-main-2020-34-excerpt"]  # indexed, not served: its pages cannot be fetched
# Cited URLs that are not fetched or give no page, with the reason.
NOT_FOUND = {
    "http://www.archive.org/": "text_too_short",  # 51 characters of text
    "http://www.hideout.com.br/": "no_text_extracted",
    "http://www.archive.org/robots.txt": "not_html",  # text/plain in the index: not fetched
    "http://www.archive.org/texts.americana": "http_status_404",  # captured as a 404: not fetched
    "http://www.adobe.com/go/getflash/": "http_status_301",
    "http://01spb.ru/company/": "fetch_failed",  # its WARC is not on the data server
    "https://example.org/never-crawled": "not_in_index",
    "https://en.wikipedia.org/wiki/Not_in_this_crawl": "not_in_index",
}
FAST = {"retries": 3, "backoff_s": 0.01, "per_host_interval_s": 0.0}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The extract stage's documents of the cited pages' WARC, by WARC-Record-ID."""
    path = tmp_path_factory.mktemp("extract") / "cited.parquet"
    extract_warc(str(WARCS / f"{CITED}.warc.gz"), str(path), min_text_chars=1)
    return {d["warc_record_id"]: d for d in read_documents(path)}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """(index endpoint, folder the data server serves): pywb over INDEXED, running for the module."""
    root = tmp_path_factory.mktemp("crawl")
    make_collection(root / "pywb", [WARCS / f"{name}.warc.gz" for name in INDEXED])
    served = root / "served"
    served.mkdir()
    for name in SERVED:
        (served / f"{name}.warc.gz").symlink_to(WARCS / f"{name}.warc.gz")
    with cdx_server(root / "pywb") as index:
        yield index, served


def cited_urls(extracted) -> list[str]:
    """The cited pages' URLs, two written as editors do (www., http:), which the index's SURT keys match."""
    urls = sorted({d["url"] for d in extracted.values()})
    return [urls[0].replace("https://", "https://www."), urls[1].replace("https://", "http://"), *urls[2:]]


def references(path: Path, urls: list[str]) -> str:
    rows = [{"url": url, "normalized_url": normalize_url(url), "article_id": f"wikipedia/enwiki/{i}",
             "article_title": "t", "language": "en", "kind": "ref"} for i, url in enumerate(urls)]
    write_documents(path, rows, REFERENCE_SCHEMA)
    return str(path)


def test_every_url_is_accounted_for_and_pages_match_the_extract_stage(crawl, extracted, tmp_path):
    index, served = crawl
    urls = cited_urls(extracted)
    assert len(urls) == 13
    refs = references(tmp_path / "refs.parquet", [*urls, *NOT_FOUND])
    with http_range_server(served, tmp_path / "data.log") as data:
        stats = fetch_reference_pages([refs], str(tmp_path / "out"), index=index, warc_prefix=data.url,
                                      dropped_path=str(tmp_path / "dropped.parquet"), **FAST)
    assert stats.docs_in == 21 and stats.docs_out == 13
    assert dict(stats.dropped) == {"text_too_short": 1, "no_text_extracted": 1, "not_html": 1, "http_status_404": 1,
                                   "http_status_301": 1, "fetch_failed": 1, "not_in_index": 2}
    assert stats.counters["index_requests"] == 22  # 21 lookups and the preflight
    assert stats.counters["fetch_requests"] == 16  # 13 pages, 2 without text, 1 not served
    assert stats.counters["fetch_failed_http_404"] == 1 and "retries" not in stats.counters
    assert stats.counters["reference_urls"] == 21 and stats.counters["urls_not_sampled"] == 0

    listed = (tmp_path / "out" / "reference_urls.txt").read_text().splitlines()
    assert listed == sorted([*urls, *NOT_FOUND])
    pages = list(read_documents(tmp_path / "out" / "pages.parquet"))
    assert sorted(p["cited_url"] for p in pages) == sorted(urls)
    for page in pages:  # the same record gives the same text as in the extract stage
        assert page["source"] == "wikipedia_references"
        assert page["text"] == extracted[page["warc_record_id"]]["text"]
        assert page["url"] == extracted[page["warc_record_id"]]["url"]
    assert len({p["id"] for p in pages}) == 13
    dropped = {d["cited_url"]: d["drop_reason"] for d in read_documents(tmp_path / "dropped.parquet")}
    assert dropped == NOT_FOUND


def test_best_capture_and_ranges(crawl, extracted, tmp_path):
    index, served = crawl
    client = HttpClient(retries=0, backoff_s=0, per_host_interval_s=0, timeout_s=5)
    captures = CdxIndex(index, client).lookup("https://allenai.org/")
    assert len(captures) == 3 and best_capture(captures) == max(captures, key=lambda c: c.timestamp)
    redirect = Capture("u", "20240101000000", "text/html", "301", "f", 0, 1)
    page = Capture("u", "20230101000000", "text/html", "200", "f", 0, 1)
    image = Capture("u", "20250101000000", "image/png", "200", "f", 0, 1)
    assert best_capture([redirect, image, page]) == page and best_capture([]) is None
    with http_range_server(served, tmp_path / "data.log") as data:
        url = f"{data.url}{CITED}.warc.gz"
        size = (WARCS / f"{CITED}.warc.gz").stat().st_size
        assert fetch_range(client, url, size - 10, 10) == (WARCS / f"{CITED}.warc.gz").read_bytes()[-10:]
        with pytest.raises(FetchFailed) as beyond:
            fetch_range(client, url, size + 10, 10)
        assert beyond.value.cause == "http_416"
    assert [r["status"] for r in data.requests()] == [206, 416]


def test_retries_honour_retry_after(crawl, extracted, tmp_path):
    index, served = crawl
    urls = cited_urls(extracted)[:5]
    with http_range_server(served, tmp_path / "data.log", fail_first=3, retry_after=1) as data:
        started = time.monotonic()
        stats = fetch_reference_pages([references(tmp_path / "refs.parquet", urls)], str(tmp_path / "out"),
                                      index=index, warc_prefix=data.url, **FAST)
        elapsed = time.monotonic() - started
    assert stats.docs_out == 5 and stats.counters["retries"] == 3
    assert stats.counters["fetch_requests"] == 8
    assert sorted(r["status"] for r in data.requests()) == [206] * 5 + [503] * 3
    assert elapsed >= 1.0  # Retry-After: 1, not the 0.01 s backoff


def test_politeness_per_host(crawl, extracted, tmp_path, monkeypatch):
    index, served = crawl
    urls = cited_urls(extracted)[:5]
    refs = references(tmp_path / "refs.parquet", urls)
    monkeypatch.setattr("stages.references.shard.PROGRESS_EVERY_S", 0.1)
    reports = []
    with http_range_server(served, tmp_path / "data.log") as data:
        started = time.monotonic()
        stats = fetch_reference_pages([refs], str(tmp_path / "out"), index=index, warc_prefix=data.url,
                                      concurrency=4, progress=lambda *counts: reports.append(counts),
                                      **{**FAST, "per_host_interval_s": 0.2})
        elapsed = time.monotonic() - started
    assert stats.docs_out == 5
    assert elapsed >= 0.8
    # Progress as (URLs done, pages written, that share of the input's bytes), never backwards.
    assert reports and reports == sorted(reports) and all(n <= 5 for n, _, _ in reports)
    assert all(b == Path(refs).stat().st_size * n // 5 for n, _, b in reports)
    arrivals = [r["t"] for r in data.requests()]
    assert len(arrivals) == 5
    assert all(later - earlier >= 0.18 for earlier, later in zip(arrivals, arrivals[1:]))  # 4 threads, one host


def test_unreachable_index_fails_fast_and_names_the_setting(extracted, tmp_path):
    index = f"http://127.0.0.1:{free_port()}/refs/cdx"  # nothing listens there
    refs = references(tmp_path / "refs.parquet", cited_urls(extracted))
    started = time.monotonic()
    with pytest.raises(IndexUnreachable) as failure:
        fetch_reference_pages([refs], str(tmp_path / "out"), index=index)  # default retries and backoff
    assert time.monotonic() - started < 2.0
    assert "stages.reference_pages.index" in str(failure.value) and index in str(failure.value)
    assert [p.name for p in tmp_path.iterdir()] == ["refs.parquet"]  # nothing written


def test_sample_is_deterministic(tmp_path):
    urls = [f"https://site{i}.example/page" for i in range(40)]
    refs = [references(tmp_path / "refs.parquet", [*urls, urls[0].replace("https://", "http://www.")])]
    total, sample = sample_reference_urls(refs, 10, seed=0)
    assert total == 40 and len(sample) == 10 and sample == sorted(sample) and set(sample) <= set(urls)
    assert sample_reference_urls(refs, 10, seed=0) == (total, sample)
    assert sample_reference_urls(refs, 10, seed=1)[1] != sample
    assert sample_reference_urls(refs, 100, seed=0)[1] == sorted(urls)


def test_malformed_settings_are_config_errors(tmp_path):
    path = write_config(tmp_path, warcs=["wget-2024-academic-0"])
    raw = yaml.safe_load(path.read_text())
    for setting, value in (("index", "index.commoncrawl.org/CC-MAIN-2024-10-index"),
                           ("warc_prefix", "https://data.commoncrawl.org")):
        raw["stages"]["reference_pages"] = {setting: value}
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=f"stages.reference_pages.{setting}"):
            load_config(path)


def test_pacing_settings_do_not_change_what_is_fetched(tmp_path):
    """Concurrency, retries and timeouts change how fast the stage runs, not its config hash."""
    path = write_config(tmp_path, warcs=["wget-2024-academic-0"])
    raw = yaml.safe_load(path.read_text())
    raw["inputs"]["wikipedia"] = [str(SAMPLES / "wikipedia" / "enwiki-table-markup.xml.bz2")]
    hashes = []
    for settings in ({"concurrency": 4, "retries": 3}, {"concurrency": 16, "retries": 0, "timeout_s": 5.0},
                     {"max_urls": 10}):
        raw["stages"]["reference_pages"] = {"index": "http://127.0.0.1:9/refs/cdx", **settings}
        path.write_text(yaml.safe_dump(raw))
        hashes.append(stage_hashes(load_config(path))["reference_pages"])
    assert hashes[0] == hashes[1] != hashes[2]


def _dump_citing(path: Path, urls: list[str]) -> Path:
    """The table-markup sample dump, its first article citing `urls` in <ref>s."""
    xml = bz2.decompress((SAMPLES / "wikipedia" / "enwiki-table-markup.xml.bz2").read_bytes()).decode("utf-8")
    refs = "".join(escape(f"<ref>[{url} a source]</ref>") for url in urls)
    path.write_text(xml.replace("</text>", f"\n{refs}</text>", 1), encoding="utf-8")
    return path


@pytest.mark.usefixtures("ray_cluster")
def test_quality_model_trains_on_fetched_pages_when_enough_are_found(crawl, extracted, tmp_path):
    index, served = crawl
    urls = cited_urls(extracted)
    with http_range_server(served, tmp_path / "data.log") as data:
        path = write_config(tmp_path, warcs=["wget-2024-academic-0"],
                            stages={"quality_classifier": {"enabled": True, "min_positives": 5}})
        raw = yaml.safe_load(path.read_text())
        raw["stages"]["reference_pages"] = {"index": index, "warc_prefix": data.url, **FAST}
        path.write_text(yaml.safe_dump(raw))
        config = load_config(path, inputs={"wikipedia": [str(_dump_citing(tmp_path / "enwiki.xml", urls))]})
        run_pipeline(config, ["extract", "langid", "line_dedup", "wikipedia", "reference_pages", "quality_model"])

    [wiki] = read_manifest(config.output_dir, "wikipedia")
    [fetched] = read_manifest(config.output_dir, "reference_pages")
    references_path = str(Path(wiki["output"]).parent / "references" / Path(wiki["output"]).name)
    assert fetched["inputs"] == [references_path]
    assert fetched["docs_out"] == 13 and set(fetched["dropped"]) == {"not_in_index"}  # the dump's own citations
    assert fetched["docs_in"] == fetched["counters"]["reference_urls"] == fetched["counters"]["index_requests"] - 1
    pages = str(Path(fetched["output"]) / "pages.parquet")

    [model] = read_manifest(config.output_dir, "quality_model")
    assert references_path in model["inputs"] and pages in model["inputs"]  # every file it reads
    card = json.loads((Path(model["output"]) / "quality.ftz.json").read_text())
    sources = card["data"]["sources"]
    assert sources["positive_source"] == "fetched_reference_pages"
    assert sources["fetched_reference_pages"] == 13 and sources["fetched_cited"] >= 5 and sources["crawl_cited"] == 0
    assert model["counters"]["wikipedia_fallback"] == 0
    assert model["counters"]["fetched_cited"] == sources["fetched_cited"]

    # Fewer cited pages than min_positives: Wikipedia articles again, and the card says what was fetched.
    raw["stages"]["quality_classifier"]["min_positives"] = 1000
    path.write_text(yaml.safe_dump(raw))
    fallback = load_config(path, inputs={"wikipedia": [str(tmp_path / "enwiki.xml")]})
    run_pipeline(fallback, ["quality_model"])  # reference_pages is done: nothing is fetched again
    assert read_manifest(config.output_dir, "reference_pages") == [fetched]
    [model] = read_manifest(config.output_dir, "quality_model")
    sources = json.loads((Path(model["output"]) / "quality.ftz.json").read_text())["data"]["sources"]
    assert sources["positive_source"] == "wikipedia_articles" and sources["fetched_reference_pages"] == 13
    assert model["counters"]["wikipedia_fallback"] == 1
