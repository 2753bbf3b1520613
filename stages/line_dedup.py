"""Line-level deduplication over the whole corpus (CCNet's line dedup, without its shard groups).

Every line is normalised (`normalise_line`) and hashed (`line_hash`: SHA-1 of the normalised line,
first 8 bytes as a little-endian uint64, as CCNet's `dedup.str_hash`). A line whose hash was
already seen earlier in the run's corpus, in any shard, is removed. RedPajama ran CCNet with
5,000 shards and `hash_in_mem 1`, so its dedup only compared lines within 1/5000 of the data; here
every line is compared with every other line of the run.

Three Ray-free phases; the runner calls each once per task:

    hash_lines              one task per document shard: (hash, doc, line) of every non-blank line,
                            split into `partitions` files by hash prefix
    find_duplicate_lines    one task per partition: that partition's entries from every shard;
                            lists, per shard, the (doc, line) pairs to remove
    remove_duplicate_lines  one task per document shard: removes those lines; drops documents left
                            too short

Keep rule. Of all lines with the same hash, the first in corpus order stays: the lowest shard index
(the shard's position in the planner's order), then the lowest document row in that shard, then
the lowest line index in the document. Every later occurrence is removed, so a line repeated
inside one document loses its later copies too (CCNet's `finalize_doc` does the same). The rule
depends only on the corpus order, not on the number of partitions, on task scheduling or on which
task finishes first: the output is the same for any `partitions` (tests/test_line_dedup.py). Note
that CCNet's `mine.py` (the paper's pipeline: `DuplicatesRemover` over hash files collected
beforehand) removes *every* copy of a line that occurs twice, the first one included; this stage
keeps the first copy, as CCNet's single-pass `dedup.deduplicate` does and as the GUIDE states.
A first occurrence whose document a later stage drops takes the line out of the corpus
altogether (so does CCNet).

Normalisation (`normalise_line`): lower-case (`str.lower`); accents stripped (NFD, combining marks
of category Mn removed, as CCNet's `strip_accents`); every Unicode decimal digit (category Nd, as
`\\d`) becomes "0"; every punctuation (P*), symbol (S*), control (Cc), format (Cf: soft hyphen,
zero-width space) or surrogate character is deleted (not replaced by a space: "e-mail" and
"email" agree); whitespace runs become one space and the line is stripped. This is the CCNet
paper's description (lower-case, numbers to a placeholder, Unicode punctuation and accent marks
removed). CCNet's code (`text_normalizer.normalize_for_dedup`) does less: it keeps accents and
ASCII punctuation and deletes only ~35 listed Unicode punctuation marks and control characters.
Our normalisation is a coarsening of it: `normalise_line(x) == normalise_line(ccnet(x))`, so
any two lines CCNet's code treats as equal are equal here too (tested on real pages).

Blank lines. A line whose normalised form is empty (whitespace, punctuation, symbols only: "",
"  ", "***", "|") is not hashed, never removed and kept verbatim; paragraph breaks survive.
Lines are the pieces of `text.split("\\n")` (CCNet's split); a removed line disappears with its
newline, so the kept lines are joined back with "\\n" and a document that loses nothing is
byte-identical to its input.

Short documents. A document that lost at least one line and has fewer than `min_text_chars`
characters left (after stripping surrounding whitespace) is dropped as
`too_short_after_line_dedup`, written with its original text to the audit side output. Documents
that lost nothing pass through unchanged whatever their length (earlier stages set the minimum).

Files. A hash directory (one per shard) holds `part-<p:05d>.npy` for every partition p, each a
structured array HASH_DTYPE (hash uint64, doc uint32, line uint32: 16 bytes a line) sorted by
(hash, doc, line), and `meta.json` (shard index, partition count, entries per partition). A
duplicates directory (one per partition) holds `shard-<s:05d>.npy` for every shard s, each
DUPLICATE_DTYPE (doc, line, hash: 16 bytes) sorted by (doc, line), and `meta.json`. Directories
appear atomically: they are written beside their destination as `.<name>.tmp-<random>` and
renamed into place (a stale one is replaced). Phase 2 checks that the hash files come in shard
order, agree on the partition count and hold this partition's hashes; phase 3 checks that it
has exactly one duplicates file from every partition, that each line index exists, and that the
first line it removes from each document has the recorded hash, so wrong wiring (another
shard's list, re-extracted documents) fails instead of removing the wrong lines.

Partitions and memory. A hash's partition is its top 32 bits scaled to the partition count,
`((hash >> 32) * partitions) >> 32`: partition p holds a contiguous 1/partitions of the hash
range, so every copy of a line, in any shard, meets the others in the same task. A partition
task holds the partition's hashes (8 bytes a line, sorted in place), two boolean masks (1 byte
each) and the distinct repeated hashes (8 bytes + 1 claimed flag each, at most half the lines),
then one shard's slice of the partition at a time: 10-15 bytes per line of the partition
(bench/line_dedup.py measures 11-12 with tracemalloc, 13 in a fresh process's RSS), whatever
the corpus size, because SHA-1 spreads lines evenly over partitions. Choose

    partitions = ceil(L * B / M)   L = non-blank lines in the corpus (`lines_hashed` of phase 1)
                                   B = 24 bytes a line (the measured peak with 2x headroom)
                                   M = memory one task may use

L is about text bytes / 120 for English web text after extraction (the sample pages here average
120 UTF-8 bytes per non-blank line; count a sample of your data). Example: 1 TB of extracted text
~ 8.3e9 lines x 24 B = 200 GB of partition state; at M = 2 GB a task, partitions = 100 (round up
to 128: 1.6 GB a task). Doubling the corpus doubles the partition count at the same memory per
task; partitions can be many more than cores (Ray queues them). Phase 1 and phase 3 are bounded
by the shard, not the corpus: phase 1 keeps its shard's entries (~50 bytes a line at the final
sort) plus the normalisation of at most MAX_BATCH_CHARS (2M) characters at a time (~20 bytes a
character, ~45 MB); phase 3 one parquet batch of documents and the shard's duplicates list (16
bytes a removed line). The price of more partitions is files: shards x partitions hash files and
as many duplicates files (5,000 shards x 128 partitions = 640,000 of each), and each partition
task opens every shard's file. SHA-1's first 64 bits make collisions negligible: ~L^2 / 2^65
pairs of distinct lines, about two for L = 8.3e9, each a wrongly removed line.

Speed. Phase 1 normalises a batch of documents (up to 2M characters) at once with numpy: one
lookup table maps each code point to its lower-cased, accent-stripped, folded form (a text with
a character for which that differs from lower-casing and decomposing the whole line, e.g. Greek
capital sigma or Hangul, goes through `str.lower` + NFD first), then whitespace is collapsed with
array masks; SHA-1 is hashlib per line. It equals `normalise_line` on every code point
(tests/test_line_dedup.py). Phase 2 is numpy sort and searchsorted; phase 3 touches in Python
only the documents that lose lines.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import unicodedata
from collections.abc import Iterator
from itertools import compress
from operator import methodcaller
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from stages.accounting import ShardStats
from stages.documents import DroppedDocuments, atomic_dir, read_document_batches, write_documents

HASH_DTYPE = np.dtype([("hash", "<u8"), ("doc", "<u4"), ("line", "<u4")])
DUPLICATE_DTYPE = np.dtype([("doc", "<u4"), ("line", "<u4"), ("hash", "<u8")])
DROP_REASON = "too_short_after_line_dedup"
MAX_PARTITIONS = 1 << 20
MAX_BATCH_CHARS = 1 << 21  # phase 1 normalises at most this many characters at once (~20 bytes each)
META = "meta.json"

_DELETED, _EXACT = 0xFFFFFFFF, 0xFFFFFFFE
_NEWLINE, _SPACE = 10, 32
_DELETED_CATEGORIES = frozenset({"Mn", "Cc", "Cf", "Cs"})
_SHA1_DIGEST = np.dtype([("head", "<u8"), ("rest", "V12")])


def partition_file(partition: int) -> str:
    return f"part-{partition:05d}.npy"


def shard_file(shard: int) -> str:
    return f"shard-{shard:05d}.npy"


# ---------------------------------------------------------------------------------------------
# Normalisation and hashing


def _fold(char: str) -> str:
    """What one character of a lower-cased NFD line becomes (see `normalise_line`)."""
    category = unicodedata.category(char)
    if category in _DELETED_CATEGORIES or category[0] in "PS":
        return ""
    if category == "Nd":
        return "0"
    return " " if char.isspace() else char


def normalise_line(line: str) -> str:
    """The CCNet-style normal form of one line (module doc): lower-cased, accents stripped,
    digits to "0", punctuation/symbols/control/format characters deleted, whitespace collapsed.
    The reference implementation; phase 1 gets the same result vectorised over whole batches."""
    decomposed = unicodedata.normalize("NFD", line.lower())
    return " ".join("".join(map(_fold, decomposed)).split())


def line_hash(line: str) -> int:
    """SHA-1 of the UTF-8 normalised line, its first 8 bytes as a little-endian uint64 (CCNet)."""
    return int.from_bytes(hashlib.sha1(normalise_line(line).encode("utf-8")).digest()[:8], "little")


@functools.cache
def _fold_tables() -> tuple[np.ndarray, np.ndarray]:
    """Two uint32 tables over all code points (deleted: 0xFFFFFFFF; the newline stays itself, as
    it separates lines in the batch path), built once per process (~0.4 s):

    exact  `_fold(c)`: for text already lower-cased and in NFD, as `normalise_line` folds it.
    fast   `_fold` of `c` lower-cased and decomposed on its own: the single character left of
           NFD(c.lower()) without its Mn marks. Text whose characters all have such an entry needs
           no `str.lower` and no NFD. `_EXACT` marks the characters for which that is not the
           same as lower-casing and decomposing the whole line: capital sigma (lower-cased by
           context), characters that decompose to several non-mark characters (Hangul syllables,
           some Indic vowel signs) and non-Mn characters with a combining class (NFD may reorder
           them). Texts containing one take the exact path.

    Planes 4-13 are unassigned and 15-16 private use: unchanged in both."""
    category, combining, nfd = unicodedata.category, unicodedata.combining, unicodedata.normalize
    exact = np.arange(sys.maxunicode + 1, dtype=np.uint32)
    fast = exact.copy()
    for code in (*range(0x40000), *range(0xE0000, 0xE1000)):
        char = chr(code)
        folded = _fold(char)
        if folded != char:
            exact[code] = _DELETED if folded == "" else ord(folded)
        decomposed = nfd("NFD", char.lower())
        kept = [c for c in decomposed if category(c) != "Mn"]
        if code == 0x03A3 or len(kept) > 1 or any(combining(c) for c in kept):
            fast[code] = _EXACT
        else:
            folded = _fold(kept[0]) if kept else ""
            fast[code] = _DELETED if folded == "" else ord(folded)
    exact[_NEWLINE] = fast[_NEWLINE] = _NEWLINE
    return exact, fast


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _normalised_lines(texts: list[str]) -> list[bytes]:
    """The UTF-8 normal form of every line of every text (lines: pieces of `split("\\n")`), in
    order; equal to `normalise_line(line).encode()` for each, computed over the whole batch."""
    exact, fast = _fold_tables()
    codes = _code_points("\n".join(texts))
    folded = fast[codes]
    needs_exact = folded == _EXACT
    if needs_exact.any():  # lower-case and decompose those texts whole, fold them with `exact`
        ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + 1)
        slow = np.zeros(len(texts), dtype=bool)
        slow[np.searchsorted(ends, np.flatnonzero(needs_exact), side="right")] = True
        nfd = unicodedata.normalize
        texts = [nfd("NFD", t.lower()) if s else t for t, s in zip(texts, slow.tolist())]
        codes = _code_points("\n".join(texts))
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + 1
        per_char = np.repeat(slow, lengths)[: codes.size]
        folded = np.where(per_char, exact[codes], fast[codes])
    folded = folded[folded != _DELETED]
    # Collapse whitespace: drop a space that follows a space, a newline or the start, then a
    # space that precedes a newline or the end (what " ".join(line.split()) does, per line).
    space = folded == _SPACE
    after = np.empty_like(space)
    if after.size:
        after[0] = True
        np.logical_or(space[:-1], folded[:-1] == _NEWLINE, out=after[1:])
    folded = folded[~(space & after)]
    space = folded == _SPACE
    before = np.empty_like(space)
    if before.size:
        before[-1] = True
        np.equal(folded[1:], _NEWLINE, out=before[:-1])
    folded = folded[~(space & before)]
    return folded.tobytes().decode("utf-32-le").encode("utf-8").split(b"\n")


def _sha1_heads(lines: list[bytes]) -> np.ndarray:
    """CCNet's hash (first 8 bytes of SHA-1, little-endian) of each UTF-8 string, as uint64."""
    digests = b"".join(map(methodcaller("digest"), map(hashlib.sha1, lines)))
    return np.frombuffer(digests, dtype=_SHA1_DIGEST)["head"].copy()


