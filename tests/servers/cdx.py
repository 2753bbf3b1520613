"""A crawl index for the tests: pywb's CDX server over some sample WARCs, on a free loopback port.

pywb serves the CDX API Common Crawl's index server speaks (`/<collection>/cdx?url=...&output=json`,
JSON lines with urlkey, timestamp, url, mime, status, digest, length, offset, filename), so the
reference fetcher meets a real index server. pywb 2.10's `cdx-server` entry point is broken (it
imports a function its cli no longer has); `wayback`, the full server, serves the same API. The
collection is made as pywb's docs say: `wb-manager init`, then `wb-manager add` (which copies the
WARCs in and indexes them with pywb's own indexer), both in one interpreter. Capture filenames are
the WARC files' names.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.servers.process import free_port, serving

BIN = Path(sys.executable).parent
COLLECTION = "refs"
# `wb-manager init refs` then `wb-manager add refs WARC...`, in one interpreter (pywb takes a second to import).
MANAGE = "import sys; from pywb.manager.manager import main; main(['init', sys.argv[1]]); main(['add', *sys.argv[1:]])"


def make_collection(root: Path, warcs: list[Path]) -> Path:
    """A pywb collection `refs` under `root` holding (copies of) `warcs`; returns its archive folder."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", MANAGE, COLLECTION, *map(str, warcs)], cwd=root, check=True,
                   capture_output=True)
    return root / "collections" / COLLECTION / "archive"


@contextlib.contextmanager
def cdx_server(root: Path) -> Iterator[str]:
    """pywb serving the collections under `root`, in its own process group, until the block ends;
    yields the collection's CDX endpoint (a `stages.reference_pages.index`)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/{COLLECTION}/cdx"
    command = [str(BIN / "wayback"), "-b", "127.0.0.1", "-p", str(port), "-d", str(root)]
    with serving(command, f"{endpoint}?url=example.com&output=json", name="pywb's server", cwd=root):
        yield endpoint
