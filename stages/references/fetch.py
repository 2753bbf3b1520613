"""HTTP for the reference fetcher: retries with backoff, a per-host politeness limit, timeouts,
and byte-range reads of single WARC records.

Common Crawl serves its index (index.commoncrawl.org) and its data (data.commoncrawl.org) to
everyone from shared servers, which answer 503 or 429 when they are overloaded, and ask crawlers of
the index to go slowly. So every request waits for its host's turn: at most one request starts per
`per_host_interval_s` on any one host (host and port), whichever thread sends it; the index and
the data hosts are paced separately. What may pass is retried (connection errors, timeouts, 5xx,
429) after `backoff_s * 2**attempt`, or after the server's Retry-After when it gives one (capped
at MAX_RETRY_AFTER_S); any other status is an answer and is returned as it is (a 404 from the
index means "not captured"). The standard library's urllib is enough: one connection per request
costs little at these rates, and nothing here needs a dependency.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

MAX_RETRY_AFTER_S = 60.0
USER_AGENT = "llama-data-pipeline reference_pages (Wikipedia-cited pages for a quality classifier)"


class FetchFailed(Exception):
    """A request that got no usable answer; `cause` is a short tag for the manifest's counters
    (`http_404`, `timeout`, `connection`, `range_ignored`, ...), the message says more."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes  # at most max_bytes + 1 bytes, so that the caller sees a body longer than expected


class Pacer:
    """At most one request start per `interval_s` on each host, shared by every thread."""

    def __init__(self, interval_s: float):
        self._interval = interval_s
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def wait(self, host: str) -> None:
        if self._interval <= 0:
            return
        with self._lock:  # reserve the host's next slot, then sleep without holding the lock
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + self._interval
        if start > now:
            time.sleep(start - now)


class HttpClient:
    """GET with retries and politeness; `counters` tallies `<kind>_requests` (every attempt),
    `retries`, and `<kind>_failed_<cause>` for requests that failed for good."""

    def __init__(self, *, retries: int, backoff_s: float, per_host_interval_s: float, timeout_s: float):
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.counters: Counter = Counter()
        self._pacer = Pacer(per_host_interval_s)
        self._lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def get(self, url: str, *, kind: str, max_bytes: int, headers: dict[str, str] | None = None,
            retry_connection_errors: bool = True) -> Response:
        """The first answer that is not 429 or 5xx; FetchFailed when every attempt failed.
        `retry_connection_errors=False` gives up at once on a refused connection or an unknown
        host (not on a timeout): nothing listens there, and waiting will not change that."""
        host = urlsplit(url).netloc
        delay = 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                self.count("retries")
                time.sleep(delay)
            self._pacer.wait(host)
            self.count(f"{kind}_requests")
            try:
                response = self._once(url, headers or {}, max_bytes)
            except (OSError, http.client.HTTPException) as exc:
                timeout = _is_timeout(exc)
                failure = FetchFailed("timeout" if timeout else "connection", f"{url}: {_describe(exc)}")
                if not (retry_connection_errors or timeout):
                    break
                delay = self.backoff_s * 2**attempt
                continue
            if response.status != 429 and response.status < 500:
                return response
            failure = FetchFailed(f"http_{response.status}", f"{url}: HTTP {response.status}")
            retry_after = _retry_after(response.headers)
            delay = self.backoff_s * 2**attempt if retry_after is None else retry_after
        self.count(f"{kind}_failed_{failure.cause}")
        raise failure

    def _once(self, url: str, headers: dict[str, str], max_bytes: int) -> Response:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return Response(answer.status, answer.headers, answer.read(max_bytes + 1))
        except urllib.error.HTTPError as error:  # a status urllib does not pass: an answer all the same
            with error:
                return Response(error.code, error.headers, b"")


def fetch_range(client: HttpClient, url: str, offset: int, length: int) -> bytes:
    """Bytes offset .. offset+length-1 of `url` by an HTTP range request: a 206 whose Content-Range
    starts at `offset` and whose body is `length` bytes, or FetchFailed. A server that ignores the
    range (200) is not read on: a Common Crawl WARC file is a gigabyte."""
    end = offset + length - 1
    response = client.get(url, kind="fetch", max_bytes=length, headers={"Range": f"bytes={offset}-{end}"})
    if response.status != 206:
        cause = "range_ignored" if response.status == 200 else f"http_{response.status}"
        failure = FetchFailed(cause, f"{url}: HTTP {response.status} to a range request (expected 206)")
    elif not (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-{end}/"):
        failure = FetchFailed("bad_range", f"{url}: Content-Range {response.headers.get('Content-Range')!r}")
    elif len(response.body) != length:
        failure = FetchFailed("bad_length", f"{url}: {len(response.body)} bytes, expected {length}")
    else:
        return response.body
    client.count(f"fetch_failed_{failure.cause}")
    raise failure


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


def _retry_after(headers: Message) -> float | None:
    """Retry-After in seconds (a number, or an HTTP date), at most MAX_RETRY_AFTER_S."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
