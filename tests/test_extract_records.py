"""stages.extract.records: ARC files, reading on after damage, record types, and the FastWARC reader
held to warcio (`fast=False`) on the real samples, on damaged copies of them and on hostile records."""

from __future__ import annotations

import gzip
import io
import random
import re
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.warcwriter import WARCWriter

import stages.extract.records
from stages.accounting import ShardStats
from stages.documents import read_documents
from stages.extract import extract_warc
from stages.extract.http_head import HttpHead, parse_http_head
from stages.extract.records import read_html_pages

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "warc"
SAMPLE_NAMES = sorted(p.name for p in SAMPLES.glob("*.warc.gz"))
CC_EXCERPT = SAMPLES / "cc-main-2020-34-excerpt.warc.gz"
BLACKBOOK = SAMPLES / "ia-2008-blackbook.warc.gz"
HTML = b"<html><body><p>" + b"A page about rivers and the mills on them. " * 20 + b"</p></body></html>"


def read(path: Path, fast: bool = True) -> tuple[list, ShardStats]:
    stats = ShardStats()
    pages = list(read_html_pages(str(path), stats, 5_000_000, fast=fast))
    stats.docs_out = len(pages)
    stats.check()
    return pages, stats


def read_both(path: Path) -> tuple[list, ShardStats]:
    """The pages and counts of `path`, after checking that FastWARC gives exactly warcio's."""
    pages, stats = read(path)
    assert (pages, stats) == read(path, fast=False)
    return pages, stats


def corrupt(stats: ShardStats) -> dict[str, int]:
    return {reason: n for reason, n in stats.dropped.items() if reason.startswith("corrupt_")}


def members(path: Path) -> list[tuple[int, int, str]]:
    """(start, end, WARC-Type) of each record's gzip member."""
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream)
        spans = []
        for record in records:
            start = records.get_record_offset()
            spans.append((start, start + records.get_record_length(), record.rec_type))
        return spans


def write(tmp_path: Path, data: bytes, name: str = CC_EXCERPT.name) -> Path:
    """`data` under its own folder, by default under the sample's name (document ids match its)."""
    path = tmp_path / "damaged" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- the FastWARC reader is warcio's -----------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_fast_reader_gives_warcio_pages_on_every_sample(name):
    pages, stats = read_both(SAMPLES / name)
    assert pages and not corrupt(stats)
    with open(SAMPLES / name, "rb") as stream:
        records = ArchiveIterator(stream)
        offsets = {records.get_record_offset() for _ in records}
    assert {page.offset for page in pages} <= offsets  # warcio's offsets: ids unchanged


def test_healthy_gzip_files_are_read_by_fastwarc_alone(monkeypatch):
    handed_over = []
    read_one = stages.extract.records.read_one
    monkeypatch.setattr(
        stages.extract.records, "read_one", lambda *args: handed_over.append(args[1]) or read_one(*args)
    )
    for name in SAMPLE_NAMES:
        read(SAMPLES / name)
    assert handed_over == []


def warc_record(headers: bytes, block: bytes | None = None, version: bytes = b"WARC/1.0") -> bytes:
    if block is None:
        block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + HTML
    return b"%s\r\n%sContent-Length: %d\r\n\r\n%s\r\n\r\n" % (version, headers, len(block), block)


RESPONSE = b"WARC-Type: response\r\nWARC-Target-URI: http://example.com/\r\n"
GOOD = warc_record(RESPONSE)
# Records FastWARC reads otherwise than warcio, or not at all.
HOSTILE = {
    "version 0.9": warc_record(RESPONSE, version=b"WARC/0.9"),
    "continued uri": warc_record(RESPONSE + b"  b\r\n"),
    "blank-looking line": warc_record(RESPONSE + b"   \r\n"),
    "blank-looking line after another header": warc_record(RESPONSE + b"WARC-Foo: bar\r\n\t\r\n"),
    "repeated length": warc_record(RESPONSE + b"Content-Length: 3\r\n"),
    "repeated type": warc_record(b"WARC-Type: request\r\n" + RESPONSE),
    "lowercase names": warc_record(RESPONSE.lower()),
    "bracketed uri": warc_record(RESPONSE.replace(b"http://example.com/", b"<http://example.com/>")),
    "uri with a space": warc_record(RESPONSE.replace(b"com/", b"com/a b")),
    "latin-1 uri": warc_record(RESPONSE.replace(b"com/", b"com/caf\xe9")),
    "no uri": warc_record(b"WARC-Type: response\r\n"),
    "lf only": GOOD.replace(b"\r\n", b"\n"),
    "no separator": GOOD[:-4] + GOOD,
    "length too long": GOOD.replace(b"Content-Length: ", b"Content-Length: 4"),
    "continued http header": warc_record(
        RESPONSE, b"HTTP/1.1 200 OK\r\nContent-Type:\r\n text/html\r\nX: y\r\n\r\n" + HTML
    ),
    "lf-only http headers": warc_record(RESPONSE, b"HTTP/1.0 200 OK\nContent-Type: text/html\n\n" + HTML),
    "blank status line": warc_record(RESPONSE, b"\r\n" + HTML),
}


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_fast_reader_gives_warcio_pages_on_hostile_records(tmp_path, name, compress):
    records = [GOOD, GOOD, HOSTILE[name], GOOD, GOOD]
    data = b"".join(gzip.compress(r) for r in records) if compress else b"".join(records)
    pages, _ = read_both(write(tmp_path, data, "hostile.warc.gz"))
    assert len(pages) >= 2


