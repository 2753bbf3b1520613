"""A WARC data server for the tests: files of a folder over HTTP with byte ranges, as
data.commoncrawl.org serves Common Crawl's WARC files.

`Range: bytes=a-b` (or `a-`, or `-n`) gives 206 with Content-Range, a range that does not fit the
file 416, no Range the whole file (200). `--fail-first N` answers the first N requests 503 (with
`--retry-after S`, a Retry-After header), to exercise the client's retries. Every request is logged
as a JSON line (monotonic arrival time, path, range, status) to `--log`, so tests can check the
client's pacing from the server's side. Run as `python -m tests.servers.http_range --root DIR`: it
binds a free loopback port and prints it on its first line. `http_range_server` starts it so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from tests.servers.process import stop
from tests.support import ROOT

RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeHandler(BaseHTTPRequestHandler):
    server: RangeServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer()

    def _answer(self) -> int:
        if self.server.take_failure():
            headers = {"Retry-After": self.server.retry_after} if self.server.retry_after else {}
            return self._send(503, b"busy\n", headers)
        parts = unquote(self.path.split("?", 1)[0]).strip("/").split("/")
        path = self.server.root.joinpath(*parts)
        if ".." in parts or not path.is_file():
            return self._send(404, b"not found\n")
        size = path.stat().st_size
        wanted = self.headers.get("Range")
        if wanted is None:
            return self._send(200, path.read_bytes())
        span = _span(wanted, size)
        if span is None:
            return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
        start, end = span
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        return self._send(206, body, {"Content-Range": f"bytes {start}-{end}/{size}"})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> int:
        # Logged before the answer goes out: a client that has its answer finds the request logged.
        self.server.log(self.path, self.headers.get("Range"), status)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), "Accept-Ranges": "bytes", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        return status

    def log_message(self, format, *args) -> None:  # the JSON log is the record
        pass


def _span(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte span a single-range header asks for, or None when it does not fit."""
    match = RANGE.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last n bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, fail_first: int, retry_after: str | None, log_path: Path | None):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.root = root
        self.retry_after = retry_after
        self._failures_left = fail_first
        self._lock = threading.Lock()
        self._log = open(log_path, "a", buffering=1) if log_path else None

    def take_failure(self) -> bool:
        with self._lock:
            if self._failures_left <= 0:
                return False
            self._failures_left -= 1
            return True

    def log(self, path: str, wanted: str | None, status: int) -> None:
        if self._log:
            with self._lock:
                entry = {"t": time.monotonic(), "path": path, "range": wanted, "status": status}
                self._log.write(json.dumps(entry) + "\n")


@dataclass(frozen=True)
class RangeServerProcess:
    url: str  # ends with "/": a warc_prefix
    log: Path

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@contextlib.contextmanager
def http_range_server(root: Path, log: Path, *, fail_first: int = 0, retry_after: int | None = None
                      ) -> Iterator[RangeServerProcess]:
    """The server over `root` in its own process group, until the block ends."""
    command = [sys.executable, "-m", "tests.servers.http_range", "--root", str(root), "--log", str(log),
               "--fail-first", str(fail_first)]
    if retry_after is not None:
        command += ["--retry-after", str(retry_after)]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()  # printed once the socket listens
        assert port.isdigit(), f"the range server did not start (exit {process.poll()})"
        yield RangeServerProcess(f"http://127.0.0.1:{port}/", log)
    finally:
        stop(process)
        process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--retry-after")
    args = parser.parse_args()
    server = RangeServer(args.root, args.fail_first, args.retry_after, args.log)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
