"""Runs stages on Ray: one task per shard, finished shards skipped, a manifest row per shard.

Stages that read their upstream's shards document by document (language ID after extraction)
run in the same task as it, shard by shard, when both run: one read of the documents less and one
scheduling round less, while each stage keeps its own output, manifest row and drop reasons.
Shards run largest first; their progress, with rates and an ETA, is shown as they run
(pipeline/progress_display.py).

A shard counts as finished when its manifest row says `done` under the same config hash, inputs
and input versions (what its inputs hold: a file's size and time, or the row of the upstream shard
that wrote it, manifests/schema.py) and its output still exists; anything else is (re)computed. A
stage's config hash covers the content of the model and list files its settings name. Outputs are
renamed into place by the stage functions (and, for a remote run directory, uploaded by
pipeline.storage) before the task returns, and the driver records the row only after that, so a
run killed at any moment resumes with only its unfinished shards; what killed attempts left
half-written is removed when a step starts and when it ends.

On a cluster of several nodes the run directory and the inputs must be where every node reaches
them: object storage, or a filesystem all nodes mount (`run.shared_filesystem`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections import ChainMap, defaultdict
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import ray

from manifests.schema import DONE, FAILED
from manifests.store import read_manifest, record_row, write_manifest
from pipeline import storage
from pipeline.config import ConfigError, RunConfig
from pipeline.progress import ProgressBoard, StageProgress, shard_reporter
from pipeline.progress_display import stage_display
from pipeline.ray_session import ray_session
from pipeline.registry import INPUT_STAGES, STAGE_ORDER, STAGES, ShardTask, StageSpec, expand_stages, section_of

log = logging.getLogger("pipeline")
DISABLED = "disabled"


class StageFailed(RuntimeError):
    """Some shards of a stage raised; the others are recorded and will not be recomputed."""


def _row(stage: str, task: ShardTask, config_hash: str, **fields) -> dict:
    return {
        "stage": stage,
        "shard": task.shard,
        "inputs": task.inputs,
        "input_versions": None,  # set by the driver, which knows what its inputs hold
        "output": task.output,
        "docs_in": 0,
        "docs_out": 0,
        "dropped": {},
        "bytes_out": 0,
        "tokens": None,
        "counters": {},
        "seconds": 0.0,
        "config_hash": config_hash,
        "status": DONE,
        "error": None,
        "finished_at": datetime.now(timezone.utc),
        "node": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None,
        **fields,
    }


def execute_shard(
    stage: str, task: ShardTask, params: dict, config_hash: str, board, scratch: storage.Scratch
) -> dict:
    """Run one shard, its remote files staged in `scratch`, and describe it as a manifest row.
    Runs inside a Ray worker."""
    start = time.perf_counter()
    spec = STAGES[stage]
    extra = {"progress": shard_reporter(board, task.shard)} if board is not None and spec.reports_progress else {}
    try:
        with scratch.staged(task, str(spec.completion_marker(task.output))) as local:
            stats = spec.run(local, {**params, **task.options}, **extra).check()
        outcome = {**asdict(stats), "dropped": dict(stats.dropped), "counters": dict(stats.counters)}
    except Exception:
        outcome = {"status": FAILED, "error": traceback.format_exc(limit=-8)}
    return _row(stage, task, config_hash, seconds=time.perf_counter() - start, **outcome)


def execute_chain(steps: list[tuple[str, ShardTask, dict, str]], board, storage_settings: dict | None = None) -> list[dict]:
    """Run one shard through stages that follow each other document by document, in one task:
    each stage writes its own output and gets its own row. A failed shard fails the rest."""
    storage.configure(storage_settings)
    rows: list[dict] = []
    with storage.Scratch() as scratch:
        for stage, task, params, config_hash in steps:
            if rows and rows[-1]["status"] == FAILED:
                error = f"not run: its input shard failed in stage {rows[-1]['stage']!r}"
                rows.append(_row(stage, task, config_hash, status=FAILED, error=error))
            else:
                rows.append(execute_shard(stage, task, params, config_hash, board if not rows else None, scratch))
    return rows


def stage_hashes(config: RunConfig) -> dict[str, str]:
    """Each stage's config hash: a digest of the settings that determine its output, chained through
    the stages it needs. A disabled stage's is `disabled`, whatever its settings."""
    hashes: dict[str, str] = {}
    for name, spec in STAGES.items():
        if not spec.enabled(config):
            hashes[name] = DISABLED
            continue
        upstream = ",".join(hashes[n] for n in spec.needs)
        params = {k: v for k, v in spec.params(config).items() if k not in spec.unhashed}
        if spec.also:
            params = {**params, "also": {s: section_of(config, s).model_dump() for s in spec.also}}
        files = {path: storage.content_digest(path) for path in _named_files(params)}
        payload = json.dumps({"stage": name, "params": params, "files": files, "upstream": upstream}, sort_keys=True)
        hashes[name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return hashes


def _named_files(settings) -> list[str]:
    """The local files that settings name (models, word lists), wherever they are in them: the
    strings that are paths of existing files."""
    if isinstance(settings, dict):
        return [path for value in settings.values() for path in _named_files(value)]
    if isinstance(settings, (list, tuple)):
        return [path for value in settings for path in _named_files(value)]
    is_file = isinstance(settings, str) and not storage.is_remote(settings) and os.path.isfile(settings)
    return [settings] if is_file else []


# What a finished shard was computed from and what it wrote, but not when, where or how fast: a
# shard recomputed from the same inputs with the same settings keeps its version.
VERSIONED_FIELDS = ("stage", "shard", "config_hash", "input_versions", "docs_in", "docs_out", "dropped", "bytes_out",
                    "tokens", "counters")


def shard_version(row: dict) -> str:
    """The version of what a shard wrote, for the shards that read it."""
    identity = json.dumps({field: row[field] for field in VERSIONED_FIELDS}, sort_keys=True)
    return f"shard:{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _produced_versions(rows: Iterable[dict]) -> dict[str, str]:
    """Each path the rows' shards wrote (output, completion marker, side outputs), with its shard's version."""
    versions: dict[str, str] = {}
    for row in rows:
        versions.update(dict.fromkeys(STAGES[row["stage"]].written_paths(row["output"]), shard_version(row)))
    return versions


def _produced_by(uri: str, produced: Mapping[str, str]) -> str | None:
    """The version of the upstream shard that wrote `uri`, or a folder holding it; None if none did."""
    path = uri
    while path not in produced:
        parent = path.rsplit("/", 1)[0]
        if parent in ("", path):
            return None
        path = parent
    return produced[path]


@dataclass(frozen=True)
class InputVersions:
    """What the inputs of a step's shards hold."""

    produced: dict[str, str]  # each path an upstream shard wrote: that shard's version
    external: dict[str, str]  # each other input: its own version

    @classmethod
    def of_step(cls, upstream: list[dict], tasks: list[ShardTask], settings: list[dict]) -> "InputVersions":
        """From the rows of the shards the step reads, and for the other inputs, a file the
        settings name by its content (as in the config hash), any other from its folder's listing."""
        produced = _produced_versions(upstream)
        uris = {uri for task in tasks for uri in task.inputs if _produced_by(uri, produced) is None}
        named = {path for params in settings for path in _named_files(params)} & uris
        external = {**storage.versions(uris - named), **{path: storage.content_digest(path) for path in named}}
        return cls(produced, external)

    def of(self, task: ShardTask, written: Mapping[str, str] | None = None) -> list[str]:
        """The versions of the task's inputs; `written`: what the stages before it in its chain just wrote."""
        produced = ChainMap(written or {}, self.produced)
        return [_produced_by(uri, produced) or self.external[uri] for uri in task.inputs]

    def recorded_in(self, rows: list[dict], tasks: dict[str, dict[str, ShardTask]]) -> list[dict]:
        """One shard's rows, from each stage of its chain, with their inputs' versions."""
        versioned, written = [], {}
        for row in rows:
            row = {**row, "input_versions": self.of(tasks[row["stage"]][row["shard"]], written)}
            written.update(_produced_versions([row]))
            versioned.append(row)
        return versioned


def _finished_shards(spec: StageSpec, rows: dict[str, dict], tasks: dict[str, ShardTask], config_hash: str,
                     versions: InputVersions) -> set[str]:
    """The shards whose row says done under this config hash and these inputs, holding what they
    hold now, and whose output is still there (checked for all shards at once: one listing per
    folder on object storage)."""
    recorded = {
        shard: str(spec.completion_marker(task.output))
        for shard, task in tasks.items()
        if (row := rows.get(shard)) and row["status"] == DONE and row["config_hash"] == config_hash
        and row["inputs"] == task.inputs and row["input_versions"] == versions.of(task)
    }
    present = storage.existing(recorded.values())
    return {shard for shard, marker in recorded.items() if marker in present}


def _finished_rows(config: RunConfig, need: str, hashes: dict[str, str], wanted_by: str) -> list[dict]:
    if hashes[need] == DISABLED:
        return []
    rows = [r for r in read_manifest(config.output_dir, need) if r["config_hash"] == hashes[need]]
    if not rows or any(r["status"] != DONE for r in rows):
        raise ConfigError(
            f"stage {wanted_by!r} needs the finished output of stage {need!r} in {config.output_dir} "
            f"with the current config; run `python -m pipeline run CONFIG --stages {need}` first"
        )
    return rows


def _upstream_rows(config: RunConfig, spec: StageSpec, hashes: dict[str, str]) -> dict[str, list[dict]]:
    return {need: _finished_rows(config, need, hashes, spec.name) for need in spec.needs}


def fused_steps(stages: list[str], hashes: dict[str, str] | None = None) -> list[list[str]]:
    """`stages` (in pipeline order) as steps: a stage that fuses with the stage it reads (the last of
    its needs enabled by `hashes`) joins that stage's step when both run, so each shard passes
    through both in one task."""
    steps: list[list[str]] = []
    for name in stages:
        spec = STAGES[name]
        needs = tuple(n for n in spec.needs if hashes is None or hashes[n] != DISABLED)
        if spec.fuses_with_upstream and steps and needs[-1:] == (steps[-1][-1],):
            steps[-1].append(name)
        else:
            steps.append([name])
    return steps


def run_step(config: RunConfig, names: list[str], hashes: dict[str, str], board) -> dict[str, list[dict]]:
    """Run a stage, or a chain of stages fused shard by shard; return each stage's manifest rows."""
    specs = [STAGES[n] for n in names]
    params = {spec.name: spec.params(config) for spec in specs}
    upstream_rows = _upstream_rows(config, specs[0], hashes)
    plans = {names[0]: specs[0].plan(config, upstream_rows)}
    for before, spec in zip(specs, specs[1:]):
        # Planned from the tasks of the stage before it, finished or not: they run in one task.
        upstream = [{"shard": t.shard, "output": t.output} for t in plans[before.name]]
        plans[spec.name] = spec.plan(config, {before.name: upstream})
    tasks = {name: {t.shard: t for t in plans[name]} for name in names}
    previous = {name: {r["shard"]: r for r in read_manifest(config.output_dir, name)} for name in names}
    # A fused stage reads what the stage before it writes: its rows from before, or those its chain makes.
    versions = InputVersions.of_step(
        [*(r for rows in upstream_rows.values() for r in rows), *(r for n in names[:-1] for r in previous[n].values())],
        [task for name in names for task in tasks[name].values()], list(params.values()))

    done_before = {spec.name: _finished_shards(spec, previous[spec.name], tasks[spec.name], hashes[spec.name], versions)
                   for spec in specs}
    rows: dict[str, dict[str, dict]] = {name: {} for name in names}
    chains = []
    for shard in tasks[names[0]]:
        steps = []
        for spec in specs:
            task = tasks[spec.name][shard]
            if not steps and shard in done_before[spec.name]:
                rows[spec.name][shard] = previous[spec.name][shard]
            else:  # and every stage after it, which reads what it writes
                steps.append((spec.name, task, params[spec.name], hashes[spec.name]))
        if steps:
            chains.append(steps)
    label = "+".join(names)
    for name in names:
        log.info("[%s] %d shards: %d already done, %d to run", name, len(tasks[name]), len(rows[name]),
                 len(tasks[name]) - len(rows[name]))
        write_manifest(config.output_dir, name, list(rows[name].values()))
    _remove_leftover_temporaries(specs, tasks)

    resources = _chain_resources([spec.resources(params[spec.name]) for spec in specs])
    _check_resources(label, resources)
    # Largest first, so that the stage does not end on one big shard running alone.
    sizes = _input_bytes([steps[0][1] for steps in chains])
    chains.sort(key=lambda steps: -sizes[steps[0][1].shard])
    remote = ray.remote(execute_chain).options(name=label, max_retries=1, **resources)
    settings = config.run.storage.settings().as_dict()
    # A bounded window of tasks in flight, topped up as they finish: waiting on them costs the same
    # at shard 10 and at shard 100,000.
    queue, window = iter(chains), _window(resources)
    pending = {}
    progress = StageProgress(label, len(chains), sum(sizes.values()))
    finished: list[str] = []
    last_report = time.monotonic()
    with stage_display(progress) as display:
        while True:
            for steps in itertools.islice(queue, window - len(pending)):
                pending[remote.remote(steps, board, settings)] = steps
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=display.refresh_s)
            for ref in ready:
                steps = pending.pop(ref)
                try:
                    chain_rows = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory) on every try
                    error = f"{type(exc).__name__}: {exc}"
                    chain_rows = [_row(stage, task, h, status=FAILED, error=error) for stage, task, _, h in steps]
                shard = steps[0][1].shard
                progress.finish(shard, chain_rows[0], sizes[shard])
                finished.append(shard)
                for row in versions.recorded_in(chain_rows, tasks):
                    rows[row["stage"]][row["shard"]] = row
                    record_row(config.output_dir, row["stage"], row)
                    _log_row(row["stage"], row, done=progress.done_shards, total=len(chains),
                             elapsed=time.monotonic() - progress.started)
            if pending and time.monotonic() - last_report >= display.refresh_s:
                running = {steps[0][1].shard for steps in pending.values()}
                reports = ray.get(board.snapshot.remote(finished))
                progress.running = {k: v for k, v in reports.items() if k in running}
                finished = []
                display.show()
                last_report = time.monotonic()

    # A retried task's killed attempt left its temporaries; no task of the step runs now.
    _remove_leftover_temporaries(specs, tasks)
    for name in names:
        write_manifest(config.output_dir, name, list(rows[name].values()))
    failed = [r for name in names for r in rows[name].values() if r["status"] == FAILED]
    if failed:
        counts = [(name, sum(r["stage"] == name for r in failed)) for name in names]
        summary = "; ".join(f"stage {name!r}: {k} of {len(tasks[name])} shards failed" for name, k in counts if k)
        details = "\n".join(f"--- {r['stage']} shard {r['shard']}:\n{r['error']}" for r in failed)
        raise StageFailed(f"{summary}; the others are kept. Fix the cause and run again to retry only those.\n{details}")
    return {name: sorted(rows[name].values(), key=lambda r: r["shard"]) for name in names}


