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

One document shard becomes a directory holding a Megatron dataset, `part-00000.bin/.idx` (none
when no document is left), and `parts.json` listing its prefix, documents and tokens. The directory
appears whole or not at all. The token_parts stage (stages/token_parts.py) merges a source's shards
into the parts of the size Megatron-LM expects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
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
    "bin_bytes": n}] (one, or none; shards tokenized before the token_parts stage may have several,
    and no `bin_bytes`)."""
    output_dir = Path(output_dir)
    parts = json.loads((output_dir / PARTS_FILE).read_text())["parts"]
    return [{**part, "prefix": str(output_dir / part["prefix"])} for part in parts]


def write_token_shard(output_dir: str | Path, documents: Iterable[np.ndarray], dtype: np.dtype) -> int:
    """A tokenized shard's directory (its dataset and parts.json) holding `documents`, appearing
    whole or not at all. Returns the bytes written."""
    with atomic_dir(output_dir) as tmp:
        writer, parts = None, []
        for document in documents:
            writer = writer or IndexedDatasetWriter(tmp / "part-00000", dtype)
            writer.add_document(document)
        if writer is not None:
            writer.finalize()
            parts.append({"prefix": writer.bin_path.stem, "documents": writer.num_documents,
                          "tokens": writer.num_tokens, "bin_bytes": writer.bin_path.stat().st_size})
        (tmp / PARTS_FILE).write_text(json.dumps({"parts": parts}, indent=1) + "\n")
    return writer.bytes_written if writer is not None else 0


def tokenize_shard(
    input_path: str,
    tokenizer_path: str,
    output_dir: str,
    *,
    batch_docs: int,
    num_threads: int,
) -> ShardStats:
    tokenizer = load_tokenizer(tokenizer_path)
    dtype = best_dtype(tokenizer.vocab_size())
    stats = ShardStats(tokens=0)

    def documents() -> Iterator[np.ndarray]:
        for batch in read_document_batches(input_path, columns=["text"], batch_size=batch_docs):
            stats.docs_in += len(batch)
            for ids in encode_documents(tokenizer, [doc["text"] for doc in batch], num_threads):
                if not ids:
                    stats.drop("empty_after_tokenization")
                    continue
                stats.docs_out += 1
                stats.tokens += len(ids) + 2
                yield np.array([BOS_ID, *ids, EOS_ID], dtype=dtype)

    stats.bytes_out = write_token_shard(output_dir, documents(), dtype)
    return stats.check()
