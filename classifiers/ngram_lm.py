"""CCNet's perplexity model: a KenLM 5-gram over the SentencePiece pieces of CCNet-normalised text.

As CCNet (`cc_net/perplexity.py`, `text_normalizer.py`, its Makefile) built and used it:

- Normalisation (`normalize`): strip, lower-case, accents removed (NFD, marks of category Mn
  dropped), every digit to 0, CCNet's table of Unicode punctuation replaced by ASCII, then control
  characters (U+0000-U+001F, U+007F-U+009F) removed.
- Pieces: a SentencePiece unigram model per language, 65,536 pieces, character coverage 0.9995,
  trained on the language's Wikipedia (CCNet: the first 400,000 articles).
- Language model: `lmplz -o 5 --discount_fallback` (modified Kneser-Ney, no pruning) on one
  normalised, piece-encoded paragraph a line (CCNet: the first 1,000,000 articles), then
  `build_binary` to KenLM's probing format, which a query process maps instead of parsing.
- Scoring (`PerplexityModel.score`): each non-empty paragraph (line) is encoded and scored with
  `kenlm.Model.score` (log10, with <s> and </s>); its length is its pieces + 1 for </s>. A
  paragraph's perplexity is 10^(-log10 / length); the document's pools every paragraph's log
  score and length, so long paragraphs weigh more. Both rounded to one decimal, as CCNet.

lmplz and build_binary are built from KenLM's source by `make` (tools/build_kenlm.sh) into the
venv's bin/; the `kenlm` Python module queries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from classifiers.tokenizer import MAX_SENTENCE_BYTES

ORDER = 5

_UNICODE_PUNCT = {
    "，": ",", "。": ". ", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"', "」": '"',
    "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!", "（": "(", "）": ")",
    "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">",
    "【": "[", "】": "]", "％": "%", "►": "-",
}
_UNICODE_PUNCT_RE = re.compile(f"[{''.join(_UNICODE_PUNCT)}]")
_DIGIT_RE = re.compile(r"\d")
_NON_PRINTING_RE = re.compile(f"[{''.join(map(chr, [*range(0, 32), *range(127, 160)]))}]")

PIECE_TRAINER_OPTIONS = dict(
    model_type="unigram",
    character_coverage=0.9995,
    hard_vocab_limit=False,  # CCNet retrains smaller when a language's Wikipedia is too small
    max_sentence_length=MAX_SENTENCE_BYTES,
    shuffle_input_sentence=True,
    minloglevel=2,
)


class KenLMError(RuntimeError):
    """lmplz or build_binary is missing or failed."""


def _strip_accents(line: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", line) if unicodedata.category(c) != "Mn")


def normalize(line: str) -> str:
    line = line.strip()
    if not line:
        return line
    line = _strip_accents(line.lower())
    line = _DIGIT_RE.sub("0", line)
    line = _UNICODE_PUNCT_RE.sub(lambda m: _UNICODE_PUNCT[m.group()], line)
    return _NON_PRINTING_RE.sub("", line)


def paragraphs(text: str) -> list[str]:
    """The normalised, non-empty lines of a document: what is encoded and scored."""
    return [line for line in map(normalize, text.split("\n")) if line]


def kenlm_tool(name: str, configured: str | None = None) -> str:
    """The path of `lmplz` or `build_binary`: as configured, else beside this Python (the venv's
    bin/, where `make` builds them), else on PATH."""
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            raise KenLMError(f"{name}: {configured} is not an executable file")
        return configured
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise KenLMError(
        f"KenLM's {name} is not installed: run `make setup` (it builds it from KenLM's source into .venv/bin), "
        f"or set stages.perplexity.kenlm_bin to the folder that holds it"
    )


def train_piece_model(lines: Iterable[str], model_path: Path, *, vocab_size: int, seed: int, num_threads: int,
                      input_sentence_size: int) -> None:
    spm.set_random_generator_seed(seed)
    with open(model_path, "wb") as out:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out, vocab_size=vocab_size,
                                       num_threads=num_threads, input_sentence_size=input_sentence_size,
                                       **PIECE_TRAINER_OPTIONS)


def estimate(pieces_path: Path, model_path: Path, *, memory: str, vocab_size: int, kenlm_bin: str | None,
             tmp_dir: Path) -> None:
    """lmplz on one encoded paragraph a line, then build_binary: `model_path` in KenLM's binary format."""
    arpa = tmp_dir / "model.arpa"
    bin_dir = Path(kenlm_bin) if kenlm_bin else None
    lmplz = kenlm_tool("lmplz", str(bin_dir / "lmplz") if bin_dir else None)
    build_binary = kenlm_tool("build_binary", str(bin_dir / "build_binary") if bin_dir else None)
    _run([lmplz, "-o", str(ORDER), "-S", memory, "-T", str(tmp_dir), "--vocab_estimate", str(vocab_size),
          "--discount_fallback", "--text", str(pieces_path), "--arpa", str(arpa)])
    _run([build_binary, str(arpa), str(model_path)])
    arpa.unlink()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise KenLMError(f"{Path(command[0]).name} failed (exit {result.returncode}):\n{tail}")


class PieceEncoder:
    def __init__(self, pieces_path: str | Path):
        self.pieces = spm.SentencePieceProcessor(model_file=str(pieces_path))

    def encode(self, lines: list[str]) -> list[str]:
        """Each normalised line as its pieces joined by spaces: a sentence of the language model."""
        return [" ".join(pieces) for pieces in self.pieces.encode(lines, out_type=str)]


class PerplexityModel(PieceEncoder):
    """One language's piece model and 5-gram, loaded once per process."""

    def __init__(self, pieces_path: str | Path, lm_path: str | Path):
        import kenlm

        super().__init__(pieces_path)
        self.lm = kenlm.Model(str(lm_path))

    def score(self, text: str) -> tuple[float | None, list[float]]:
        """(document perplexity, perplexity of each scored paragraph); None for a text with none."""
        lines = paragraphs(text)
        if not lines:
            return None, []
        total_log, total_length, per_paragraph = 0.0, 0, []
        for sentence in self.encode(lines):
            log_score = self.lm.score(sentence)
            length = sentence.count(" ") + 2 if sentence else 1  # pieces + </s>
            total_log += log_score
            total_length += length
            per_paragraph.append(_perplexity(log_score, length))
        return _perplexity(total_log, total_length), per_paragraph


def _perplexity(log10_score: float, length: int) -> float:
    return round(10.0 ** (-log10_score / length), 1)
