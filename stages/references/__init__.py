"""The pages Wikipedia cites, fetched from a crawl: the quality classifier's positives, as LLaMA's.

    cdx      the crawl index client (Common Crawl's CDX server protocol; pywb's is the same)
    fetch    HTTP: retries with backoff, per-host politeness, timeouts, range reads of records
    shard    the stage itself: sample the cited URLs, look up, fetch, extract as the extract stage does
"""

from stages.references.cdx import IndexUnreachable
from stages.references.shard import PAGES_FILE, REFERENCE_PAGE_SCHEMA, SOURCE, URLS_FILE, fetch_reference_pages

__all__ = ["PAGES_FILE", "REFERENCE_PAGE_SCHEMA", "SOURCE", "URLS_FILE", "IndexUnreachable", "fetch_reference_pages"]
