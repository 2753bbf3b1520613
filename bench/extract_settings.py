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
    "fast, no comments": {"fast": True, "include_comments": False},
    "precision, no comments": {"favor_precision": True, "include_comments": False},
}
SMALL_PAGE_CHARS = 100_000


def load_pages(warc_paths: list[Path]) -> list[str]:
    pages = []
    for path in warc_paths:
        for page in read_html_pages(str(path), ShardStats(), max_html_bytes=5_000_000):
            html = decode_html(page.body, page.http_charset)
            if html is not None:
                pages.append(html)
    return pages


def measure(pages: list[str], options: dict) -> tuple[list[float], list[int]]:
    """CPU seconds and characters extracted, per page."""
    seconds, chars = [], []
    for html in pages:
        start = time.process_time()
        text = trafilatura.extract(html, **{**DEFAULTS, **options})
        seconds.append(time.process_time() - start)
        chars.append(len(text or ""))
    return seconds, chars


def best_of(repeats: int, pages: list[str], options: dict) -> tuple[list[float], list[int]]:
    runs = [measure(pages, options) for _ in range(repeats)]
    return [min(run[0][i] for run in runs) for i in range(len(pages))], runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warcs", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    warcs = args.warcs or sorted((ROOT / "samples" / "warc").glob("*.warc.gz"))
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    pages = load_pages(warcs)
    small = [i for i, html in enumerate(pages) if len(html) <= SMALL_PAGE_CHARS]
    for options in SETTINGS.values():
        measure(pages[:20], options)  # warm-up: imports, lazy regexes, stoplists
    print(f"{len(pages)} HTML pages ({sum(map(len, pages)) / 1e6:.1f} M characters, {len(small)} "
          f"of them <= {SMALL_PAGE_CHARS:,} characters) from {len(warcs)} WARC files; "
          f"trafilatura {trafilatura.__version__}, one core, CPU time, best of {args.repeats}\n")
    print("| settings               | docs/s | speed | docs/s small | chars out | vs default | empty | < half of default |")
    print("|------------------------|-------:|------:|-------------:|----------:|-----------:|------:|------------------:|")
    base_seconds, base_chars = best_of(args.repeats, pages, SETTINGS["default"])
    base_rate = len(pages) / sum(base_seconds)
    for name, options in SETTINGS.items():
        seconds, chars = best_of(args.repeats, pages, options) if options else (base_seconds, base_chars)
        rate = len(pages) / sum(seconds)
        small_rate = len(small) / sum(seconds[i] for i in small)
        shrunk = sum(c < b / 2 for c, b in zip(chars, base_chars))
        print(f"| {name:<22} | {rate:6.1f} | {rate / base_rate:4.2f}x | {small_rate:12.1f} | "
              f"{sum(chars):9,} | {sum(chars) / sum(base_chars) - 1:+10.1%} | "
              f"{chars.count(0) / len(pages):5.1%} | {shrunk / len(pages):17.1%} |", flush=True)


if __name__ == "__main__":
    main()
