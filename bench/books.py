"""Books: extraction and MinHash throughput, and the book-level near-duplicate settings measured.

    .venv/bin/python bench/books.py [--seeds 10] [--repeat 5]

Throughput, pinned to one core (CPU time, median of --repeat runs): `stages.books.extract_books`
over the three sample Gutenberg books (samples/books/gutenberg, 6.2 MB), and MinHash signatures
(`stages.near_dedup.MinHasher`, BOOK_NEAR_DEDUP's num_perm and ngram) of the extracted texts.

Dedup settings: Pride and Prejudice and Don Quijote (extracted), each against copies edited with
--seeds random seeds each:
  paragraphs r   a share r of the paragraphs replaced by random War and Peace paragraphs
                 (shares 1-r of its content with the original; Jaccard ~ (1-r)/(1+r))
  truncated s    the first share s of the text (an abridged copy; Jaccard ~ s)
  words r        a share r of the words replaced by random War and Peace words (OCR-like)
and the unrelated pairs of the three books. Exact Jaccard of the word 5-gram sets (32-bit shingle
hashes), the estimate from BOOK_NEAR_DEDUP signatures, and the decision of find_candidate_pairs:
a shared band key (LSH) and an estimate >= threshold (verification).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from stages import near_dedup as nd  # noqa: E402
from stages.books import BOOK_NEAR_DEDUP, extract_books  # noqa: E402
from stages.documents import read_documents  # noqa: E402

BOOKS = sorted((ROOT / "samples" / "books" / "gutenberg").glob("*.txt"))


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def replace_paragraphs(text: str, share: float, donor: list[str], rng: random.Random) -> str:
    return "\n\n".join(rng.choice(donor) if rng.random() < share else p for p in paragraphs(text))


def replace_words(text: str, share: float, donor: list[str], rng: random.Random) -> str:
    return " ".join(rng.choice(donor) if rng.random() < share else w for w in text.split())


def exact_jaccard(hasher: nd.MinHasher, a: str, b: str) -> float:
    (ha, _), (hb, _) = hasher.shingle_hashes([a]), hasher.shingle_hashes([b])
    ua, ub = np.unique(ha), np.unique(hb)
    common = np.intersect1d(ua, ub, assume_unique=True).size
    return common / (ua.size + ub.size - common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="edit seeds per base book")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    params = BOOK_NEAR_DEDUP
    num_perm, bands, rows, ngram, seed = (params[k] for k in ("num_perm", "bands", "rows", "ngram", "seed"))
    threshold = params["threshold"]

    # -- throughput -------------------------------------------------------------------------------
    size_mb = sum(p.stat().st_size for p in BOOKS) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "books.parquet"
        run = lambda: extract_books([str(p) for p in BOOKS], str(out), collection="gutenberg")  # noqa: E731
        run()  # warm-up
        seconds = statistics.median(cpu_time(run) for _ in range(args.repeat))
        texts = {d["book_id"]: d["text"] for d in read_documents(out)}
    print(f"extract_books: {len(BOOKS)} books, {size_mb:.1f} MB in {seconds:.3f} s CPU: "
          f"{len(BOOKS) / seconds:.1f} books/s, {size_mb / seconds:.1f} MB/s (input bytes)")
    hasher = nd.MinHasher(num_perm, ngram, seed)
    hasher.signatures(["warm up the fold table"])
    text_mb = sum(len(t.encode("utf-8")) for t in texts.values()) / 1e6
    for name, text in texts.items():
        one = statistics.median(cpu_time(lambda: hasher.signatures([text])) for _ in range(args.repeat))
        print(f"  MinHash {name}: {len(text.encode('utf-8')) / 1e6:.2f} MB in {one:.3f} s "
              f"({len(text.encode('utf-8')) / 1e6 / one:.0f} MB/s)")
    every = statistics.median(cpu_time(lambda: hasher.signatures(list(texts.values()))) for _ in range(args.repeat))
    print(f"MinHash ({num_perm} perms, {ngram}-grams): {len(texts) / every:.1f} books/s, {text_mb / every:.1f} MB/s")

    # -- dedup decisions --------------------------------------------------------------------------
    print(f"\nsettings: {params}; candidate probability at J=0.70/0.76/0.818/0.9: "
          + " / ".join(f"{nd.candidate_probability(j, bands, rows):.4f}" for j in (0.70, 0.76, 0.818, 0.9)))
    donor_text = texts["2600-0"]
    donor_paragraphs, donor_words = paragraphs(donor_text), donor_text.split()
    edits = [("paragraphs", r) for r in (0.05, 0.10, 0.30, 0.40, 0.50)]
    edits += [("truncated", s) for s in (0.95, 0.90, 0.70, 0.60)]
    edits += [("words", r) for r in (0.01, 0.02, 0.03, 0.05)]
    print(f"{'edit':<18} {'exact J':>15} {'estimate':>15} {'removed':>8}")
    for kind, amount in edits:
        exact, estimate, removed = [], [], 0
        for base in ("1342-0", "2000"):
            text = texts[base]
            for s in range(args.seeds):
                rng, h = random.Random(s), hasher
                if kind == "paragraphs":
                    copy = replace_paragraphs(text, amount, donor_paragraphs, rng)
                elif kind == "words":
                    copy = replace_words(text, amount, donor_words, rng)
                else:  # one truncated copy: the seeds vary the MinHash permutations instead
                    copy = text[: int(len(text) * amount)]
                    h = nd.MinHasher(num_perm, ngram, seed + s)
                a, b = h.signatures([text, copy])
                keys = nd.band_keys(np.stack([a, b]), bands, rows, seed)
                est = float(nd.estimate_jaccard(a, b))
                exact.append(exact_jaccard(hasher, text, copy))
                estimate.append(est)
                removed += bool((keys[0] == keys[1]).any()) and est >= threshold
        print(f"{kind} {amount:<8} {min(exact):.3f}-{max(exact):.3f}   {min(estimate):.3f}-{max(estimate):.3f} "
              f"{removed:>4}/{len(exact)}")
    names = list(texts)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            x, y = texts[names[i]], texts[names[j]]
            a, b = hasher.signatures([x, y])
            print(f"unrelated {names[i]} / {names[j]}: exact {exact_jaccard(hasher, x, y):.3f}, "
                  f"estimate {float(nd.estimate_jaccard(a, b)):.3f}")


if __name__ == "__main__":
    main()
