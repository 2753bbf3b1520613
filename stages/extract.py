"""WARC to text: one WARC file in, one parquet shard of web documents out.

Every WARC record read is one `docs_in`; it either becomes a document or is dropped for one of
these reasons (checked in this order):

    record_type_<type>      not a response: warcinfo, request, metadata, resource, revisit,
                            conversion, continuation (any other type: record_type_other)
    not_http                a response without HTTP headers (dns:, whois: records)
    http_status_<code>      HTTP status other than 200 (http_status_invalid when not 3 digits)
    not_html                Content-Type neither text/html nor application/xhtml+xml (without a
                            Content-Type the payload is sniffed for <html or <!doctype html)
    unsupported_encoding    a Content-Encoding other than gzip and deflate (br, zstd, ...)
    html_too_large          payload (after content and transfer decoding) over max_html_bytes
    empty_payload           payload empty or whitespace only
    undecodable             no charset decodes it (HTTP charset, <meta> charset, UTF-8, detection;
                            the declared charset with errors replaced if under 1% of characters)
    extraction_timeout      decoding + trafilatura took longer than timeout_s
    extraction_error        trafilatura raised
    no_text_extracted       trafilatura found no main text
    text_too_short          extracted text shorter than min_text_chars

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

Document fields: `id` is a 24-hex BLAKE2b digest of source, WARC file name and the record's byte
offset in the file, so it is stable across runs and unique as long as WARC file names are unique
within a source (Common Crawl's are); `url` is WARC-Target-URI; `date` is WARC-Date normalised to
ISO 8601 UTC (`2008-04-30T20:48:25Z`), or kept verbatim when it does not parse (ClueWeb09 has
`2008-10-294T05:21:46-0700`).

Extraction settings: trafilatura 2.3.1's full cascade (`fast=False`: its own extractor, then
readability/jusText comparison, baseline rescue, recall retry), comments excluded, tables kept.
Measured by `bench/extract_settings.py` on the 257 HTML pages of samples/warc, one core, CPU time
(full table and rationale in bench/README.md, "Extraction settings"):

    settings            docs/s  (pages <= 100k chars)  chars vs default  pages < half of default
    default               38.1   90.3                    +0.0%            0.0%
    fast                  39.7  128.4                   -49.2%            6.2%
    favor_precision       42.0  108.3                    -2.7%            8.6%
    favor_recall          48.1  143.5                    -1.3%            3.9%
    no comments (chosen)  37.0   87.5                    -4.5%            0.8%
    no tables             27.4   80.9                   -50.0%            7.8%

`fast` and both `favor_*` modes gain at most 1.6x but lose most of the text of 4-9% of the pages:
on table-layout pages (archive.org, 2008) they return the navigation bar instead of the article or
the forum listing. Comments are readers' chatter ("Liked by 21 people", pingbacks) outside the main
text, as datatrove/FineWeb also exclude them; tables carry real content.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

import charset_normalizer
import trafilatura
from warcio.archiveiterator import ArchiveIterator, WARCIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeadersParserException

from stages.accounting import ShardStats
from stages.documents import WEB_DOCUMENT_SCHEMA, write_documents

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
MAX_REPLACED_SHARE = 0.01
PROGRESS_EVERY_S = 30.0
CHARSET_SNIFF_BYTES = 4096

# Browsers decode these labels as the superset encoding; pages declaring the subset rely on it.
CHARSET_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}
CONTENT_TYPE_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([a-z0-9_:.+-]+)", re.IGNORECASE)
HTML_MARKER = re.compile(rb"<(!doctype\s+html|html)[\s>]", re.IGNORECASE)


class Dropped(Exception):
    """A record leaves the shard for a named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ExtractionTimeout(BaseException):
    """Raised by SIGALRM. A BaseException, so that `except Exception` inside lxml or trafilatura
    cannot swallow it and let the pathological page run on."""


@dataclass(frozen=True)
class HtmlPage:
    offset: int
    url: str | None
    warc_record_id: str | None
    date: str | None
    body: bytes
    http_charset: str | None


