"""Document near-duplicate removal: MinHash signatures, LSH banding, connected components.

Four Ray-free phases; the runner calls each once per task:

    minhash_signatures      one task per document shard: signature and LSH band keys per document
    find_candidate_pairs    one task per hash partition of the band keys: documents that share a
                            band key become edges (the shuffle: every task reads the keys of all
                            shards and keeps those of its partition)
    cluster_duplicates      one task: connected components of all edges, written per shard
    remove_near_duplicates  one task per document shard: keep one document per cluster

Defaults (`DEFAULT_*`, also pipeline/config.py): word 5-grams, 112 permutations = 14 bands x 8 rows
(datatrove/FineWeb's), seed 1, candidate pairs verified at the S-curve threshold
(1/14)^(1/8) = 0.719. A pair at Jaccard 0.8 becomes a candidate with probability 0.92, at 0.6 with
0.21, at 0.9 with 0.9998 (`candidate_probability`). Any of them is a parameter: more rows or fewer
bands move the S-curve right, more bands x rows sharpen it; `threshold` moves the verification cut.

Shingles. `normalize` folds each character on its own (a lookup table over all of Unicode):
lower-case; accents removed (a character whose NFD form is one base character plus combining
marks becomes the base character; combining marks and invisible format characters such as the
soft hyphen are dropped); Unicode punctuation, symbols, control characters and whitespace become a
space; decimal digits of any script become "0" (so page counters and dates do not hide a copy).
Words are split on whitespace; the shingles are the set of word n-grams. A document with fewer
words than `ngram` (but at least one) has one shingle, all its words; a document with no word has
none: its signature is all 0xFFFFFFFF, it gets no band key and is never a duplicate (counted as
`no_shingles`). Text without spaces (Chinese, Japanese) yields few, long words: the recipe keeps
English only for CommonCrawl. (datatrove's `simplify_text` does much the same with a regex pass
per rule and a per-character Python loop for accents, and tokenises with spaCy: 0.05x here.)

Signatures (`MinHasher`). Each shingle gets a 32-bit hash; each of the `num_perm` permutations is
datasketch 2.0's default scheme "affine32": the hash is pre-mixed by the MurmurHash3 finaliser and
mapped by h -> a*h + b mod 2^32 (a odd), a and b drawn exactly as datasketch draws them from
`numpy.random.RandomState(seed)`; the signature is the minimum per permutation. Only the shingle
hash differs from datasketch. With `hash="sha1"` it is datasketch's `sha1_hash32` of the UTF-8
shingle "w1 w2 w3 w4 w5", and the signature equals `datasketch.MinHash(num_perm, seed)` updated
with `shingles(text)`, value for value (tests/test_near_dedup.py). The default `hash="fast"` does
the whole batch with numpy: the batch's code points go through the fold table, a word's hash is a
polynomial over its code points (mod 2^64, from prefix sums) plus a length tag, an n-gram's hash a
random linear combination of its word hashes, each through the 64-bit MurmurHash3 finaliser; the
shingle hash is its top 32 bits. No Python call per word or shingle: 5.5x datasketch's
`update_batch` on one core, which is timed without making its shingles (bench/minhash.py); its
Jaccard estimates agree with datasketch's on real page pairs (test and bench/near_dup_eval.py).

LSH. The first `bands * rows` signature values form `bands` bands of `rows` values; a band's key
is a 64-bit hash of the band index and its values. Two documents are candidates when any band key
is equal: probability 1 - (1 - J^rows)^bands at Jaccard J, an S-curve steepest at
(1/bands)^(1/rows) (`lsh_threshold`). Candidate pairs are then verified: a pair whose Jaccard
estimated from the full signatures is below the threshold is dropped, which turns the soft S-curve
into a sharper cut (bench/README.md, "Near-duplicate evaluation": precision 0.84 -> 0.97, recall
0.94 -> 0.93 on edited page pairs).

Clusters and the keep rule. Candidate pairs are edges between documents named (shard index, row
in the shard); documents joined by any chain of edges form one cluster (connected components:
A~B and B~C put A, B and C together even when A and C are not similar). Of each cluster the
document first in corpus order is kept: the lowest shard index, then the lowest row (shard index
= the shard's position in the planner's order, row = the document's position in the shard this
stage reads). This is deterministic and independent of the number of partitions and of task
scheduling. The cluster id is "<shard>:<row>" of that kept document. Kept documents gain
`cluster_id` and `cluster_size` (both null for a document in no cluster); the others are dropped
as `near_duplicate` and, with auditing on, written to the dropped side output with the same two
columns, so every removed document leads to the one kept in its place.

Files, all written atomically (temporary name, then rename), named as the planner names them:
  signatures  an uncompressed npz archive (numpy's zip of arrays, whatever the file's suffix):
              `band_keys` (docs x bands, uint64), `signatures` (docs x num_perm, uint32),
              `shingles` (docs, uint32; shingle positions, 0 = no shingle), `shard_index`, and
              `params` = [num_perm, bands, rows, ngram, seed]. ~570 bytes a document at defaults.
  pairs       an npz archive: `edges` (pairs x 2, int64 node ids `shard << 32 | row`, first
              member of a bucket first, deduplicated, sorted) and `num_shards`.
  clusters    `shard-<s:05d>.npy` for every shard, a structured array (`CLUSTER_DTYPE`) of `doc`
              (row), `cluster_id` (node id of the kept document), `cluster_size`, `keep`, for the
              shard's documents in a cluster of two or more, sorted by row.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import struct
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stages.accounting import ShardStats
from stages.documents import atomic_dir, atomic_path, filter_shard, read_document_batches

DEFAULT_NUM_PERM = 112
DEFAULT_BANDS = 14
DEFAULT_ROWS = 8
DEFAULT_NGRAM = 5
DEFAULT_SEED = 1

MAX_HASH = np.uint32(0xFFFFFFFF)
SHARD_SHIFT = 32  # node id = shard << 32 | row
DROP_REASON = "near_duplicate"
CLUSTER_DTYPE = np.dtype([("doc", "<i8"), ("cluster_id", "<i8"), ("cluster_size", "<i8"), ("keep", "?")])

_U64 = np.uint64
_M64 = (1 << 64) - 1


def lsh_threshold(bands: int, rows: int) -> float:
    """The Jaccard similarity at which the LSH S-curve is steepest: (1/bands)^(1/rows)."""
    return (1.0 / bands) ** (1.0 / rows)


def candidate_probability(jaccard: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The probability that two documents with this Jaccard similarity share a band key."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=float) ** rows) ** bands


# ---------------------------------------------------------------------------------------------
# Normalisation and shingles


SEPARATOR = 0  # fold value of a character that separates words
DELETED = 0xFFFFFFFF  # fold value of a character that is removed


@functools.cache
def _fold_table() -> np.ndarray:
    """What each code point becomes, one character for one (see `normalize`): a uint32 table
    over all of Unicode, built once per process (~0.2 s)."""
    category = unicodedata.category
    fold = np.arange(sys.maxunicode + 1, dtype=np.uint32)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        kind = category(char)
        if kind in ("Cn", "Co", "Cs"):  # unassigned, private use, surrogates: themselves
            continue
        if kind in ("Mn", "Cf"):  # combining marks; invisible format characters (soft hyphen, ZWJ)
            fold[code] = DELETED
            continue
        lower = char.lower()
        base = unicodedata.normalize("NFD", lower)
        if len(base) > 1:
            stripped = "".join(c for c in base if category(c) != "Mn")
            base = stripped if len(stripped) == 1 else lower if len(lower) == 1 else char
        kind = category(base)
        if kind[0] in "PS" or kind == "Cc" or base.isspace():
            fold[code] = SEPARATOR
        elif kind == "Nd":
            fold[code] = ord("0")
        else:
            fold[code] = ord(base)
    return fold


@functools.cache
def _translation() -> dict[int, str | None]:
    """The fold table as a str.translate table, for the per-document path `normalize()`."""
    fold = _fold_table()
    changed = np.flatnonzero(fold != np.arange(fold.size, dtype=np.uint32))
    return {int(c): " " if fold[c] == SEPARATOR else None if fold[c] == DELETED else chr(fold[c]) for c in changed}


def normalize(text: str) -> str:
    """`text` with every character folded on its own: lower-cased; accents removed (a character
    whose NFD form is one base character plus combining marks becomes the base character;
    combining marks and invisible format characters are dropped); Unicode punctuation, symbols,
    control characters and whitespace become a space; decimal digits of any script become "0"."""
    return text.translate(_translation())


def words(text: str) -> list[str]:
    """The normalised words of `text`."""
    return normalize(text).split()


def _ngram_strings(tokens: list[str], ngram: int) -> list[str]:
    if not tokens:
        return []
    if len(tokens) < ngram:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)]


def shingles(text: str, ngram: int = DEFAULT_NGRAM) -> set[str]:
    """The shingle set of `text`: its normalised word n-grams joined by single spaces; one shingle
    of all its words when it has fewer than `ngram`; empty when it has no word."""
    return set(_ngram_strings(words(text), ngram))


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# ---------------------------------------------------------------------------------------------
# Hashing


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection that avalanches), in place on a uint64 array."""
    h ^= h >> _U64(33)
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch's affine32 scheme pre-mixes its input."""
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _sha1_hash32(data: bytes) -> int:
    """datasketch.hashfunc.sha1_hash32."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def _segment(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The words of a batch of documents with numpy, the same as `words()` gives: (folded code
    points of the batch, deleted characters removed; word starts; word ends; words per document)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + 1
    doc_starts = np.cumsum(lengths) - lengths  # documents joined by one space
    codes = np.frombuffer(" ".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    folded = _fold_table()[codes]
    deleted = np.flatnonzero(folded == DELETED)
    if deleted.size:
        doc_starts = doc_starts - np.searchsorted(deleted, doc_starts)
        folded = np.delete(folded, deleted)
    in_word = (folded != SEPARATOR).view(np.int8)
    bounds = np.flatnonzero(np.diff(in_word, prepend=np.int8(0), append=np.int8(0)))
    starts, ends = bounds[0::2], bounds[1::2]
    per_doc = np.bincount(np.searchsorted(doc_starts, starts, side="right") - 1, minlength=len(texts))
    return folded, starts, ends, per_doc.astype(np.int64)


class MinHasher:
    """MinHash signatures of documents' word n-gram shingle sets, `num_perm` uint32 values each.

    hash="fast" (default): numpy-vectorised shingle hashes over a batch of documents.
    hash="sha1": datasketch's sha1_hash32 per shingle; the signature then equals datasketch
    `MinHash(num_perm=num_perm, seed=seed)` (scheme affine32) fed `shingles(text, ngram)` encoded
    as UTF-8, value for value. Both use datasketch's permutations for `seed`.
    """

    def __init__(
        self,
        num_perm: int = DEFAULT_NUM_PERM,
        ngram: int = DEFAULT_NGRAM,
        seed: int = DEFAULT_SEED,
        *,
        hash: str = "fast",
        chunk_shingles: int = 65536,
        block_below: int = 8192,
        max_batch_chars: int = 1 << 21,
    ):
        if num_perm < 1 or ngram < 1:
            raise ValueError("num_perm and ngram must be positive")
        if hash not in ("fast", "sha1"):
            raise ValueError(f"hash must be 'fast' or 'sha1', not {hash!r}")
        self.num_perm, self.ngram, self.seed, self.hash = num_perm, ngram, seed, hash
        self.chunk_shingles, self.block_below = chunk_shingles, block_below
        self.max_batch_chars = max_batch_chars
        # datasketch 2.0 MinHash._init_permutations, scheme affine32.
        gen = np.random.RandomState(seed)
        self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        # Word and n-gram hashing constants (fast mode), from their own stream.
        rng = np.random.Generator(np.random.PCG64([seed, 0x5EED]))
        draw = lambda n: rng.integers(0, 1 << 64, n, dtype=np.uint64, endpoint=False) | _U64(1)  # noqa: E731
        self._base = draw(1)[0]  # of the polynomial word hash
        self._base_inverse = _U64(pow(int(self._base), -1, 1 << 64))
        self._powers = self._inverse_powers = np.ones(0, dtype=np.uint64)
        self._word_weights = draw(ngram)
        self._length_tags = draw(ngram + 1)

    # -- shingle hashes ------------------------------------------------------------------------

    def _grow_powers(self, size: int) -> None:
        if self._powers.size < size:
            size = 1 << max(16, (size - 1).bit_length())
            self._powers = np.cumprod(np.full(size, self._base, dtype=np.uint64)) * self._base_inverse
            self._inverse_powers = np.cumprod(np.full(size, self._base_inverse, dtype=np.uint64)) * self._base

    def _word_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(64-bit hashes of the words of all documents in order, words per document).

        A word's hash is the polynomial sum(c_i * B^i) of its folded code points (B a random odd
        64-bit number, arithmetic mod 2^64), taken from prefix sums over the whole batch, plus a
        length tag, through the MurmurHash3 finaliser."""
        folded, starts, ends, per_doc = _segment(texts)
        if starts.size == 0:
            return np.zeros(0, dtype=np.uint64), per_doc
        self._grow_powers(folded.size + 1)
        prefix = np.zeros(folded.size + 1, dtype=np.uint64)
        np.multiply(folded, self._powers[: folded.size], out=prefix[1:], dtype=np.uint64)
        np.cumsum(prefix, out=prefix)
        hashes = prefix[ends] - prefix[starts]
        hashes *= self._inverse_powers[starts]
        hashes += (ends - starts).astype(np.uint64) * self._length_tags[0]
        return _fmix64(hashes), per_doc

    def _fast_shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        n = self.ngram
        wh, lengths = self._word_hashes(texts)
        counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
        word_off = np.cumsum(lengths) - lengths
        sh_off = np.cumsum(counts) - counts
        out = np.empty(int(counts.sum()), dtype=np.uint64)
        full = lengths >= n
        if full.any():
            # n-gram hash at every word position of the batch, then the ones inside a document.
            m = wh.size - n + 1
            acc = wh[:m] * self._word_weights[0]
            for k in range(1, n):
                acc += wh[k : k + m] * self._word_weights[k]
            acc += self._length_tags[n]
            c = counts[full]
            first = np.repeat(word_off[full] - sh_off[full], c)  # word index minus shingle index
            dest = np.repeat(sh_off[full], c) + (np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c))
            out[dest] = acc[dest + first]
        for i in np.flatnonzero((lengths > 0) & (lengths < n)):
            w = wh[word_off[i] : word_off[i] + lengths[i]]
            out[sh_off[i]] = (w * self._word_weights[: w.size]).sum(dtype=np.uint64) + self._length_tags[w.size]
        _fmix64(out)
        return (out >> _U64(32)).astype(np.uint32), counts

    def _sha1_shingle_hashes(self, docs_words: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        hashes, counts = [], []
        for w in docs_words:
            # A set, as datasketch is fed shingles(); the minimum does not care about repeats.
            grams = set(_ngram_strings(w, self.ngram))
            hashes.extend(_sha1_hash32(g.encode("utf-8")) for g in grams)
            counts.append(len(grams))
        return np.array(hashes, dtype=np.uint32), np.array(counts, dtype=np.int64)

    def shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(32-bit shingle hashes of all documents concatenated, number of hashes per document).
        Fast mode hashes every n-gram position (a repeated shingle twice: the minimum is the
        same); sha1 mode hashes the set, as datasketch is fed."""
        if self.hash == "sha1":
            return self._sha1_shingle_hashes([words(t) for t in texts])
        # Groups of at most max_batch_chars characters (one document may be more) bound memory.
        groups, group, size = [], [], 0
        for text in texts:
            if group and size + len(text) > self.max_batch_chars:
                groups.append(group)
                group, size = [], 0
            group.append(text)
            size += len(text) + 1
        if group or not groups:
            groups.append(group)
        if len(groups) == 1:
            return self._fast_shingle_hashes(groups[0])
        parts = [self._fast_shingle_hashes(g) for g in groups]
        return np.concatenate([h for h, _ in parts]), np.concatenate([c for _, c in parts])

    # -- signatures ----------------------------------------------------------------------------

    def signatures_from_hashes(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(documents x num_perm) uint32 minimum per permutation; all 0xFFFFFFFF for no shingle.

        Works a chunk of shingles at a time; a large chunk one permutation at a time (a 1-D pass
        that stays in cache, ~4x faster than a shingles x permutations block), a small one as a
        permutations x shingles block (fewer numpy calls)."""
        ndocs = len(counts)
        sig = np.full((self.num_perm, ndocs), MAX_HASH, dtype=np.uint32)
        if hashes.size:
            x = _fmix32(hashes)
            nonempty = np.flatnonzero(counts > 0)
            ends = np.cumsum(counts)[nonempty]
            starts = ends - counts[nonempty]
            for lo in range(0, x.size, self.chunk_shingles):
                hi = min(lo + self.chunk_shingles, x.size)
                first, last = np.searchsorted(ends, lo, "right"), np.searchsorted(starts, hi, "left")
                segments = np.maximum(starts[first:last], lo) - lo
                mins = self._chunk_minima(x[lo:hi], segments)
                docs = nonempty[first:last]
                sig[:, docs] = np.minimum(sig[:, docs], mins)
        return np.ascontiguousarray(sig.T)

    def _chunk_minima(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """(num_perm x segments) minima of a*x + b over each segment of x."""
        if x.size < self.block_below:
            block = np.multiply(self.a[:, None], x[None, :])
            block += self.b[:, None]
            return np.minimum.reduceat(block, segments, axis=1)
        mins = np.empty((self.num_perm, segments.size), dtype=np.uint32)
        row = np.empty_like(x)
        for p in range(self.num_perm):
            np.multiply(x, self.a[p], out=row)
            row += self.b[p]
            mins[p] = np.minimum.reduceat(row, segments)
        return mins

    def signatures(self, texts: list[str]) -> np.ndarray:
        """Signatures of a batch of documents, (len(texts), num_perm) uint32."""
        hashes, counts = self.shingle_hashes(texts)
        return self.signatures_from_hashes(hashes, counts)

    def signature(self, text: str) -> np.ndarray:
        return self.signatures([text])[0]


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """The share of equal signature values (rows of two equal-shaped arrays, or two signatures)."""
    return np.mean(np.asarray(sig_a) == np.asarray(sig_b), axis=-1)


def band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(documents x bands) uint64: a hash of band index and the band's `rows` signature values."""
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands x rows ({bands} x {rows}) exceeds num_perm ({signatures.shape[1]})")
    values = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    keys = np.empty((len(signatures), bands), dtype=np.uint64)
    keys[:] = _fmix64(np.arange(bands, dtype=np.uint64) + _U64((seed * 0x9E3779B97F4A7C15) & _M64))
    for r in range(rows):
        keys *= _U64(0x100000001B3)
        keys += values[:, :, r]
        _fmix64(keys)
    return keys


# ---------------------------------------------------------------------------------------------
# Phase 1: signatures and band keys, one task per document shard


def _save_npz(path: str | Path, **arrays) -> int:
    """Write an uncompressed npz archive atomically at exactly `path`; return its size."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object, so numpy adds no suffix
            np.savez(f, **arrays)
        return tmp.stat().st_size


def minhash_signatures(
    input_path: str,
    output_path: str,
    *,
    shard_index: int,
    num_perm: int = DEFAULT_NUM_PERM,
    bands: int = DEFAULT_BANDS,
    rows: int = DEFAULT_ROWS,
    ngram: int = DEFAULT_NGRAM,
    seed: int = DEFAULT_SEED,
    batch_size: int = 1024,
) -> ShardStats:
    """Signatures and band keys of every document of a shard, in document order (see module doc
    for the file). Every document is counted out; `no_shingles` counts those without a word."""
    if bands * rows > num_perm:
        raise ValueError(f"bands x rows ({bands} x {rows}) exceeds num_perm ({num_perm})")
    hasher = MinHasher(num_perm, ngram, seed)
    stats = ShardStats()
    signatures, counts = [], []
    for batch in read_document_batches(input_path, columns=["text"], batch_size=batch_size):
        texts = [doc["text"] for doc in batch]
        hashes, per_doc = hasher.shingle_hashes(texts)
        signatures.append(hasher.signatures_from_hashes(hashes, per_doc))
        counts.append(per_doc)
        stats.docs_in += len(texts)
    sig = np.concatenate(signatures) if signatures else np.zeros((0, num_perm), dtype=np.uint32)
    shingle_counts = (np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)).astype(np.uint32)
    stats.bytes_out = _save_npz(
        output_path,
        band_keys=band_keys(sig, bands, rows, seed),
        signatures=sig,
        shingles=shingle_counts,
        shard_index=np.int64(shard_index),
        params=np.array([num_perm, bands, rows, ngram, seed], dtype=np.int64),
    )
    stats.docs_out = stats.docs_in
    stats.counters["no_shingles"] = int((shingle_counts == 0).sum())
    stats.counters["shingles"] = int(shingle_counts.sum())
    return stats.check()


# ---------------------------------------------------------------------------------------------
# Phase 2: candidate pairs, one task per partition of the band keys


def _node(shard: int | np.ndarray, doc: np.ndarray) -> np.ndarray:
    return (np.int64(shard) << np.int64(SHARD_SHIFT)) | doc.astype(np.int64)


def _split_node(node: np.ndarray | int) -> tuple:
    return node >> SHARD_SHIFT, node & ((1 << SHARD_SHIFT) - 1)


def find_candidate_pairs(
    signature_files: list[str],
    output_path: str,
    *,
    partition: int,
    partitions: int,
    verify: bool = True,
    threshold: float | None = None,
) -> ShardStats:
    """Edges between documents that share a band key, for the band keys of this partition.

    `signature_files` in shard order (position = shard index). A band key belongs to partition
    `key % partitions`; documents with equal (band, key) form a bucket, and each member is joined
    to the bucket's first member in corpus order (a star: enough for connected components).
    Edges are deduplicated (a pair sharing several bands is one edge) and sorted.

    verify (default on): drop an edge whose Jaccard estimated from the two full signatures is
    below `threshold` (default: the S-curve threshold (1/bands)^(1/rows) of the signatures),
    counted as `rejected_pairs`. On the evaluation pairs it lifts precision from 0.84 to 0.97
    for a recall of 0.93 instead of 0.94 (bench/README.md, "Near-duplicate evaluation"). An edge
    is checked against the bucket's first member only, so two members that are similar to each
    other but not to the first lose that bucket's link (they usually share another band).
    Counters: band_keys (keys of this partition), buckets (with two documents or more),
    candidate_pairs (edges written), rejected_pairs.
    """
    stats = ShardStats()
    all_bands, all_keys, all_nodes = [], [], []
    params = None
    for shard, path in enumerate(signature_files):
        with np.load(path) as archive:
            keys, shingle_counts = archive["band_keys"], archive["shingles"]
            shard_params = archive["params"]
            if int(archive["shard_index"]) != shard:
                found = int(archive["shard_index"])
                raise ValueError(f"{path} holds shard {found}, expected {shard}: pass files in shard order")
        if params is None:
            params = shard_params
        elif not np.array_equal(params, shard_params):
            raise ValueError(f"{path}: signature parameters {shard_params.tolist()} differ from {params.tolist()}")
        mine = (keys % np.uint64(partitions)) == np.uint64(partition)
        mine &= (shingle_counts > 0)[:, None]
        docs, bands = np.nonzero(mine)
        all_bands.append(bands.astype(np.int32))
        all_keys.append(keys[docs, bands])
        all_nodes.append(_node(shard, docs))
    band = np.concatenate(all_bands) if all_bands else np.zeros(0, dtype=np.int32)
    key = np.concatenate(all_keys) if all_keys else np.zeros(0, dtype=np.uint64)
    node = np.concatenate(all_nodes) if all_nodes else np.zeros(0, dtype=np.int64)
    stats.counters["band_keys"] = int(key.size)

    order = np.lexsort((node, key, band))
    band, key, node = band[order], key[order], node[order]
    new_bucket = np.ones(key.size, dtype=bool)
    new_bucket[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    first = np.maximum.accumulate(np.where(new_bucket, np.arange(key.size), 0))
    member = ~new_bucket
    edges = np.unique(np.stack([node[first[member]], node[member]], axis=1).reshape(-1, 2), axis=0)
    stats.counters["buckets"] = int(np.unique(first[member]).size)

    if verify:
        if threshold is None:
            threshold = lsh_threshold(int(params[1]), int(params[2])) if params is not None else 0.0
        passed = _estimated_jaccard(signature_files, edges) >= threshold if edges.size else np.ones(0, dtype=bool)
        stats.counters["rejected_pairs"] = int((~passed).sum())
        edges = edges[passed]
    stats.counters["candidate_pairs"] = int(len(edges))
    stats.bytes_out = _save_npz(output_path, edges=edges.astype(np.int64), num_shards=np.int64(len(signature_files)))
    return stats.check()


def _estimated_jaccard(signature_files: list[str], edges: np.ndarray) -> np.ndarray:
    """Share of equal signature values of each edge's two documents."""
    shards, docs = _split_node(edges)
    left = np.empty((len(edges), 0), dtype=np.uint32)
    right = left
    for shard in np.unique(shards):
        with np.load(signature_files[shard]) as archive:
            sig = archive["signatures"]
        if left.shape[1] == 0:
            left = np.zeros((len(edges), sig.shape[1]), dtype=np.uint32)
            right = np.zeros_like(left)
        on_left, on_right = shards[:, 0] == shard, shards[:, 1] == shard
        left[on_left] = sig[docs[on_left, 0]]
        right[on_right] = sig[docs[on_right, 1]]
    return estimate_jaccard(left, right)


# ---------------------------------------------------------------------------------------------
# Phase 3: clusters, one task over all partitions' edges


def connected_components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted node ids that appear in an edge, index in it of each node's smallest component
    member). Vectorised union-find: hook each root to the smaller root across every edge, then
    pointer-jump until every node points at its root; repeat until no edge spans two roots."""
    nodes, inverse = np.unique(edges, return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    u, v = inverse[:, 0], inverse[:, 1]
    parent = np.arange(nodes.size)
    while True:
        pu, pv = parent[u], parent[v]
        spanning = pu != pv
        if not spanning.any():
            return nodes, parent
        np.minimum.at(parent, np.maximum(pu, pv)[spanning], np.minimum(pu, pv)[spanning])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def cluster_duplicates(pair_files: list[str], output_dir: str, *, num_shards: int | None = None) -> ShardStats:
    """Clusters from all partitions' edges; writes `output_dir/shard-<s:05d>.npy` for every shard
    s < num_shards (default: the number the pair files were made for), each a structured array
    (doc, cluster_id, cluster_size, keep) of its documents in a cluster of two or more, by doc.

    Keep rule: the member first in corpus order (lowest shard index, then row); cluster_id is its
    node id (shard << 32 | row). Counters: clusters, duplicates (members not kept),
    largest_cluster."""
    stats = ShardStats()
    edge_lists, recorded = [], set()
    for path in pair_files:
        with np.load(path) as archive:
            edge_lists.append(archive["edges"])
            recorded.add(int(archive["num_shards"]))
    if num_shards is None:
        if len(recorded) != 1:
            raise ValueError(f"pair files disagree on the number of shards ({sorted(recorded)}); pass num_shards")
        num_shards = recorded.pop()
    edges = np.concatenate(edge_lists) if edge_lists else np.zeros((0, 2), dtype=np.int64)
    nodes, root = connected_components(edges)
    sizes = np.bincount(root, minlength=nodes.size)[root]
    keep = root == np.arange(nodes.size)
    shards, docs = _split_node(nodes)
    if nodes.size and shards.max() >= num_shards:
        raise ValueError(f"edges name shard {int(shards.max())} but there are {num_shards} shards")
    bounds = np.searchsorted(shards, np.arange(num_shards + 1))
    with atomic_dir(output_dir) as out:
        for shard in range(num_shards):
            lo, hi = bounds[shard], bounds[shard + 1]
            records = np.empty(hi - lo, dtype=CLUSTER_DTYPE)
            records["doc"], records["cluster_id"] = docs[lo:hi], nodes[root[lo:hi]]
            records["cluster_size"], records["keep"] = sizes[lo:hi], keep[lo:hi]
            with open(out / f"shard-{shard:05d}.npy", "wb") as f:
                np.save(f, records)
                stats.bytes_out += f.tell()
    stats.counters["clusters"] = int(keep.sum())
    stats.counters["duplicates"] = int(nodes.size - keep.sum())
    stats.counters["largest_cluster"] = int(sizes.max()) if sizes.size else 0
    return stats.check()


# ---------------------------------------------------------------------------------------------
# Phase 4: removal, one task per document shard


def cluster_label(cluster_id: int) -> str:
    """The cluster id as written in documents: "<shard>:<row>" of the kept document."""
    shard, row = _split_node(int(cluster_id))
    return f"{shard}:{row}"


def remove_near_duplicates(
    input_path: str, cluster_file: str, output_path: str, *, dropped_path: str | None = None
) -> ShardStats:
    """Drop the cluster members that are not kept (`near_duplicate`); kept documents gain
    `cluster_id` ("<shard>:<row>" of the kept document) and `cluster_size`, null when the
    document is in no cluster. Dropped documents carry the same two columns in the side output.
    Counter: clusters_kept (documents kept as their cluster's representative)."""
    clusters = np.load(cluster_file)
    num_docs = pq.ParquetFile(input_path).metadata.num_rows
    if clusters.size and int(clusters["doc"].max()) >= num_docs:
        raise ValueError(f"{cluster_file} names row {int(clusters['doc'].max())} but {input_path} has {num_docs} rows")
    members = {
        int(r["doc"]): (cluster_label(r["cluster_id"]), int(r["cluster_size"]), bool(r["keep"])) for r in clusters
    }
    rows = itertools.count()
    representatives = 0

    def judge(batch: list[dict]) -> Iterator[tuple[dict, str | None]]:
        nonlocal representatives
        for doc in batch:
            cluster_id, cluster_size, keep = members.get(next(rows), (None, None, True))
            representatives += keep and cluster_id is not None
            yield {**doc, "cluster_id": cluster_id, "cluster_size": cluster_size}, None if keep else DROP_REASON

    fields = [pa.field("cluster_id", pa.string()), pa.field("cluster_size", pa.int32())]
    stats = filter_shard(input_path, output_path, fields, judge, dropped_path=dropped_path)
    stats.counters["clusters_kept"] = representatives
    return stats
