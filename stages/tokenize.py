"""Tokenization: encode documents with the trained SentencePiece model into Megatron shards.

BOS/EOS policy: each document becomes one sequence `[BOS] tokens [EOS]`, as LLaMA trains with a
BOS at the start of every document; the EOS marks the boundary once the trainer packs documents
back to back. Documents that encode to nothing are dropped as `empty_after_tokenization`.
"""

from __future__ import annotations

import numpy as np

from classifiers.tokenizer import BOS_ID, EOS_ID, load_tokenizer
from stages.accounting import ShardStats
from stages.documents import read_document_batches
from trainer.indexed_dataset import IndexedDatasetWriter, best_dtype


def tokenize_shard(
    input_path: str, tokenizer_path: str, output_prefix: str, *, batch_docs: int, num_threads: int
) -> ShardStats:
    tokenizer = load_tokenizer(tokenizer_path)
    stats = ShardStats(tokens=0)
    with IndexedDatasetWriter(output_prefix, best_dtype(tokenizer.vocab_size())) as writer:
        for batch in read_document_batches(input_path, columns=["text"], batch_size=batch_docs):
            stats.docs_in += len(batch)
            for ids in tokenizer.encode([doc["text"] for doc in batch], num_threads=num_threads):
                if not ids:
                    stats.drop("empty_after_tokenization")
                    continue
                writer.add_document(np.array([BOS_ID, *ids, EOS_ID]))
                stats.docs_out += 1
                stats.tokens += len(ids) + 2
    stats.bytes_out = writer.bytes_written
    return stats.check()
