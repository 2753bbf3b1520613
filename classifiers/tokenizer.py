"""SentencePiece BPE tokenizer with LLaMA's settings.

LLaMA's tokenizer: BPE, every number split into single digits, byte fallback so no input is ever
unknown, no normalisation (the text is encoded as it is, whitespace included), a dummy-prefix
space, ids unk=0, bos=1, eos=2 and no padding id.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from stages.documents import atomic_path

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
    """Train on `sentences` (streamed) and write the model to `model_path` atomically.

    The model is taken from memory rather than from SentencePiece's output files, whose path it
    would otherwise record: the same sample then gives the same bytes wherever the run lives.
    """
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        num_threads=num_threads,
        **LLAMA_TRAINER_OPTIONS,
    )
    with atomic_path(model_path) as tmp:
        tmp.write_bytes(model.getvalue())
    return Path(model_path)


def load_tokenizer(model_path: str | Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_path))