def _input_bytes(tasks: list[ShardTask]) -> dict[str, int]:
    """The size of each task's input files (directories count as 0): its share of the stage's work."""
    size = storage.sizes({uri for task in tasks for uri in task.inputs})
    return {task.shard: sum(size[uri] for uri in task.inputs) for task in tasks}


def _window(resources: dict) -> int:
    """Tasks kept in flight: twice as many as the cluster runs at once, so none waits for work."""
    slots = ray.cluster_resources().get("CPU", 1) / max(resources.get("num_cpus", 1), 1e-3)
    return max(2, 2 * int(slots))


def _chain_resources(resources: list[dict]) -> dict:
    keys = {key for r in resources for key in r}
    return {key: max(r.get(key, 0) for r in resources) for key in keys}


def _remove_leftover_temporaries(specs: list[StageSpec], tasks: dict[str, dict[str, ShardTask]]) -> None:
    """Remove what killed attempts of these shards left beside the files they write: entries named
    `.NAME.*` for each NAME a shard writes (`.NAME.tmp-*`, a replaced folder's `.NAME.stale-*`, a
    work folder), one listing per folder. Only while none of the shards runs. (On object storage
    there are none: a shard's files are uploaded only once complete.)"""
    written: dict[Path, set[str]] = defaultdict(set)
    for spec in specs:
        for task in tasks[spec.name].values():
            for path in [*spec.written_paths(task.output), task.dropped]:
                if path is not None and not storage.is_remote(path):
                    written[Path(path).parent].add(Path(path).name)
    for folder, names in written.items():
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            leftovers = [entry for entry in entries if _is_leftover(entry.name, names)]
        for entry in leftovers:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


