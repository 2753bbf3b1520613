"""Tokenizer training: a SentencePiece BPE model trained on a deterministic sample of the documents.

Each input shard has a sampling rate, which the planner sets from the mixture so that each source
gives its weight's share of about `sample_bytes` of text (all of a source that has less). Documents
are sampled by a hash of their id, so the sample is spread over every shard and is the same for the
same inputs; they stream into SentencePiece a paragraph at a time, never all held in memory. Every
document is accounted for: `docs_out` counts the documents trained on, the rest are `not_sampled`.
Beside the model, `hf/` holds its Hugging Face export (`classifiers.tokenizer_export`), written last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from classifiers.tokenizer import MAX_SENTENCE_BYTES, train_sentencepiece
from classifiers.tokenizer_export import export_hf_tokenizer
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


def sampling_rates(source_bytes: dict[str, int], weights: dict[str, float], sample_bytes: int) -> dict[str, float]:
    """Each source's document sampling rate: its weight's share of `sample_bytes`, at most all of it."""
    total = sum(weights[s] for s in source_bytes)
    return {s: min(1.0, sample_bytes * weights[s] / total / max(1, n)) for s, n in source_bytes.items()}


def train_tokenizer(
    inputs: list[str],
    output_path: str,
    *,
    sample_rates: list[float],
    vocab_size: int,
    character_coverage: float,
    num_threads: int,
    seed: int,
) -> ShardStats:
    stats = ShardStats()

    def paragraphs() -> Iterator[str]:
        for path, rate in zip(inputs, sample_rates, strict=True):
            for doc in read_documents(path, columns=["id", "text"]):
                stats.docs_in += 1
                if not is_sampled(doc["id"], seed, rate):
                    stats.drop("not_sampled")
                    continue
                stats.docs_out += 1
                stats.counters["sampled_chars"] += len(doc["text"])
                yield from sentencepiece_lines(doc["text"])

    train_sentencepiece(
        paragraphs(),
        output_path,
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        num_threads=num_threads,
        seed=seed,
    )
    export_hf_tokenizer(output_path, hf_export_dir(output_path))
    stats.bytes_out = Path(output_path).stat().st_size
    return stats.check()


def hf_export_dir(model_path: str | Path) -> Path:
    """Where the tokenizer stage puts the Hugging Face export of its model."""
    return Path(model_path).parent / "hf"
