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
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from stages.accounting import ShardStats

Upstream = dict[str, list[dict]]


@dataclass(frozen=True)
class ShardTask:
    shard: str
    inputs: list[str]
    output: str
    index: int = 0  # the shard's position in corpus order, for corpus-wide "first occurrence" rules
    dropped: str | None = None  # where to write the documents it drops, when auditing is on


@dataclass(frozen=True)
class StageSpec:
    name: str
    section: str  # the config section under `stages:` that holds its parameters
    needs: tuple[str, ...]
    plan: Callable[[RunConfig, Upstream], list[ShardTask]]
    run: Callable[[ShardTask, dict], ShardStats]
    resources: Callable[[dict], dict] = field(default=lambda params: {"num_cpus": 1})
    # The file whose presence means a shard's output is complete (the .idx of a .bin/.idx pair).
    completion_marker: Callable[[str], Path] = Path
    # Whether the config asks for this stage at all (a source with inputs, a filter turned on). A
    # disabled stage is skipped and gives the stages that need it no rows.
    enabled: Callable[[RunConfig], bool] = lambda config: True
    # The settings of its section that determine its output (all when None): the others may change
    # without recomputing it (the quality threshold does not retrain the quality model).
    settings: tuple[str, ...] | None = None

    def params(self, config: RunConfig) -> dict:
        params = getattr(config.stages, self.section).model_dump()
        return params if self.settings is None else {k: params[k] for k in self.settings}