def _is_leftover(entry: str, names: set[str]) -> bool:
    """Whether `entry` is `.NAME.<anything>` for a NAME in `names` (a NAME may hold dots itself)."""
    return entry.startswith(".") and any(entry[1:i] in names for i in range(2, len(entry)) if entry[i] == ".")


def _log_row(stage: str, row: dict, *, done: int, total: int, elapsed: float) -> None:
    if row["status"] == FAILED:
        log.error("[%s] %d/%d shard %s FAILED: %s", stage, done, total, row["shard"], row["error"].strip().splitlines()[-1])
        return
    tokens = f", {row['tokens']:,} tokens" if row["tokens"] is not None else ""
    log.info(
        "[%s] %d/%d shard %s: %d in, %d out%s (%.1fs; stage %.1fs)",
        stage, done, total, row["shard"], row["docs_in"], row["docs_out"], tokens, row["seconds"], elapsed,
    )


def _check_resources(stage: str, resources: dict) -> None:
    available = ray.cluster_resources()
    for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        wanted = resources.get(key, 0)
        if wanted > available.get(resource, 0):
            raise ConfigError(
                f"stage {stage!r} asks for {wanted:g} {resource} per task but the Ray cluster has "
                f"{available.get(resource, 0):g}; lower the stage's thread count or use a larger cluster"
            )


