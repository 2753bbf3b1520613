"""Packed training samples over indexed datasets, in the manner of Megatron's GPTDataset.

The documents of all datasets are shuffled with `numpy.random.RandomState(seed)`, concatenated,
and cut into samples of seq_len + 1 tokens that cross document boundaries. Sample i covers tokens
[i * seq_len, (i + 1) * seq_len + 1) of that stream: consecutive samples share one token, so every
token but the first is a target exactly once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from trainer.indexed_dataset import IndexedDataset


def open_datasets(prefixes: Sequence[str | Path]) -> list[IndexedDataset]:
    return [IndexedDataset(prefix) for prefix in prefixes]


class PackedDataset:
    """One shuffled pass over the documents of `datasets`, as samples of seq_len + 1 tokens."""

    def __init__(self, datasets: Sequence[IndexedDataset], seq_len: int, seed: int):
        self.datasets = list(datasets)
        self.seq_len = seq_len
        # One row per document across all datasets: which dataset, which sequence in it.
        self._doc_dataset = np.repeat(np.arange(len(self.datasets)), [len(d) for d in self.datasets])
        self._doc_sequence = np.concatenate([np.arange(len(d)) for d in self.datasets])
        lengths = np.concatenate([d.sequence_lengths.astype(np.int64) for d in self.datasets])

        self.document_order = np.random.RandomState(seed).permutation(len(lengths))
        ends = np.cumsum(lengths[self.document_order])
        num_tokens = int(ends[-1]) if len(ends) else 0
        num_samples = max(num_tokens - 1, 0) // seq_len
        # For each sample: the position in document_order where it starts, and the offset there.
        # side="right" steps over empty documents, whose end equals their start.
        starts = np.arange(num_samples, dtype=np.int64) * seq_len
        self._sample_position = np.searchsorted(ends, starts, side="right")
        self._sample_offset = starts - (ends - lengths[self.document_order])[self._sample_position]

    def __len__(self) -> int:
        return len(self._sample_position)

    def sample(self, i: int) -> np.ndarray:
        """The seq_len + 1 tokens of sample i."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        position, offset = int(self._sample_position[i]), int(self._sample_offset[i])
        needed = self.seq_len + 1
        pieces = []
        while needed:
            document = self._document(self.document_order[position])
            piece = document[offset : offset + needed]
            pieces.append(piece)
            needed -= len(piece)
            position, offset = position + 1, 0
        return np.concatenate(pieces)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.from_numpy(self.sample(i).astype(np.int64))
        return tokens[:-1], tokens[1:]

    def _document(self, index: int) -> np.ndarray:
        return self.datasets[self._doc_dataset[index]][self._doc_sequence[index]]


def iterate_batches(
    datasets: Sequence[IndexedDataset], seq_len: int, batch_size: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (inputs, targets) int64 batches of shape (batch_size, seq_len), in a fixed order.

    Epoch e reshuffles the documents with seed + e; each epoch's last partial batch is dropped.
    """
    tokens = sum(d.num_tokens for d in datasets)
    if tokens < batch_size * seq_len + 1:
        raise ValueError(f"{tokens} tokens cannot fill one batch of {batch_size} x {seq_len} (+1) tokens")
    for epoch in itertools.count():
        packed = PackedDataset(datasets, seq_len, seed + epoch)
        for first in range(0, len(packed) - batch_size + 1, batch_size):
            batch = np.stack([packed.sample(i) for i in range(first, first + batch_size)])
            batch = torch.from_numpy(batch.astype(np.int64))
            yield batch[:, :-1], batch[:, 1:]
