"""The training stage: the bundled LLaMA trainer on the run's token shards."""

from __future__ import annotations

from pathlib import Path

from classifiers.tokenizer import load_tokenizer
from stages.accounting import ShardStats
from stages.mixture import read_blend
from trainer.indexed_dataset import IndexedDataset
from trainer.train import TrainConfig, train


def train_on_mixture(mixture_dir: str, tokenizer_path: str, checkpoint_path: str, **params) -> ShardStats:
    """Train on the mixture's blend of sources; the row counts the documents it draws from and the
    tokens trained on."""
    blend = [(source["weight"], source["prefixes"]) for source in read_blend(mixture_dir)]
    documents = sum(len(IndexedDataset(p)) for _, prefixes in blend for p in prefixes)
    vocab_size = load_tokenizer(tokenizer_path).vocab_size()
    summary = train(blend, vocab_size, str(Path(checkpoint_path).parent), TrainConfig(**params))
    checkpoint = Path(summary["checkpoint"])
    return ShardStats(
        docs_in=documents, docs_out=documents, bytes_out=checkpoint.stat().st_size, tokens=summary["tokens_seen"]
    )