def test_record_split_over_two_gzip_members(tmp_path):
    """warcio calls a record whose gzip member ends before it does cut short; FastWARC reads on into
    the next member, so it must not vouch for it."""
    header_end = GOOD.index(b"\r\n\r\n") + 4
    members = [GOOD, GOOD[:header_end], GOOD[header_end:], GOOD]
    pages, stats = read_both(write(tmp_path, b"".join(map(gzip.compress, members)), "split.warc.gz"))
    assert len(pages) == 2 and corrupt(stats) == {"corrupt_truncated": 1, "corrupt_record": 1}


@pytest.mark.parametrize("seed", range(12))
def test_fast_reader_gives_warcio_pages_on_random_damage(tmp_path, seed):
    rng = random.Random(seed)
    data = CC_EXCERPT.read_bytes() if seed % 2 else gzip.decompress(CC_EXCERPT.read_bytes())
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at, n = rng.randrange(len(damaged)), rng.choice([1, 4, 30, 600])
        match rng.choice(["flip", "zero", "insert", "delete"]):
            case "flip":
                damaged[at : at + n] = bytes(b ^ 0x5A for b in damaged[at : at + n])
            case "zero":
                damaged[at : at + n] = bytes(len(damaged[at : at + n]))
            case "insert":
                damaged[at:at] = rng.randbytes(n)
            case "delete":
                del damaged[at : at + n]
    read_both(write(tmp_path, bytes(damaged)))


# -- reading on after damage -------------------------------------------------------------------


def damage(data: bytes, start: int, end: int, zero: bool = False) -> bytes:
    hit = bytes(len(data[start:end])) if zero else bytes(b ^ 0xFF for b in data[start:end])
    return data[:start] + hit + data[end:]


