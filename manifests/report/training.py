"""The training curves from the trainer's train_log.jsonl, read in one pass with bounded memory."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

from manifests.report.run_data import RunData
from pipeline import storage
from pipeline.storage import location

MAX_POINTS = 4_000  # step records kept; a longer log is thinned to every 2nd, 4th, ... step


@dataclass
class TrainingLog:
    path: str
    steps: list[dict] = field(default_factory=list)  # thinned step records: step, loss, lr, grad_norm, ...
    validation: list[dict] = field(default_factory=list)  # every record with val_loss
    spikes: list[dict] = field(default_factory=list)  # loss_spike events
    last_step: dict | None = None
    stride: int = 1


def _rewind(records: list[dict], step: int) -> None:
    """A resume or rollback logs a step again, and its last record counts: forget what came after."""
    while records and records[-1]["step"] >= step:
        records.pop()


def log_path(run: RunData) -> str:
    """Beside the train stage's checkpoint, or where the train stage writes it if it has not finished."""
    summary = run.get("train")
    if summary and summary.sample:
        return str(location(summary.sample[0]["output"]).parent / "train_log.jsonl")
    return run.path("train", "train_log.jsonl")


def read_training(run: RunData) -> TrainingLog | None:
    path = log_path(run)
    if not storage.exists(path):
        return None
    log = TrainingLog(path)
    with storage.open_input_file(path) as file:
        for line in io.TextIOWrapper(file, encoding="utf-8"):
            try:
                record = json.loads(line)
            except ValueError:  # blank, or the line a killed trainer was writing
                continue
            if "event" in record:
                if record["event"] == "loss_spike":
                    log.spikes.append(record)
                continue
            _rewind(log.steps, record["step"])
            _rewind(log.validation, record["step"])
            log.last_step = record
            if "val_loss" in record:
                log.validation.append(record)
            if record["step"] % log.stride == 0:
                log.steps.append(record)
            if len(log.steps) > MAX_POINTS:
                log.stride *= 2
                log.steps = [r for r in log.steps if r["step"] % log.stride == 0]
    if log.last_step and log.steps[-1:] != [log.last_step]:
        log.steps.append(log.last_step)
    return log
