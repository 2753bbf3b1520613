"""Tokenizer training: a SentencePiece BPE model trained on a deterministic sample of the documents.

Documents are sampled by a hash of their id at the rate that makes the sample about `sample_bytes`
of text, so the sample is spread over every shard and is the same for the same inputs. Every
document is accounted for: `docs_out` counts the documents trained on, the rest are `not_sampled`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from classifiers.tokenizer import MAX_SENTENCE_BYTES, train_sentencepiece
from stages.accounting import ShardStats
from stages.documents import read_documents


def text_bytes(path: str) -> int:
    """Uncompressed size of a shard's `text` column, from the parquet footer alone."""
    metadata = pq.ParquetFile(path).metadata
    column = metadata.schema.names.index("text")
    return sum(metadata.row_group(i).column(column).total_uncompressed_size for i in range(metadata.num_row_groups))


def is_sampled(doc_id: str, seed: int, rate: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < rate * 2**64


def sentencepiece_lines(text: str) -> Iterator[str]:
    """Non-blank lines, cut to fit SentencePiece's sentence limit, which skips longer ones silently."""
    chars = MAX_SENTENCE_BYTES // 4  # a UTF-8 character takes at most 4 bytes
    for line in text.split("\n"):
        if line.strip():
            yield from (line[i : i + chars] for i in range(0, len(line), chars))


def train_tokenizer(
    inputs: list[str],
    output_path: str,
    *,
    vocab_size: int,
    sample_bytes: int,
    character_coverage: float,
    num_threads: int,
    seed: int,
) -> ShardStats:
    stats = ShardStats()
    rate = min(1.0, sample_bytes / max(1, sum(text_bytes(p) for p in inputs)))

    def paragraphs() -> Iterator[str]:
        for path in inputs:
            for doc in read_documents(path, columns=["id", "text"]):
                stats.docs_in += 1
                if not is_sampled(doc["id"], seed, rate):
                    stats.drop("not_sampled")
                    continue
                stats.docs_out += 1
                yield from sentencepiece_lines(doc["text"])

    train_sentencepiece(
        paragraphs(),
        output_path,
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        num_threads=num_threads,
        seed=seed,
    )
    stats.bytes_out = Path(output_path).stat().st_size
    return stats.check()
