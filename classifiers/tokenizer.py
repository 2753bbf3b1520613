"""SentencePiece BPE tokenizer with LLaMA's settings.

LLaMA's tokenizer: BPE, every number split into single digits, byte fallback so no input is ever
unknown, no normalisation (the text is encoded as it is, whitespace included), a dummy-prefix
space, ids unk=0, bos=1, eos=2 and no padding id.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
# SentencePiece skips longer "sentences" silently; documents are fed a paragraph at a time.
MAX_SENTENCE_BYTES = 16384

LLAMA_TRAINER_OPTIONS = dict(
    model_type="bpe",
    split_digits=True,
    byte_fallback=True,
    normalization_rule_name="identity",
    add_dummy_prefix=True,
    remove_extra_whitespaces=False,
    allow_whitespace_only_pieces=True,
    split_by_unicode_script=True,
    unk_id=UNK_ID,
    bos_id=BOS_ID,
    eos_id=EOS_ID,
    pad_id=-1,
    max_sentence_length=MAX_SENTENCE_BYTES,
    shuffle_input_sentence=True,
    minloglevel=1,
)


def train_sentencepiece(
    sentences: Iterable[str],
    model_path: str | Path,
    *,
    vocab_size: int,
    character_coverage: float,
    num_threads: int,
    seed: int,
) -> Path:
    """Train on `sentences` (streamed) and write `model_path` and its `.vocab` beside it atomically."""
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".training-") as tmp:
        prefix = Path(tmp) / "spm"
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            num_threads=num_threads,
            **LLAMA_TRAINER_OPTIONS,
        )
        # The .model last: its presence means the pair is complete.
        os.replace(f"{prefix}.vocab", model_path.with_suffix(".vocab"))
        os.replace(f"{prefix}.model", model_path)
    return model_path


def load_tokenizer(model_path: str | Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_path))