def extract_warc(
    warc_path: str,
    output_path: str,
    *,
    source: str = "common_crawl",
    min_text_chars: int = 1,
    max_html_bytes: int = 5_000_000,
    timeout_s: float = 5.0,
    fast: bool = False,
    favor_precision: bool = False,
    favor_recall: bool = False,
    include_comments: bool = False,
    include_tables: bool = True,
) -> ShardStats:
    """Extract the main text of the HTML responses in `warc_path` into a parquet shard.

    The trafilatura keyword arguments are passed to `trafilatura.extract`; `timeout_s` bounds
    decoding plus extraction of one page (0 for no limit).
    """
    stats = ShardStats()
    to_text = partial(
        trafilatura.extract,
        fast=fast,
        favor_precision=favor_precision,
        favor_recall=favor_recall,
        include_comments=include_comments,
        include_tables=include_tables,
    )
    pages = _reporting_progress(read_html_pages(warc_path, stats, max_html_bytes), stats, Path(warc_path).name)
    id_prefix = f"{source}\0{Path(warc_path).name}\0"
    documents = (
        {
            "id": _digest(id_prefix + str(page.offset)),
            "source": source,
            "url": page.url,
            "warc_record_id": page.warc_record_id,
            "date": page.date,
            "text": text,
        }
        for page, text in _page_texts(pages, stats, to_text, timeout_s, min_text_chars)
    )
    stats.bytes_out = write_documents(output_path, documents, WEB_DOCUMENT_SCHEMA)
    return stats.check()


def _reporting_progress(pages: Iterator[HtmlPage], stats: ShardStats, name: str) -> Iterator[HtmlPage]:
    """Pass `pages` through, printing the shard's counts every PROGRESS_EVERY_S seconds: a Common
    Crawl WARC takes minutes, and the driver otherwise hears nothing until the shard is done."""
    started = last = time.monotonic()
    for page in pages:
        yield page
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            print(
                f"extract {name}: {stats.docs_in:,} records read, {stats.docs_out:,} documents "
                f"({last - started:,.0f}s)",
                flush=True,
            )


def _page_texts(
    pages: Iterator[HtmlPage],
    stats: ShardStats,
    to_text: Callable[[str], str | None],
    timeout_s: float,
    min_text_chars: int,
) -> Iterator[tuple[HtmlPage, str]]:
    for page in pages:
        try:
            text = _extract_text(page, to_text, timeout_s)
            if len(text) < min_text_chars:
                raise Dropped("text_too_short")
        except Dropped as dropped:
            stats.drop(dropped.reason)
            continue
        stats.docs_out += 1
        yield page, text


def _extract_text(page: HtmlPage, to_text: Callable[[str], str | None], timeout_s: float) -> str:
    try:
        with _time_limit(timeout_s):
            html = decode_html(page.body, page.http_charset)
            if html is None:
                raise Dropped("undecodable")
            text = to_text(html)
    except ExtractionTimeout:
        raise Dropped("extraction_timeout") from None
    except Dropped:
        raise
    except Exception:  # trafilatura and lxml raise many kinds on hostile HTML
        raise Dropped("extraction_error") from None
    if not text or not text.strip():
        raise Dropped("no_text_extracted")
    return text.strip()


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ExtractionTimeout inside the block after `seconds` of wall time.

    A thread cannot be interrupted from outside, but the main thread can be by a signal, and Ray
    runs tasks on the worker's main thread. Elsewhere (signal handlers can only be installed from
    the main thread) the block runs unlimited and max_html_bytes is the only bound. The handler
    runs between Python bytecodes, so a single long lxml call finishes before it fires.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def _raise_timeout(signum, frame):
    raise ExtractionTimeout


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
        http_charset=_content_type_charset(content_type),
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


def decode_html(body: bytes, http_charset: str | None) -> str | None:
    """Decode with the HTTP charset, then the <meta> charset, then UTF-8, then detection."""
    declared = [c for c in (_codec(http_charset), _codec(_meta_charset(body), from_meta=True)) if c]
    for codec in dict.fromkeys([*declared, "utf-8"]):
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            pass
    guess = charset_normalizer.from_bytes(body).best()
    if guess is not None:
        return str(guess)
    if declared:  # mostly right with a few bad bytes: what a browser would show
        text = body.decode(declared[0], errors="replace")
        if text.count("\ufffd") <= MAX_REPLACED_SHARE * len(text):
            return text
    return None


def _content_type_charset(content_type: str) -> str | None:
    match = CONTENT_TYPE_CHARSET.search(content_type)
    return match.group(1) if match else None


def _meta_charset(body: bytes) -> str | None:
    match = META_CHARSET.search(body[:CHARSET_SNIFF_BYTES])
    return match.group(1).decode("ascii") if match else None


def _codec(label: str | None, from_meta: bool = False) -> str | None:
    """Python's codec for a charset label, or None for an unknown or non-text one."""
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
        b"".decode(name)  # rejects bytes-to-bytes codecs such as base64
    except (LookupError, ValueError):
        return None
    # A page that reached us as bytes through a <meta> cannot really be UTF-16 (HTML spec).
    if from_meta and name.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return CHARSET_SUPERSETS.get(name, name)


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


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()
