"""The quality_classifier stage's throughput on one core against raw fastText `predict`.

    .venv/bin/python bench/quality_filter.py [--copies 40] [--repeats 3]

Documents: every page `stages.extract.extract_warc` gets out of samples/warc/*.warc.gz (256 real
pages, 2008-2024, words per page: median ~220, max ~60,000), `--copies` times over, in one parquet
shard. Model: trained as the `quality_model` stage trains it, with its default hyperparameters
(dim 64, 200k buckets, quantised to 100k rows, ~1-4 MB), English Wikipedia sample articles against
the crawl pages; its quality does not matter here, its size and shape do.

Timed (wall, in-process, pinned to core 0, best of --repeats after a warm-up):
  stage       `score_documents`: parquet in, preprocess (lower-case, collapse whitespace, first
              1,000 words), predict, keep/drop, parquet out, dropped documents written too
  raw         fastText `predict(k=2)` on the texts already in memory, with only the newline
              replacement fastText requires (the whole text, as a user calling it directly would)
  raw, prep   fastText `predict(k=2)` on the texts already preprocessed: the model's own cost
The issue's bar: the stage within 2x of raw predict on the same documents (ratio >= 0.5).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from bench.timing import best_of  # noqa: E402
from classifiers.quality import load_quality_model, preprocess, train_quality_model  # noqa: E402
from stages.documents import read_documents, write_documents  # noqa: E402
from stages.extract import extract_warc  # noqa: E402
from stages.quality_classifier import build_training_set, score_documents  # noqa: E402
from stages.wikipedia import extract_wikipedia  # noqa: E402

ENWIKI = ROOT / "samples" / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    logging.disable(logging.WARNING)  # the Wikipedia-fallback warning: expected on the samples

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        tmp = Path(tmp)
        pages = []
        for warc in sorted((ROOT / "samples" / "warc").glob("*.warc.gz")):
            extract_warc(str(warc), str(tmp / f"{warc.name}.parquet"))
            pages += list(read_documents(tmp / f"{warc.name}.parquet"))
        crawl = [str(p) for p in sorted(tmp.glob("*.warc.gz.parquet"))]
        extract_wikipedia(str(ENWIKI), str(tmp / "wiki.parquet"), str(tmp / "refs.parquet"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the Wikipedia fallback; expected on the samples
            data = build_training_set(crawl, [str(tmp / "refs.parquet")], [str(tmp / "wiki.parquet")], min_chars=500)
        model_path = tmp / "quality.ftz"
        card = train_quality_model(data.positives, data.negatives, model_path)

        docs = [{**d, "id": f"{d['id']}/{c}"} for c in range(args.copies) for d in pages]
        shard = tmp / "docs.parquet"
        write_documents(shard, docs, pq.read_schema(crawl[0]))
        texts = [d["text"] for d in docs]
        words = sum(len(t.split()) for t in texts)
        model = load_quality_model(str(model_path)).model

        def stage():
            score_documents(str(shard), str(tmp / "out.parquet"), model=str(model_path),
                            dropped_path=str(tmp / "dropped.parquet"))

        def raw():
            model.predict([t.replace("\n", " ") for t in texts], k=2)

        prepared = [preprocess(t) for t in texts]

        def raw_prepared():
            model.predict(prepared, k=2)

        results = {"stage": best_of(args.repeats, stage), "raw": best_of(args.repeats, raw),
                   "raw, prep": best_of(args.repeats, raw_prepared)}

    n = len(docs)
    print(f"{n:,} documents ({len(pages)} pages x {args.copies}), {words / n:,.0f} words/doc mean; "
          f"model {card['model_bytes'] / 1e6:.2f} MB (dim {card['hyperparameters']['dim']}, quantised)")
    print("| method    | seconds | docs/s | stage vs this |")
    print("|-----------|--------:|-------:|--------------:|")
    for name, seconds in results.items():
        print(f"| {name:<9} | {seconds:7.2f} | {n / seconds:6,.0f} | {seconds / results['stage']:12.2f}x |")


if __name__ == "__main__":
    main()
