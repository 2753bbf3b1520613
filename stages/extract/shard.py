"""One WARC file in, one parquet shard of web documents out: read, decode, extract, write.

Drop reasons after a record became a page (see `stages.extract.records` for those before):

    undecodable             no charset decodes it (HTTP charset, <meta> charset, UTF-8, detection;
                            the declared charset with errors replaced if under 1% of characters)
    extraction_timeout      decoding + extraction took more than timeout_s of CPU time
    extraction_error        the extractor raised
    no_text_extracted       the extractor found no main text
    text_too_short          extracted text shorter than min_text_chars

Document fields: `id` is a 24-hex BLAKE2b digest of source, WARC file name and the record's byte
offset in the file (with its offset in its gzip member when a member holds several records), so
it is stable across runs and unique as long as WARC file names are unique within a source (Common
Crawl's are); `url` is WARC-Target-URI; `date` is WARC-Date in UTC.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from stages.accounting import ShardStats
from stages.documents import WEB_DOCUMENT_SCHEMA, write_documents
from stages.extract.charset import decode_html
from stages.extract.extractors import Extractor, make_extractor
from stages.extract.limits import ExtractionTimeout, cpu_time_limit
from stages.extract.records import Dropped, HtmlPage, read_html_pages

PROGRESS_EVERY_S = 2.0
# Called with the shard's running (records read, documents written, bytes of the file read).
Progress = Callable[[int, int, int], None]


def extract_warc(
    warc_path: str,
    output_path: str,
    *,
    source: str = "common_crawl",
    extractor: str = "trafilatura",
    clean: bool = True,
    min_text_chars: int = 1,
    max_html_bytes: int = 5_000_000,
    timeout_s: float = 5.0,
    progress: Progress | None = None,
) -> ShardStats:
    """Extract the main text of the HTML responses in `warc_path` into a parquet shard.

    `clean` passes the text through `stages.extract.cleaning`; `timeout_s` bounds the CPU time of decoding plus extraction of one page (0 for no limit).
    """
    stats = ShardStats()
    to_text = make_extractor(extractor, clean=clean)
    report = progress or _printer(Path(warc_path).name, os.path.getsize(warc_path))
    pages = _reporting_progress(read_html_pages(warc_path, stats, max_html_bytes), stats, report)
    id_prefix = f"{source}\0{Path(warc_path).name}\0"
    documents = (
        {
            "id": _digest(id_prefix + _place(page)),
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


def _reporting_progress(pages: Iterator[HtmlPage], stats: ShardStats, report: Progress) -> Iterator[HtmlPage]:
    """Pass `pages` through, reporting the shard's counts every PROGRESS_EVERY_S seconds: a Common
    Crawl WARC takes minutes, and the driver otherwise hears nothing until the shard is done."""
    last = time.monotonic()
    for page in pages:
        yield page
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            report(stats.docs_in, stats.docs_out, page.offset)


def _printer(name: str, size: int) -> Progress:
    started = time.monotonic()

    def report(records: int, documents: int, bytes_read: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        print(
            f"extract {name}: {records:,} records read, {documents:,} documents, "
            f"{bytes_read / 1e6:,.1f} of {size / 1e6:,.1f} MB ({bytes_read / 1e6 / elapsed:,.1f} MB/s, "
            f"{elapsed:,.0f}s)",
            flush=True,
        )

    return report


def _page_texts(
    pages: Iterator[HtmlPage], stats: ShardStats, to_text: Extractor, timeout_s: float, min_text_chars: int
) -> Iterator[tuple[HtmlPage, str]]:
    for page in pages:
        try:
            text = page_text(page, to_text, timeout_s)
            if len(text) < min_text_chars:
                raise Dropped("text_too_short")
        except Dropped as dropped:
            stats.drop(dropped.reason)
            continue
        stats.docs_out += 1
        yield page, text


def page_text(page: HtmlPage, to_text: Extractor, timeout_s: float) -> str:
    """The page's main text, decoded and extracted within `timeout_s` of CPU time, or Dropped with
    the reason (`undecodable`, `extraction_timeout`, `extraction_error`, `no_text_extracted`)."""
    try:
        with cpu_time_limit(timeout_s):
            html = decode_html(page.body, page.http_charset)
            if html is None:
                raise Dropped("undecodable")
            text = to_text(html)
    except ExtractionTimeout:
        raise Dropped("extraction_timeout") from None
    except Dropped:
        raise
    except Exception:  # extractors and lxml raise many kinds on hostile HTML
        raise Dropped("extraction_error") from None
    if not text or not text.strip():
        raise Dropped("no_text_extracted")
    return text.strip()


def _place(page: HtmlPage) -> str:
    """The record's place in its file: its offset, and for a record after the first of a gzip
    member (a whole-file gzip) how far into the member it starts."""
    return f"{page.offset}+{page.offset_in_member}" if page.offset_in_member else str(page.offset)


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()