def _line_hashes(lines: list[str]) -> np.ndarray:
    """`line_hash` of each line (lines without "\\n"), vectorised."""
    return _sha1_heads(_normalised_lines(lines)) if lines else np.zeros(0, dtype=np.uint64)


def partition_of(hashes: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each uint64 hash: its top 32 bits scaled to [0, partitions)."""
    return ((np.asarray(hashes, dtype=np.uint64) >> np.uint64(32)) * np.uint64(partitions)) >> np.uint64(32)


def _partition_starts(partitions: int) -> np.ndarray:
    """The smallest hash of each partition: (ceil(p * 2^32 / partitions)) << 32."""
    return np.array([-(-p * (1 << 32) // partitions) << 32 for p in range(partitions)], dtype=np.uint64)


# ---------------------------------------------------------------------------------------------
# Files


def _save(path: Path, array: np.ndarray) -> int:
    with open(path, "wb") as f:  # a file object, so numpy adds no suffix
        np.save(f, array, allow_pickle=False)
    return path.stat().st_size


def _save_meta(directory: Path, **meta) -> int:
    path = directory / META
    path.write_text(json.dumps(meta, sort_keys=True) + "\n")
    return path.stat().st_size


def _meta(file: str | Path) -> dict:
    """The meta.json beside a hash or duplicates file."""
    path = Path(file).parent / META
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{file}: no {META} beside it; not written by stages.line_dedup") from None


def _load(path: str | Path, dtype: np.dtype) -> np.ndarray:
    array = np.load(path, allow_pickle=False)
    if array.dtype != dtype or array.ndim != 1:
        raise ValueError(f"{path}: expected a 1-d array of {dtype}, found {array.ndim}-d {array.dtype}")
    return array


# ---------------------------------------------------------------------------------------------
# Phase 1: hash every line, one task per document shard


def _bounded(texts: list[str]) -> Iterator[list[str]]:
    """`texts` in consecutive runs of at most MAX_BATCH_CHARS characters (a longer text alone)."""
    max_chars, start, size = MAX_BATCH_CHARS, 0, 0
    for i, text in enumerate(texts):
        if size and size + len(text) > max_chars:
            yield texts[start:i]
            start, size = i, 0
        size += len(text)
    if start < len(texts):
        yield texts[start:]


def _hash_entries(texts: list[str], stats: ShardStats) -> np.ndarray:
    """(hash, doc, line) of the non-blank lines of `texts`, the next documents of the shard."""
    lines = _normalised_lines(texts)
    per_doc = np.fromiter((t.count("\n") + 1 for t in texts), dtype=np.int64, count=len(texts))
    if int(per_doc.sum()) != len(lines):
        raise AssertionError("normalisation changed the number of lines")
    doc = np.repeat(np.arange(stats.docs_in, stats.docs_in + len(texts), dtype=np.uint32), per_doc)
    line = np.arange(len(lines), dtype=np.int64) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
    non_blank = np.flatnonzero(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)))
    entries = np.empty(non_blank.size, dtype=HASH_DTYPE)
    entries["hash"] = _sha1_heads([lines[i] for i in non_blank.tolist()])
    entries["doc"], entries["line"] = doc[non_blank], line[non_blank]
    stats.docs_in += len(texts)
    stats.counters["blank_lines"] += len(lines) - non_blank.size
    return entries


def hash_lines(input_path: str, output_dir: str, *, shard_index: int, partitions: int) -> ShardStats:
    """Write `output_dir/part-<p:05d>.npy` for every partition p < partitions (empty ones too):
    (hash, doc, line) of the shard's non-blank lines whose hash falls in p, sorted by (hash, doc,
    line), and `meta.json`. Every document is counted out. Counters: lines_hashed, blank_lines."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be in 1..{MAX_PARTITIONS}, not {partitions}")
    stats = ShardStats()
    chunks = []
    for batch in read_document_batches(input_path, columns=["text"]):
        for texts in _bounded([doc["text"] for doc in batch]):
            chunks.append(_hash_entries(texts, stats))
    entries = np.concatenate(chunks) if chunks else np.zeros(0, dtype=HASH_DTYPE)
    del chunks
    # Entries were made in (doc, line) order, so a stable sort by hash gives (hash, doc, line);
    # partitions are hash ranges, so each is a contiguous slice.
    entries = entries[np.argsort(entries["hash"], kind="stable")]
    bounds = [*np.searchsorted(entries["hash"], _partition_starts(partitions)).tolist(), entries.size]
    with atomic_dir(output_dir) as tmp:
        for p in range(partitions):
            stats.bytes_out += _save(tmp / partition_file(p), entries[bounds[p] : bounds[p + 1]])
        stats.bytes_out += _save_meta(
            tmp, shard_index=shard_index, partitions=partitions, documents=stats.docs_in,
            lines_hashed=int(entries.size), counts=np.diff(bounds).tolist(),
        )
    stats.docs_out = stats.docs_in
    stats.counters["lines_hashed"] = int(entries.size)
    return stats.check()


