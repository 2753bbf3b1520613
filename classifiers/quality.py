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
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import fasttext
import numpy as np

from classifiers.file_cache import cached_per_file_version
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
_NAN_MESSAGE = "Encountered NaN"


def preprocess(text: str, max_words: int = MAX_WORDS) -> str:
    """The text the classifier sees: the first `max_words` words (whitespace-separated), lower-cased,
    joined by single spaces (fastText's predict() rejects newlines). Used both to write the training
    file and in `QualityModel.predict_proba`. The split stops after `max_words`, so a huge page
    costs no more than a page of `max_words` words."""
    if not max_words:
        return " ".join(text.split()).lower()
    return " ".join(text.split(maxsplit=max_words)[:max_words]).lower()


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


# fastText 0.9.2 initialises only `thread`/10 of the input matrix (DenseMatrix::uniform cuts it into
# ten blocks and starts one initialising thread per `thread`); the rest is whatever malloc returns.
# Memory fresh from the kernel is zeros, but memory a process freed and malloc recycles is garbage:
# trained repeatedly in one process, fastText sporadically diverges (`Encountered NaN`: measured, 45
# of 90 trainings of nine small settings in one process) and its weights differ from run to run.
# So each training runs in a fresh Python process whose malloc hands out zeroed memory (glibc:
# MALLOC_PERTURB_=255 fills every allocation with 255 ^ 0xff = 0; MALLOC_MMAP_THRESHOLD_ keeps large
# ones fresh from the kernel): 0 of the same 90 diverge, and a training is bit-reproducible. The
# rows fastText leaves uninitialised start at zero, which training handles as it does the output
# matrix (zero-initialised by design).
FRESH_MEMORY_ENV = {"MALLOC_PERTURB_": "255", "MALLOC_MMAP_THRESHOLD_": "131072"}
_CHILD = "import sys, classifiers.quality as q; q._train_child(sys.argv[1])"
_NAN_EXIT = 3


def _train_child(job_path: str) -> None:
    """The child process of `_train_in_fresh_process`: train, optionally quantise, save."""
    job = json.loads(Path(job_path).read_text())
    try:
        model = fasttext.train_supervised(input=job["train_file"], **job["params"])
    except RuntimeError as error:
        if _NAN_MESSAGE not in str(error):
            raise
        sys.exit(_NAN_EXIT)
    if job["quantize"]:
        model.save_model(job["unquantised_path"])
        model.quantize(input=job["train_file"], qnorm=True, retrain=True, cutoff=job["cutoff"], thread=1, verbose=0)
    model.save_model(job["model_path"])


def _train_in_fresh_process(job: dict, tmp: str) -> bool:
    """Run one training in a child process; False if it diverged (NaN)."""
    job_path = os.path.join(tmp, "job.json")
    Path(job_path).write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-c", _CHILD, job_path], env={**os.environ, **FRESH_MEMORY_ENV},
                          capture_output=True, text=True)
    if done.returncode == _NAN_EXIT:
        return False
    if done.returncode != 0:
        raise RuntimeError(f"fastText training failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return True


def _train_with_retries(job: dict, tmp: str, retries: int) -> tuple[int, int]:
    """Train; on divergence (NaN) retry with the next seed. Returns (attempts, seed used)."""
    params = job["params"]
    for attempt in range(max(1, retries)):
        seed = params["seed"] + attempt
        if _train_in_fresh_process({**job, "params": {**params, "seed": seed}}, tmp):
            return attempt + 1, seed
    raise RuntimeError(
        f"fastText training failed {max(1, retries)} times with NaN (seeds {params['seed']}.."
        f"{params['seed'] + max(1, retries) - 1}); lower `lr` or raise `min_count`"
    )


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
    fastText trains with thread=1 and `seed`, in a fresh process (see FRESH_MEMORY_ENV), so the
    same texts and settings give the same model, byte for byte. The model is
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
        with atomic_path(model_path) as tmp_model:
            job = {"train_file": train_file, "params": params, "quantize": quantize, "cutoff": cutoff,
                   "unquantised_path": os.path.join(tmp, "unquantised.bin"), "model_path": str(tmp_model)}
            attempts, seed_used = _train_with_retries(job, tmp, retries)
        unquantised_bytes = os.path.getsize(job["unquantised_path"]) if quantize else None
    model = fasttext.load_model(str(model_path))
    train_seconds = time.perf_counter() - started

    held_texts = pos_held + neg_held
    held_labels = np.array([True] * len(pos_held) + [False] * len(neg_held))
    scores = _positive_probability(model, held_texts)
    card = {
        "model_file": model_path.name,
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
            "reproducible": "yes: thread=1, fixed seed, trained in a fresh process (classifiers.quality.FRESH_MEMORY_ENV)",
        },
        "heldout_metrics": binary_metrics(held_labels, scores, threshold),
        "heldout_metrics_by_threshold": {
            f"{t:.1f}": {k: m[k] for k in ("precision", "recall", "f1", "accuracy")}
            for t in np.arange(1, 10) / 10
            for m in [binary_metrics(held_labels, scores, t)]
        },
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


load_quality_model = cached_per_file_version(QualityModel)
