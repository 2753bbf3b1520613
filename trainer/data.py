"""Packed training samples over indexed datasets, in the manner of Megatron's GPTDataset and
BlendedDataset.

Within a source, the documents of its datasets are shuffled with `numpy.random.RandomState(seed)`,
concatenated, and cut into samples of seq_len + 1 tokens that cross document boundaries. Sample i
covers tokens [i * seq_len, (i + 1) * seq_len + 1) of that stream: consecutive samples share one
token, so every token but the first is a target exactly once. Each pass over a source (an epoch)
reshuffles with seed + epoch.

Sources are blended by weight as Megatron does: sample k of the blend comes from the source whose
count so far falls furthest behind weight x (k + 1), so every prefix of the stream holds each source
in proportion to its weight, deterministically.
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


def blend_order(weights: Sequence[float], n: int) -> np.ndarray:
    """The source of each of the first n blended samples (Megatron's greedy error-minimising rule)."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    counts = np.zeros(len(weights), dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    for k in range(n):
        source = int(np.argmax(weights * (k + 1) - counts))
        order[k] = source
        counts[source] += 1
    return order


class BlendedSamples:
    """The endless blended stream of samples of `sources`, a list of (weight, datasets)."""

    def __init__(self, sources: Sequence[tuple[float, Sequence[IndexedDataset]]], seq_len: int, seed: int):
        self.weights = [weight for weight, _ in sources]
        self.datasets = [list(datasets) for _, datasets in sources]
        self.seq_len, self.seed = seq_len, seed
        self._epochs: dict[tuple[int, int], PackedDataset] = {}
        self._order = np.zeros(0, dtype=np.int64)
        self._position = np.zeros(0, dtype=np.int64)  # each sample's index within its source's stream
        for weight, datasets in zip(self.weights, self.datasets):
            tokens = sum(d.num_tokens for d in datasets)
            if weight > 0 and tokens < seq_len + 1:
                raise ValueError(f"a source of {tokens} tokens cannot fill one sample of {seq_len} (+1) tokens")

    def _extend(self, n: int) -> None:
        order = blend_order(self.weights, max(n, 2 * len(self._order), 1024))
        position = np.zeros(len(order), dtype=np.int64)
        for source in range(len(self.weights)):
            mine = order == source
            position[mine] = np.arange(int(mine.sum()))
        self._order, self._position = order, position

    def _packed(self, source: int, epoch: int) -> PackedDataset:
        key = (source, epoch)
        if key not in self._epochs:
            self._epochs = {k: v for k, v in self._epochs.items() if k[0] != source or k[1] >= epoch - 1}
            self._epochs[key] = PackedDataset(self.datasets[source], self.seq_len, self.seed + epoch)
        return self._epochs[key]

    def sample(self, k: int) -> np.ndarray:
        """The seq_len + 1 tokens of blended sample k."""
        if k >= len(self._order):
            self._extend(k + 1)
        source, j = int(self._order[k]), int(self._position[k])
        per_epoch = len(self._packed(source, 0))
        epoch, i = divmod(j, per_epoch)
        return self._packed(source, epoch).sample(i)


def iterate_batches(
    sources: Sequence[tuple[float, Sequence[IndexedDataset]]], seq_len: int, batch_size: int, seed: int,
    start: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (inputs, targets) int64 batches of shape (batch_size, seq_len): batch b holds blended
    samples [b * batch_size, (b + 1) * batch_size), from batch `start` on."""
    blend = BlendedSamples(sources, seq_len, seed)
    for first in itertools.count(start * batch_size, batch_size):
        batch = np.stack([blend.sample(k) for k in range(first, first + batch_size)])
        batch = torch.from_numpy(batch.astype(np.int64))
        yield batch[:, :-1], batch[:, 1:]
