"""Wikipedia stage on the real dump samples (no mocks)."""

import re
from urllib.parse import urlsplit
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stages.wikipedia import LLAMA_LANGUAGES, extract_wikipedia, normalize_url, original_url

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "wikipedia"
ENWIKI = SAMPLES / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
BGWIKI = SAMPLES / "bgwiki-latest-pages-articles-shortened.xml.bz2"
TABLES = SAMPLES / "enwiki-table-markup.xml.bz2"
MARKUP = ["{{", "}}", "[[", "]]", "<ref", "{|", "|}", "__TOC__", "<!--", "''"]


def run(dump, tmp, name="run", **kwargs):
    out, refs, dropped = tmp / f"{name}.parquet", tmp / f"{name}-refs.parquet", tmp / f"{name}-dropped.parquet"
    kwargs.setdefault("languages", LLAMA_LANGUAGES)
    stats = extract_wikipedia(str(dump), str(out), str(refs), dropped_path=str(dropped), **kwargs)
    return stats, pq.read_table(out).to_pylist(), pq.read_table(refs).to_pylist(), pq.read_table(dropped).to_pylist()


@pytest.fixture(scope="module")
def enwiki(tmp_path_factory):
    return run(ENWIKI, tmp_path_factory.mktemp("enwiki"))


def test_enwiki_accounting(enwiki):
    stats, docs, _, dropped = enwiki
    assert stats.docs_in == 206 == stats.counters["pages"]
    assert stats.dropped["redirect"] == 100
    assert stats.docs_out == len(docs) == 106
    assert stats.docs_in == stats.docs_out + sum(stats.dropped.values())
    assert len(dropped) == sum(stats.dropped.values())
    assert stats.bytes_out > 0
    assert len({d["id"] for d in docs}) == len(docs)


def test_enwiki_documents(enwiki):
    _, docs, _, _ = enwiki
    for d in docs:
        assert d["source"] == "wikipedia" and d["language"] == "en"
        assert d["id"].startswith("wikipedia/enwiki/")
        assert d["url"] == "https://en.wikipedia.org/wiki/" + d["title"].replace(" ", "_") or "%" in d["url"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["date"])
        assert len(d["text"]) >= 200
        for marker in MARKUP:
            assert marker not in d["text"], (d["title"], marker)
        assert "\n\n\n" not in d["text"]
        assert "Category:" not in d["text"] and "thumb|" not in d["text"]


def test_anchor_text_kept(enwiki):
    _, docs, _, _ = enwiki
    agassi = next(d for d in docs if d["title"] == "Andre Agassi")
    # [[Mirage Resorts|MGM Mirage]] and [[Creative Artists Agency|CAA]] in the wikitext.
    assert "Nugget Laughlin from MGM Mirage for $215 million" in agassi["text"]
    assert "he and Graf signed with CAA." in agassi["text"]
    assert "Mirage Resorts" not in agassi["text"]
    # [[limited liability company]] keeps its title; headings stay as plain lines.
    assert "Agassi established a limited liability company named" in agassi["text"]
    assert "\nBusiness ventures\n" in agassi["text"]
    assert agassi["url"] == "https://en.wikipedia.org/wiki/Andre_Agassi"
    assert agassi["id"] == "wikipedia/enwiki/595"


def test_reference_urls(enwiki):
    stats, docs, refs, _ = enwiki
    assert len(refs) == stats.counters["references_extracted"] > 3000
    assert {r["kind"] for r in refs} == {"ref", "template", "external_link"}
    assert sum(stats.counters[f"references_{k}"] for k in ("ref", "template", "external_link")) == len(refs)
    ids = {d["id"] for d in docs}
    assert all(r["article_id"] in ids and r["language"] == "en" for r in refs)
    for r in refs:
        n = r["normalized_url"]
        assert re.match(r"^(https?|ftp)://[^/A-Z]+", n), n
        parts = urlsplit(n)
        assert not parts.fragment and not parts.hostname.startswith("www.") and not parts.path.endswith("/"), n
        assert "utm_" not in parts.query and parts.port not in (80, 443), n
    by_url = {r["url"]: r for r in refs}
    alabama = by_url["http://www.ache.alabama.gov/Colleges&Universities/Directory.htm"]
    assert alabama["normalized_url"] == "https://ache.alabama.gov/Colleges&Universities/Directory.htm"
    assert alabama["article_title"] == "Alabama"
    # A citation template inside a <ref>, with a fragment.
    cnbc = by_url["http://www.cnbc.com/id/100773005#"]
    assert cnbc["kind"] == "ref" and cnbc["normalized_url"] == "https://cnbc.com/id/100773005"
    # No duplicates within an article.
    pairs = [(r["article_id"], r["normalized_url"]) for r in refs]
    assert len(pairs) == len(set(pairs))


