"""Score the extractors on labelled pages: precision, recall, F1 and accuracy beside speed.

    .venv/bin/python bench/extract_quality.py [--repeats N]

Pages: samples/extraction_eval/pages.warc.gz, read and decoded as the extract stage does
(`read_html_pages`, `decode_html`), each matched to its line of labels.jsonl by URL. Scoring as
upstream (trafilatura's evaluation): a `with` string found in the output is a true positive, one
missing a false negative; a `without` string found is a false positive, one absent a true
negative; precision, recall, F1 and accuracy over all strings.

Speed: CPU time (`time.process_time`) of extraction, plus cleaning for the rows with cleaning,
per page, on one core, after a warm-up on 20 pages, the best of N passes for each page; docs/s
on the labelled pages, ms/page on the crawl pages. Every row is compared with trafilatura's,
the pipeline's default (with cleaning): speed ratio, F1 difference, and the length of its text
against trafilatura's on the HTML pages of samples/warc/*.warc.gz (real crawl pages, unlabelled):
median ratio and the shares of pages over 2x and under half.

The hybrid row runs the tuned resiliparse first and trafilatura on the pages where it kept less
than HYBRID_MIN_CHARS characters; its time is the sum of both on those pages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.accounting import ShardStats  # noqa: E402
from stages.extract import decode_html, read_html_pages  # noqa: E402
from stages.extract.cleaning import clean_text  # noqa: E402
from stages.extract.extractors import BOILERPLATE_SELECTORS, make_extractor, resiliparse_extractor  # noqa: E402

EVAL_DIR = ROOT / "samples" / "extraction_eval"
HYBRID_MIN_CHARS = 500
WARM_UP_PAGES = 20
# Tried beside the pipeline's BOILERPLATE_SELECTORS: more class and id names of boilerplate boxes.
MORE_SELECTORS = (
    *BOILERPLATE_SELECTORS,
    *(f"[class*={word}]" for word in ("related", "recommend", "copyright", "comment", "share", "meta",
                                      "newsletter", "subscribe", "cookie")),
    *(f"[id*={word}]" for word in ("footer", "author", "related", "comment", "cookie")),
)


def previous_resiliparse():
    """The resiliparse settings before tuning: main content as plain text."""
    from resiliparse.extract.html2text import extract_plain_text

    return lambda html: extract_plain_text(html, main_content=True, preserve_formatting=True, comments=False,
                                           alt_texts=False, list_bullets=False)


EXTRACTORS: dict[str, Callable[[], Callable[[str], str | None]]] = {
    "trafilatura": lambda: make_extractor("trafilatura", clean=False),
    "resiliparse": lambda: make_extractor("resiliparse", clean=False),
    "resiliparse, no skip_elements": lambda: resiliparse_extractor(skip_elements=()),
    f"resiliparse, {len(MORE_SELECTORS)} skip_elements": lambda: resiliparse_extractor(skip_elements=MORE_SELECTORS),
    "resiliparse, no line classification": lambda: resiliparse_extractor(classify_lines=False),
    "resiliparse as before (plain main content)": previous_resiliparse,
}


def load_pages(warc_paths: list[Path]) -> tuple[list[tuple[str | None, str]], ShardStats]:
    stats = ShardStats()
    pages = []
    for path in warc_paths:
        for page in read_html_pages(str(path), stats, max_html_bytes=5_000_000):
            html = decode_html(page.body, page.http_charset)
            if html is not None:
                pages.append((page.url, html))
    return pages, stats


def normalised_url(url: str) -> str:
    # Some labels' URLs end in a space; warcio percent-encodes spaces inside a WARC-Target-URI.
    return url.strip().replace(" ", "%20")


def scores(texts: list[str | None], labels: list[dict]) -> dict[str, float]:
    tp = fn = fp = tn = 0
    for text, label in zip(texts, labels):
        text = text or ""
        found = sum(s in text for s in label["with"])
        leaked = sum(s in text for s in label["without"])
        tp, fn = tp + found, fn + len(label["with"]) - found
        fp, tn = fp + leaked, tn + len(label["without"]) - leaked
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
        "accuracy": (tp + tn) / (tp + fn + fp + tn),
    }


def timed(function: Callable[[str], str | None], inputs: list[str], repeats: int) -> tuple[list, list[float]]:
    """Outputs and CPU seconds per input, the best of `repeats` passes."""
    best = [float("inf")] * len(inputs)
    for _ in range(repeats):
        outputs = []
        for i, item in enumerate(inputs):
            start = time.process_time()
            outputs.append(function(item))
            best[i] = min(best[i], time.process_time() - start)
    return outputs, best


def cleaned(texts: list[str | None], repeats: int) -> tuple[list[str | None], list[float]]:
    return timed(lambda text: clean_text(text) if text else text, texts, repeats)


def length_ratios(texts: list[str | None], reference: list[str | None]) -> list[float]:
    return [len(text or "") / len(ref) for text, ref in zip(texts, reference) if ref]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    pages, stats = load_pages([EVAL_DIR / "pages.warc.gz"])
    by_url = {}
    for line in (EVAL_DIR / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        label = json.loads(line)
        by_url[normalised_url(label["url"])] = label
    labels = [by_url[normalised_url(url)] for url, _ in pages]
    htmls = [html for _, html in pages]
    crawl = [html for _, html in load_pages(sorted((ROOT / "samples" / "warc").glob("*.warc.gz")))[0]]
    strings = sum(len(label["with"]) + len(label["without"]) for label in labels)
    print(f"{len(pages)} labelled pages of {len(by_url)} ({dict(stats.dropped)} dropped by the WARC reader), "
          f"{strings:,} labelled strings; {len(crawl)} crawl pages; one core, CPU time, best of {args.repeats}\n")

    rows = {}  # name -> (texts, seconds, crawl texts, crawl seconds)
    for name, factory in EXTRACTORS.items():
        extract = factory()
        for html in htmls[:WARM_UP_PAGES]:
            extract(html)
        texts, seconds = timed(extract, htmls, args.repeats)
        crawl_texts, crawl_seconds = timed(extract, crawl, args.repeats)
        rows[name, "no"] = texts, seconds, crawl_texts, crawl_seconds
        clean, clean_s = cleaned(texts, args.repeats)
        crawl_clean, crawl_clean_s = cleaned(crawl_texts, args.repeats)
        rows[name, "yes"] = (clean, [a + b for a, b in zip(seconds, clean_s)], crawl_clean,
                             [a + b for a, b in zip(crawl_seconds, crawl_clean_s)])
    rows["hybrid: resiliparse, trafilatura where it is short", "yes"] = hybrid(
        rows["resiliparse", "yes"], rows["trafilatura", "yes"]
    )

    reference = rows["trafilatura", "yes"]
    ref_scores, ref_rate = scores(reference[0], labels), len(htmls) / sum(reference[1])
    print("| extractor | cleaning | precision | recall | F1 | accuracy | docs/s | vs trafilatura | F1 vs trafilatura "
          "| ms/page, crawl | length vs trafilatura, crawl: median | > 2x | < 0.5x |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, clean), (texts, seconds, crawl_texts, crawl_seconds) in rows.items():
        s, rate = scores(texts, labels), len(htmls) / sum(seconds)
        ratios = length_ratios(crawl_texts, reference[2])
        print(f"| {name} | {clean} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['accuracy']:.3f} "
              f"| {rate:,.0f} | {rate / ref_rate:.1f}x | {s['f1'] - ref_scores['f1']:+.3f} "
              f"| {1000 * sum(crawl_seconds) / len(crawl):.2f} | {statistics.median(ratios):.2f} "
              f"| {sum(r > 2 for r in ratios) / len(ratios):.1%} | {sum(r < 0.5 for r in ratios) / len(ratios):.1%} |",
              flush=True)
    fast = rows["resiliparse", "yes"]
    print(f"\nhybrid: trafilatura on {sum(len(t or '') < HYBRID_MIN_CHARS for t in fast[0]) / len(htmls):.1%} "
          f"of the labelled pages, {sum(len(t or '') < HYBRID_MIN_CHARS for t in fast[2]) / len(crawl):.1%} "
          f"of the crawl pages")


def hybrid(fast: tuple, slow: tuple) -> tuple:
    """Per page, the fast row's text and time, or where its text is shorter than HYBRID_MIN_CHARS,
    the slow row's text after both times."""
    def pick(texts, seconds, slow_texts, slow_seconds):
        short = [len(text or "") < HYBRID_MIN_CHARS for text in texts]
        return ([s if is_short else t for t, s, is_short in zip(texts, slow_texts, short)],
                [t + s * is_short for t, s, is_short in zip(seconds, slow_seconds, short)])

    return (*pick(fast[0], fast[1], slow[0], slow[1]), *pick(fast[2], fast[3], slow[2], slow[3]))


if __name__ == "__main__":
    main()
