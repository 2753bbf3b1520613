"""Compare trafilatura settings on the HTML responses of the sample WARCs.

    .venv/bin/python bench/extract_settings.py [--repeats N] [WARC ...]

Pages are read and decoded once, as stages/extract.py does; only `trafilatura.extract` is timed
(process CPU time, pinned to one core, after a warm-up). Reports docs/s (best of N passes), total
characters extracted, the share of pages with no output, and the share of pages where a setting
keeps less than half of what the default settings extract (documents it mostly loses).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402

from stages.accounting import ShardStats  # noqa: E402
from stages.extract import decode_html, read_html_pages  # noqa: E402

DEFAULTS = {"fast": False, "include_comments": True, "include_tables": True}
SETTINGS = {
    "default": {},
    "fast": {"fast": True},
    "favor_precision": {"favor_precision": True},
    "favor_recall": {"favor_recall": True},
    "no comments": {"include_comments": False},
    "no tables": {"include_tables": False},
    "fast, favor_recall": {"fast": True, "favor_recall": True},
}


def load_pages(warc_paths: list[Path]) -> list[str]:
    pages = []
    for path in warc_paths:
        for page in read_html_pages(str(path), ShardStats(), max_html_bytes=5_000_000):
            html = decode_html(page.body, page.http_charset)
            if html is not None:
                pages.append(html)
    return pages


def measure(pages: list[str], options: dict, repeats: int) -> tuple[float, list[int]]:
    """Best docs/s over `repeats` passes, and the characters extracted from each page."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        texts = [trafilatura.extract(html, **{**DEFAULTS, **options}) for html in pages]
        best = min(best, time.process_time() - start)
    return len(pages) / best, [len(t or "") for t in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warcs", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warcs = args.warcs or sorted((ROOT / "samples" / "warc").glob("*.warc.gz"))
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    pages = load_pages(warcs)
    for options in SETTINGS.values():
        measure(pages[:20], options, 1)
    print(f"{len(pages)} HTML pages ({sum(map(len, pages)) / 1e6:.1f} M characters) from "
          f"{len(warcs)} WARC files; trafilatura {trafilatura.__version__}, one core, "
          f"best of {args.repeats}\n")
    print(f"| {'settings':<18} | docs/s | speed | chars out | vs default | empty | < half of default |")
    print(f"|{'-' * 20}|-------:|------:|----------:|-----------:|------:|------------------:|")
    base_rate, base_chars = measure(pages, SETTINGS["default"], args.repeats)
    for name, options in SETTINGS.items():
        rate, chars = measure(pages, options, args.repeats) if options else (base_rate, base_chars)
        shrunk = sum(c < b / 2 for c, b in zip(chars, base_chars))
        print(f"| {name:<18} | {rate:6.1f} | {rate / base_rate:4.2f}x | {sum(chars):9,} | "
              f"{sum(chars) / sum(base_chars) - 1:+10.1%} | {chars.count(0) / len(pages):5.1%} | "
              f"{shrunk / len(pages):17.1%} |", flush=True)


if __name__ == "__main__":
    main()