# ---------------------------------------------------------------------------------------------
# Phase 2: find the duplicates of one hash partition across all shards


def find_duplicate_lines(hash_files: list[str], output_dir: str, *, partition: int) -> ShardStats:
    """For one partition, the lines to remove from every shard.

    `hash_files`: `part-<partition>.npy` of every shard's hash directory, in shard order (position
    = shard index, checked against each directory's meta.json). Keep rule: of the lines with equal
    hash, the first in corpus order (shard, doc, line) stays; every other is listed in
    `output_dir/shard-<s:05d>.npy` (DUPLICATE_DTYPE, sorted by doc, line), written for every shard.

    Memory: the partition's hashes (8 bytes a line), sorted in place, two boolean masks and the
    distinct repeated hashes, then one shard's file at a time. Counters: lines_seen,
    duplicate_lines, distinct_lines, repeated_lines (distinct lines that occur more than once)."""
    stats = ShardStats()
    partitions, lengths = None, []
    for shard, path in enumerate(hash_files):
        meta = _meta(path)
        lengths.append(meta["counts"][partition] if partition < len(meta["counts"]) else -1)
        if meta["shard_index"] != shard:
            raise ValueError(f"{path} holds shard {meta['shard_index']}, expected {shard}: "
                             "pass the files in shard order")
        if partitions is None:
            partitions = meta["partitions"]
        elif meta["partitions"] != partitions:
            raise ValueError(f"{path}: made for {meta['partitions']} partitions, the others for {partitions}")
    if partitions is not None and not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")

    # Pass 1: every hash of the partition; the distinct hashes that occur more than once.
    hashes = np.empty(sum(lengths), dtype=np.uint64)
    offset = 0
    for path, length in zip(hash_files, lengths):
        entries = _load(path, HASH_DTYPE)
        if entries.size and not (partition_of(entries["hash"][[0, -1]], partitions) == partition).all():
            raise ValueError(f"{path} holds hashes of another partition than {partition}")
        if entries.size != length:
            raise ValueError(f"{path} has {entries.size} entries, its {META} says {length}")
        hashes[offset : offset + length] = entries["hash"]
        offset += length
    del entries
    hashes.sort()
    repeat = hashes[1:] == hashes[:-1]  # hashes[i + 1] repeats the one before it
    first_repeat = repeat.copy()
    first_repeat[1:] &= ~repeat[:-1]
    repeated = hashes[1:][first_repeat]  # sorted, distinct
    stats.counters["lines_seen"] = int(hashes.size)
    stats.counters["duplicate_lines"] = int(np.count_nonzero(repeat))
    stats.counters["distinct_lines"] = int(hashes.size - stats.counters["duplicate_lines"])
    stats.counters["repeated_lines"] = int(repeated.size)
    del hashes, repeat, first_repeat

    # Pass 2, in shard order: the first occurrence of a repeated hash claims it; all else is a duplicate.
    claimed = np.zeros(repeated.size, dtype=bool)
    found = 0
    with atomic_dir(output_dir) as tmp:
        for shard, path in enumerate(hash_files):
            entries = _load(path, HASH_DTYPE)
            slot = np.searchsorted(repeated, entries["hash"])
            np.minimum(slot, max(repeated.size - 1, 0), out=slot)
            hit = np.flatnonzero(repeated[slot] == entries["hash"]) if repeated.size else slot[:0]
            entries, slot = entries[hit], slot[hit]
            order = np.lexsort((entries["line"], entries["doc"], slot))
            entries, slot = entries[order], slot[order]
            first_here = np.ones(slot.size, dtype=bool)
            first_here[1:] = slot[1:] != slot[:-1]
            keep = first_here & ~claimed[slot]
            claimed[slot] = True
            removed = entries[~keep]
            removed = removed[np.lexsort((removed["line"], removed["doc"]))]
            out = np.empty(removed.size, dtype=DUPLICATE_DTYPE)
            out["doc"], out["line"], out["hash"] = removed["doc"], removed["line"], removed["hash"]
            stats.bytes_out += _save(tmp / shard_file(shard), out)
            found += out.size
        stats.bytes_out += _save_meta(
            tmp, partition=partition, partitions=partitions, shards=len(hash_files),
            duplicate_lines=found,
        )
    if found != stats.counters["duplicate_lines"]:
        raise AssertionError(f"listed {found} duplicate lines, counted {stats.counters['duplicate_lines']}")
    return stats.check()


