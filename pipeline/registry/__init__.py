"""The stages of a run, in order: what each needs, how it splits into shards, what it calls.

Planning happens on the driver, from the config and the manifests of the stages it needs; the
processing itself is a plain function in `stages/` (or `trainer/`) that a Ray task calls per shard.
Order as CCNet, then FineWeb: line dedup before the heuristic filters, so that they judge a page
without the boilerplate it shares with other pages; MinHash last, on the fewest documents.
Corpus-wide deduplication takes several phases (hash, shuffle by hash partition, apply); each
phase is a stage of its own with its own manifest, and `STAGE_GROUPS` names them together.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import ConfigError, RunConfig
from pipeline.registry.dedup import hash_dedup, minhash_dedup
from pipeline.registry.plans import (
    SOURCE_DOCUMENTS,
    dataset_file,
    histogram_file,
    part_files,
    plan_books,
    plan_corpus,
    plan_mixture,
    plan_perplexity,
    plan_perplexity_cutoffs,
    plan_perplexity_model,
    plan_perplexity_score,
    plan_quality,
    plan_quality_classifier,
    plan_quality_model,
    plan_reference_pages,
    plan_stackexchange,
    plan_stackexchange_sites,
    plan_token_parts,
    plan_tokenize,
    plan_tokenizer,
    plan_train,
    reference_pages_file,
    references_of,
    source_documents,
    tokenizer_export,
    trained_languages,
)
from pipeline.registry.runs import (
    run_arxiv,
    run_books,
    run_corpus,
    run_extract,
    run_github,
    run_github_dedup,
    run_github_find,
    run_github_hash,
    run_langid,
    run_line_dedup,
    run_line_find,
    run_line_hash,
    run_mixture,
    run_perplexity,
    run_perplexity_cutoffs,
    run_perplexity_model,
    run_perplexity_score,
    run_quality,
    run_quality_classifier,
    run_quality_model,
    run_reference_pages,
    run_stackexchange,
    run_stackexchange_sites,
    run_token_parts,
    run_tokenize,
    run_tokenizer,
    run_train,
    run_wikipedia,
)
from pipeline.registry.spec import ShardTask, StageSpec, one_shard_per_input, per_document_shard, section_of
from pipeline.storage import location

# What the runner, the CLI, manifests/, bench/ and the tests import from here.
__all__ = [
    "CLEAN_DOCUMENT_STAGES",
    "INPUT_STAGES",
    "PHASES",
    "SOURCE_DOCUMENTS",
    "SPECS",
    "STAGES",
    "STAGE_GROUPS",
    "STAGE_ORDER",
    "ShardTask",
    "StageSpec",
    "expand_stages",
    "plan_mixture",
    "plan_token_parts",
    "run_mixture",
    "run_token_parts",
    "section_of",
    "source_documents",
]


def _threads(key: str) -> Callable[[dict], dict]:
    return lambda params: {"num_cpus": params[key]}


CLEAN_DOCUMENT_STAGES = tuple(stage for stages in SOURCE_DOCUMENTS.values() for stage in stages)

QUALITY_MODEL_SETTINGS = ("languages", "min_chars", "max_examples", "min_positives", "seed", "epoch", "lr",
                          "word_ngrams", "dim", "bucket", "min_count", "holdout_fraction", "quantize", "cutoff")

GITHUB_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".parquet", ".jsonl.gz",
                   ".jsonl")


def _has_inputs(source: str) -> Callable[[RunConfig], bool]:
    return lambda config: bool(getattr(config.inputs, source))


# The multi-phase steps, each a list of stages.
LINE_DEDUP = hash_dedup("line_dedup", "langid", "line_dedup", (run_line_hash, run_line_find, run_line_dedup))
PERPLEXITY = [
    StageSpec("perplexity_model", "perplexity", ("wikipedia",), plan_perplexity_model, run_perplexity_model,
              _threads("num_threads"), lambda output: location(output) / "meta.json",
              enabled=lambda config: bool(trained_languages(config)),
              settings=("vocab_size", "max_articles", "seed", "train_memory", "kenlm_bin", "num_threads"),
              # Not num_threads: SentencePiece's unigram training gives another model on another count.
              unhashed=("train_memory", "kenlm_bin")),
    StageSpec("perplexity_score", "perplexity", ("line_dedup", "perplexity_model"), plan_perplexity_score,
              run_perplexity_score, completion_marker=histogram_file,
              enabled=lambda config: config.stages.perplexity.enabled, settings=("models",)),
    StageSpec("perplexity_cutoffs", "perplexity", ("perplexity_score",), plan_perplexity_cutoffs,
              run_perplexity_cutoffs, enabled=lambda config: config.stages.perplexity.enabled,
              settings=("percentiles", "cutoffs")),
    StageSpec("perplexity", "perplexity", ("line_dedup", "perplexity_score", "perplexity_cutoffs"), plan_perplexity,
              run_perplexity, enabled=lambda config: config.stages.perplexity.enabled,
              settings=("keep_buckets", "drop_unscored")),
]
NEAR_DEDUP = minhash_dedup("near_dedup", "quality", "near_dedup", enabled=lambda config: True)
GITHUB_DEDUP = hash_dedup("github_dedup", "github", "github", (run_github_hash, run_github_find, run_github_dedup),
                          enabled=_has_inputs("github"), settings=("partitions",))
BOOKS_DEDUP = minhash_dedup("books_dedup", "books", "books.dedup", enabled=_has_inputs("books"))

SPECS = [
    # Common Crawl
    StageSpec("extract", "extract", (), one_shard_per_input("extract", "common_crawl", (".gz", ".warc")), run_extract,
              reports_progress=True),
    StageSpec("langid", "langid", ("extract",), per_document_shard("langid", "extract"), run_langid,
              fuses_with_upstream=True),
    *LINE_DEDUP,
    # Wikipedia, and the perplexity models it trains
    StageSpec("wikipedia", "wikipedia", (), one_shard_per_input("wikipedia", "wikipedia", (".bz2", ".xml")),
              run_wikipedia, side_outputs=lambda output: [references_of(output)], enabled=_has_inputs("wikipedia")),
    *PERPLEXITY,
    StageSpec("quality", "quality", ("line_dedup", "perplexity"), plan_quality, run_quality,
              fuses_with_upstream=True),
    *NEAR_DEDUP,
    # The quality classifier Wikipedia trains
    StageSpec("reference_pages", "reference_pages", ("wikipedia",), plan_reference_pages, run_reference_pages,
              completion_marker=reference_pages_file, reports_progress=True,
              unhashed=("concurrency", "retries", "backoff_s", "per_host_interval_s", "timeout_s"),
              enabled=lambda config: bool(config.stages.reference_pages.index and config.inputs.wikipedia)),
    StageSpec("quality_model", "quality_classifier", ("line_dedup", "wikipedia", "reference_pages"),
              plan_quality_model, run_quality_model, enabled=lambda config: config.stages.quality_classifier.trains,
              settings=QUALITY_MODEL_SETTINGS),
    StageSpec("quality_classifier", "quality_classifier", ("near_dedup", "quality_model"),
              plan_quality_classifier, run_quality_classifier,
              enabled=lambda config: config.stages.quality_classifier.enabled, settings=("threshold", "model")),
    # The other sources
    StageSpec("arxiv", "arxiv", (), one_shard_per_input("arxiv", "arxiv", (".gz", ".tgz", ".tar", ".tex")),
              run_arxiv, enabled=_has_inputs("arxiv")),
    StageSpec("stackexchange_sites", "stackexchange", (), plan_stackexchange_sites, run_stackexchange_sites,
              enabled=_has_inputs("stackexchange"), settings=()),
    StageSpec("stackexchange", "stackexchange", ("stackexchange_sites",), plan_stackexchange, run_stackexchange,
              enabled=_has_inputs("stackexchange")),
    StageSpec("github", "github", (), one_shard_per_input("github", "github", GITHUB_SUFFIXES),
              run_github, enabled=_has_inputs("github")),
    *GITHUB_DEDUP,
    StageSpec("books", "books", (), plan_books, run_books, enabled=_has_inputs("books")),
    *BOOKS_DEDUP,
    # The clean corpus in one shape, and then tokenizer, token shards, training
    StageSpec("corpus", "corpus", CLEAN_DOCUMENT_STAGES, plan_corpus, run_corpus,
              enabled=lambda config: config.stages.corpus.enabled, settings=()),
    # Its num_threads is hashed: SentencePiece's BPE training gives another model on another count.
    StageSpec("tokenizer", "tokenizer", CLEAN_DOCUMENT_STAGES, plan_tokenizer, run_tokenizer, _threads("num_threads"),
              lambda model: tokenizer_export(model) / "tokenizer.json",
              side_outputs=lambda model: [str(tokenizer_export(model))], also=("mixture",)),
    # Encoding a document gives the same ids whatever the threads and the batches.
    StageSpec("tokenize", "tokenize", (*CLEAN_DOCUMENT_STAGES, "tokenizer"), plan_tokenize, run_tokenize,
              _threads("num_threads"), unhashed=("num_threads", "batch_docs")),
    StageSpec("token_parts", "token_parts", ("tokenize",), plan_token_parts, run_token_parts,
              completion_marker=dataset_file(".idx"), side_outputs=part_files),
    StageSpec("mixture", "mixture", ("token_parts",), plan_mixture, run_mixture, also=("train",)),
    # It reads the token parts the mixture names: their rows are what they hold.
    StageSpec("train", "train", ("mixture", "tokenizer", "token_parts"), plan_train, run_train,
              lambda p: {"num_cpus": p["threads"], "num_gpus": 1 if p["device"] == "cuda" else 0}),
]
STAGES: dict[str, StageSpec] = {spec.name: spec for spec in SPECS}
# The stages that read a source's inputs (`books` covers every `books.<collection>`).
INPUT_STAGES = {"extract": "common_crawl", "wikipedia": "wikipedia", "arxiv": "arxiv",
                "stackexchange_sites": "stackexchange", "github": "github", "books": "books"}
STAGE_ORDER = list(STAGES)
# {phase: its stage}: the steps of a multi-phase stage before the one that writes its documents.
PHASES = {phase.name: group[-1].name for group in (LINE_DEDUP, PERPLEXITY, NEAR_DEDUP, GITHUB_DEDUP, BOOKS_DEDUP)
          for phase in group[:-1]} | {"stackexchange_sites": "stackexchange"}
# `--stages line_dedup` (and `make line_dedup`) runs every phase of a multi-phase step; a source's
# name runs all of that source's stages.
STAGE_GROUPS = {
    "line_dedup": [spec.name for spec in LINE_DEDUP],
    "perplexity": [spec.name for spec in PERPLEXITY],
    "near_dedup": [spec.name for spec in NEAR_DEDUP],
    "stackexchange": ["stackexchange_sites", "stackexchange"],
    "github": ["github", *(spec.name for spec in GITHUB_DEDUP)],
    "books": ["books", *(spec.name for spec in BOOKS_DEDUP)],
}


def expand_stages(names: list[str]) -> list[str]:
    """Stage names with groups expanded, in pipeline order; unknown names are a ConfigError."""
    expanded = set()
    for name in names:
        if name in STAGE_GROUPS:
            expanded.update(STAGE_GROUPS[name])
        elif name in STAGES:
            expanded.add(name)
        else:
            raise ConfigError(
                f"unknown stage {name!r}; stages are {', '.join(STAGE_ORDER)} and the groups {', '.join(STAGE_GROUPS)}"
            )
    return sorted(expanded, key=STAGE_ORDER.index)
