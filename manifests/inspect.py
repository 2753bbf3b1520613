"""Human-readable funnels from a run's manifests: per stage, documents in, out and dropped by reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from manifests.store import read_manifest, stages_recorded
from pipeline import storage
from pipeline.registry import PHASES
from pipeline.storage import Location, location


def _stage_order(run_dir: str | Path) -> list[str]:
    """Stages in the order they first finished a shard, which is pipeline order."""
    first = {}
    for stage in stages_recorded(run_dir):
        rows = read_manifest(run_dir, stage)
        first[stage] = min((r["finished_at"] for r in rows), default=None)
    return sorted(first, key=lambda s: (first[s] is None, first[s] or 0))


def _quality_card(row: dict, run_dir: Path | Location) -> list[str]:
    """The quality model's held-out metrics, from the model card beside it."""
    card_path = str(run_dir / "quality_model" / "quality.ftz.json")
    if row["status"] != "done" or not storage.exists(card_path):
        return []
    card = json.loads(storage.read_text(card_path))
    m, data = card["heldout_metrics"], card["data"]
    return [
        f"    model     {data['sources'].get('positive_source')} vs crawl pages, {data['positives']:,} a class; "
        f"held-out precision {m['precision']:.3f}, recall {m['recall']:.3f}, ROC AUC {m['roc_auc']:.3f} "
        f"at p >= {m['threshold']:.2f}; card {card_path}"
    ]


def _mixture_table(row: dict, run_dir: Path | Location) -> list[str]:
    """The realised data mix (tokens, share and epochs per source), from the mixture stage's output."""
    table = str(run_dir / "mixture" / "mixture.md")
    if row["status"] != "done" or not storage.exists(table):
        return []
    return [f"    {line}" for line in storage.read_text(table).splitlines() if line]


def _tokens_per_source(rows: list[dict]) -> list[str]:
    """Token shards are named `<source>/<shard>`."""
    tokens, documents = Counter(), Counter()
    for r in rows:
        if r["status"] == "done":
            source = r["shard"].split("/", 1)[0]
            tokens[source] += r["tokens"] or 0
            documents[source] += r["docs_out"]
    return [f"    tokens {n:>11,}  {source} ({documents[source]:,} documents)" for source, n in tokens.most_common()]


def _training_summary(row: dict, run_dir: Path | Location) -> list[str]:
    """Steps, loss, validation loss, speed and loss spikes, from the trainer's train_log.jsonl beside
    its checkpoint (a step logged again after a resume or rollback counts once, its last record)."""
    log = str(run_dir / "train" / "train_log.jsonl")
    if row["status"] != "done" or not storage.exists(log):
        return []
    records = [json.loads(line) for line in storage.read_text(log).splitlines() if line.strip()]
    steps = {r["step"]: r for r in records if "event" not in r}
    if not steps:
        return []
    first, last = steps[min(steps)], steps[max(steps)]
    speeds = sorted(r["tokens_per_s"] for r in steps.values())
    parts = [f"{len(steps):,} steps", f"loss {first['loss']:.3f} -> {last['loss']:.3f}"]
    validated = [r for r in steps.values() if "val_loss" in r]
    if validated:
        parts.append(f"validation loss {validated[-1]['val_loss']:.3f} at step {validated[-1]['step']}")
    parts.append(f"{speeds[len(speeds) // 2]:,.0f} tokens/s (median step)")
    if "mfu" in last:
        parts.append(f"MFU {sorted(r['mfu'] for r in steps.values())[len(steps) // 2]:.1%}")
    spikes = sum(r.get("event") == "loss_spike" for r in records)
    if spikes:
        parts.append(f"{spikes} loss spike(s) rolled back")
    return [f"    training  {'; '.join(parts)}; log {log}"]


# Stage-specific lines from a stage's rows: (rows) -> lines.
STAGE_DETAILS = {"tokenize": _tokens_per_source}
# Stage-specific lines read from a stage's outputs in the run directory being inspected (which may
# have been moved since the rows were written): (row, run directory) -> lines.
DETAILS = {"quality_model": _quality_card, "mixture": _mixture_table, "train": _training_summary}
LEGEND = ("task-s: the seconds the stage's tasks ran, added up over its shards (more than the wall time "
          "when shards run side by side); a phase's line: one step of its stage, which does not pass documents on")


def format_stage(rows: list[dict], stage: str, shards: bool = False, run_dir: Path | Location | None = None) -> str:
    done = [r for r in rows if r["status"] == "done"]
    failed = len(rows) - len(done)
    docs_in = sum(r["docs_in"] for r in done)
    docs_out = sum(r["docs_out"] for r in done)
    dropped, counters = Counter(), Counter()
    for r in done:
        dropped.update(r["dropped"])
        counters.update(r["counters"])
    tokens = [r["tokens"] for r in done if r["tokens"] is not None]
    kept = f"{docs_out / docs_in:.1%}" if docs_in else "-"
    nodes = {r["node"] for r in rows if r.get("node")}
    phase_of = PHASES.get(stage)
    header = (
        f"{'  ' if phase_of else ''}{stage}{f' (a phase of {phase_of})' if phase_of else ''}: "
        f"{len(done)} shards done{f', {failed} FAILED' if failed else ''}"
        f"{f' on {len(nodes)} nodes' if len(nodes) > 1 else ''}; "
        + ("" if phase_of else f"{docs_in:,} in -> {docs_out:,} out ({kept} kept)"
           f"{f'; {sum(tokens):,} tokens' if tokens else ''}; ")
        + f"{sum(r['bytes_out'] for r in done) / 1e6:,.2f} MB; {sum(r['seconds'] for r in done):,.1f} task-s"
    )
    lines = [header]
    for reason, count in dropped.most_common():
        lines.append(f"    dropped {count:>9,}  {reason}")
    for name, count in sorted(counters.items()):
        lines.append(f"    counted {count:>9,}  {name}")
    lines += STAGE_DETAILS.get(stage, lambda rows: [])(rows)
    for r in done:
        lines += DETAILS[stage](r, run_dir) if stage in DETAILS and run_dir is not None else []
    if shards:
        for r in sorted(rows, key=lambda r: r["shard"]):
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(r["dropped"].items()))
            node = f"  node {r['node'][:8]}" if len(nodes) > 1 else ""
            lines.append(
                f"    shard {r['shard']:<32} {r['status']:<6} {r['docs_in']:>7,} -> {r['docs_out']:>7,} "
                f"{r['seconds']:6.1f}s{node}  {reasons}"
            )
    return "\n".join(lines)


def format_run(run_dir: str | Path, *, stage: str | None = None, shards: bool = False) -> str:
    run_dir = location(run_dir)
    stages = [stage] if stage else _stage_order(run_dir)
    if not stages:
        return f"{run_dir}: no manifests yet (nothing has run)"
    return "\n".join([*(format_stage(read_manifest(run_dir, s), s, shards, run_dir) for s in stages), LEGEND])
