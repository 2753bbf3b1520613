"""The stages of a run, in order: what each needs, how it splits into shards, what it calls.

Planning happens on the driver, from the config and the manifests of the stages it needs; the
processing itself is a plain function in `stages/` (or `trainer/`) that a Ray task calls per shard.
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


@dataclass(frozen=True)
class StageSpec:
    name: str
    needs: tuple[str, ...]
    plan: Callable[[RunConfig, Upstream], list[ShardTask]]
    run: Callable[[ShardTask, dict], ShardStats]
    resources: Callable[[dict], dict] = field(default=lambda params: {"num_cpus": 1})
    # The file whose presence means a shard's output is complete (the .idx of a .bin/.idx pair).
    completion_marker: Callable[[str], Path] = Path


def _shard_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".warc"):
        name = name.removesuffix(suffix)
    return name


def plan_extract(config: RunConfig, _: Upstream) -> list[ShardTask]:
    files = config.input_files("common_crawl")
    names = [_shard_name(f) for f in files]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(f"inputs.common_crawl: several files are named {clashes[0]!r}; shard names must be unique")
    out = config.output_dir / "extract"
    return [ShardTask(name, [f], str(out / f"{name}.parquet")) for name, f in zip(names, files)]


def plan_langid(config: RunConfig, upstream: Upstream) -> list[ShardTask]:
    out = config.output_dir / "langid"
    return [ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.parquet")) for r in upstream["extract"]]


def plan_tokenizer(config: RunConfig, upstream: Upstream) -> list[ShardTask]:
    model = config.output_dir / "tokenizer" / "tokenizer.model"
    return [ShardTask("tokenizer", [r["output"] for r in upstream["langid"]], str(model))]


def plan_tokenize(config: RunConfig, upstream: Upstream) -> list[ShardTask]:
    tokenizer = upstream["tokenizer"][0]["output"]
    out = config.output_dir / "tokens" / "common_crawl"
    return [ShardTask(r["shard"], [r["output"], tokenizer], str(out / r["shard"])) for r in upstream["langid"]]


def plan_train(config: RunConfig, upstream: Upstream) -> list[ShardTask]:
    tokenizer = upstream["tokenizer"][0]["output"]
    prefixes = [r["output"] for r in upstream["tokenize"] if r["docs_out"] > 0]
    return [ShardTask("train", [*prefixes, tokenizer], str(config.output_dir / "train" / "checkpoint.pt"))]


# The stage modules are imported inside the tasks so the driver never loads torch or fastText.
def run_extract(task: ShardTask, params: dict) -> ShardStats:
    from stages.extract import extract_warc

    return extract_warc(task.inputs[0], task.output, **params)


def run_langid(task: ShardTask, params: dict) -> ShardStats:
    from stages.langid import identify_languages

    return identify_languages(task.inputs[0], task.output, **params)


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


STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in [
        StageSpec("extract", (), plan_extract, run_extract),
        StageSpec("langid", ("extract",), plan_langid, run_langid),
        StageSpec(
            "tokenizer", ("langid",), plan_tokenizer, run_tokenizer, lambda p: {"num_cpus": p["num_threads"]}
        ),
        StageSpec(
            "tokenize",
            ("langid", "tokenizer"),
            plan_tokenize,
            run_tokenize,
            lambda p: {"num_cpus": p["num_threads"]},
            lambda prefix: Path(prefix + ".idx"),
        ),
        StageSpec(
            "train",
            ("tokenize", "tokenizer"),
            plan_train,
            run_train,
            lambda p: {"num_cpus": p["threads"], "num_gpus": 1 if p["device"] == "cuda" else 0},
        ),
    ]
}
STAGE_ORDER = list(STAGES)
