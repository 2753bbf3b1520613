"""Damaged files lose the damage only: reading resynchronises at the next gzip member or record line,
a gzip member holding several records (a whole-file gzip) is read whole, and what was skipped is
counted, records and bytes. Each case on copies of the real samples, FastWARC held to warcio."""

from __future__ import annotations

import gzip
import random
import tracemalloc
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from stages.accounting import ShardStats
from stages.extract.records import read_html_pages
from tests.test_extract_records import CC_EXCERPT, SAMPLES, _extract, corrupt, damage, read, read_both, write

WGET = SAMPLES / "wget-2024-academic-0.warc.gz"


def member_bytes(path: Path) -> list[bytes]:
    """The file's gzip members, one record each."""
    data = path.read_bytes()
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream)
        spans = [(records.get_record_offset(), records.get_record_length()) for _ in records]
    return [data[start : start + length] for start, length in spans]


def records_read(stats: ShardStats) -> int:
    """Records counted under their own outcome, not as damage."""
    return stats.docs_in - sum(corrupt(stats).values())


def bodies(pages) -> list[tuple]:
    return [(page.url, page.warc_record_id, page.body) for page in pages]


@pytest.mark.parametrize("where", ["middle", "header"])
def test_a_damaged_member_costs_its_record_only(tmp_path, where):
    """10 members, 40 bytes of the third flipped in its deflate data or its gzip header: the 7 records
    after it are read, the damaged one counts once and its member's bytes are skipped."""
    ten = member_bytes(WGET)[:10]
    victim = ten[2]
    at = len(victim) // 2 if where == "middle" else 0
    intact_pages, intact = read_both(write(tmp_path / "intact", b"".join(ten), WGET.name))
    damaged = ten[:2] + [damage(victim, at, at + 40)] + ten[3:]
    pages, stats = read_both(write(tmp_path, b"".join(damaged), WGET.name))
    lost_offset = len(ten[0]) + len(ten[1])
    assert pages == [page for page in intact_pages if page.offset != lost_offset]
    assert records_read(stats) == 9 and stats.docs_in == intact.docs_in == 10
    assert sum(corrupt(stats).values()) == 1 and stats.counters["bytes_skipped"] == len(victim)


def test_random_bytes_between_members_cost_nothing_else(tmp_path):
    """5 KB of random bytes after the 20th member: the 28 records after them, 13 of them documents,
    are all kept, with their ids; the garbage counts as one region of 5,000 bytes."""
    parts = member_bytes(WGET)
    garbage = random.Random(15).randbytes(5000)
    warc = write(tmp_path, b"".join(parts[:20]) + garbage + b"".join(parts[20:]), WGET.name)
    pages, stats = read_both(warc)
    intact_pages, intact = read(WGET)
    assert len(parts) - 20 == 28
    assert bodies(pages) == bodies(intact_pages)
    assert corrupt(stats) == {"corrupt_record": 1} and stats.docs_in == intact.docs_in + 1
    assert stats.counters["bytes_skipped"] == len(garbage)
    docs, intact_docs = _extract(warc, tmp_path), _extract(WGET, tmp_path)
    cut = len(b"".join(parts[:20]))
    later_urls = {page.url for page in intact_pages if page.offset >= cut}
    assert len([d for d in docs if d["url"] in later_urls]) == 13
    assert [(d["url"], d["text"]) for d in docs] == [(d["url"], d["text"]) for d in intact_docs]


@pytest.mark.parametrize("line_end", [b"\r\n", b""])
def test_garbage_lines_in_a_plain_warc(tmp_path, line_end):
    """Garbage lines in the middle of a plain WARC, the last one ended or running into the next
    record's `WARC/1.0` line: the 18 records after them are read."""
    records = [gzip.decompress(part) for part in member_bytes(SAMPLES / "wget-2024-academic-1.warc.gz")]
    garbage = b"garbage line: not a record\r\n" * 5 + b"and no line end" + line_end
    intact_pages, intact = read(write(tmp_path / "intact", b"".join(records), "plain.warc"))
    warc = write(tmp_path, b"".join(records[:16]) + garbage + b"".join(records[16:]), "plain.warc")
    pages, stats = read_both(warc)
    assert len(records) - 16 == 18
    assert bodies(pages) == bodies(intact_pages)
    assert records_read(stats) == intact.docs_in and corrupt(stats) == {"corrupt_record": 1}
    assert stats.counters["bytes_skipped"] == len(garbage)


def test_records_seen_in_a_skipped_region_are_counted(tmp_path):
    """A record without Content-Length, then one whose `WARC/1.0` line is mangled: reading goes on at
    the record after both, and both count, by the WARC-Record-ID lines passed over."""
    records = [gzip.decompress(part) for part in member_bytes(WGET)]
    no_length = records[20].replace(b"Content-Length:", b"Content-Lxngth:", 1)
    no_version = records[21].replace(b"WARC/1.0", b"WARC/1.X", 1)
    mangled = b"".join(records[:20]) + no_length + no_version + b"".join(records[22:])
    pages, stats = read_both(write(tmp_path, mangled, "plain.warc"))
    _, intact = read(WGET)
    assert corrupt(stats) == {"corrupt_record": 2} and stats.docs_in == intact.docs_in
    assert stats.counters["bytes_skipped"] == len(no_length) + len(no_version)


