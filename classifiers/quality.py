"""The LLaMA/RedPajama quality classifier: a linear fastText model, reference pages vs random CC pages.

Labels are `__label__wiki` (a page like those Wikipedia cites as references, or, in the fallback,
a Wikipedia article) and `__label__cc` (a random Common Crawl page). A document is kept when
p(wiki) >= 0.25 (RedPajama's threshold). Users report that RedPajama's scores separate good from
bad pages poorly, so `train_quality_model` measures precision/recall/F1/ROC AUC on a held-out split
and writes them into a model card (`<model>.json`) beside the model.

`preprocess` is the one text transformation used for training and for applying the model; the
model card records its settings so a model is never applied with a different one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import fasttext
import numpy as np

from stages.documents import atomic_path

POSITIVE_LABEL = "__label__wiki"
NEGATIVE_LABEL = "__label__cc"
DEFAULT_THRESHOLD = 0.25
THRESHOLD_REASON = (
    "RedPajama's published keep threshold p(wiki) >= 0.25 (deliberately lenient: it drops only pages "
    "the classifier is fairly sure are unlike reference pages); kept for comparability, the held-out "
    "metrics below say how well it separates on this training data"
)
# Only the first MAX_WORDS words of a document are seen, in training and at apply time: fastText's
# cost is linear in the length, and the start of a page says most of what a linear bag-of-n-grams
# model can learn about it. 1,000 words covers most pages whole (the median CC page is shorter).
MAX_WORDS = 1000
_WHITESPACE = re.compile(r"\s+")
_NAN_MESSAGE = "Encountered NaN"


def preprocess(text: str, max_words: int = MAX_WORDS) -> str:
    """The text the classifier sees: lower-cased, every whitespace run (newlines included, which
    fastText's predict() rejects) collapsed to one space, stripped, cut to the first `max_words`
    words. Used both to write the training file and in `QualityModel.predict_proba`."""
    words = _WHITESPACE.split(text.lower().strip())
    if max_words and len(words) > max_words:
        words = words[:max_words]
    return " ".join(w for w in words if w)


PREPROCESSING = {
    "function": "classifiers.quality.preprocess",
    "lowercase": True,
    "whitespace": "collapsed to single spaces",
    "max_words": MAX_WORDS,
}


def fasttext_version() -> str:
    for dist in ("fasttext-numpy2-wheel", "fasttext-wheel", "fasttext"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Rank-based ROC AUC (Mann-Whitney U), ties given their average rank; NaN without both classes."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(sorted_scores):
        j = i
        while j + 1 < len(sorted_scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1  # 1-based average rank of the tie group
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1 and accuracy of `score >= threshold` for the positive class, plus ROC AUC."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(labels) if len(labels) else 0.0,
        "roc_auc": roc_auc(labels, scores),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
    }


def _split(texts: list[str], fraction: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Deterministically shuffle `texts` and cut off `fraction` of them (at least one) as held-out."""
    order = rng.permutation(len(texts))
    n_holdout = max(1, round(len(texts) * fraction)) if fraction > 0 else 0
    held = [texts[i] for i in order[:n_holdout]]
    train = [texts[i] for i in order[n_holdout:]]
    return train, held


def _train_with_retries(train_file: str, params: dict, retries: int) -> tuple[fasttext.FastText._FastText, int, int]:
    """fasttext-numpy2-wheel's train_supervised sporadically raises `RuntimeError: Encountered NaN`
    (worse on tiny data). Retry: the first two attempts use the given seed (the failure is sporadic); later ones seed + attempt."""
    last: RuntimeError | None = None
    for attempt in range(max(1, retries)):
        seed = params["seed"] if attempt < 2 else params["seed"] + attempt
        try:
            model = fasttext.train_supervised(input=train_file, **{**params, "seed": seed})
            return model, attempt + 1, seed
        except RuntimeError as error:
            if _NAN_MESSAGE not in str(error):
                raise
            last = error
    raise RuntimeError(f"fastText training failed {max(1, retries)} times with NaN: {last}") from last


def train_quality_model(
    positives: list[str],
    negatives: list[str],
    model_path: str | Path,
    *,
    seed: int = 0,
    epoch: int = 5,
    lr: float = 0.1,
    word_ngrams: int = 2,
    dim: int = 64,
    bucket: int = 200_000,
    min_count: int = 1,
    holdout_fraction: float = 0.2,
    threshold: float = DEFAULT_THRESHOLD,
    quantize: bool = True,
    cutoff: int = 100_000,
    retries: int = 5,
    sources: dict | None = None,
) -> dict:
    """Train the quality classifier on raw texts; save the model atomically at `model_path` and its
    model card at `<model_path>.json`; return the card.

    Each class is shuffled deterministically (numpy, `seed`) and `holdout_fraction` of it held out;
    fastText trains with thread=1 and `seed`; the split and training file are reproducible, but
    fasttext-numpy2-wheel 0.9.2's training is not bit-reproducible even so (measured: p(wiki) moves
    by up to ~0.1 between identical runs), so keep the saved model and its card together. The model is
    kept small: `bucket` hashed n-gram rows of `dim` floats (200k x 64 = 51 MB unquantised), then,
    with `quantize`, product-quantised keeping the `cutoff` most important rows (a few MB; RedPajama's
    default settings with 2M buckets make 560 MB). Held-out metrics are measured with the saved model.
    `sources` (e.g. `build_training_set`'s info) goes into the card as is.
    """
    if not positives or not negatives:
        raise ValueError(f"need both classes: {len(positives)} positives, {len(negatives)} negatives")
    model_path = Path(model_path)
    rng = np.random.default_rng(seed)
    pos_train, pos_held = _split(positives, holdout_fraction, rng)
    neg_train, neg_held = _split(negatives, holdout_fraction, rng)
    examples = [(POSITIVE_LABEL, t) for t in pos_train] + [(NEGATIVE_LABEL, t) for t in neg_train]
    examples = [examples[i] for i in rng.permutation(len(examples))]
    params = {
        "epoch": epoch,
        "lr": lr,
        "wordNgrams": word_ngrams,
        "dim": dim,
        "bucket": bucket,
        "minCount": min_count,
        "loss": "softmax",
        "thread": 1,
        "seed": seed,
        "verbose": 0,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quality-train-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            for label, text in examples:
                f.write(f"{label} {preprocess(text)}\n")
        model, attempts, seed_used = _train_with_retries(train_file, params, retries)
        unquantised_bytes = None
        if quantize:
            raw = os.path.join(tmp, "raw.bin")
            model.save_model(raw)
            unquantised_bytes = os.path.getsize(raw)
            model.quantize(input=train_file, qnorm=True, retrain=True, cutoff=cutoff, thread=1, verbose=0)
        with atomic_path(model_path) as tmp_model:
            model.save_model(str(tmp_model))
    train_seconds = time.perf_counter() - started

    held_texts = pos_held + neg_held
    held_labels = np.array([True] * len(pos_held) + [False] * len(neg_held))
    scores = _positive_probability(model, held_texts)
    card = {
        "model_path": str(model_path),
        "model_bytes": model_path.stat().st_size,
        "unquantised_model_bytes": unquantised_bytes,
        "quantized": quantize,
        "fasttext_version": fasttext_version(),
        "labels": {"positive": POSITIVE_LABEL, "negative": NEGATIVE_LABEL},
        "threshold": threshold,
        "threshold_reason": THRESHOLD_REASON,
        "preprocessing": PREPROCESSING,
        "data": {
            "positives": len(positives),
            "negatives": len(negatives),
            "train_positives": len(pos_train),
            "train_negatives": len(neg_train),
            "heldout_positives": len(pos_held),
            "heldout_negatives": len(neg_held),
            "holdout_fraction": holdout_fraction,
            "sources": sources or {},
        },
        "hyperparameters": {
            **{k: v for k, v in params.items() if k != "verbose"},
            "seed_used": seed_used,
            "quantize_cutoff": cutoff if quantize else None,
            "quantize_qnorm": quantize,
            "quantize_retrain": quantize,
        },
        "training": {
            "attempts": attempts,
            "seconds": round(train_seconds, 3),
            "reproducible": "split and training file yes; fastText weights no (this wheel varies between runs)",
        },
        "heldout_metrics": binary_metrics(held_labels, scores, threshold),
        "heldout_metrics_at_0.5": binary_metrics(held_labels, scores, 0.5),
    }
    card_path = Path(f"{model_path}.json")
    with atomic_path(card_path) as tmp_card:
        tmp_card.write_text(json.dumps(card, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return card


def _positive_probability(model, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.float32)
    labels, probs = model.predict([preprocess(t) for t in texts], k=2)
    out = np.empty(len(texts), dtype=np.float32)
    for i, (names, values) in enumerate(zip(labels, probs)):
        p = 0.0
        for name, value in zip(names, values):
            if name == POSITIVE_LABEL:
                p = float(value)
        out[i] = min(1.0, max(0.0, p))  # fastText's probabilities can exceed 1 by ~1e-5
    return out


class QualityModel:
    """A trained quality classifier; `predict_proba` gives p(reference page) for raw texts."""

    def __init__(self, path: str | Path):
        if not Path(path).is_file():
            raise FileNotFoundError(f"quality model {path} not found; train one with classifiers.quality.train_quality_model")
        self.path = str(path)
        self.model = fasttext.load_model(self.path)
        if set(self.model.get_labels()) != {POSITIVE_LABEL, NEGATIVE_LABEL}:
            raise ValueError(f"{path} has labels {self.model.get_labels()}, not {POSITIVE_LABEL}/{NEGATIVE_LABEL}")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """float32 p(__label__wiki) of each text, after `preprocess`."""
        return _positive_probability(self.model, list(texts))


@lru_cache(maxsize=4)
def load_quality_model(path: str) -> QualityModel:
    """One loaded model per worker process, however many shards it scores."""
    return QualityModel(path)
