"""stages.extract on the real sample WARCs and on damaged or hostile input made from them."""

from __future__ import annotations

import gzip
import io
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from stages.documents import read_documents
from stages.extract import extract_warc

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "warc"
SAMPLE_NAMES = sorted(p.name for p in SAMPLES.glob("*.warc.gz"))
CC_EXCERPT = SAMPLES / "cc-main-2020-34-excerpt.warc.gz"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")

BROTLI = [("Content-Type", "text/html"), ("Content-Encoding", "br")]
ARTICLE = (
    "<html><head><title>A page</title></head><body><article><h1>Rivers</h1>"
    + "<p>The river runs through the valley and past the old mill, where the water turns the wheel "
    "that grinds the grain for the village bakery every morning of the week.</p>" * 4
    + "</article></body></html>"
)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict[str, tuple]:
    """Every sample WARC extracted once: name -> (stats, documents)."""
    out = tmp_path_factory.mktemp("extracted")
    results = {}
    for name in SAMPLE_NAMES:
        stats = extract_warc(str(SAMPLES / name), str(out / f"{name}.parquet"), source="test")
        results[name] = (stats, list(read_documents(out / f"{name}.parquet")))
    return results


def write_warc(path: Path, records: list[dict], compress: bool = True) -> Path:
    """A WARC of response records; each dict has a payload and optionally status and headers."""
    with open(path, "wb") as stream:
        writer = WARCWriter(stream, gzip=compress)
        for i, spec in enumerate(records):
            headers = spec.get("headers", [("Content-Type", "text/html; charset=utf-8")])
            http = StatusAndHeaders(spec.get("status", "200 OK"), headers, protocol="HTTP/1.1")
            record = writer.create_warc_record(
                f"http://example.com/{i}",
                "response",
                payload=io.BytesIO(spec["payload"]),
                http_headers=http,
                warc_headers_dict={"WARC-Date": "2024-05-18T12:11:12+02:00"},
            )
            writer.write_record(record)
    return path


def damaged_copy(tmp_path: Path, data: bytes) -> Path:
    """`data` under the sample's own file name, so that document ids match the intact file's."""
    path = tmp_path / "damaged" / CC_EXCERPT.name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def record_ends(path: Path) -> list[int]:
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream)
        return [records.get_record_offset() + records.get_record_length() for _ in records]


def corrupt(stats) -> dict[str, int]:
    return {reason: n for reason, n in stats.dropped.items() if reason.startswith("corrupt_")}


def run(warc: Path, tmp_path: Path, **kwargs):
    out = tmp_path / f"{warc.name}.parquet"
    stats = extract_warc(str(warc), str(out), source="test", **kwargs)
    docs = list(read_documents(out))
    assert len(docs) == stats.docs_out
    return stats, docs


# -- real samples ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_extracts_documents(extracted, name):
    stats, docs = extracted[name]
    stats.check()
    assert stats.docs_out == len(docs) > 0
    assert stats.bytes_out > 0
    assert not corrupt(stats)
    assert len({d["id"] for d in docs}) == len(docs)
    assert all(d["text"].strip() and d["url"].startswith("http") and d["source"] == "test" for d in docs)
    assert all(d["warc_record_id"].startswith("<urn:uuid:") for d in docs)


def test_sample_record_counts(extracted):
    stats, _ = extracted["ia-2008-blackbook.warc.gz"]
    assert stats.docs_in == 822
    assert stats.docs_out + stats.dropped["no_text_extracted"] == 94  # the 200 text/html responses
    assert {k: v for k, v in stats.dropped.items() if k != "no_text_extracted"} == {
        "record_type_warcinfo": 1,
        "record_type_request": 261,
        "record_type_metadata": 261,
        "not_http": 38,  # dns: responses
        "http_status_404": 40,
        "http_status_302": 5,
        "http_status_301": 2,
        "not_html": 120,  # images, css, javascript, robots.txt, flash
    }
    stats, _ = extracted["cc-main-2020-34-excerpt.warc.gz"]
    assert (stats.docs_in, stats.docs_out) == (50, 16)
    assert stats.dropped == {
        "record_type_warcinfo": 1, "record_type_request": 17, "record_type_metadata": 16
    }
    stats, _ = extracted["wget-2024-academic-0.warc.gz"]
    assert stats.dropped["record_type_resource"] == 2