def test_whole_file_gzip_is_read_whole(tmp_path):
    """One gzip member for the whole file: every record is read, as from the member-per-record file,
    and every document has its own id."""
    plain = gzip.decompress(CC_EXCERPT.read_bytes())
    warc = write(tmp_path, gzip.compress(plain))
    pages, stats = read_both(warc)
    intact_pages, intact = read(CC_EXCERPT)
    assert bodies(pages) == bodies(intact_pages) and stats == intact
    assert {page.offset for page in pages} == {0}
    docs, intact_docs = _extract(warc, tmp_path), _extract(CC_EXCERPT, tmp_path)
    assert [(d["url"], d["text"]) for d in docs] == [(d["url"], d["text"]) for d in intact_docs]
    assert len({d["id"] for d in docs}) == len(docs)


def test_gzip_members_of_several_records(tmp_path):
    """Members of one to three records: FastWARC hands each member of several to warcio, at its
    start (FastWARC places a member's later records inside its compressed bytes)."""
    records = [gzip.decompress(part) for part in member_bytes(SAMPLES / "web-pages-2019-2021.warc.gz")]
    rng, groups, i = random.Random(3), [], 0
    while i < len(records):
        size = rng.choice([1, 2, 3])
        groups.append(b"".join(records[i : i + size]))
        i += size
    pages, stats = read_both(write(tmp_path, b"".join(map(gzip.compress, groups)), "grouped.warc.gz"))
    intact_pages, intact = read(SAMPLES / "web-pages-2019-2021.warc.gz")
    assert bodies(pages) == bodies(intact_pages) and stats == intact


def test_whole_file_gzip_is_streamed(tmp_path):
    """Memory stays bounded whatever the member's size: here 5.5 MB of records in one member."""
    plain = gzip.decompress(CC_EXCERPT.read_bytes()) * 10
    warc = write(tmp_path, gzip.compress(plain, compresslevel=1))
    tracemalloc.start()
    try:
        stats = ShardStats()
        pages = sum(1 for _ in read_html_pages(str(warc), stats, 5_000_000, fast=False))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pages == 160 and stats.docs_in == 500 and not corrupt(stats)
    assert peak < len(plain) / 2


def test_damaged_whole_file_gzip(tmp_path):
    """Cut, with garbage in its records' bytes, or with its deflate data damaged: the records before
    the damage are kept; garbage inside the member costs nothing else; what follows broken deflate
    data is out of reach, counted as one record and its bytes."""
    plain = gzip.decompress(CC_EXCERPT.read_bytes())
    start = plain.index(b"WARC/1.0", len(plain) // 2)
    whole = gzip.compress(plain)
    intact_pages, intact = read(CC_EXCERPT)
    pages, stats = read_both(write(tmp_path / "cut", whole[: len(whole) // 2]))
    assert 0 < len(pages) < len(intact_pages) and bodies(pages) == bodies(intact_pages[: len(pages)])
    assert corrupt(stats) == {"corrupt_truncated": 1}

    garbage = b"garbage\r\nmore garbage, no line end"
    pages, stats = read_both(write(tmp_path / "garbage", gzip.compress(plain[:start] + garbage + plain[start:])))
    assert bodies(pages) == bodies(intact_pages) and corrupt(stats) == {"corrupt_record": 1}
    assert records_read(stats) == intact.docs_in and 0 < stats.counters["bytes_skipped"] < 1000

    # Deflate may turn the flipped bytes into wrong ones for a while before it fails: the record
    # they land in is read as it came out (only the member's check, at its end, could tell).
    middle = len(whole) // 2
    pages, stats = read_both(write(tmp_path / "flipped", damage(whole, middle, middle + 40)))
    assert 0 < len(pages) < len(intact_pages)
    assert [page.url for page in pages] == [page.url for page in intact_pages[: len(pages)]]
    assert corrupt(stats) and len(whole) // 3 < stats.counters["bytes_skipped"] < len(whole) - middle + 5000


@pytest.mark.parametrize("cut", ["gzip header", "deflate data", "gzip trailer", "plain header", "plain block"])
def test_a_file_cut_anywhere_is_truncated(tmp_path, cut):
    """Wherever the file ends, inside a record or its gzip member, the record is corrupt_truncated."""
    parts = member_bytes(WGET)[:6]
    plain = b"".join(gzip.decompress(part) for part in parts)
    last = plain.index(b"WARC/1.0", len(plain) - len(gzip.decompress(parts[-1])))
    ends = {
        "gzip header": len(b"".join(parts[:-1])) + 5,
        "deflate data": len(b"".join(parts)) - len(parts[-1]) // 2,
        "gzip trailer": len(b"".join(parts)) - 3,
        "plain header": last + 60,
        "plain block": len(plain) - 100,
    }
    data = plain if cut.startswith("plain") else b"".join(parts)
    pages, stats = read_both(write(tmp_path, data[: ends[cut]], "cut.warc" if cut.startswith("plain") else WGET.name))
    assert corrupt(stats) == {"corrupt_truncated": 1} and records_read(stats) == 5
