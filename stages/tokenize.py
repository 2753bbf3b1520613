"""Tokenization: encode documents with the trained SentencePiece model into Megatron shards.

BOS/EOS policy: each document becomes one sequence `[BOS] tokens [EOS]`, as LLaMA trains with a
BOS at the start of every document; the EOS marks the boundary once the trainer packs documents
back to back. Documents that encode to nothing are dropped as `empty_after_tokenization`.

SentencePiece's BPE encoding slows down per character as a single input grows (measured: 0.07 s
per million characters at 10^4 characters, 1.2 s at 4 x 10^6; bench/tokenize_throughput.py), so a
long document is encoded in pieces of at most `MAX_PIECE_CHARS`, cut at a single space between two
non-space characters. No piece of the vocabulary spans such a space (BPE pieces never hold a space
inside, only at their start), and SentencePiece's dummy-prefix space stands in for the one cut: the
ids are exactly those of the whole document (tested), and time stays linear in its length.

One document shard becomes a directory of Megatron datasets, `part-00000.bin/.idx`, ..., each at
most `max_part_bytes` of `.bin` (a document never spans two parts), and `parts.json` listing each
part's prefix, documents and tokens. The directory appears whole or not at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from classifiers.tokenizer import BOS_ID, EOS_ID, load_tokenizer
from stages.accounting import ShardStats
from stages.documents import atomic_dir, read_document_batches
from trainer.indexed_dataset import IndexedDatasetWriter, best_dtype

PARTS_FILE = "parts.json"
MAX_PIECE_CHARS = 100_000
_CUT = re.compile(r"(?<=\S) (?=\S)")


def encoding_pieces(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """`text` cut at single spaces between non-space characters into pieces of at most `max_chars`
    where it can be (a longer run without such a space stays whole), each cut space dropped."""
    pieces, start = [], 0
    while len(text) - start > max_chars:
        cut = _CUT.search(text, start + max_chars // 2, start + max_chars) or _CUT.search(text, start + max_chars)
        if cut is None:
            break
        pieces.append(text[start : cut.start()])
        start = cut.end()
    pieces.append(text[start:])
    return pieces


def encode_documents(tokenizer, texts: list[str], num_threads: int) -> Iterator[list[int]]:
    """The ids of each text, as `tokenizer.encode(text)` gives them, in time linear in its length."""
    pieces = [encoding_pieces(text) for text in texts]
    flat = tokenizer.encode([p for doc in pieces for p in doc], num_threads=num_threads)
    at = 0
    for doc in pieces:
        yield [i for ids in flat[at : at + len(doc)] for i in ids]
        at += len(doc)


def read_parts(output_dir: str | Path) -> list[dict]:
    """The parts of a tokenized shard: [{"prefix": absolute prefix, "documents": n, "tokens": n,
    "bin_bytes": n}] (`bin_bytes` is absent from shards tokenized before it was recorded)."""
    output_dir = Path(output_dir)
    parts = json.loads((output_dir / PARTS_FILE).read_text())["parts"]
    return [{**part, "prefix": str(output_dir / part["prefix"])} for part in parts]


class PartWriter:
    """Megatron datasets `part-NNNNN` in `directory`, a new one whenever the next document would
    take the current one past `max_part_bytes` of tokens."""

    def __init__(self, directory: Path, dtype: np.dtype, max_part_bytes: int):
        self.directory, self.dtype, self.max_part_bytes = directory, dtype, max_part_bytes
        self.parts: list[dict] = []
        self.bytes_written = 0
        self._writer: IndexedDatasetWriter | None = None

    def add(self, document: np.ndarray) -> None:
        writer = self._writer
        if writer is not None and (writer.num_tokens + len(document)) * self.dtype.itemsize > self.max_part_bytes:
            self._close_part()
        if self._writer is None:
            self._writer = IndexedDatasetWriter(self.directory / f"part-{len(self.parts):05d}", self.dtype)
        self._writer.add_document(document)

    def _close_part(self) -> None:
        writer, self._writer = self._writer, None
        writer.finalize()
        self.bytes_written += writer.bytes_written
        self.parts.append({"prefix": writer.bin_path.stem, "documents": writer.num_documents, "tokens": writer.num_tokens,
                           "bin_bytes": writer.bin_path.stat().st_size})

    def close(self) -> None:
        if self._writer is not None:
            self._close_part()
        (self.directory / PARTS_FILE).write_text(json.dumps({"parts": self.parts}, indent=1) + "\n")


def tokenize_shard(
    input_path: str,
    tokenizer_path: str,
    output_dir: str,
    *,
    batch_docs: int,
    num_threads: int,
    max_part_bytes: int,
) -> ShardStats:
    tokenizer = load_tokenizer(tokenizer_path)
    dtype = best_dtype(tokenizer.vocab_size())
    stats = ShardStats(tokens=0)
    with atomic_dir(output_dir) as tmp:
        parts = PartWriter(tmp, dtype, max_part_bytes)
        for batch in read_document_batches(input_path, columns=["text"], batch_size=batch_docs):
            stats.docs_in += len(batch)
            for ids in encode_documents(tokenizer, [doc["text"] for doc in batch], num_threads):
                if not ids:
                    stats.drop("empty_after_tokenization")
                    continue
                parts.add(np.array([BOS_ID, *ids, EOS_ID], dtype=dtype))
                stats.docs_out += 1
                stats.tokens += len(ids) + 2
        parts.close()
    stats.bytes_out = parts.bytes_written
    stats.counters["parts"] = len(parts.parts)
    return stats.check()
