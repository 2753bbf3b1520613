"""Runs stages on Ray: one task per shard, finished shards skipped, a manifest row per shard.

A shard counts as finished when its manifest row says `done` under the same config hash and
inputs and its output still exists; anything else is (re)computed. Outputs are renamed into place
by the stage functions before the task returns, and the driver records the row only after that, so
a run killed at any moment resumes with only its unfinished shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import ray

from manifests.schema import DONE, FAILED
from manifests.store import read_manifest, write_manifest
from pipeline.config import ConfigError, RunConfig
from pipeline.registry import STAGE_ORDER, STAGES, ShardTask, StageSpec, expand_stages, section_of

log = logging.getLogger("pipeline")
DISABLED = "disabled"


class StageFailed(RuntimeError):
    """Some shards of a stage raised; the others are recorded and will not be recomputed."""


def _row(stage: str, task: ShardTask, config_hash: str, **fields) -> dict:
    return {
        "stage": stage,
        "shard": task.shard,
        "inputs": task.inputs,
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
        **fields,
    }


def execute_shard(stage: str, task: ShardTask, params: dict, config_hash: str) -> dict:
    """Run one shard and describe it as a manifest row. Runs inside a Ray worker."""
    start = time.perf_counter()
    try:
        stats = STAGES[stage].run(task, {**params, **task.options}).check()
        outcome = {**asdict(stats), "dropped": dict(stats.dropped), "counters": dict(stats.counters)}
    except Exception:
        outcome = {"status": FAILED, "error": traceback.format_exc(limit=-8)}
    return _row(stage, task, config_hash, seconds=time.perf_counter() - start, **outcome)


def stage_hashes(config: RunConfig) -> dict[str, str]:
    """Each stage's config hash: a digest of the settings that determine its output, chained through
    the stages it needs. A disabled stage's is `disabled`, whatever its settings."""
    hashes: dict[str, str] = {}
    for name, spec in STAGES.items():
        if not spec.enabled(config):
            hashes[name] = DISABLED
            continue
        upstream = ",".join(hashes[n] for n in spec.needs)
        params = spec.params(config)
        if spec.also:
            params = {**params, "also": {s: section_of(config, s).model_dump() for s in spec.also}}
        payload = json.dumps({"stage": name, "params": params, "upstream": upstream}, sort_keys=True)
        hashes[name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return hashes


def _is_finished(spec: StageSpec, row: dict | None, task: ShardTask, config_hash: str) -> bool:
    return (
        row is not None
        and row["status"] == DONE
        and row["config_hash"] == config_hash
        and row["inputs"] == task.inputs
        and spec.completion_marker(task.output).exists()
    )


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


def run_stage(config: RunConfig, name: str, hashes: dict[str, str]) -> list[dict]:
    spec = STAGES[name]
    params = spec.params(config)
    tasks = spec.plan(config, _upstream_rows(config, spec, hashes))
    previous = {r["shard"]: r for r in read_manifest(config.output_dir, name)}
    rows = {t.shard: previous[t.shard] for t in tasks if _is_finished(spec, previous.get(t.shard), t, hashes[name])}
    todo = [t for t in tasks if t.shard not in rows]
    log.info("[%s] %d shards: %d already done, %d to run", name, len(tasks), len(rows), len(todo))
    write_manifest(config.output_dir, name, list(rows.values()))

    for task in todo:
        _remove_stale_temporaries(task)
    resources = spec.resources(params)
    _check_resources(name, resources)
    remote = ray.remote(execute_shard).options(name=f"{name}", max_retries=1, **resources)
    pending = {remote.remote(name, task, params, hashes[name]): task for task in todo}
    started = time.perf_counter()
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        task = pending.pop(ready)
        try:
            row = ray.get(ready)
        except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory) on every try
            row = _row(name, task, hashes[name], status=FAILED, error=f"{type(exc).__name__}: {exc}")
        rows[task.shard] = row
        write_manifest(config.output_dir, name, list(rows.values()))
        _log_row(name, row, done=len(tasks) - len(pending), total=len(tasks), elapsed=time.perf_counter() - started)

    failed = [r for r in rows.values() if r["status"] == FAILED]
    if failed:
        details = "\n".join(f"--- shard {r['shard']}:\n{r['error']}" for r in failed)
        raise StageFailed(
            f"stage {name!r}: {len(failed)} of {len(tasks)} shards failed; the others are kept. "
            f"Fix the cause and run again to retry only those.\n{details}"
        )
    return sorted(rows.values(), key=lambda r: r["shard"])


def _remove_stale_temporaries(task: ShardTask) -> None:
    """Temporary files or folders a killed run left behind for this shard, named `.NAME*.tmp*`."""
    output = Path(task.output)
    for stale in output.parent.glob(f".{output.name}*.tmp*"):
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)


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


@contextmanager
def ray_session(config: RunConfig):
    """Connect to the configured cluster, or start an embedded one for the run's duration."""
    address = config.run.ray_address or os.environ.get("RAY_ADDRESS") or "local"
    if ray.is_initialized():
        yield
        return
    kwargs = {"num_cpus": config.run.num_cpus, "include_dashboard": False} if address == "local" else {}
    log.info("starting Ray (%s)", "embedded local cluster" if address == "local" else address)
    ray.init(address=address, logging_level=logging.WARNING, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def run_pipeline(config: RunConfig, stages: list[str] | None = None) -> dict[str, list[dict]]:
    """Run `stages` (all, in order, by default); return each stage's manifest rows."""
    stages = expand_stages(stages) if stages else STAGE_ORDER
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
        for name in stages:
            results[name] = run_stage(config, name, hashes)
    return results
