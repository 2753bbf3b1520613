"""WARC records to HTML pages, with every other record and every kind of damage counted.

Drop reasons of the records that are not pages, checked in this order:

    record_type_<type>      not a response: warcinfo, request, metadata, resource, revisit,
                            conversion, continuation (any other type: record_type_other)
    not_http                a response without HTTP headers (dns:, whois: records)
    http_status_<code>      HTTP status other than 200 (http_status_invalid when not 3 digits)
    not_html                Content-Type neither text/html nor application/xhtml+xml (without a
                            Content-Type the payload is sniffed for <html or <!doctype html)
    unsupported_encoding    a Content-Encoding other than gzip and deflate (br, zstd, ...)
    html_too_large          payload (after content and transfer decoding) over max_html_bytes
    empty_payload           payload empty or whitespace only

File damage never raises. Each piece of damage counts as one record (docs_in += 1) dropped under a
reason starting with `corrupt_` (a damaged record counts once, under that reason instead of its
own), and the documents read before it are kept:

    corrupt_truncated       a record shorter than its Content-Length (the file was cut, or a gzip
                            member stopped decompressing: warcio drops the rest silently), or bytes
                            left after the last record where warcio stopped quietly at a cut header
    corrupt_record          bytes after a good record that do not parse as a WARC record (garbage
                            between records, a gzip member broken from its start, a whole-file
                            gzip, which warcio refuses after the first record): reading stops
                            there. Also a record without Content-Length (its header block was cut
                            or mangled), and a stray line warcio skipped after a record (reading
                            goes on)
    corrupt_not_warc        the first record does not parse: not a WARC file (ARC is not read)
    corrupt_empty           an empty file

`date` is WARC-Date normalised to ISO 8601 UTC (`2008-04-30T20:48:25Z`), or kept verbatim when it
does not parse (ClueWeb09 has `2008-10-294T05:21:46-0700`).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator, WARCIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeadersParserException

from stages.accounting import ShardStats
from stages.extract.charset import content_type_charset

WARC_TYPES = {"warcinfo", "request", "metadata", "resource", "revisit", "conversion", "continuation"}
HTML_TYPES = {"text/html", "application/xhtml+xml"}
# warcio also lists br when the brotli package is installed (py7zr installs it), but its br reader
# fails with brotli 1.2 ("Decompressor object has no attribute unused_data"): only these are undone.
DECODABLE_ENCODINGS = {"gzip", "deflate"}
# What warcio raises on bytes that are not a WARC record. AttributeError: a request or response
# header block cut before its WARC-Target-URI (warcio calls None.startswith).
WARC_DAMAGE = (
    ArchiveLoadFailed, StatusAndHeadersParserException, EOFError, zlib.error, ValueError, AttributeError
)
HTML_MARKER = re.compile(rb"<(!doctype\s+html|html)[\s>]", re.IGNORECASE)


class Dropped(Exception):
    """A record leaves the shard for a named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class HtmlPage:
    offset: int
    url: str | None
    warc_record_id: str | None
    date: str | None
    body: bytes
    http_charset: str | None


def read_html_pages(warc_path: str, stats: ShardStats, max_html_bytes: int) -> Iterator[HtmlPage]:
    """Yield the HTML responses of a WARC file; count every other record and any damage in `stats`."""

    def count_damage(reason: str) -> None:
        stats.docs_in += 1
        stats.drop(reason)

    with open(warc_path, "rb") as stream:
        records = WARCIterator(stream)  # not ArchiveIterator: it reads any 5-word first line as ARC
        read = end = stray_lines = 0
        try:
            for record in records:
                page = _html_page(record, records, max_html_bytes)
                read += 1
                stats.docs_in += 1
                end = records.get_record_offset() + records.get_record_length()
                if records.err_count > stray_lines:  # warcio skipped a non-blank line after the record
                    stray_lines = records.err_count
                    count_damage("corrupt_record")
                if isinstance(page, HtmlPage):
                    yield page
                else:
                    stats.drop(page)
        except WARC_DAMAGE:
            count_damage("corrupt_record" if read else "corrupt_not_warc")
            return
        # warcio stops quietly (EOFError) when a file is cut inside a record's headers.
        if _has_data_after(stream, end):
            count_damage("corrupt_truncated")
        elif not read:
            count_damage("corrupt_empty")


def _html_page(record: ArcWarcRecord, records: ArchiveIterator, max_html_bytes: int) -> HtmlPage | str:
    """The record as an HtmlPage, or the reason it is not one. Leaves the record fully read."""
    try:
        content_type = _check_response(record)
        body = _read_body(record, content_type, max_html_bytes)
    except Dropped as dropped:
        reason = dropped.reason
    else:
        reason = None
    offset = records.get_record_offset()  # reads the rest of the record
    if record.length is None:
        return "corrupt_record"  # no Content-Length: a mangled header block, or one cut short
    if record.raw_stream.limit > 0:
        return "corrupt_truncated"  # the file ended before the record's Content-Length
    if reason:
        return reason
    return HtmlPage(
        offset=offset,
        url=record.rec_headers.get_header("WARC-Target-URI"),
        warc_record_id=record.rec_headers.get_header("WARC-Record-ID"),
        date=_iso_date(record.rec_headers.get_header("WARC-Date")),
        body=body,
        http_charset=content_type_charset(content_type),
    )


def _check_response(record: ArcWarcRecord) -> str:
    """Raise Dropped unless the record is a 200 HTTP response that may be HTML; return Content-Type."""
    if record.rec_type != "response":
        raise Dropped(f"record_type_{record.rec_type if record.rec_type in WARC_TYPES else 'other'}")
    http = record.http_headers
    if http is None:
        raise Dropped("not_http")
    status = http.get_statuscode()
    if status != "200":
        raise Dropped(f"http_status_{status if re.fullmatch(r'[1-5][0-9][0-9]', status) else 'invalid'}")
    content_type = http.get_header("Content-Type") or ""
    if content_type and content_type.split(";")[0].strip().lower() not in HTML_TYPES:
        raise Dropped("not_html")
    encoding = (http.get_header("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity" and encoding not in DECODABLE_ENCODINGS:
        raise Dropped("unsupported_encoding")
    return content_type


def _read_body(record: ArcWarcRecord, content_type: str, max_html_bytes: int) -> bytes:
    body = record.content_stream().read(max_html_bytes + 1)  # undoes chunking and gzip/deflate
    if len(body) > max_html_bytes:
        raise Dropped("html_too_large")
    if not body.strip():
        raise Dropped("empty_payload")
    if not content_type and not HTML_MARKER.search(body[:1024]):
        raise Dropped("not_html")
    return body


def _has_data_after(stream: BinaryIO, offset: int) -> bool:
    stream.seek(offset)
    while chunk := stream.read(1 << 16):
        if chunk.strip():
            return True
    return False




def _iso_date(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return raw
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")
