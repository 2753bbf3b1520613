"""The training stage: the bundled LLaMA trainer on the run's token shards."""

from __future__ import annotations

from pathlib import Path

from classifiers.tokenizer import load_tokenizer
from stages.accounting import ShardStats
from trainer.indexed_dataset import IndexedDataset
from trainer.train import TrainConfig, train


def train_on_shards(prefixes: list[str], tokenizer_path: str, checkpoint_path: str, **params) -> ShardStats:
    """Train on every document of the shards; the row counts them and the tokens trained on."""
    documents = sum(len(IndexedDataset(p)) for p in prefixes)
    vocab_size = load_tokenizer(tokenizer_path).vocab_size()
    summary = train(prefixes, vocab_size, str(Path(checkpoint_path).parent), TrainConfig(**params))
    checkpoint = Path(summary["checkpoint"])
    return ShardStats(
        docs_in=documents, docs_out=documents, bytes_out=checkpoint.stat().st_size, tokens=summary["tokens_seen"]
    )
