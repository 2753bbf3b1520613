"""The crawl index: where, if anywhere, a crawl holds a capture of a URL.

Common Crawl's index server speaks the CDX protocol of the pywb/OpenWayback family:
`GET <index>?url=<url>&output=json` answers one JSON object a line, one per capture, with `urlkey`
(the SURT form, so http/https and `www.` match alike), `timestamp`, `url`, `mime` (the HTTP
Content-Type), `status`, `digest`, and where the record lies: `filename` (relative to the data
server), `offset` and `length` of its gzip member. No capture is a 404 (Common Crawl) or an empty
body (pywb, which serves the same API at `/<collection>/cdx`).

One URL may be captured several times in a crawl (a redirect, then the page; a revisit of an
unchanged page): the best capture is the 200, then the HTML one, then the latest. Whether the
best is worth fetching is decided here from the index alone, with the extract stage's reasons, so
that no request is spent on a redirect or an image.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from stages.extract.classify import HTML_TYPES
from stages.references.fetch import FetchFailed, HttpClient

MAX_INDEX_BYTES = 10_000_000  # a URL's captures in one crawl: a few hundred bytes each
UNKNOWN_MIME = {"", "-", "unk", "application/octet-stream"}  # the extract stage sniffs these
REVISIT_MIME = "warc/revisit"


class IndexUnreachable(RuntimeError):
    """The crawl index does not answer as a CDX server should: the stage stops before its first URL."""


@dataclass(frozen=True)
class Capture:
    url: str
    timestamp: str
    mime: str
    status: str
    filename: str
    offset: int
    length: int

    @classmethod
    def of(cls, line: dict) -> Capture:
        return cls(url=line.get("url") or "", timestamp=str(line.get("timestamp") or ""),
                   mime=(line.get("mime") or "").split(";")[0].strip().lower(), status=str(line.get("status") or ""),
                   filename=line["filename"], offset=int(line["offset"]), length=int(line["length"]))

    def reason_not_to_fetch(self) -> str | None:
        """The extract stage's drop reason for this capture, when the index already tells it."""
        if self.mime == REVISIT_MIME:
            return "record_type_revisit"
        if self.status != "200":
            return f"http_status_{self.status if re.fullmatch(r'[1-5][0-9][0-9]', self.status) else 'invalid'}"
        if self.mime not in HTML_TYPES and self.mime not in UNKNOWN_MIME:
            return "not_html"
        return None


def parse_captures(body: bytes) -> list[Capture]:
    """The captures in a CDX JSON-lines answer; lines without a record location are skipped."""
    captures = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        try:
            captures.append(Capture.of(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return captures


def best_capture(captures: list[Capture]) -> Capture | None:
    """The capture of status 200, then of an HTML type, then the latest; None for none."""
    return max(captures, key=lambda c: (c.status == "200", c.mime in HTML_TYPES, c.timestamp), default=None)


class CdxIndex:
    def __init__(self, endpoint: str, client: HttpClient):
        self.endpoint = endpoint
        self._client = client

    def query(self, url: str) -> str:
        joiner = "&" if "?" in self.endpoint else "?"
        return f"{self.endpoint}{joiner}{urlencode({'url': url, 'output': 'json'})}"

    def lookup(self, url: str, *, retry_connection_errors: bool = True) -> list[Capture]:
        """Every capture of `url` the index lists ([] for none); FetchFailed when it cannot say."""
        response = self._client.get(self.query(url), kind="index", max_bytes=MAX_INDEX_BYTES,
                                    retry_connection_errors=retry_connection_errors)
        if response.status == 404:
            return []
        if response.status != 200:
            raise self._failed(f"http_{response.status}", f"{self.query(url)}: HTTP {response.status}")
        if len(response.body) > MAX_INDEX_BYTES:
            raise self._failed("too_large", f"{self.query(url)}: over {MAX_INDEX_BYTES:,} bytes of captures")
        captures = parse_captures(response.body)
        if response.body.strip() and not captures:
            raise self._failed("not_cdx", f"{self.query(url)}: the answer is not CDX JSON lines")
        return captures

    def _failed(self, cause: str, message: str) -> FetchFailed:
        self._client.count(f"index_failed_{cause}")
        return FetchFailed(cause, message)

    def preflight(self, url: str) -> None:
        """Look `url` up once before the stage starts, so that an index that is not there (offline,
        a typo, a closed port) stops the stage at once instead of failing every URL after retries.
        A server that answers 5xx or 429 is retried as always: it is there, only busy."""
        try:
            self.lookup(url, retry_connection_errors=False)
        except FetchFailed as failure:
            raise IndexUnreachable(
                f"cannot reach the crawl index {self.endpoint} ({failure}): set stages.reference_pages.index "
                "to a CDX server you can reach, or null to train on Wikipedia articles"
            ) from None