def _named_inputs(config: RunConfig, source: str, suffixes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(shard name, path) of a source's input files; names are file names without `suffixes`."""
    files = config.input_files(source)
    names = []
    for path in files:
        name = Path(path).name
        for suffix in suffixes:
            name = name.removesuffix(suffix)
        names.append(name)
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(f"inputs.{source}: several files are named {clashes[0]!r}; shard names must be unique")
    return list(zip(names, files))


def _dropped_path(config: RunConfig, stage: str, shard: str) -> str | None:
    return str(config.output_dir / "dropped" / stage / f"{shard}.parquet") if config.run.keep_dropped else None


def plan_extract(config: RunConfig, _: Upstream) -> list[ShardTask]:
    out = config.output_dir / "extract"
    return [
        ShardTask(name, [f], str(out / f"{name}.parquet"), i)
        for i, (name, f) in enumerate(_named_inputs(config, "common_crawl", (".gz", ".warc")))
    ]


def plan_wikipedia(config: RunConfig, _: Upstream) -> list[ShardTask]:
    out = config.output_dir / "wikipedia"
    return [
        ShardTask(name, [f], str(out / f"{name}.parquet"), i, _dropped_path(config, "wikipedia", name))
        for i, (name, f) in enumerate(_named_inputs(config, "wikipedia", (".bz2", ".xml")))
    ]


def per_document_shard(stage: str, upstream: str) -> Callable[[RunConfig, Upstream], list[ShardTask]]:
    """One task per shard of `upstream`, writing `RUN_DIR/<stage>/<shard>.parquet`."""

    def plan(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / stage
        return [
            ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.parquet"), i,
                      _dropped_path(config, stage, r["shard"]))
            for i, r in enumerate(rows[upstream])
        ]

    return plan


def _partitions(config: RunConfig, section: str) -> list[str]:
    return [f"part-{p:05d}" for p in range(getattr(config.stages, section).partitions)]


def plan_line_hash(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "line_dedup" / "hashes"
    return [ShardTask(r["shard"], [r["output"]], str(out / r["shard"]), i) for i, r in enumerate(rows["langid"])]


def plan_line_find(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "line_dedup" / "duplicates"
    hashes = [r["output"] for r in rows["line_dedup_hash"]]
    return [
        ShardTask(part, [f"{h}/{part}.npy" for h in hashes], str(out / part), p)
        for p, part in enumerate(_partitions(config, "line_dedup"))
    ]


def plan_line_dedup(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "line_dedup"
    duplicates = [r["output"] for r in rows["line_dedup_find"]]
    return [
        ShardTask(r["shard"], [r["output"], *(f"{d}/shard-{i:05d}.npy" for d in duplicates)],
                  str(out / f"{r['shard']}.parquet"), i, _dropped_path(config, "line_dedup", r["shard"]))
        for i, r in enumerate(rows["langid"])
    ]


def plan_minhash(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "near_dedup" / "signatures"
    return [
        ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.npy"), i)
        for i, r in enumerate(rows["quality"])
    ]


def plan_minhash_pairs(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "near_dedup" / "pairs"
    signatures = [r["output"] for r in rows["near_dedup_signatures"]]
    return [
        ShardTask(part, signatures, str(out / f"{part}.npy"), p)
        for p, part in enumerate(_partitions(config, "near_dedup"))
    ]


def plan_minhash_clusters(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "near_dedup" / "clusters"
    return [ShardTask("clusters", [r["output"] for r in rows["near_dedup_pairs"]], str(out))]


def plan_near_dedup(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    out = config.output_dir / "near_dedup"
    clusters = rows["near_dedup_clusters"][0]["output"]
    return [
        ShardTask(r["shard"], [r["output"], f"{clusters}/shard-{i:05d}.npy"], str(out / f"{r['shard']}.parquet"), i,
                  _dropped_path(config, "near_dedup", r["shard"]))
        for i, r in enumerate(rows["quality"])
    ]


def _references_of(articles: str) -> str:
    """Where the wikipedia stage writes the reference URLs of an articles shard."""
    return str(Path(articles).parent / "references" / Path(articles).name)


def plan_quality_model(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    # Trained on line-deduplicated pages: cleaned as the pages it will score are, but not yet
    # filtered, so the negatives are random crawl pages as in LLaMA.
    crawl = [r["output"] for r in rows["line_dedup"]]
    articles = [r["output"] for r in rows["wikipedia"]]
    return [ShardTask("model", [*crawl, *articles], str(config.output_dir / "quality_model"))]


def plan_quality_classifier(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    from stages.quality_classifier import MODEL_FILE

    model = config.stages.quality_classifier.model or f"{rows['quality_model'][0]['output']}/{MODEL_FILE}"
    out = config.output_dir / "quality_classifier"
    return [
        ShardTask(r["shard"], [r["output"], model], str(out / f"{r['shard']}.parquet"), i,
                  _dropped_path(config, "quality_classifier", r["shard"]))
        for i, r in enumerate(rows["near_dedup"])
    ]


def clean_documents(rows: Upstream) -> list[dict]:
    """The rows of the last document stage the run has: what the tokenizer learns from and the
    trainer reads."""
    return next(rows[stage] for stage in CLEAN_DOCUMENT_STAGES if rows.get(stage))


def plan_tokenizer(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    model = config.output_dir / "tokenizer" / "tokenizer.model"
    return [ShardTask("tokenizer", [r["output"] for r in clean_documents(rows)], str(model))]


def plan_tokenize(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    tokenizer = rows["tokenizer"][0]["output"]
    out = config.output_dir / "tokens" / "common_crawl"
    return [
        ShardTask(r["shard"], [r["output"], tokenizer], str(out / r["shard"]), i)
        for i, r in enumerate(clean_documents(rows))
    ]


def plan_train(config: RunConfig, rows: Upstream) -> list[ShardTask]:
    tokenizer = rows["tokenizer"][0]["output"]
    prefixes = [r["output"] for r in rows["tokenize"] if r["docs_out"] > 0]
    return [ShardTask("train", [*prefixes, tokenizer], str(config.output_dir / "train" / "checkpoint.pt"))]


# The stage modules are imported inside the tasks so the driver never loads torch or fastText.
def run_extract(task: ShardTask, params: dict) -> ShardStats:
    from stages.extract import extract_warc

    return extract_warc(task.inputs[0], task.output, **params)


def run_wikipedia(task: ShardTask, params: dict) -> ShardStats:
    from stages.wikipedia import extract_wikipedia

    return extract_wikipedia(task.inputs[0], task.output, _references_of(task.output), dropped_path=task.dropped,
                             **params)


def run_langid(task: ShardTask, params: dict) -> ShardStats:
    from stages.langid import identify_languages

    return identify_languages(task.inputs[0], task.output, dropped_path=task.dropped, **params)


def run_quality(task: ShardTask, params: dict) -> ShardStats:
    from stages.quality_filters import filter_quality

    return filter_quality(task.inputs[0], task.output, dropped_path=task.dropped, **params)


def run_line_hash(task: ShardTask, params: dict) -> ShardStats:
    from stages.line_dedup import hash_lines

    return hash_lines(task.inputs[0], task.output, shard_index=task.index, partitions=params["partitions"])


def run_line_find(task: ShardTask, params: dict) -> ShardStats:
    from stages.line_dedup import find_duplicate_lines

    return find_duplicate_lines(task.inputs, task.output, partition=task.index)


def run_line_dedup(task: ShardTask, params: dict) -> ShardStats:
    from stages.line_dedup import remove_duplicate_lines

    documents, *duplicates = task.inputs
    return remove_duplicate_lines(
        documents, duplicates, task.output, min_text_chars=params["min_text_chars"], dropped_path=task.dropped
    )


def run_minhash(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import minhash_signatures

    signature_params = {k: params[k] for k in ("num_perm", "bands", "rows", "ngram", "seed")}
    return minhash_signatures(task.inputs[0], task.output, shard_index=task.index, **signature_params)


def run_minhash_pairs(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import find_candidate_pairs

    return find_candidate_pairs(
        task.inputs,
        task.output,
        partition=task.index,
        partitions=params["partitions"],
        verify=params["verify"],
        threshold=params["threshold"],
    )


def run_minhash_clusters(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import cluster_duplicates

    return cluster_duplicates(task.inputs, task.output)


def run_near_dedup(task: ShardTask, params: dict) -> ShardStats:
    from stages.near_dedup import remove_near_duplicates

    documents, clusters = task.inputs
    return remove_near_duplicates(documents, clusters, task.output, dropped_path=task.dropped)


def run_quality_model(task: ShardTask, params: dict) -> ShardStats:
    from stages.quality_classifier import train_quality_classifier

    articles = [p for p in task.inputs if Path(p).parent.name == "wikipedia"]
    crawl = [p for p in task.inputs if p not in articles]
    return train_quality_classifier(crawl, [_references_of(a) for a in articles], articles, task.output, **params)


def run_quality_classifier(task: ShardTask, params: dict) -> ShardStats:
    from stages.quality_classifier import score_documents

    documents, model = task.inputs
    return score_documents(documents, task.output, model=model, threshold=params["threshold"],
                           dropped_path=task.dropped)


def run_tokenizer(task: ShardTask, params: dict) -> ShardStats:
    from stages.tokenizer import train_tokenizer

    return train_tokenizer(task.inputs, task.output, **params)


def run_tokenize(task: ShardTask, params: dict) -> ShardStats:
    from stages.tokenize import tokenize_shard

    data, tokenizer = task.inputs
    return tokenize_shard(data, tokenizer, task.output, **params)


def run_train(task: ShardTask, params: dict) -> ShardStats:
    from stages.train import train_on_shards

    *prefixes, tokenizer = task.inputs
    return train_on_shards(prefixes, tokenizer, task.output, **params)


def _threads(key: str) -> Callable[[dict], dict]:
    return lambda params: {"num_cpus": params[key]}


# The last document stages, last first: the first of them the run has enabled gives the clean documents.
CLEAN_DOCUMENT_STAGES = ("quality_classifier", "near_dedup")

QUALITY_MODEL_SETTINGS = ("languages", "min_chars", "max_examples", "min_positives", "seed", "epoch", "lr",
                          "word_ngrams", "dim", "bucket", "min_count", "holdout_fraction", "quantize", "cutoff")

STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in [
        StageSpec("extract", "extract", (), plan_extract, run_extract),
        StageSpec("wikipedia", "wikipedia", (), plan_wikipedia, run_wikipedia,
                  enabled=lambda config: bool(config.inputs.wikipedia)),
        StageSpec("langid", "langid", ("extract",), per_document_shard("langid", "extract"), run_langid),
        StageSpec("line_dedup_hash", "line_dedup", ("langid",), plan_line_hash, run_line_hash),
        StageSpec("line_dedup_find", "line_dedup", ("line_dedup_hash",), plan_line_find, run_line_find),
        StageSpec("line_dedup", "line_dedup", ("langid", "line_dedup_find"), plan_line_dedup, run_line_dedup),
        StageSpec("quality", "quality", ("line_dedup",), per_document_shard("quality", "line_dedup"), run_quality),
        StageSpec("near_dedup_signatures", "near_dedup", ("quality",), plan_minhash, run_minhash),
        StageSpec("near_dedup_pairs", "near_dedup", ("near_dedup_signatures",), plan_minhash_pairs, run_minhash_pairs),
        StageSpec("near_dedup_clusters", "near_dedup", ("near_dedup_pairs",), plan_minhash_clusters,
                  run_minhash_clusters),
        StageSpec("near_dedup", "near_dedup", ("quality", "near_dedup_clusters"), plan_near_dedup, run_near_dedup),
        StageSpec("quality_model", "quality_classifier", ("line_dedup", "wikipedia"), plan_quality_model,
                  run_quality_model, enabled=lambda config: config.stages.quality_classifier.trains,
                  settings=QUALITY_MODEL_SETTINGS),
        StageSpec("quality_classifier", "quality_classifier", ("near_dedup", "quality_model"),
                  plan_quality_classifier, run_quality_classifier,
                  enabled=lambda config: config.stages.quality_classifier.enabled, settings=("threshold",)),
        StageSpec("tokenizer", "tokenizer", CLEAN_DOCUMENT_STAGES, plan_tokenizer, run_tokenizer,
                  _threads("num_threads")),
        StageSpec("tokenize", "tokenize", (*CLEAN_DOCUMENT_STAGES, "tokenizer"), plan_tokenize, run_tokenize,
                  _threads("num_threads"), lambda prefix: Path(prefix + ".idx")),
        StageSpec("train", "train", ("tokenize", "tokenizer"), plan_train, run_train,
                  lambda p: {"num_cpus": p["threads"], "num_gpus": 1 if p["device"] == "cuda" else 0}),
    ]
}
STAGE_ORDER = list(STAGES)
# `--stages line_dedup` (and `make line_dedup`) runs every phase of the corpus-wide dedups.
STAGE_GROUPS = {
    "line_dedup": ["line_dedup_hash", "line_dedup_find", "line_dedup"],
    "near_dedup": ["near_dedup_signatures", "near_dedup_pairs", "near_dedup_clusters", "near_dedup"],
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