def test_euc_jp_pages_come_out_as_japanese(extracted):
    stats, docs = extracted["clueweb09-ja-quirk.warc.gz"]
    assert stats.docs_out == 29
    for doc in docs:
        text = doc["text"]
        assert "\ufffd" not in text
        assert len(JAPANESE.findall(text)) > 0.3 * len(text.replace(" ", ""))
    assert "新作入荷" in docs[0]["text"]


def test_dates(extracted):
    _, docs = extracted["ia-2008-blackbook.warc.gz"]
    assert all(re.fullmatch(r"2008-04-30T\d\d:\d\d:\d\dZ", d["date"]) for d in docs)
    _, docs = extracted["clueweb09-ja-quirk.warc.gz"]
    assert docs[0]["date"] == "2008-10-294T05:21:46-0700"  # malformed: kept verbatim


def test_ids_stable_across_runs(extracted, tmp_path):
    _, first = extracted[CC_EXCERPT.name]
    _, second = run(CC_EXCERPT, tmp_path)
    assert first == second
    copy = tmp_path / "other-name.warc.gz"
    copy.write_bytes(CC_EXCERPT.read_bytes())
    _, renamed = run(copy, tmp_path)
    assert not {d["id"] for d in first} & {d["id"] for d in renamed}


def test_runs_off_the_main_thread(extracted, tmp_path):
    result = {}
    name = "wget-2024-academic-1.warc.gz"
    thread = threading.Thread(target=lambda: result.update(docs=run(SAMPLES / name, tmp_path)[1]))
    thread.start()
    thread.join()
    assert result["docs"] == extracted[name][1]


# -- damaged files -----------------------------------------------------------------------------


