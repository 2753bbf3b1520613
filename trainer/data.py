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

Validation data is held out by document, not by sample: a document belongs to the validation split
when a 64-bit hash (splitmix64) of its (dataset position in the source, index in the dataset) falls
in the lowest `holdout` fraction of the hash range. The split is thus fixed by the dataset layout
alone, independent of seed, seq_len and blend, holds about `holdout` of each source's documents, and
no validation token is ever trained on.
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


SPLITS = ("train", "valid")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of each uint64 in x (Steele et al.'s SplitMix64 finaliser)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def held_out(dataset: np.ndarray, sequence: np.ndarray, holdout: float) -> np.ndarray:
    """Whether each document (dataset position, sequence index) is in the validation split."""
    keys = (dataset.astype(np.uint64) << np.uint64(40)) | sequence.astype(np.uint64)
    uniform = (_splitmix64(keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53  # in [0, 1)
    return uniform < holdout


class PackedDataset:
    """One shuffled pass over the documents of `datasets` in `split`, as samples of seq_len + 1 tokens.

    With holdout 0 every document is in the train split and the validation split is empty.
    """

    def __init__(
        self, datasets: Sequence[IndexedDataset], seq_len: int, seed: int, holdout: float = 0.0, split: str = "train"
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        self.datasets = list(datasets)
        self.seq_len = seq_len
        # One row per document across all datasets: which dataset, which sequence in it.
        self._doc_dataset = np.repeat(np.arange(len(self.datasets)), [len(d) for d in self.datasets])
        self._doc_sequence = np.concatenate([np.arange(len(d)) for d in self.datasets])
        lengths = np.concatenate([d.sequence_lengths.astype(np.int64) for d in self.datasets])
        in_split = held_out(self._doc_dataset, self._doc_sequence, holdout) == (split == "valid")
        documents = np.flatnonzero(in_split)

        self.document_order = documents[np.random.RandomState(seed).permutation(len(documents))]
        ends = np.cumsum(lengths[self.document_order])
        self.num_tokens = int(ends[-1]) if len(ends) else 0
        num_samples = max(self.num_tokens - 1, 0) // seq_len
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


def blend_order(weights: Sequence[float], n: int, counts: list[int] | None = None) -> np.ndarray:
    """The source of each of the next n blended samples (Megatron's greedy error-minimising rule:
    the source furthest behind weight x samples so far), continuing from `counts`, the samples
    already drawn from each source, which it updates. A plain Python loop: numpy per sample is
    slower for a handful of sources."""
    shares = (np.asarray(weights, dtype=np.float64) / np.sum(weights)).tolist()
    counts = [0] * len(shares) if counts is None else counts
    sources = range(len(shares))
    order = [0] * n
    drawn = sum(counts)
    for i in range(n):
        t = drawn + i + 1
        source = max(sources, key=lambda s: shares[s] * t - counts[s])
        order[i] = source
        counts[source] += 1
    return np.array(order, dtype=np.int64)


class BlendedSamples:
    """The endless blended stream of samples of `sources`, a list of (weight, datasets), in `split`."""

    def __init__(
        self, sources: Sequence[tuple[float, Sequence[IndexedDataset]]], seq_len: int, seed: int,
        holdout: float = 0.0, split: str = "train",
    ):
        self.weights = [weight for weight, _ in sources]
        self.datasets = [list(datasets) for _, datasets in sources]
        self.seq_len, self.seed = seq_len, seed
        self.holdout, self.split = holdout, split
        self._epochs: dict[tuple[int, int], PackedDataset] = {}
        self._order = np.zeros(0, dtype=np.int64)
        self._position = np.zeros(0, dtype=np.int64)  # each sample's index within its source's stream
        self._counts = [0] * len(self.weights)  # samples in _order from each source
        for source, weight in enumerate(self.weights):
            tokens = self._packed(source, 0).num_tokens
            if weight > 0 and tokens < seq_len + 1:
                raise ValueError(
                    f"a source of {tokens} {split} tokens cannot fill one sample of {seq_len} (+1) tokens"
                )

    def _extend(self, n: int) -> None:
        """Make the order cover at least n samples (at least doubling it), from where it ends."""
        before = list(self._counts)
        order = blend_order(self.weights, max(n, 2 * len(self._order), 1024) - len(self._order), self._counts)
        position = np.empty(len(order), dtype=np.int64)
        for source, first in enumerate(before):
            mine = order == source
            position[mine] = first + np.arange(int(mine.sum()))
        self._order = np.concatenate([self._order, order])
        self._position = np.concatenate([self._position, position])

    def _packed(self, source: int, epoch: int) -> PackedDataset:
        key = (source, epoch)
        if key not in self._epochs:
            self._epochs = {k: v for k, v in self._epochs.items() if k[0] != source or k[1] >= epoch - 1}
            self._epochs[key] = PackedDataset(
                self.datasets[source], self.seq_len, self.seed + epoch, self.holdout, self.split
            )
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
    start: int = 0, rank: int = 0, world_size: int = 1, holdout: float = 0.0, split: str = "train",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (inputs, targets) int64 batches: global batch b holds blended samples
    [b * batch_size, (b + 1) * batch_size), from batch `start` on.

    Each rank reads only its own rows, samples rank::world_size of the global batch, so the global
    batch does not depend on the number of processes; the shape is (batch_size // world_size, seq_len).
    """
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
    blend = BlendedSamples(sources, seq_len, seed, holdout, split)
    for first in itertools.count(start * batch_size, batch_size):
        batch = np.stack([blend.sample(k) for k in range(first + rank, first + batch_size, world_size)])
        batch = torch.from_numpy(batch.astype(np.int64))
        yield batch[:, :-1], batch[:, 1:]
