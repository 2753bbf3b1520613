"""What a stage is (`StageSpec`), what its planner gives (`ShardTask`), and the helpers its planners share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import storage
from pipeline.config import ConfigError, RunConfig
from pipeline.storage import location
from stages.accounting import ShardStats

Upstream = dict[str, list[dict]]


@dataclass(frozen=True)
class ShardTask:
    shard: str
    inputs: list[str]
    output: str
    index: int = 0  # the shard's position in corpus order, for corpus-wide "first occurrence" rules
    dropped: str | None = None  # where to write the documents it drops, when auditing is on
    # Settings the planner derives for this task from its upstream outputs (a sampling rate, the
    # source of each input); passed to the run function with the section's settings.
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    name: str
    section: str  # the config section under `stages:` that holds its parameters
    needs: tuple[str, ...]
    plan: Callable[[RunConfig, Upstream], list[ShardTask]]
    # Reads only `task.inputs` (files or folders) and writes only in the run directory (its output,
    # files beside it, `task.dropped`): what pipeline.storage stages and publishes for a remote one.
    run: Callable[[ShardTask, dict], ShardStats]
    resources: Callable[[dict], dict] = field(default=lambda params: {"num_cpus": 1})
    # The file whose presence means a shard's output is complete (the .idx of a .bin/.idx pair).
    completion_marker: Callable[[str], Path | storage.Location] = location
    # Files or folders a shard writes beside its output, other than its completion marker (the
    # wikipedia stage's reference URLs, the tokenizer's Hugging Face export).
    side_outputs: Callable[[str], list[str]] = lambda output: []
    # Whether the config asks for this stage at all (a source with inputs, a filter turned on). A
    # disabled stage is skipped and gives the stages that need it no rows.
    enabled: Callable[[RunConfig], bool] = lambda config: True
    # The settings of its section that determine its output (all when None): the others may change
    # without recomputing it (the quality threshold does not retrain the quality model).
    settings: tuple[str, ...] | None = None
    # Settings it is given that change how fast it works, never what it writes (concurrency,
    # retries, timeouts): left out of its config hash, so changing them recomputes nothing.
    unhashed: tuple[str, ...] = ()
    # Other config sections its output depends on (through its planner), hashed with its own.
    also: tuple[str, ...] = ()
    # One output shard per shard of the last of its enabled needs, which it reads document by
    # document (the others are the stages it reads when that one is disabled): when both run, each
    # shard goes through both in one task (runner.fused_steps).
    fuses_with_upstream: bool = False
    # Its run function takes `progress`, called with the shard's running (docs_in, docs_out,
    # bytes read of its input) as it goes.
    reports_progress: bool = False

    def params(self, config: RunConfig) -> dict:
        params = section_of(config, self.section).model_dump()
        return params if self.settings is None else {k: params[k] for k in self.settings}

    def written_paths(self, output: str) -> list[str]:
        """What a shard with this output writes, but for its dropped documents."""
        return [output, str(self.completion_marker(output)), *self.side_outputs(output)]


def section_of(config: RunConfig, section: str):
    """`stages.<section>` of the config; `section` may be dotted (`books.dedup`)."""
    node = config.stages
    for part in section.split("."):
        node = getattr(node, part)
    return node


def _named_inputs(config: RunConfig, source: str, suffixes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(shard name, path) of a source's inputs; names are file names without `suffixes`."""
    files = config.input_files(source)
    names = []
    for path in files:
        name = Path(path).name
        for suffix in suffixes:
            name = name.removesuffix(suffix)
        names.append(name)
    clashes = sorted(name for name, count in Counter(names).items() if count > 1)
    if clashes:
        raise ConfigError(f"inputs.{source}: several files are named {clashes[0]!r}; shard names must be unique")
    return list(zip(names, files))


def dropped_path(config: RunConfig, stage: str, shard: str) -> str | None:
    return str(config.output_dir / "dropped" / stage / f"{shard}.parquet") if config.run.keep_dropped else None


def per_document_shard(stage: str, upstream: str) -> Callable[[RunConfig, Upstream], list[ShardTask]]:
    """One task per shard of `upstream`, writing `RUN_DIR/<stage>/<shard>.parquet`."""

    def plan(config: RunConfig, rows: Upstream) -> list[ShardTask]:
        out = config.output_dir / stage
        return [
            ShardTask(r["shard"], [r["output"]], str(out / f"{r['shard']}.parquet"), i,
                      dropped_path(config, stage, r["shard"]))
            for i, r in enumerate(rows[upstream])
        ]

    return plan


def one_shard_per_input(stage: str, source: str, suffixes: tuple[str, ...]):
    """A source stage with one task per input file (or directory): `RUN_DIR/<stage>/<name>.parquet`."""

    def plan(config: RunConfig, _: Upstream) -> list[ShardTask]:
        out = config.output_dir / stage
        return [
            ShardTask(name, [path], str(out / f"{name}.parquet"), i, dropped_path(config, stage, name))
            for i, (name, path) in enumerate(_named_inputs(config, source, suffixes))
        ]

    return plan
