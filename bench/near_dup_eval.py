"""Near-duplicate detection quality: MinHash LSH decisions against exact Jaccard, on real text.

    .venv/bin/python bench/near_dup_eval.py [--num-perm 112 --bands 14 --rows 8] [--threshold T]

Pairs, built from every page `stages.extract.extract_warc` gets out of samples/warc/*.warc.gz:

  edited   each page with at least 100 words (one per group of identical pages) against copies of
           itself: verbatim (J = 1), re-typed (upper case, other punctuation: J = 1 after
           normalisation), and 14 edits of random strength: words replaced by words of other
           pages, deleted, inserted, replaced and deleted, a contiguous block replaced, the end
           cut off, another page appended. Then at most --per-bin pairs per 0.05 of exact
           Jaccard, so the set covers 0..1 about evenly.
  natural  every pair of distinct sample pages (with at least one shingle): mostly unrelated,
           plus the sample's own duplicates (allenai.org crawled three times, archive.org error
           and login pages that share a template).

The truth is exact Jaccard of the two shingle sets (`stages.near_dedup.shingles`) >= threshold
(default: the S-curve threshold (1/bands)^(1/rows)). Decisions:

  LSH            any of the `bands` band keys equal (what find_candidate_pairs turns into an edge)
  LSH + verify   LSH, and the Jaccard estimated from the full signatures >= threshold
                 (find_candidate_pairs' default verification, at `threshold`)
  datasketch     the same banding over datasketch MinHash(num_perm, seed=1) signatures (sha1
                 shingle hashes), for reference

Pairwise decisions: in the pipeline, clusters are connected components, so a pair can also be
joined through a third document.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from stages import near_dedup as nd  # noqa: E402
from stages.extract import extract_warc  # noqa: E402


def sample_texts(workdir: Path) -> list[str]:
    texts = []
    for warc in sorted((ROOT / "samples" / "warc").glob("*.warc.gz")):
        path = workdir / f"{warc.name.removesuffix('.warc.gz')}.parquet"
        extract_warc(str(warc), str(path))
        texts.extend(pq.read_table(path, columns=["text"]).column("text").to_pylist())
    return texts


def edited(text: str, rng: random.Random, vocabulary: list[str], others: list[str]) -> tuple[str, str]:
    """A copy of `text` with one random kind of edit of random strength, and its description."""
    tokens = text.split()
    kind = rng.choice(["replace", "delete", "insert", "replace+delete", "block", "truncate", "append"])
    if kind in ("block", "truncate", "append"):
        f = rng.uniform(0.0, 0.9)
        k = int(len(tokens) * f)
        if kind == "block":
            at = rng.randrange(0, len(tokens) - k + 1)
            tokens = tokens[:at] + [rng.choice(vocabulary) for _ in range(k)] + tokens[at + k :]
        elif kind == "truncate":
            tokens = tokens[: len(tokens) - k]
        else:
            tokens = tokens + rng.choice(others).split()[:k]
        return " ".join(tokens), f"{kind} {f:.2f}"
    r = rng.choice([rng.uniform(0.0, 0.08), rng.uniform(0.0, 0.4)])
    out = []
    for token in tokens:
        u = rng.random()
        if kind == "replace" and u < r or kind == "replace+delete" and u < r / 2:
            out.append(rng.choice(vocabulary))
        elif kind == "delete" and u < r or kind == "replace+delete" and u < r:
            continue
        else:
            out.append(token)
            if kind == "insert" and u < r:
                out.append(rng.choice(vocabulary))
    return " ".join(out), f"{kind} {r:.3f}"


def metrics(truth: np.ndarray, decided: np.ndarray) -> tuple[float, float, int, int]:
    tp = int((truth & decided).sum())
    fp = int((~truth & decided).sum())
    fn = int((truth & ~decided).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, fp, fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-perm", type=int, default=nd.DEFAULT_NUM_PERM)
    parser.add_argument("--bands", type=int, default=nd.DEFAULT_BANDS)
    parser.add_argument("--rows", type=int, default=nd.DEFAULT_ROWS)
    parser.add_argument("--ngram", type=int, default=nd.DEFAULT_NGRAM)
    parser.add_argument("--threshold", type=float, default=None, help="default: (1/bands)^(1/rows)")
    parser.add_argument("--edits", type=int, default=14, help="edited copies per page")
    parser.add_argument("--per-bin", type=int, default=60, help="edited pairs kept per 0.05 of Jaccard")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    b, r = args.bands, args.rows
    threshold = args.threshold if args.threshold is not None else nd.lsh_threshold(b, r)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        texts = sample_texts(Path(tmp))
    sets = [nd.shingles(t, args.ngram) for t in texts]
    usable = [i for i, s in enumerate(sets) if s]
    rng = random.Random(args.seed)

    # Edited pairs: bases are pages with >= 100 words, one per group of identical shingle sets.
    seen, bases = set(), []
    for i in usable:
        key = frozenset(sets[i])
        if len(nd.words(texts[i])) >= 100 and key not in seen:
            seen.add(key)
            bases.append(i)
    vocabulary = [w for t in texts for w in t.split()]
    docs, pairs, kinds = list(texts), [], []
    for i in bases:
        others = [texts[j] for j in bases if j != i]
        variants = [(texts[i], "verbatim"), (texts[i].upper().replace(".", ";").replace(",", " -"), "re-typed")]
        variants += [edited(texts[i], rng, vocabulary, others) for _ in range(args.edits)]
        for text, kind in variants:
            docs.append(text)
            pairs.append((i, len(docs) - 1))
            kinds.append(kind)
    exact = np.array([nd.jaccard(sets[i], nd.shingles(docs[j], args.ngram)) for i, j in pairs])
    bins = np.minimum((exact / 0.05).astype(int), 19) + (exact == 1.0)
    chosen = []
    for bin_ in np.unique(bins):
        members = np.flatnonzero(bins == bin_)
        chosen.extend(sorted(rng.sample(list(members), min(args.per_bin, members.size))))
    edited_pairs = [pairs[k] for k in chosen]
    edited_exact = exact[chosen]

    # Natural pairs: all pairs of distinct sample pages.
    a, c = np.triu_indices(len(usable), k=1)
    natural_pairs = list(zip(np.array(usable)[a], np.array(usable)[c]))
    natural_exact = np.array([nd.jaccard(sets[i], sets[j]) for i, j in natural_pairs])

    # Signatures of every document: ours (fast) and datasketch's.
    from datasketch import MinHash

    hasher = nd.MinHasher(args.num_perm, args.ngram, seed=1)
    ours = np.concatenate([hasher.signatures(docs[k : k + 1024]) for k in range(0, len(docs), 1024)])
    theirs = []
    for text in docs:
        m = MinHash(num_perm=args.num_perm, seed=1)
        m.update_batch([s.encode("utf-8") for s in nd.shingles(text, args.ngram)])
        theirs.append(m.hashvalues)
    theirs = np.array(theirs, dtype=np.uint32)
    ours_keys, theirs_keys = nd.band_keys(ours, b, r), nd.band_keys(theirs, b, r)

    def decide(pair_list):
        left, right = np.array([p[0] for p in pair_list]), np.array([p[1] for p in pair_list])
        lsh = (ours_keys[left] == ours_keys[right]).any(axis=1)
        estimate = nd.estimate_jaccard(ours[left], ours[right])
        ds = (theirs_keys[left] == theirs_keys[right]).any(axis=1)
        ds_estimate = nd.estimate_jaccard(theirs[left], theirs[right])
        return {"LSH": lsh, "LSH + verify": lsh & (estimate >= threshold), "datasketch": ds}, (estimate, ds_estimate)

    print(f"{len(texts)} sample pages; {args.num_perm} permutations, {b} bands x {r} rows, {args.ngram}-grams; "
          f"threshold {threshold:.3f} (S-curve (1/{b})^(1/{r}) = {nd.lsh_threshold(b, r):.3f})")
    print(f"edited: {len(edited_pairs)} pairs from {len(bases)} pages ({(edited_exact >= threshold).sum()} at or "
          f"above the threshold); natural: {len(natural_pairs)} pairs "
          f"({(natural_exact >= threshold).sum()} at or above)")
    print()
    print("| pairs | decision | precision | recall | false pos. | false neg. |")
    print("|---|---|---:|---:|---:|---:|")
    results = {}
    for name, pair_list, ex in [("edited", edited_pairs, edited_exact), ("natural", natural_pairs, natural_exact)]:
        decisions, estimate = decide(pair_list)
        results[name] = (decisions, estimate, ex)
        truth = ex >= threshold
        for decision, flagged in decisions.items():
            p, rc, fp, fn = metrics(truth, flagged)
            print(f"| {name} | {decision} | {p:.3f} | {rc:.3f} | {fp} | {fn} |")

    decisions, (estimate, ds_estimate), ex = results["edited"]
    print()
    print("Edited pairs by exact Jaccard: share flagged, against the S-curve 1-(1-J^r)^b at the bin's mean J;")
    print("mean absolute error of the Jaccard estimated from the signatures (ours, datasketch's)")
    print()
    print("| exact J | pairs | S-curve | LSH | LSH + verify | datasketch | estimate error | datasketch's |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    edges = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (ex >= lo) & (ex < hi)
        if sel.any():
            row = [f"{lo:.2f}-{hi:.2f}", str(sel.sum()), f"{nd.candidate_probability(ex[sel].mean(), b, r):.2f}"]
            row += [f"{decisions[d][sel].mean():.2f}" for d in ("LSH", "LSH + verify", "datasketch")]
            row.append(f"{np.abs(estimate[sel] - ex[sel]).mean():.3f}")
            row.append(f"{np.abs(ds_estimate[sel] - ex[sel]).mean():.3f}")
            print("| " + " | ".join(row) + " |")
    sel = ex == 1.0
    print(f"| 1 (identical) | {sel.sum()} | 1.00 | " + " | ".join(
        f"{decisions[d][sel].mean():.2f}" for d in ("LSH", "LSH + verify", "datasketch")) + " | "
        f"{np.abs(estimate[sel] - 1).mean():.3f} | {np.abs(ds_estimate[sel] - 1).mean():.3f} |")
    print()
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
