"""The bench's documents: what the extract stage makes of the eval WARC and the run's WARCs, and
the corpus (`eval` or `warc`) of each."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from stages.documents import read_documents
from stages.extract import extract_warc

if TYPE_CHECKING:
    from bench.crawl_filters.steps import Context

ROOT = Path(__file__).resolve().parents[2]
EVAL_WARC = ROOT / "samples" / "extraction_eval" / "pages.warc.gz"
CORPORA = ("eval", "warc")
CORPUS: dict[str, str] = {}  # document id -> corpus


def by_corpus(docs) -> Counter:
    return Counter(CORPUS[d["id"]] for d in docs)


def _extract(job: tuple[str, str, dict]) -> tuple[str, str, int, int, dict]:
    warc, out, params = job
    stats = extract_warc(warc, out, progress=lambda *_: None, **params)
    return warc, out, stats.docs_in, stats.docs_out, dict(stats.dropped)


def extract_documents(ctx: Context) -> tuple[list[dict], dict, list[tuple[str, str]]]:
    """Every document the extract stage makes of the eval WARC and the run's WARCs, in corpus
    order: the run's WARCs in the run's order, then the eval pages; but an eval page whose text is
    that of a WARC page (samples/warc/web-pages-2019-2021.warc.gz holds 80 pages of trafilatura's
    tests/cache/, and so does the eval set) is left out: the copy would count twice in the
    alone figures, lose all its lines to line dedup (its WARC twin comes first) and be scored by a
    classifier trained on its twin. Returns the documents, the extraction accounting per corpus and
    the (eval URL, WARC URL) pairs left out."""
    warcs = [(w, "warc") for w in ctx.config.input_files("common_crawl")] + [(str(EVAL_WARC), "eval")]
    jobs = [(w, ctx.path(f"extract-{Path(w).name}.parquet"), ctx.params["extract"]) for w, _ in warcs]
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        # the eval WARC is the largest file: start it first
        done = {r[0]: r for r in pool.map(_extract, sorted(jobs, key=lambda j: j[0] != str(EVAL_WARC)))}
    docs, accounting = [], {c: {"files": 0, "records": 0, "documents": 0, "dropped": Counter()} for c in CORPORA}
    for warc, corpus in warcs:
        _, out, records, kept, dropped = done[warc]
        acc = accounting[corpus]
        acc["files"] += 1
        acc["records"] += records
        acc["documents"] += kept
        acc["dropped"].update(dropped)
        for doc in read_documents(out):
            CORPUS[doc["id"]] = corpus
            docs.append(doc)
    warc_urls = {d["text"]: d["url"] for d in docs if CORPUS[d["id"]] == "warc"}
    copies = [(d["url"], warc_urls[d["text"]]) for d in docs if CORPUS[d["id"]] == "eval" and d["text"] in warc_urls]
    docs = [d for d in docs if not (CORPUS[d["id"]] == "eval" and d["text"] in warc_urls)]
    accounting["eval"]["copies_of_warc_pages_left_out"] = len(copies)
    return docs, accounting, copies