def run_pipeline(config: RunConfig, stages: list[str] | None = None) -> dict[str, list[dict]]:
    """Run `stages` (all, in order, by default); return each stage's manifest rows."""
    stages = expand_stages(stages) if stages else STAGE_ORDER
    config.check_inputs()
    hashes = stage_hashes(config)
    for name in [s for s in stages if hashes[s] == DISABLED]:
        log.info("[%s] not asked for by this config (no inputs, or turned off); skipped", name)
    stages = [s for s in stages if hashes[s] != DISABLED]
    for name in stages:
        for need in STAGES[name].needs:
            if need not in stages:
                _finished_rows(config, need, hashes, name)
    results = {}
    with ray_session(config):
        _check_reachable_by_every_node(config, stages)
        with _run_log(config):
            board = ProgressBoard.remote()
            for step in fused_steps(stages, hashes):
                results.update(run_step(config, step, hashes, board))
    return results


def _check_reachable_by_every_node(config: RunConfig, stages: list[str]) -> None:
    """On a cluster of several nodes, a local run directory or local inputs would be each node's
    own disk: the next stage, on another node, would not find the shards. Say so before any work."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) < 2 or config.run.shared_filesystem:
        return
    local = [] if storage.is_remote(config.run.output) else [f"run.output {config.run.output}"]
    read = {INPUT_STAGES[stage] for stage in stages if stage in INPUT_STAGES}
    local += [f"inputs.{source}" for source, paths in config.input_sources().items()
              if source.split(".")[0] in read and any(not storage.is_remote(path) for path in paths)]
    if local:
        raise ConfigError(
            f"the Ray cluster has {len(nodes)} nodes but {', '.join(local)} "
            f"{'is' if len(local) == 1 else 'are'} on this machine's disk, which the other nodes cannot read: "
            "put the run directory and inputs on object storage (s3://..., gs://...), or, if they are on a "
            "filesystem every node mounts at the same path, set run.shared_filesystem: true"
        )


@contextmanager
def _run_log(config: RunConfig):
    """The driver's log lines, progress included, also go to RUN_DIR/logs/pipeline.log (for a
    remote run directory, uploaded when the run ends)."""
    remote = storage.is_remote(config.output_dir)
    path = Path(tempfile.mkstemp(suffix=".log")[1]) if remote else config.output_dir / "logs" / "pipeline.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        if remote:
            uri = str(config.output_dir / "logs" / "pipeline.log")
            earlier = storage.read_bytes(uri) if storage.exists(uri) else b""
            storage.write_bytes(uri, earlier + path.read_bytes())
            path.unlink()
