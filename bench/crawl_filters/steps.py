"""The steps, each a filter run as the pipeline runs it (the stage function on a parquet shard),
and the Context: the config's settings for each stage, a scratch folder, the step functions and
the training of the models the perplexity and classifier steps use."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from bench.crawl_filters.corpus import CORPUS
from classifiers.langid import load_identifier
from pipeline.config import RunConfig
from pipeline.registry import SPECS
from stages import line_dedup as ld
from stages.documents import WEB_DOCUMENT_SCHEMA, read_documents, write_documents
from stages.langid import identify_languages
from stages.perplexity import (
    LM_FILE, PIECES_FILE, bucket_documents, compute_cutoffs, histogram_path, score_perplexity, train_perplexity_model,
)
from stages.quality_classifier import (
    MODEL_FILE, build_training_set, score_documents, train_quality_classifier,
)
from stages.quality_filters import (
    SETTINGS as QUALITY_SETTINGS, LocalC4BadWordsFilter, QualityChain, filter_quality,
)
from stages.wikipedia import extract_wikipedia

# The order in which filter_quality's rules see a document, by reason prefix (stages/quality_filters.py);
# a prefix not listed counts as last.
QUALITY_RULE_ORDER = ("url_blocklist", "personal_info_site", "empty_text", "gopher_repetition", "gopher_quality",
                      "c4", "after_c4_lines", "c4_badwords")
QUALITY_NON_FILTERS = ("c4_max_removed_fraction", "redact_pii", "per_source")  # settings that are not filters
# Filters a config may turn off that are still shown alone, with these settings.
ALONE_DEFAULTS = {"c4": {}, "c4_badwords": "samples/assets/ldnoobw_en.txt"}
# Columns the stages add, with the types they write; others are inferred.
EXTRA_FIELDS = {"language": pa.string(), "language_score": pa.float32(), "quality_score": pa.float32(),
                "perplexity": pa.float32(), "paragraph_perplexity": pa.list_(pa.float32()),
                "perplexity_bucket": pa.string()}


class StepResult(NamedTuple):
    kept: list[dict]
    dropped: list[tuple[dict, str]]
    counters: dict | None = None  # the stage's counters (lines removed, chars removed, score histogram)
    details: dict | None = None  # id -> extra for the drop samples: {"after": text, "notes": [str]}


@dataclass
class Step:
    """A named filter: `run(documents)` returns (kept documents, [(document, reason)]) or a StepResult.
    `funnel`: part of the pipeline's funnel (in STEPS order); `alone`: also applied on its own to
    every document. `rule_order`: for a step running several filters, the order they see a
    document (reason prefixes), so each rule's "docs in" is what reached its filter."""

    name: str
    run: Callable[[list[dict]], StepResult | tuple]
    funnel: bool = True
    alone: bool = True
    rule_order: tuple[str, ...] = ()
    description: str = ""
    cost: int = 1  # a hint: costlier steps start first when steps run in parallel


def build_steps(ctx: "Context") -> list[Step]:
    quality = ctx.params["quality"]
    steps = [
        Step("langid", ctx.langid, description="fastText lid.176: languages {languages}, score >= {threshold}"
             .format(**ctx.params["langid"])),
        Step("line_dedup", ctx.line_dedup, description="CCNet line dedup over the corpus; docs left under "
             "{min_text_chars} chars dropped".format(**ctx.params["line_dedup"])),
        *([Step("perplexity", ctx.perplexity, cost=5, description="KenLM 5-gram over SentencePiece pieces, "
                "trained on the config's Wikipedia; buckets at percentiles {percentiles} of these documents' "
                "scores, keep {keep_buckets}".format(**ctx.params["perplexity"]))]
          if ctx.params["perplexity"]["enabled"] else []),
        Step("quality", ctx.quality_step(quality), alone=False, rule_order=QUALITY_RULE_ORDER,
             description="every quality rule the config turns on, in order, then PII redaction (the quality stage)"),
    ]
    for key in quality_filters():
        settings = quality.get(key)
        note = ""
        if settings is None and key in ALONE_DEFAULTS:
            settings = ALONE_DEFAULTS[key]
            note = f"; off in the config, run here with {settings or 'datatrove defaults'}"
        if settings is not None:
            steps.append(Step(key, ctx.quality_step(only_filter(quality, key, settings)), funnel=False, cost=10,
                              description=f"the quality stage with only `{key}` on{note}"))
    steps += [
        Step("quality_classifier", ctx.classifier, description="fastText reference-vs-crawl classifier, keep "
             "p >= {threshold}".format(**ctx.params["quality_classifier"])),
    ]
    return steps


