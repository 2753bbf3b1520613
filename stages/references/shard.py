"""The reference_pages stage: the pages Wikipedia cites, fetched from a crawl, as LLaMA took its
quality classifier's positives.

An ordinary crawl sample holds few of the pages Wikipedia cites, so they are looked up in a crawl's
CDX index (`cdx`) and their records fetched by range request (`fetch`): a deterministic sample of
at most `max_urls` of the distinct cited URLs (the first by sha1(seed, normalised URL), so a rerun
asks for the same ones), written to `reference_urls.txt`. Each record becomes a page and its text
exactly as the extract stage makes them (`stages.extract`: the same record rules, charset
decoding, extractor, cleaning and CPU-time limit), so that the classifier's positives are cleaned as
the crawl pages it will score are.

Requests run on `concurrency` threads, a window of twice that many URLs ahead, and the pages are
extracted on the calling thread in URL order: the output does not depend on timing, memory holds
only the window's records, and the CPU-time limit (a signal, main thread only) applies.

Every URL looked up is a document in (docs_in) that is written (docs_out) or dropped for one reason:

    not_in_index            the index has no capture of it
    index_lookup_failed     the index gave no usable answer after retries
    http_status_<code>      its best capture is not a 200 (a redirect, a 404): not fetched
    record_type_revisit     its best capture is a revisit record (no payload of its own): not fetched
    not_html                the capture's type is not HTML (from the index, or from the record)
    fetch_failed            the record could not be fetched (after retries; counters say why)
    corrupt_record          the fetched bytes are not exactly one record
    (the extract stage's)   any other record reason (`stages.extract.records`), undecodable,
                            extraction_timeout, extraction_error, no_text_extracted, text_too_short

Counters: reference_urls (distinct cited URLs), urls_not_sampled (over max_urls), and the HTTP
client's index_requests, fetch_requests, retries and <kind>_failed_<cause>. At the default pace a
run takes hours, so `progress` hears the running counts every PROGRESS_EVERY_S, with the share of
URLs done given as that share of the input's bytes (the driver's ETA is by bytes).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import pyarrow as pa

from stages.accounting import ShardStats
from stages.documents import WEB_DOCUMENT_SCHEMA, DroppedDocuments, ShardWriter, atomic_dir, schema_with
from stages.extract import Dropped, HtmlPage, make_extractor, page_text, read_record_bytes
from stages.extract.extractors import Extractor
from stages.quality_classifier import _reference_urls, _sample_key
from stages.references.cdx import Capture, CdxIndex, best_capture
from stages.references.fetch import FetchFailed, HttpClient, fetch_range
from stages.wikipedia import original_url

SOURCE = "wikipedia_references"
PAGES_FILE = "pages.parquet"
URLS_FILE = "reference_urls.txt"
REFERENCE_PAGE_SCHEMA = schema_with(WEB_DOCUMENT_SCHEMA, pa.field("cited_url", pa.string(), nullable=False))
COMMON_CRAWL_DATA = "https://data.commoncrawl.org/"
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class Found:
    """What the threads found for one URL: its best capture and record bytes, or why not."""

    capture: Capture | None
    record: bytes | None
    reason: str | None


def sample_reference_urls(references_paths: list[str], max_urls: int, seed: int) -> tuple[int, list[str]]:
    """(distinct cited URLs, at most `max_urls` of them to look up, sorted): the first by
    sha1(seed, normalised URL), each as its article first wrote it, unwrapped from the Wayback Machine."""
    cited = _reference_urls(references_paths)
    chosen = sorted(cited, key=lambda normalised: _sample_key(seed, normalised))[:max_urls]
    return len(cited), sorted(original_url(cited[normalised]) for normalised in chosen)


def fetch_reference_pages(
    references_paths: list[str],
    output_dir: str,
    *,
    index: str,
    warc_prefix: str = COMMON_CRAWL_DATA,
    max_urls: int = 10_000,
    seed: int = 0,
    concurrency: int = 4,
    retries: int = 3,
    backoff_s: float = 1.0,
    per_host_interval_s: float = 0.5,
    timeout_s: float = 30.0,
    min_text_chars: int = 200,
    extractor: str = "trafilatura",
    clean: bool = True,
    max_html_bytes: int = 5_000_000,
    cpu_timeout_s: float = 5.0,
    dropped_path: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> ShardStats:
    """Write `output_dir/` (all or nothing) with `reference_urls.txt` and `pages.parquet`: the
    fetched pages as web documents (`source` wikipedia_references) with the `cited_url` they were
    looked up by. Raises IndexUnreachable before any lookup when the index does not answer."""
    stats = ShardStats()
    total, urls = sample_reference_urls(references_paths, max_urls, seed)
    stats.counters.update(reference_urls=total, urls_not_sampled=total - len(urls))
    client = HttpClient(retries=retries, backoff_s=backoff_s, per_host_interval_s=per_host_interval_s,
                        timeout_s=timeout_s)
    crawl = CdxIndex(index, client)
    to_text = make_extractor(extractor, clean=clean)

    def find(url: str) -> Found:
        try:
            capture = best_capture(crawl.lookup(url))
        except FetchFailed:
            return Found(None, None, "index_lookup_failed")
        if capture is None:
            return Found(None, None, "not_in_index")
        reason = capture.reason_not_to_fetch()
        if reason:
            return Found(capture, None, reason)
        try:
            return Found(capture, fetch_range(client, warc_prefix + capture.filename, capture.offset, capture.length),
                         None)
        except FetchFailed:
            return Found(capture, None, "fetch_failed")

    with atomic_dir(output_dir) as tmp:
        (tmp / URLS_FILE).write_text("".join(f"{url}\n" for url in urls), encoding="utf-8")
        if urls:
            crawl.preflight(urls[0])
        with ShardWriter(tmp / PAGES_FILE, REFERENCE_PAGE_SCHEMA) as pages, \
                DroppedDocuments(dropped_path, REFERENCE_PAGE_SCHEMA) as dropped:
            input_bytes, reported = sum(os.path.getsize(p) for p in references_paths), time.monotonic()
            for url, found in _in_order(urls, find, concurrency):
                if progress and time.monotonic() - reported >= PROGRESS_EVERY_S:
                    progress(stats.docs_in, stats.docs_out, input_bytes * stats.docs_in // len(urls))
                    reported = time.monotonic()
                stats.docs_in += 1
                doc = _document(url, found.capture)
                try:
                    page, text = _page(found, to_text, min_text_chars, max_html_bytes, cpu_timeout_s)
                except Dropped as drop:
                    stats.drop(drop.reason)
                    dropped.add(doc, drop.reason)
                    continue
                pages.write({**doc, "url": page.url, "warc_record_id": page.warc_record_id, "date": page.date,
                             "text": text})
                stats.docs_out += 1
        stats.bytes_out = pages.bytes_written
    stats.counters.update(client.counters)
    return stats.check()


def _in_order(urls: list[str], find: Callable[[str], Found], concurrency: int) -> Iterator[tuple[str, Found]]:
    """(url, find(url)) in the order of `urls`, found on `concurrency` threads, 2 x concurrency ahead."""
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="reference_pages")
    queue = iter(urls)
    pending = deque((url, pool.submit(find, url)) for url in islice(queue, 2 * concurrency))
    try:
        while pending:
            url, future = pending.popleft()
            yield url, future.result()
            for following in islice(queue, 1):
                pending.append((following, pool.submit(find, following)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _page(found: Found, to_text: Extractor, min_text_chars: int, max_html_bytes: int,
          cpu_timeout_s: float) -> tuple[HtmlPage, str]:
    """The record's page and main text, as the extract stage makes them, or Dropped."""
    if found.reason:
        raise Dropped(found.reason)
    records = ShardStats()
    pages = list(read_record_bytes(found.record, records, max_html_bytes))
    if records.docs_in != 1:
        raise Dropped("corrupt_record")
    if not pages:
        raise Dropped(next(iter(records.dropped)))
    text = page_text(pages[0], to_text, cpu_timeout_s)
    if len(text) < min_text_chars:
        raise Dropped("text_too_short")
    return pages[0], text


def _document(cited_url: str, capture: Capture | None) -> dict:
    """A URL's row before its page is known: what a dropped URL is recorded as."""
    return {
        "id": hashlib.blake2b(f"{SOURCE}\0{cited_url}".encode(), digest_size=12).hexdigest(),
        "source": SOURCE,
        "url": capture.url if capture else None,
        "warc_record_id": None,
        "date": None,
        "text": "",
        "cited_url": cited_url,
    }