def test_truncated_gzip_keeps_documents_before_the_cut(extracted, tmp_path):
    data = CC_EXCERPT.read_bytes()
    warc = damaged_copy(tmp_path, data[: len(data) // 2])
    stats, docs = run(warc, tmp_path)
    assert corrupt(stats) == {"corrupt_truncated": 1}
    full = extracted[CC_EXCERPT.name][1]
    assert 0 < len(docs) < len(full)
    assert docs == full[: len(docs)]


@pytest.mark.parametrize("cut", [40, "Content-Length:"])
def test_file_cut_inside_record_headers(extracted, tmp_path, cut):
    """A header block the end of the file cuts is a truncated record, like a cut block; also when the
    cut leaves "Content-Length:" with no value (warcio reads it as 0)."""
    plain = gzip.decompress(CC_EXCERPT.read_bytes())
    start = plain.index(b"WARC/1.0", len(plain) // 2)
    end = start + 40 if cut == 40 else plain.index(b"Content-Length:", start) + len(cut)
    warc = damaged_copy(tmp_path, plain[:end])
    stats, docs = run(warc, tmp_path)
    assert corrupt(stats) == {"corrupt_truncated": 1}
    full = extracted[CC_EXCERPT.name][1]
    assert [d["url"] for d in docs] == [d["url"] for d in full[: len(docs)]] and docs


def test_garbage_between_gzip_records(extracted, tmp_path):
    """Reading goes on at the next gzip member: only the garbage is lost."""
    data = CC_EXCERPT.read_bytes()
    cut = record_ends(CC_EXCERPT)[25]
    garbage = b"\x00garbage\xff" * 20
    warc = damaged_copy(tmp_path, data[:cut] + garbage + data[cut:])
    stats, docs = run(warc, tmp_path)
    assert corrupt(stats) == {"corrupt_record": 1}
    assert stats.docs_in == 50 + 1
    assert stats.counters["bytes_skipped"] == len(garbage)
    full = extracted[CC_EXCERPT.name][1]
    assert [(d["url"], d["text"]) for d in docs] == [(d["url"], d["text"]) for d in full]
    kept = sum(a == b for a, b in zip(docs, full))  # the same ids up to the garbage
    assert 0 < kept < len(full) and docs[:kept] == full[:kept]


@pytest.mark.parametrize("before_separator", [True, False])
def test_stray_line_in_plain_warc(extracted, tmp_path, before_separator):
    """warcio skips one stray line right after a record's content (with a warning on stderr) and
    goes on; after the blank-line separator the line is damage, and reading goes on at the next
    record's first line. Either way one corrupt_record, and no document lost."""
    plain = gzip.decompress(CC_EXCERPT.read_bytes())
    start = plain.index(b"WARC/1.0", len(plain) // 2) - (4 if before_separator else 0)
    warc = damaged_copy(tmp_path, plain[:start] + b"stray garbage line\r\n" + plain[start:])
    stats, docs = run(warc, tmp_path)
    assert corrupt(stats) == {"corrupt_record": 1}
    full = [d["text"] for d in extracted[CC_EXCERPT.name][1]]
    assert [d["text"] for d in docs] == full


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "corrupt_empty"),
        (b"This is a plain text file.\nIt is not a WARC.\n", "corrupt_not_warc"),
        (gzip.compress(b"<html><body>a gzipped page, no WARC</body></html>"), "corrupt_not_warc"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "corrupt_not_warc"),
    ],
)
def test_file_without_records(tmp_path, content, reason):
    warc = tmp_path / "bad.warc.gz"
    warc.write_bytes(content)
    stats, docs = run(warc, tmp_path)
    assert (stats.docs_in, stats.docs_out, dict(stats.dropped)) == (1, 0, {reason: 1})
    assert docs == []


# -- hostile records ---------------------------------------------------------------------------


def test_record_level_reasons(tmp_path):
    rng = random.Random(0)
    cafe = ARTICLE.replace("valley", "Café valley")
    stray_byte = cafe.encode().replace(b"Caf\xc3\xa9", b"Caf\xe9", 1)
    latin1 = cafe.encode("latin-1")
    png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(100)
    records = [
        {"payload": ARTICLE.encode()},
        {"payload": rng.randbytes(5000)},  # declared utf-8, binary
        {"payload": stray_byte},  # utf-8 with one invalid byte
        {"payload": latin1, "headers": [("Content-Type", "text/html")]},  # no charset anywhere
        {"payload": png, "headers": [("Content-Type", "image/png")]},
        {"payload": ARTICLE.encode(), "status": "404 Not Found"},
        {"payload": ARTICLE.encode(), "status": "OK"},
        {"payload": b"  \r\n"},
        {"payload": ARTICLE.encode(), "headers": []},  # no Content-Type: sniffed
        {"payload": b"plain words, no markup", "headers": []},
        {"payload": b"<html><body></body></html>"},
        {"payload": ARTICLE.encode(), "headers": BROTLI},
    ]
    stats, docs = run(write_warc(tmp_path / "records.warc.gz", records), tmp_path)
    assert stats.docs_in == len(records)
    assert dict(stats.dropped) == {
        "undecodable": 1,
        "not_html": 2,
        "http_status_404": 1,
        "http_status_invalid": 1,
        "empty_payload": 1,
        "no_text_extracted": 1,
        "unsupported_encoding": 1,
    }
    assert [d["url"] for d in docs] == [f"http://example.com/{i}" for i in (0, 2, 3, 8)]
    assert "Café valley" in docs[1]["text"] and "Café valley" in docs[2]["text"]
    assert docs[0]["date"] == "2024-05-18T10:11:12Z"  # normalised to UTC


def test_chunked_and_gzip_content_encoding(tmp_path):
    body = gzip.compress(ARTICLE.encode("utf-8"))
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"),
    ]
    warc = write_warc(tmp_path / "chunked.warc", [{"payload": chunked, "headers": headers}], compress=False)
    stats, docs = run(warc, tmp_path)
    assert stats.docs_out == 1
    assert "grinds the grain" in docs[0]["text"]