# ---------------------------------------------------------------------------------------------
# Phase 3: remove the duplicate lines, one task per document shard


def _duplicates_of_shard(duplicate_files: list[str]) -> np.ndarray:
    """This shard's duplicates from all partitions, sorted by (doc, line); checks that there is
    exactly one file from each partition of one partitioning."""
    if len({Path(path).name for path in duplicate_files}) > 1:
        raise ValueError(f"duplicates files of different shards: {sorted({Path(p).name for p in duplicate_files})}")
    partitions, seen = set(), []
    for path in duplicate_files:
        meta = _meta(path)
        partitions.add(meta["partitions"])
        seen.append(meta["partition"])
    if len(partitions) > 1:
        raise ValueError(f"duplicate files from different partitionings: {sorted(partitions)} partitions")
    if partitions and sorted(seen) != list(range(partitions.pop())):
        raise ValueError(f"need one duplicates file from each partition, got partitions {sorted(seen)}")
    dups = [_load(path, DUPLICATE_DTYPE) for path in duplicate_files]
    dups = np.concatenate(dups) if dups else np.zeros(0, dtype=DUPLICATE_DTYPE)
    dups = dups[np.lexsort((dups["line"], dups["doc"]))]
    same = (dups["doc"][1:] == dups["doc"][:-1]) & (dups["line"][1:] == dups["line"][:-1])
    if same.any():
        raise ValueError("a line is listed by two partitions")
    return dups