def test_normalize_url():
    assert normalize_url("HTTP://WWW.Example.COM:80/a/b/?utm_source=x&id=3&utm_medium=y#frag") == "https://example.com/a/b?id=3"
    assert normalize_url("http://example.com:8080/x") == "https://example.com:8080/x"
    assert normalize_url("https://example.com:443/") == "https://example.com"
    assert normalize_url("https://example.com:8443/x") == "https://example.com:8443/x"
    assert normalize_url("//www.example.org/p") == "https://example.org/p"
    assert normalize_url("mailto:someone@example.com") is None
    assert normalize_url("http://[bad") is None
    # A Wayback Machine copy stands for the page it archived, with or without a scheme inside.
    assert normalize_url("https://web.archive.org/web/20031217005135/http://www1.example.com/doc/") == "https://www1.example.com/doc"
    assert normalize_url("//web.archive.org/web/2003id_/www.example.com/a") == "https://example.com/a"
    assert original_url("//web.archive.org/web/20030906163920/http://x.org/p") == "http://x.org/p"
    assert original_url("//example.org/p") == "https://example.org/p"


def test_bulgarian_utf16(tmp_path):
    stats, docs, refs, dropped = run(BGWIKI, tmp_path)
    assert stats.docs_in == 3 and stats.dropped["namespace_4"] == 2
    assert stats.docs_out == len(docs) == 1
    (doc,) = docs
    assert doc["language"] == "bg" and doc["id"].startswith("wikipedia/bgwiki/")
    assert doc["url"].startswith("https://bg.wikipedia.org/wiki/")
    assert len(re.findall(r"[\u0400-\u04FF]", doc["text"])) > 0.5 * len(doc["text"].replace(" ", ""))
    for marker in MARKUP:
        assert marker not in doc["text"]
    assert "Файл:" not in doc["text"] and "Категория:" not in doc["text"]
    assert all(r["language"] == "bg" for r in refs)
    assert {d["drop_reason"] for d in dropped} == {"namespace_4"}


def test_table_markup(tmp_path):
    stats, docs, _, _ = run(TABLES, tmp_path)
    assert stats.docs_in == stats.docs_out == 5
    for d in docs:
        assert d["language"] == "en"  # no <siteinfo>: from the root's xml:lang
        for marker in MARKUP + ["class=", "wikitable", "colspan", "rowspan", "\n|-", "\n!", "style="]:
            assert marker not in d["text"], (d["title"], marker)


def test_truncated_dump(tmp_path, enwiki):
    full = {d["id"]: d["text"] for d in enwiki[1]}
    data = ENWIKI.read_bytes()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: len(data) // 2])
    stats, docs, _, dropped = run(cut, tmp_path)
    assert stats.dropped["corrupt_xml"] == 1
    assert 0 < stats.docs_out < 106
    assert stats.docs_in == stats.docs_out + sum(stats.dropped.values())
    assert all(full[d["id"]] == d["text"] for d in docs)
    assert dropped[-1]["drop_reason"] == "corrupt_xml"
    # A plain XML file cut in the middle of a page.
    import bz2

    xml = bz2.decompress(data)
    plain = tmp_path / "cut.xml"
    plain.write_bytes(xml[: len(xml) // 3])
    stats, docs, _, _ = run(plain, tmp_path, name="plain")
    assert stats.dropped["corrupt_xml"] == 1 and stats.docs_out > 0
    assert all(full[d["id"]] == d["text"] for d in docs)


def test_language_not_selected(tmp_path):
    stats, docs, refs, _ = run(BGWIKI, tmp_path, languages=["en", "de"])
    assert docs == [] and refs == []
    assert stats.docs_in == 3 and dict(stats.dropped) == {"language_not_selected": 3}
    stats.check()


def test_min_text_chars(tmp_path):
    stats, docs, _, _ = run(TABLES, tmp_path, min_text_chars=10**9)
    assert stats.docs_out == 0 and stats.dropped["text_too_short"] == 5


def test_deterministic(tmp_path, enwiki):
    stats, docs, refs, _ = run(ENWIKI, tmp_path)
    assert docs == enwiki[1] and refs == enwiki[2]
    assert stats.counters == enwiki[0].counters and stats.dropped == enwiki[0].dropped