def test_size_and_length_limits(tmp_path):
    warc = write_warc(tmp_path / "limits.warc.gz", [{"payload": ARTICLE.encode()}] * 2)
    stats, _ = run(warc, tmp_path, max_html_bytes=len(ARTICLE) - 1)
    assert dict(stats.dropped) == {"html_too_large": 2}
    stats, _ = run(warc, tmp_path, min_text_chars=100_000)
    assert dict(stats.dropped) == {"text_too_short": 2}


def test_pathological_page_times_out(tmp_path):
    row = "<div><p>Sentence {} with some words and <a href='/x{}'>a link</a>.</p></div>"
    rows = "".join(row.format(i, i) for i in range(25_000))
    huge = f"<html><body>{rows}</body></html>".encode()
    warc = write_warc(tmp_path / "slow.warc.gz", [{"payload": ARTICLE.encode()}, {"payload": huge}])
    start = time.monotonic()
    stats, docs = run(warc, tmp_path, timeout_s=0.3)
    assert time.monotonic() - start < 2.5  # the huge page alone takes several seconds
    assert dict(stats.dropped) == {"extraction_timeout": 1}
    assert len(docs) == 1


def test_long_shards_report_progress(tmp_path, monkeypatch, capsys):
    import stages.extract.shard

    monkeypatch.setattr(stages.extract.shard, "PROGRESS_EVERY_S", 0.0)
    stats = extract_warc(str(SAMPLES / "wget-2024-academic-1.warc.gz"), str(tmp_path / "out.parquet"))
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("extract wget-2024-academic-1.warc.gz: ") for line in lines)
    records = [int(re.search(r": ([\d,]+) records", line).group(1).replace(",", "")) for line in lines]
    assert records == sorted(records) and records[-1] <= stats.docs_in


def test_the_page_limit_counts_cpu_time_so_load_does_not_change_the_output(tmp_path):
    """On one core shared with four busy processes the page takes about five times its CPU time
    in wall time: a wall-clock limit would cut it, the CPU-time limit lets it finish."""
    row = "<div><p>Sentence {} with some words and <a href='/x{}'>a link</a>.</p></div>"
    page = f"<html><body>{''.join(row.format(i, i) for i in range(1000))}</body></html>".encode()
    warc = write_warc(tmp_path / "loaded.warc.gz", [{"payload": page}])
    core = {min(os.sched_getaffinity(0))}
    busy = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {core}); exec('while True: pass')"])
            for _ in range(4)]
    affinity = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, core)
        time.sleep(0.2)
        start, cpu = time.monotonic(), time.process_time()
        stats, docs = run(warc, tmp_path, timeout_s=1.5)
        wall, cpu = time.monotonic() - start, time.process_time() - cpu
    finally:
        os.sched_setaffinity(0, affinity)
        for process in busy:
            process.kill()
            process.wait()
    assert wall > 1.5 > cpu, f"the premise: loaded wall time {wall:.2f}s, CPU time {cpu:.2f}s"
    assert dict(stats.dropped) == {} and len(docs) == 1


@pytest.mark.parametrize("label", ["base64", "rot13", "hex", "zlib", "uu", "idna", "undefined"])
def test_a_charset_that_is_no_text_codec_falls_back_to_detection(tmp_path, label):
    """Python resolves these labels to codecs that do not decode bytes to text (bytes-to-bytes,
    str-to-str, or none at all): like an unknown label, they are passed over."""
    cafe = ARTICLE.replace("valley", "Café valley")
    records = [{"payload": cafe.encode(), "headers": [("Content-Type", f"text/html; charset={label}")]}]
    stats, docs = run(write_warc(tmp_path / f"{label}.warc.gz", records), tmp_path)
    assert dict(stats.dropped) == {} and "Café valley" in docs[0]["text"]
