"""MinHash signature throughput on one core: this project's MinHasher against datasketch and datatrove.

    .venv/bin/python bench/minhash.py [--copies 12] [--num-perm 128] [--ngram 5]

Documents: every page `stages.extract.extract_warc` gets out of samples/warc/*.warc.gz (253 real
pages, 2008-2024, mostly English, some de/fr/es/zh/ja/ru), repeated `--copies` times (12: 3,036
documents) for the fast methods; the slow ones run over fewer copies (docs/s is per copy of the
same set, so the rates compare). Pinned to one core (`os.sched_setaffinity(0, {0})`); wall time,
best of `--repeats` passes for the fast methods, after a warm-up call (which also builds the
MinHasher's 0.2 s character table once per process).

What is timed, text in, signature out:
  ours (fast)             MinHasher(num_perm, ngram, seed=1).signatures(batch of 1024 texts):
                          normalisation, word segmentation, shingle hashing, permutations
  ours (sha1)             the same with hash="sha1" (datasketch's hash of each shingle string;
                          signatures identical to datasketch's, checked here)
  datasketch update_batch MinHash(num_perm, seed=1).update_batch(shingles): the shingles are
                          made (with this project's `shingles()`) and encoded *outside* the timer,
                          so datasketch is timed on hashing + permutations alone
                          ("shingles made in the timer": text in, as for the others)
  datasketch update       the same with one `update()` per shingle
  datatrove               MinhashDedupSignature.get_signature(get_shingles(text)), its own
                          normalisation and spaCy word tokenizer; MinhashConfig defaults but
                          HashConfig(precision=64, hash_fc="sha1"), as xxhash is not installed
  stage                   stages.near_dedup.minhash_signatures on one parquet shard of the same
                          documents: parquet read + signatures + band keys + npz write
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from stages import near_dedup as nd  # noqa: E402
from stages.documents import write_documents  # noqa: E402
from stages.extract import extract_warc  # noqa: E402


def sample_pages(workdir: Path) -> tuple[list[dict], object]:
    docs, schema = [], None
    for warc in sorted((ROOT / "samples" / "warc").glob("*.warc.gz")):
        path = workdir / f"{warc.name.removesuffix('.warc.gz')}.parquet"
        extract_warc(str(warc), str(path))
        table = pq.read_table(path)
        docs.extend(table.to_pylist())
        schema = table.schema
    return docs, schema


def datatrove_minhash():
    """datatrove's MinhashConfig and MinhashDedupSignature. Imported from the module file: the
    `datatrove.pipeline.dedup` package imports its exact-substring step, which needs `tokenizers`
    (not installed, and not needed for MinHash)."""
    import importlib.util

    import datatrove

    path = Path(datatrove.__file__).parent / "pipeline" / "dedup" / "minhash.py"
    spec = importlib.util.spec_from_file_location("datatrove_dedup_minhash", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MinhashConfig, module.MinhashDedupSignature


def best_rate(fn, docs: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return docs / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--slow-copies", type=int, default=1, help="copies for datasketch update, datatrove, sha1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--max-words", type=int, default=None, help="only pages with at most this many words")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})

    from datasketch import MinHash
    from datatrove.utils.hashing import HashConfig

    MinhashConfig, MinhashDedupSignature = datatrove_minhash()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pages, schema = sample_pages(tmp)
        if args.max_words:
            pages = [p for p in pages if len(nd.words(p["text"])) <= args.max_words]
        texts = [p["text"] for p in pages]
        words = np.array([len(nd.words(t)) for t in texts])
        chars = sum(map(len, texts))
        print(f"{len(texts)} pages, {chars / 1e6:.2f} M characters, words per page: mean {words.mean():.0f}, "
              f"median {np.median(words):.0f}, max {words.max()}; {args.num_perm} permutations, "
              f"{args.ngram}-grams, one core")
        many = texts * args.copies
        few = texts * args.slow_copies
        P, n = args.num_perm, args.ngram

        fast = nd.MinHasher(P, n, seed=1)
        sha1 = nd.MinHasher(P, n, seed=1, hash="sha1")
        fast.signatures(texts[:8])

        def ours(hasher, docs):
            return np.concatenate([hasher.signatures(docs[i : i + 1024]) for i in range(0, len(docs), 1024)])

        encoded = [[s.encode("utf-8") for s in nd.shingles(t, n)] for t in texts]
        shingle_lists = encoded * args.copies

        def ds_batch():
            for shingles in shingle_lists:
                MinHash(num_perm=P, seed=1).update_batch(shingles)

        def ds_batch_from_text():
            for text in few:
                MinHash(num_perm=P, seed=1).update_batch([s.encode("utf-8") for s in nd.shingles(text, n)])

        def ds_update():
            for shingles in encoded * args.slow_copies:
                m = MinHash(num_perm=P, seed=1)
                for s in shingles:
                    m.update(s)

        # Sanity: the sha1 mode is datasketch, value for value.
        reference = ours(sha1, texts[:60])
        for shingles, sig in zip(encoded[:60], reference):
            m = MinHash(num_perm=P, seed=1)
            m.update_batch(shingles)
            assert np.array_equal(m.hashvalues, sig)

        datatrove = MinhashDedupSignature(
            output_folder=str(tmp / "datatrove"),
            config=MinhashConfig(n_grams=n, num_buckets=P // 8, hashes_per_bucket=8,
                                 hash_config=HashConfig(precision=64, hash_fc="sha1")),
        )
        assert datatrove.num_hashes == P, "num_perm must be a multiple of 8 for datatrove"

        def dt():
            for text in few:
                shingles = datatrove.get_shingles(text)
                if shingles.size:
                    datatrove.get_signature(shingles)

        dt_start = time.perf_counter()
        datatrove.get_shingles(texts[0])  # loads spaCy
        dt_load = time.perf_counter() - dt_start

        shard = tmp / "shard.parquet"
        write_documents(shard, [{**p} for p in pages * args.copies], schema)

        def stage():
            nd.minhash_signatures(str(shard), str(tmp / "sig.npy"), shard_index=0, num_perm=P,
                                  bands=P // 8, rows=8, ngram=n, seed=1)

        def make_shingles():
            for t in few:
                [s.encode("utf-8") for s in nd.shingles(t, n)]

        rates = {
            "ours (fast)": best_rate(lambda: ours(fast, many), len(many), args.repeats),
            "stage minhash_signatures": best_rate(stage, len(many), args.repeats),
            "ours (sha1, = datasketch)": best_rate(lambda: ours(sha1, few), len(few), 1),
            "datasketch update_batch": best_rate(ds_batch, len(shingle_lists), 1),
            "datasketch update_batch, shingles made in the timer": best_rate(ds_batch_from_text, len(few), 1),
            "datasketch update": best_rate(ds_update, len(few), 1),
            "datatrove MinhashDedupSignature": best_rate(dt, len(few), 1),
            "(making the shingle strings alone)": best_rate(make_shingles, len(few), 1),
        }
        assert np.array_equal(ours(fast, texts), ours(fast, many)[: len(texts)])

    base = rates["datasketch update_batch"]
    print()
    print("| method | docs/s | M chars/s | vs update_batch |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate * chars / len(texts) / 1e6:.1f} | {rate / base:.2f}x |")
    print()
    print(f"datatrove's spaCy tokenizer load ({dt_load:.1f} s) is not counted. Shingle strings: this project's "
          "shingles() + UTF-8 encoding, the input datasketch needs.")


if __name__ == "__main__":
    main()