def quality_filters() -> list[str]:
    """The quality stage's filter settings (each a filter that is on unless None), in its order."""
    return [key for key in QUALITY_SETTINGS if key not in QUALITY_NON_FILTERS]


def only_filter(settings: dict, key: str, value) -> dict:
    """The quality stage's settings with every filter off but `key` (= `value`), no PII redaction."""
    return {**settings, **{k: None for k in quality_filters()}, key: value, "redact_pii": False, "per_source": None}


def chain_settings(**settings) -> dict:
    """Keyword arguments for QualityChain.build: every setting it takes None unless given."""
    return {name: settings.get(name) for name in inspect.signature(QualityChain.build).parameters if name != "cls"}


class Context:
    """The config's settings for each stage, a scratch folder, and the step functions."""

    def __init__(self, config: RunConfig, tmp: Path):
        self.config = config
        self.tmp = tmp
        self._n = 0
        specs = {spec.name: spec for spec in SPECS}
        names = ("extract", "wikipedia", "langid", "line_dedup", "quality", "quality_model", "quality_classifier")
        self.params = {name: specs[name].params(config) for name in names}
        self.params["perplexity"] = config.stages.perplexity.model_dump()
        self.model_path: str | None = None
        self.perplexity_models: dict[str, tuple[str, str]] = {}
        self._articles: list[str] = []

    # Files

    def path(self, name: str) -> str:
        self._n += 1
        return str(self.tmp / f"{os.getpid()}-{self._n:03d}-{name}")

    def write(self, docs: list[dict], name: str) -> str:
        path = self.path(f"{name}.parquet")
        write_documents(path, docs, schema_for(docs))
        return path

    @staticmethod
    def read(path: str) -> list[dict]:
        return list(read_documents(path)) if os.path.exists(path) else []

    def read_dropped(self, path: str) -> list[tuple[dict, str]]:
        out = []
        for doc in self.read(path):
            reason = doc.pop("drop_reason")
            out.append((doc, reason))
        return out

    def shard_stage(self, name: str, docs: list[dict], stage: Callable[..., object], **kwargs) -> StepResult:
        """Run a per-document stage function `stage(input, output, dropped_path=..., **kwargs)` on
        the documents as one shard."""
        inp, out = self.write(docs, f"{name}-in"), self.path(f"{name}.parquet")
        dropped = self.path(f"{name}-dropped.parquet")
        stats = stage(inp, out, dropped_path=dropped, **kwargs)
        return StepResult(self.read(out), self.read_dropped(dropped), dict(stats.counters))

    # The steps

    def langid(self, docs: list[dict]) -> StepResult:
        return self.shard_stage("langid", docs, identify_languages, **self.params["langid"])

    def line_dedup(self, docs: list[dict]) -> StepResult:
        """The three phases on one shard holding the documents in corpus order (the keep rule
        depends only on that order, not on the sharding: stages/line_dedup.py)."""
        partitions, min_chars = self.params["line_dedup"]["partitions"], self.params["line_dedup"]["min_text_chars"]
        shard, hashes = self.write(docs, "line_dedup-in"), self.path("line_hashes")
        ld.hash_lines(shard, hashes, shard_index=0, partitions=partitions)
        dup_dirs = [self.path(f"line_dups-{p}") for p in range(partitions)]
        for p, directory in enumerate(dup_dirs):
            ld.find_duplicate_lines([f"{hashes}/{ld.partition_file(p)}"], directory, partition=p)
        out, dropped = self.path("line_dedup.parquet"), self.path("line_dedup-dropped.parquet")
        stats = ld.remove_duplicate_lines(shard, [f"{d}/{ld.shard_file(0)}" for d in dup_dirs], out,
                                          min_text_chars=min_chars, dropped_path=dropped)
        result = StepResult(self.read(out), self.read_dropped(dropped), dict(stats.counters))
        return result._replace(details=_line_dedup_details(docs, result.dropped, hashes, dup_dirs, partitions))

    def quality_step(self, settings: dict) -> Callable[[list[dict]], StepResult]:
        def run(docs: list[dict]) -> StepResult:
            result = self.shard_stage("quality", docs, filter_quality, **settings)
            details = {}
            if settings.get("c4") is not None:  # what C4's line rules leave of the documents it drops
                lines_only = QualityChain.build(**chain_settings(c4={**settings["c4"], "min_num_sentences": -1},
                                                                 redact_pii=False))
                for doc, reason in result.dropped:
                    if reason.startswith(("c4:", "after_c4_lines:")):
                        why, after = lines_only.apply(doc)
                        details[doc["id"]] = {"after": after if why is None else None}
            if settings.get("c4_badwords") is not None:  # which word of the list each dropped page has
                lists = settings["c4_badwords"]
                badwords = LocalC4BadWordsFilter({"en": lists} if isinstance(lists, str) else lists)
                for doc, reason in result.dropped:
                    regex = badwords._get_badwords(doc.get("language") or "en")
                    if regex is None or not reason.startswith("c4_badwords"):
                        continue
                    text = (details.get(doc["id"]) or {}).get("after") or doc["text"]
                    found = regex.search(text.lower())
                    if found:
                        word = found.group(1) if found.groups() else found.group(0)
                        context = " ".join(text[max(0, found.start() - 60):found.end() + 60].split())
                        details.setdefault(doc["id"], {})["notes"] = [f"bad word {word!r}: …{context}…"]
            return result._replace(details=details)

        return run

    def perplexity(self, docs: list[dict]) -> StepResult:
        params = self.params["perplexity"]
        if docs and "language" not in docs[0]:  # alone, on pages langid has not seen: each scored by its language's model
            identifier = load_identifier(self.params["langid"]["model"])
            docs = [{**doc, "language": language, "language_score": score}
                    for doc, (language, score) in zip(docs, identifier.predict([d["text"] for d in docs]))]
        shard, scores = self.write(docs, "perplexity-in"), self.path("perplexity-scores.parquet")
        score_perplexity(shard, scores, models=self.perplexity_models)
        cutoffs = self.path("cutoffs.json")
        compute_cutoffs([str(histogram_path(scores))], cutoffs, languages=list(self.perplexity_models),
                        percentiles=params["percentiles"], cutoffs=params["cutoffs"])
        out, dropped = self.path("perplexity.parquet"), self.path("perplexity-dropped.parquet")
        stats = bucket_documents(shard, scores, cutoffs, out, keep_buckets=params["keep_buckets"],
                                 drop_unscored=params["drop_unscored"], dropped_path=dropped)
        return StepResult(self.read(out), self.read_dropped(dropped), dict(stats.counters))

    def train_perplexity(self) -> None:
        """One model per language, as the perplexity_model stage trains it on the run's Wikipedia."""
        params = self.params["perplexity"]
        if not params["enabled"]:
            return
        self.perplexity_models = {lang: (files["pieces"], files["lm"]) for lang, files in params["models"].items()}
        for lang in self.config.stages.perplexity.trained_languages(self.params["langid"]["languages"]):
            model_dir = self.path(f"perplexity-model-{lang}")
            train_perplexity_model(self.articles(), model_dir, language=lang, vocab_size=params["vocab_size"],
                                   max_articles=params["max_articles"], seed=params["seed"],
                                   train_memory=params["train_memory"], kenlm_bin=params["kenlm_bin"],
                                   num_threads=params["num_threads"])
            self.perplexity_models[lang] = (f"{model_dir}/{PIECES_FILE}", f"{model_dir}/{LM_FILE}")

    def articles(self) -> list[str]:
        """The wikipedia stage's shards of the config's dumps, extracted once."""
        if not self._articles:
            for dump in self.config.input_files("wikipedia"):
                name = Path(dump).name.removesuffix(".bz2").removesuffix(".xml")
                self._articles.append(self.path(f"wiki-{name}.parquet"))
                extract_wikipedia(dump, self._articles[-1], self.path(f"wiki-refs-{name}.parquet"),
                                  **self.params["wikipedia"])
        return self._articles

    def classifier(self, docs: list[dict]) -> StepResult:
        if self.model_path is None:
            raise RuntimeError("train the classifier first (Context.train_classifier)")
        return self.shard_stage("quality_classifier", docs, score_documents, model=self.model_path,
                                threshold=self.params["quality_classifier"]["threshold"])

    # The classifier's training, as the quality_model stage does it on the run

    def train_classifier(self, warc_docs: list[dict]) -> dict:
        """Train on the run's crawl after langid and line dedup (the quality_model stage's input)
        and the Wikipedia stage's output of the config's dumps; return the model card plus the ids
        of the crawl documents used as training examples."""
        crawl_docs = self.line_dedup(self.langid(warc_docs).kept).kept
        crawl = self.write(crawl_docs, "crawl_for_classifier")
        articles, references = [], []
        for dump in self.config.input_files("wikipedia"):
            name = Path(dump).name.removesuffix(".bz2").removesuffix(".xml")
            articles.append(self.path(f"wiki-{name}.parquet"))
            references.append(self.path(f"wiki-refs-{name}.parquet"))
            extract_wikipedia(dump, articles[-1], references[-1], **self.params["wikipedia"])
        settings = self.params["quality_model"]
        model_dir = self.path("quality_model")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the Wikipedia fallback: expected offline, reported below
            train_quality_classifier([crawl], references, articles, model_dir, reference_pages_paths=[], **settings)
            data = build_training_set([crawl], references, articles, languages=settings["languages"],
                                      min_chars=settings["min_chars"], max_examples=settings["max_examples"],
                                      seed=settings["seed"], min_positives=settings["min_positives"])
        self.model_path = f"{model_dir}/{MODEL_FILE}"
        card = json.loads(Path(f"{self.model_path}.json").read_text())
        negatives = set(data.negatives)
        card["bench_training_ids"] = sorted(d["id"] for d in crawl_docs if d["text"] in negatives)
        card["bench_model_sha1"] = hashlib.sha1(Path(self.model_path).read_bytes()).hexdigest()
        return card


