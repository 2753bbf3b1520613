"""fastText language identification (lid.176), as CCNet applies it."""

from __future__ import annotations

from pathlib import Path

import fasttext

from classifiers.file_cache import cached_per_file_version

LABEL_PREFIX = "__label__"


def normalise_for_fasttext(text: str) -> str:
    """fastText's predict() rejects newlines; it also sees no benefit from runs of whitespace.
    (str.split splits on the characters that regex `\\s` matches, in a quarter of the time.)"""
    return " ".join(text.split())


class LanguageIdentifier:
    def __init__(self, model_path: str | Path):
        if not Path(model_path).is_file():
            raise FileNotFoundError(
                f"language-ID model {model_path} not found; the bundled one is samples/models/lid.176.ftz, "
                "the full lid.176.bin is at https://fasttext.cc/docs/en/language-identification.html"
            )
        self.model = fasttext.load_model(str(model_path))

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(language code, probability) of the most likely language of each text."""
        labels, scores = self.model.predict([normalise_for_fasttext(t) for t in texts], k=1)
        return [(label[0].removeprefix(LABEL_PREFIX), float(score[0])) for label, score in zip(labels, scores)]


load_identifier = cached_per_file_version(LanguageIdentifier)
