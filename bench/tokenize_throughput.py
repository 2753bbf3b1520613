"""Tokenization throughput: the tokenize stage's function against raw SentencePiece on the same
text and threads, and encoding time against document length.

    .venv/bin/python bench/tokenize_throughput.py [--copies 30] [--threads 2] [--repeats 3]

Corpus: every page `extract_warc` gets out of samples/warc/*.warc.gz and every article of the
Wikipedia samples (real text, several languages and scripts), `--copies` times over, in one parquet
shard. Tokenizer: SentencePiece BPE with the pipeline's settings, 8,000 pieces, trained on that text.

Timed (wall, best of --repeats after a warm-up):
  stage   `tokenize_shard`: parquet in, batched multi-threaded encode, [BOS] ids [EOS] into Megatron
          parts, parts.json
  raw     `SentencePieceProcessor.encode(texts, num_threads=N)` on all texts already in memory, the
          same batch size as the stage, ids discarded
The issue's bar: the stage at >= 90% of raw's throughput.

Length: one document made of N characters of the corpus text (N = 10^4 .. 4 x 10^6), and one of
N characters without any whitespace (a base64-like run), each encoded alone, by raw
`encode(text)` and by the stage's `encode_documents` (pieces of at most 100,000 characters cut at
spaces); time per million characters stays flat where encoding is linear.
"""

from __future__ import annotations

import argparse
import base64
import logging
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from bench.timing import best_of  # noqa: E402
from classifiers.tokenizer import load_tokenizer, train_sentencepiece  # noqa: E402
from stages.documents import DOCUMENT_SCHEMA, read_documents, write_documents  # noqa: E402
from stages.extract import extract_warc  # noqa: E402
from stages.tokenize import encode_documents, tokenize_shard  # noqa: E402
from stages.tokenizer import sentencepiece_lines  # noqa: E402
from stages.wikipedia import extract_wikipedia  # noqa: E402


def real_texts(tmp: Path) -> list[str]:
    texts = []
    for warc in sorted((ROOT / "samples" / "warc").glob("*.warc.gz")):
        extract_warc(str(warc), str(tmp / "page.parquet"))
        texts += [d["text"] for d in read_documents(tmp / "page.parquet")]
    for dump in sorted((ROOT / "samples" / "wikipedia").glob("*.bz2")):
        extract_wikipedia(str(dump), str(tmp / "wiki.parquet"), str(tmp / "refs.parquet"))
        texts += [d["text"] for d in read_documents(tmp / "wiki.parquet")]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-docs", type=int, default=256)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        tmp = Path(tmp)
        base = real_texts(tmp)
        model = tmp / "tokenizer.model"
        train_sentencepiece((line for t in base for line in sentencepiece_lines(t)), model, vocab_size=8000,
                            character_coverage=0.9995, num_threads=args.threads, seed=0)
        sp = load_tokenizer(model)
        texts = base * args.copies
        shard = tmp / "docs.parquet"
        rows = [{"id": f"bench/{i}", "source": "bench", "text": t} for i, t in enumerate(texts)]
        write_documents(shard, rows, DOCUMENT_SCHEMA)
        chars = sum(len(t) for t in texts)

        def stage():
            tokenize_shard(str(shard), str(model), str(tmp / "tokens"), batch_docs=args.batch_docs,
                           num_threads=args.threads)

        def raw():
            for k in range(0, len(texts), args.batch_docs):
                sp.encode(texts[k : k + args.batch_docs], num_threads=args.threads)

        results = {"stage": best_of(args.repeats, stage), "raw": best_of(args.repeats, raw)}
        tokens = sum(len(ids) for ids in sp.encode(texts, num_threads=args.threads))

        print(f"{len(texts):,} documents ({len(base)} real x {args.copies}), {chars / 1e6:.1f} M characters, "
              f"{tokens / 1e6:.1f} M tokens; {args.threads} threads, batches of {args.batch_docs}")
        print("| method | seconds | M chars/s | M tokens/s | stage vs raw |")
        print("|---|---:|---:|---:|---:|")
        for name, seconds in results.items():
            print(f"| {name} | {seconds:.2f} | {chars / seconds / 1e6:.2f} | {tokens / seconds / 1e6:.2f} | "
                  f"{results['raw'] / seconds:.2f}x |")

        corpus = "\n".join(base)
        rng = random.Random(0)
        blob = base64.b64encode(rng.randbytes(3_000_000)).decode()
        print("\n| document | characters | raw s per M chars | stage s per M chars | same ids |")
        print("|---|---:|---:|---:|---|")
        for kind, source in (("real text", corpus), ("no whitespace", blob)):
            for n in (10_000, 100_000, 1_000_000, 4_000_000):
                doc = (source * (n // len(source) + 1))[:n]
                raw_s = best_of(args.repeats, lambda: sp.encode(doc))
                ours_s = best_of(args.repeats, lambda: list(encode_documents(sp, [doc], 1)))
                same = next(encode_documents(sp, [doc], 1)) == sp.encode(doc)
                print(f"| {kind} | {n:,} | {raw_s / n * 1e6:.3f} | {ours_s / n * 1e6:.3f} | {same} |")


if __name__ == "__main__":
    main()