def schema_for(docs: list[dict]) -> pa.Schema:
    schema = WEB_DOCUMENT_SCHEMA
    for key in docs[0] if docs else ():
        if key not in schema.names:
            schema = schema.append(pa.field(key, EXTRA_FIELDS.get(key) or pa.infer_type([d.get(key) for d in docs])))
    return schema


def _line_dedup_details(docs, dropped, hashes_dir, dup_dirs, partitions) -> dict:
    """For each dropped document: its text after dedup and its removed lines, each with the URL of
    the document where that line was seen first."""
    if not dropped:
        return {}
    index = {doc["id"]: i for i, doc in enumerate(docs)}
    dups = np.concatenate([np.load(f"{d}/{ld.shard_file(0)}") for d in dup_dirs])
    entries = np.concatenate([np.load(f"{hashes_dir}/{ld.partition_file(p)}") for p in range(partitions)])
    entries = entries[np.lexsort((entries["line"], entries["doc"], entries["hash"]))]
    first = np.ones(entries.size, dtype=bool)
    first[1:] = entries["hash"][1:] != entries["hash"][:-1]
    first_doc = dict(zip(entries["hash"][first].tolist(), entries["doc"][first].tolist()))
    details = {}
    for doc, _ in dropped:
        i = index[doc["id"]]
        mine = np.sort(dups[dups["doc"] == i], order=["line"])
        lines = doc["text"].split("\n")
        removed = set(mine["line"].tolist())
        notes = []
        for line, h in zip(mine["line"].tolist(), mine["hash"].tolist()):
            src = docs[first_doc[h]]
            where = "earlier in this page" if first_doc[h] == i else f"{src.get('url')} ({CORPUS.get(src['id'])})"
            notes.append(f"{lines[line][:120]!r}  <- first seen: {where}")
        details[doc["id"]] = {
            "after": "\n".join(line for k, line in enumerate(lines) if k not in removed),
            "notes": [f"{len(removed)} of {len(lines)} lines removed; the first ones:", *notes[:6]],
        }
    return details
