"""WARC and ARC records to HTML pages, with every other record and every kind of damage counted.

A record becomes a page when it is a `response` with HTTP status 200 and an HTML payload, or a
`resource` whose WARC Content-Type is text/html or application/xhtml+xml and whose target is an
http(s) URL (wget and browser crawlers store pages this way, without an HTTP envelope: the block is
the page, its charset the Content-Type's). Drop reasons of the other records, checked in this order:

    record_type_<type>      warcinfo, request, metadata, revisit (no payload of its own),
                            conversion (derived text, not HTML), continuation, a resource that is not
                            an HTML page (wget's log and arguments); any other type: record_type_other
    not_http                a response without HTTP headers (dns:, whois: records)
    http_status_<code>      HTTP status other than 200 (http_status_invalid when not 3 digits)
    not_html                Content-Type neither text/html nor application/xhtml+xml (without a
                            Content-Type the payload is sniffed for <html or <!doctype html)
    unsupported_encoding    a Content-Encoding other than gzip and deflate (br, zstd, ...)
    html_too_large          payload (after content and transfer decoding) over max_html_bytes
    empty_payload           payload empty or whitespace only

Formats: WARC 1.0/1.1 and the older 0.17/0.18, and ARC v1 (a file whose first line is
`filedesc://`; its records have no id, their 14-digit date becomes ISO 8601), each plain or gzipped:
one member per record, as crawlers write them, or several records to a member (a whole-file gzip,
every record read, streamed). `offset` is the record's byte offset in the file (its gzip member's;
`offset_in_member` tells apart the records of a member holding several), `date` WARC-Date in ISO
8601 UTC (`2008-04-30T20:48:25Z`), kept verbatim when it does not parse (ClueWeb09 has
`2008-10-294T05:21:46-0700`).

Reading: FastWARC reads the healthy stretches of a WARC (`fastwarc_reader`); wherever it might not
read a record exactly as warcio does, warcio reads that record, or the gzip member holding several
(`warcio_reader`); after damage, reading goes on at the next record found (`resync`): the next gzip
member, or the next `WARC/` line (in a gzip member's own bytes, its next one), that starts a record.
`fast=False` gives the same pages and counts with warcio alone. Records are streamed: memory does
not grow with the file or with a record.

File damage never raises. Each damaged region counts as the records seen in it (the WARC-Record-ID
lines passed over, at least one; docs_in counts them), dropped under a reason starting with
`corrupt_` (a damaged record counts once, under that reason instead of its own); the records before
and after it are kept, and counters["bytes_skipped"] adds up the bytes of the file from the start of
each damaged region to the record reading goes on with (inside a gzip member holding several
records, in proportion within a decompressed block: deflate maps no finer). What a gzip member
holds after its deflate stream breaks is out of reach: that tail counts as one record.

    corrupt_truncated       the file ends inside a record (its header block, its content, or its gzip
                            member), or a record is shorter than its Content-Length because its gzip
                            member stopped decompressing or ended first (a record split over two
                            members); also a gzip member cut before any record
    corrupt_record          bytes that are not a record (garbage between records, a gzip member that
                            is broken or holds no record), a record without Content-Length (its
                            header block mangled), a record whose gzip member fails its check or
                            stops decompressing after the record was read. Also a stray line after a
                            record's content (warcio skips it and goes on)
    corrupt_not_warc        no record anywhere in the file
    corrupt_empty           an empty file
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from stages.accounting import ShardStats
from stages.extract.classify import Dropped, HtmlPage
from stages.extract.fastwarc_reader import read_healthy
from stages.extract.warcio_reader import Damage, Outcome, read_one

__all__ = ["Dropped", "HtmlPage", "read_html_pages", "read_record_bytes"]


def read_html_pages(
    warc_path: str, stats: ShardStats, max_html_bytes: int, *, fast: bool = True
) -> Iterator[HtmlPage]:
    """Yield the HTML pages of a WARC or ARC file; count every other record and any damage in `stats`.

    `fast=False` reads every record with warcio: the reference the FastWARC reader is held to.
    """
    with open(warc_path, "rb") as stream:
        yield from _counted(_outcomes(stream, os.fstat(stream.fileno()).st_size, max_html_bytes, fast), stats)


def read_record_bytes(data: bytes, stats: ShardStats, max_html_bytes: int) -> Iterator[HtmlPage]:
    """The pages of WARC bytes held in memory (a record fetched by an HTTP range request), counted
    as `read_html_pages(fast=False)` counts the same bytes in a file: FastWARC reads only files."""
    yield from _counted(_outcomes(io.BytesIO(data), len(data), max_html_bytes, False), stats)


def _counted(outcomes: Iterator[Outcome], stats: ShardStats) -> Iterator[HtmlPage]:
    counted = 0
    for outcome in outcomes:
        if isinstance(outcome, HtmlPage):
            stats.docs_in += 1
            yield outcome
        elif isinstance(outcome, Damage):
            not_warc = not counted and _holds_no_record(outcome)
            stats.docs_in += outcome.records
            stats.drop("corrupt_not_warc" if not_warc else outcome.reason, outcome.records)
            stats.counters["bytes_skipped"] += outcome.skipped
        else:
            stats.docs_in += 1
            stats.drop(outcome)
        counted += 1
    if not counted:
        stats.docs_in += 1
        stats.drop("corrupt_empty")


def _holds_no_record(damage: Damage) -> bool:
    """A region to the end of the file with no record in it: from the file's start, no WARC."""
    return damage.to_end and damage.reason == "corrupt_record" and damage.records == 1


def _outcomes(stream: BinaryIO, size: int, max_html_bytes: int, fast: bool) -> Iterator[Outcome]:
    """Every record's page or drop reason, and every damaged region, in file order."""
    arc = _is_arc(stream)
    offset = 0
    while offset < size:
        if fast and not arc:  # FastWARC reads no ARC
            offset = yield from read_healthy(stream, offset, size, max_html_bytes)
            if offset >= size:
                break
        offset = yield from read_one(stream, offset, size, arc, max_html_bytes)


def _is_arc(stream: BinaryIO) -> bool:
    stream.seek(0)
    start = stream.read(1024)
    if start.startswith(b"\x1f\x8b"):
        try:
            start = zlib.decompressobj(31).decompress(start, 64)
        except zlib.error:
            return False
    return start.startswith(b"filedesc://")