@pytest.mark.parametrize("zero", [False, True])
def test_a_multi_member_gzip_damaged_in_its_middle(tmp_path, zero):
    """Every document of the intact file but the damaged record's, with the same ids."""
    intact, _ = read(CC_EXCERPT)
    victim = intact[len(intact) // 2]
    start, end, _ = next(member for member in members(CC_EXCERPT) if member[0] == victim.offset)
    middle = (start + end) // 2
    warc = write(tmp_path, damage(CC_EXCERPT.read_bytes(), middle, middle + 16, zero))
    pages, stats = read_both(warc)
    assert pages == [page for page in intact if page is not victim]
    assert len(corrupt(stats)) == 1 and sum(corrupt(stats).values()) == 1
    assert stats.counters["bytes_skipped"] == end - start
    assert stats.docs_in == 50

    damaged_docs, intact_docs = _extract(warc, tmp_path), _extract(CC_EXCERPT, tmp_path)
    assert victim.url in {d["url"] for d in intact_docs}
    assert damaged_docs == [d for d in intact_docs if d["url"] != victim.url]


def _extract(warc: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"{warc.parent.name}.parquet"
    extract_warc(str(warc), str(out), source="test")
    return list(read_documents(out))


def test_damaged_first_member_loses_only_the_warcinfo(tmp_path):
    data = CC_EXCERPT.read_bytes()
    start, end, rec_type = members(CC_EXCERPT)[0]
    pages, stats = read_both(write(tmp_path, damage(data, 40, 60)))
    assert rec_type == "warcinfo" and pages == read(CC_EXCERPT)[0]
    assert sum(corrupt(stats).values()) == 1 and "record_type_warcinfo" not in stats.dropped
    assert stats.counters["bytes_skipped"] == end - start


def test_a_megabyte_of_garbage_between_members(tmp_path):
    data = CC_EXCERPT.read_bytes()
    cut = members(CC_EXCERPT)[30][0]
    garbage = random.Random(0).randbytes(1_500_000)  # wider than one scanning window
    pages, stats = read_both(write(tmp_path, data[:cut] + garbage + data[cut:]))
    assert [p.body for p in pages] == [p.body for p in read(CC_EXCERPT)[0]]
    assert corrupt(stats) == {"corrupt_record": 1}
    assert stats.counters["bytes_skipped"] == len(garbage)


def test_an_empty_gzip_member_is_not_damage(tmp_path):
    """FastWARC stops at an empty member; warcio reads on, and so does the reader."""
    data = CC_EXCERPT.read_bytes()
    cut = members(CC_EXCERPT)[30][0]
    pages, stats = read_both(write(tmp_path, data[:cut] + gzip.compress(b"") + data[cut:]))
    assert [p.body for p in pages] == [p.body for p in read(CC_EXCERPT)[0]]
    assert not corrupt(stats)


def test_plain_warc_reads_on_after_a_mangled_header(tmp_path):
    """A record whose Content-Length line is mangled: reading goes on at the next `WARC/1.0` line."""
    plain = gzip.decompress(CC_EXCERPT.read_bytes())
    intact = write(tmp_path, plain, "plain.warc")
    pages, _ = read_both(intact)
    victim = pages[len(pages) // 2]
    at = plain.index(b"Content-Length", victim.offset)
    mangled = write(tmp_path / "mangled", plain[:at] + b"Content-Lxngth" + plain[at + 14 :], "plain.warc")
    damaged_pages, stats = read_both(mangled)
    assert damaged_pages == [page for page in pages if page is not victim]
    assert corrupt(stats) == {"corrupt_record": 1}


# -- ARC ---------------------------------------------------------------------------------------


def arc_records(warc: Path) -> list[bytes]:
    """ARC v1 records of the WARC's responses, after the filedesc record, as the Internet Archive
    wrote them before WARC: `URL IP date content-type length`, the HTTP response, a newline."""
    fields = b"1 0 InternetArchive\nURL IP-address Archive-date Content-type Archive-length\n"
    filedesc = b"filedesc://%s 0.0.0.0 20080430204825 text/plain %d\n" % (warc.name.encode(), len(fields))
    records = [filedesc + fields + b"\n"]
    with open(warc, "rb") as stream:
        for record in ArchiveIterator(stream, no_record_parse=True):
            if record.rec_type != "response":
                continue
            headers = record.rec_headers
            block = record.raw_stream.read()
            media_type = re.search(rb"\ncontent-type:[ \t]*([^;\s]+)", block.split(b"\r\n\r\n")[0], re.I)
            line = " ".join([
                headers.get_header("WARC-Target-URI"),
                headers.get_header("WARC-IP-Address") or "0.0.0.0",
                re.sub(r"\D", "", headers.get_header("WARC-Date"))[:14],
                media_type.group(1).decode() if media_type else "no-type",
                str(len(block)),
            ])
            records.append(line.encode() + b"\n" + block + b"\n")
    return records


def write_arc(warc: Path, folder: Path, compress: bool) -> Path:
    records = arc_records(warc)
    path = folder / (warc.name.removesuffix(".warc.gz") + (".arc.gz" if compress else ".arc"))
    path.write_bytes(b"".join(gzip.compress(r) for r in records) if compress else b"".join(records))
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_arc_gives_the_pages_of_its_warc(tmp_path, compress):
    arc = write_arc(BLACKBOOK, tmp_path, compress)
    pages, stats = read(arc)
    warc_pages, warc_stats = read(BLACKBOOK)
    strip = lambda ps: [(p.url, p.date, p.body, p.http_charset) for p in ps]  # noqa: E731
    assert strip(pages) == strip(warc_pages)
    assert all(p.warc_record_id is None for p in pages)  # ARC records have no id
    responses = {k: v for k, v in warc_stats.dropped.items() if not k.startswith("record_type_")}
    assert dict(stats.dropped) == {"record_type_warcinfo": 1, **responses}  # the filedesc record


@pytest.mark.parametrize("compress", [False, True])
def test_arc_gives_the_documents_of_its_warc(tmp_path, compress):
    arc = write_arc(CC_EXCERPT, tmp_path, compress)
    stats = extract_warc(str(arc), str(tmp_path / "arc.parquet"), source="test")
    extract_warc(str(CC_EXCERPT), str(tmp_path / "warc.parquet"), source="test")
    arc_docs, warc_docs = (list(read_documents(tmp_path / f"{n}.parquet")) for n in ("arc", "warc"))
    fields = lambda docs: [(d["url"], d["date"], d["text"]) for d in docs]  # noqa: E731
    assert fields(arc_docs) == fields(warc_docs) and arc_docs
    assert stats.docs_in == 1 + 16 and not corrupt(stats)


def test_damaged_arc_gz_member_loses_only_its_record(tmp_path):
    compressed = [gzip.compress(r) for r in arc_records(CC_EXCERPT)]
    victim = len(compressed) // 2
    start = sum(map(len, compressed[:victim]))
    compressed[victim] = damage(compressed[victim], 40, 60)
    arc = tmp_path / "damaged.arc.gz"
    arc.write_bytes(b"".join(compressed))
    pages, stats = read(arc)
    intact, _ = read(write_arc(CC_EXCERPT, tmp_path, compress=True))
    assert start in {p.offset for p in intact}
    assert pages == [p for p in intact if p.offset != start]
    assert sum(corrupt(stats).values()) == 1


# -- record types ------------------------------------------------------------------------------


def write_records(path: Path, records: list[tuple[str, str, str, bytes]]) -> Path:
    """(WARC-Type, target URI, WARC Content-Type, block) records, written by warcio."""
    with open(path, "wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        for rec_type, uri, content_type, block in records:
            http = None
            if rec_type in ("response", "revisit"):
                http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                uri, rec_type, payload=io.BytesIO(block), http_headers=http,
                warc_content_type=content_type, warc_headers_dict={"WARC-Date": "2024-05-18T12:11:12Z"},
            )
            writer.write_record(record)
    return path


def test_record_types(tmp_path):
    """An HTML resource is a page (wget and browser crawlers store pages so); conversions are
    derived text, revisits have no payload of their own: both counted by type."""
    warc = write_records(tmp_path / "types.warc.gz", [
        ("resource", "http://example.com/page.html", "text/html; charset=iso-8859-1", HTML),
        ("resource", "http://example.com/page.xhtml", "application/xhtml+xml", HTML),
        ("resource", "http://example.com/notes.txt", "text/plain", b"notes"),
        ("resource", "metadata://gnu.org/software/wget/warc/wget.log", "text/html", HTML),
        ("resource", "http://example.com/empty.html", "text/html", b""),
        ("conversion", "http://example.com/page.html", "text/html", HTML),
        ("revisit", "http://example.com/page.html", "application/http; msgtype=response", b""),
        ("response", "http://example.com/page.html", "application/http; msgtype=response", HTML),
    ])
    pages, stats = read_both(warc)
    assert [(p.url, p.http_charset, p.body) for p in pages] == [
        ("http://example.com/page.html", "iso-8859-1", HTML),
        ("http://example.com/page.xhtml", None, HTML),
        ("http://example.com/page.html", None, HTML),
    ]
    assert pages[0].warc_record_id.startswith("<urn:uuid:") and pages[0].date == "2024-05-18T12:11:12Z"
    assert dict(stats.dropped) == {
        "record_type_resource": 2, "empty_payload": 1, "record_type_conversion": 1, "record_type_revisit": 1
    }


def test_wget_resource_records_are_its_log_and_arguments():
    with open(SAMPLES / "wget-2024-academic-0.warc.gz", "rb") as stream:
        resources = [
            (r.rec_headers.get_header("WARC-Target-URI"), r.content_type)
            for r in ArchiveIterator(stream) if r.rec_type == "resource"
        ]
    assert resources == [
        ("metadata://gnu.org/software/wget/warc/wget_arguments.txt", "text/plain"),
        ("metadata://gnu.org/software/wget/warc/wget.log", "text/plain"),
    ]
    _, stats = read(SAMPLES / "wget-2024-academic-0.warc.gz")
    assert stats.dropped["record_type_resource"] == 2


# -- HTTP headers as warcio reads them ---------------------------------------------------------

HEADS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nServer: x\r\n\r\nbody",
    b"HTTP/1.1 404 Not Found\r\ncontent-type:text/plain\r\nCONTENT-ENCODING: gzip\r\n\r\n",
    b"HTTP/1.0 200 OK\nContent-Type: text/html\n\nbody\r\n\r\nmore",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Type: text/plain\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Type:\r\n\ttext/html\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type : text/html \r\n   \r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n Content-Type: text/html\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\x0c\r\nContent-Encoding: br\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Type: text/html; charset=caf\xc3\xa9\r\n\r\n\xff\xfe",
    b"HTTP/1.1 OK\r\n\r\n",
    b"ICY 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n",
    b"  HTTP/1.1 200 OK\r\n\r\n",
    b"\r\nContent-Type: text/html\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n",
    b"20080430204825\nwww.archive.org.\t589\tIN\tA\t207.241.229.39\n",
]


@pytest.mark.parametrize("data", HEADS)
def test_http_heads_read_as_warcio_reads_them(data):
    stream = io.BytesIO(data)
    expected = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False).parse(stream)
    assert parse_http_head(data, complete=True) == (HttpHead.of(expected), stream.tell())


def test_http_head_past_the_data_read_so_far():
    assert parse_http_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/h", complete=False) is None
