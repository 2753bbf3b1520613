"""What a record is to the extract stage: a page, or the reason it is not one (rules in
`stages.extract.records`). Both readers hand their records over as a `Record`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from warcio.bufferedreaders import BufferedReader, ChunkedDataReader

from stages.extract.charset import content_type_charset
from stages.extract.http_head import HttpHead

WARC_TYPES = {"warcinfo", "request", "metadata", "resource", "revisit", "conversion", "continuation"}
HTML_TYPES = {"text/html", "application/xhtml+xml"}
HTTP_SCHEMES = ("http:", "https:")
PAGE_TYPES = ("response", "resource")  # the other types are counted by their type alone
# warcio also lists br when the brotli package is installed (py7zr installs it), but its br reader
# fails with brotli 1.2 ("Decompressor object has no attribute unused_data"): only these are undone.
DECODABLE_ENCODINGS = {"gzip", "deflate"}
HTML_MARKER = re.compile(rb"<(!doctype\s+html|html)[\s>]", re.IGNORECASE)


class Dropped(Exception):
    """A record leaves the shard for a named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class HtmlPage:
    """`offset`: the record's byte offset in the file, its gzip member's; `offset_in_member`: for a
    record after the first in a gzip member, how far into the member's bytes it starts."""

    offset: int
    url: str | None
    warc_record_id: str | None
    date: str | None
    body: bytes
    http_charset: str | None
    offset_in_member: int = 0


@dataclass
class Record:
    """A record as both readers give it: WARC header fields (`content_type` is the WARC one), HTTP
    headers (None without an HTTP envelope) and `block`, the record's bytes after them."""

    rec_type: str | None
    url: str | None
    record_id: str | None
    date: str | None
    content_type: str | None
    http: HttpHead | None
    block: BinaryIO


def classify(
    record: Record, offset: int, max_html_bytes: int, offset_in_member: int = 0
) -> HtmlPage | str:
    """The record as an HtmlPage, or the reason it is not one. May leave the record partly read."""
    try:
        if record.rec_type == "resource" and _is_html_resource(record):
            content_type = record.content_type
            body = _read_body(record.block, content_type, max_html_bytes)
        else:
            content_type = _check_response(record)
            body = _read_body(_content_stream(record), content_type, max_html_bytes)
    except Dropped as dropped:
        return dropped.reason
    return HtmlPage(
        offset=offset,
        url=record.url,
        warc_record_id=record.record_id,
        date=_iso_date(record.date),
        body=body,
        http_charset=content_type_charset(content_type),
        offset_in_member=offset_in_member,
    )


def _is_html_resource(record: Record) -> bool:
    media_type = (record.content_type or "").split(";")[0].strip().lower()
    return media_type in HTML_TYPES and (record.url or "").startswith(HTTP_SCHEMES)


def type_reason(rec_type: str | None) -> str:
    return f"record_type_{rec_type if rec_type in WARC_TYPES else 'other'}"


def _check_response(record: Record) -> str:
    """Raise Dropped unless the record is a 200 HTTP response that may be HTML; return Content-Type."""
    if record.rec_type != "response":
        raise Dropped(type_reason(record.rec_type))
    http = record.http
    if http is None:
        raise Dropped("not_http")
    status = http.status
    if status != "200":
        raise Dropped(f"http_status_{status if re.fullmatch(r'[1-5][0-9][0-9]', status) else 'invalid'}")
    content_type = http.content_type or ""
    if content_type and content_type.split(";")[0].strip().lower() not in HTML_TYPES:
        raise Dropped("not_html")
    encoding = (http.content_encoding or "identity").strip().lower()
    if encoding != "identity" and encoding not in DECODABLE_ENCODINGS:
        raise Dropped("unsupported_encoding")
    return content_type


def _content_stream(record: Record) -> BinaryIO:
    """The payload with chunking and gzip/deflate undone: warcio's ArcWarcRecord.content_stream."""
    encoding = record.http.content_encoding
    if encoding:
        encoding = encoding.lower()
        if encoding not in BufferedReader.get_supported_decompressors():
            encoding = None
    if record.http.transfer_encoding == "chunked":
        return ChunkedDataReader(record.block, decomp_type=encoding)
    if encoding:
        return BufferedReader(record.block, decomp_type=encoding)
    return record.block


def _read_body(stream: BinaryIO, content_type: str, max_html_bytes: int) -> bytes:
    body = stream.read(max_html_bytes + 1)
    if len(body) > max_html_bytes:
        raise Dropped("html_too_large")
    if not body or body.isspace():
        raise Dropped("empty_payload")
    if not content_type and not HTML_MARKER.search(body[:1024]):
        raise Dropped("not_html")
    return body


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