def remove_duplicate_lines(
    input_path: str,
    duplicate_files: list[str],
    output_path: str,
    *,
    min_text_chars: int,
    dropped_path: str | None = None,
) -> ShardStats:
    """Remove the listed lines from the shard's documents (all other columns pass through).

    `duplicate_files`: this shard's `shard-<s:05d>.npy` from every partition's duplicates
    directory. A document that lost a line and has fewer than `min_text_chars` characters left
    (stripped) is dropped as `too_short_after_line_dedup`, with its original text in the audit
    output. Counters: lines_removed and bytes_removed (UTF-8 bytes of the removed lines, newlines
    not counted; lines of dropped documents included), documents_changed (kept documents that
    lost lines)."""
    dups = _duplicates_of_shard(duplicate_files)
    num_docs = pq.ParquetFile(input_path).metadata.num_rows
    if dups.size and int(dups["doc"][-1]) >= num_docs:
        raise ValueError(f"duplicates name document {int(dups['doc'][-1])} but {input_path} has {num_docs}")
    bounds = np.searchsorted(dups["doc"], np.arange(num_docs + 1)).tolist()
    dup_lines, dup_hashes = dups["line"], dups["hash"]
    schema = pq.read_schema(input_path)
    stats = ShardStats()

    def kept(dropped: DroppedDocuments):
        for batch in read_document_batches(input_path):
            first = stats.docs_in
            stats.docs_in += len(batch)
            checked_lines, checked_hashes, new_texts, removed_bytes = [], [], {}, 0
            for i, doc in enumerate(batch, start=first):
                lo, hi = bounds[i], bounds[i + 1]
                if lo == hi:
                    continue
                text = doc["text"]
                lines = text.split("\n")
                if int(dup_lines[hi - 1]) >= len(lines):
                    raise ValueError(f"duplicates name line {dup_lines[hi - 1]} of document {i}, "
                                     f"which has {len(lines)} lines")
                keep = np.ones(len(lines), dtype=bool)
                keep[dup_lines[lo:hi]] = False
                new_texts[i] = new = "\n".join(compress(lines, keep.tolist()))
                # Each removed line takes its content and one newline (none left when all go).
                removed = hi - lo
                removed_bytes += len(text.encode()) - len(new.encode()) - removed + (removed == len(lines))
                stats.counters["lines_removed"] += removed
                checked_lines.append(lines[dup_lines[lo]])
                checked_hashes.append(dup_hashes[lo])
            expected = np.array(checked_hashes, dtype=np.uint64)
            if checked_lines and not np.array_equal(_line_hashes(checked_lines), expected):
                raise ValueError(f"{input_path}: a line to remove does not have the recorded hash; the "
                                 "duplicate files were made from other documents")
            stats.counters["bytes_removed"] += removed_bytes
            for i, doc in enumerate(batch, start=first):
                text = new_texts.get(i)
                if text is None:
                    stats.docs_out += 1
                    yield doc
                elif len(text.strip()) < min_text_chars:
                    stats.drop(DROP_REASON)
                    dropped.add(doc, DROP_REASON)
                else:
                    stats.docs_out += 1
                    stats.counters["documents_changed"] += 1
                    yield {**doc, "text": text}

    with DroppedDocuments(dropped_path, schema) as dropped:
        stats.bytes_out = write_documents(output_path, kept(dropped), schema)
    return stats.check()
