"""Checkpoints: resumable ones with torch.distributed.checkpoint (DCP), and the final model file.

A resumable checkpoint is the directory out/checkpoints/step-NNNNNNNN: the model and optimizer
(each rank writes its own shards under FSDP), the training state (step, data position, the spike
detector's window) and each rank's RNG states. It is written as .tmp-step-NNNNNNNN and renamed once
every rank has finished, so a directory named step-* is always complete; a crash mid-save leaves
only a .tmp-* directory, which is never loaded and is replaced by the next save.

Two runs of the same config write the same bytes: the RNG states are those the trainer seeded
(trainer.train), and DCP's .metadata leaves out the storage record it would otherwise hold (the
directory's absolute path and a random save id), which no load reads.

checkpoint.pt is the consolidated model (full, unsharded weights and the configs) that the pipeline
and the exporters read; it has no optimizer state.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from contextlib import contextmanager
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from trainer.distributed import barrier
from trainer.model import ModelConfig, Transformer

_STEP_DIR = re.compile(r"step-(\d+)")


def checkpoints_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete resumable checkpoint in `out`, or None."""
    directory = checkpoints_dir(out)
    if not directory.is_dir():
        return None
    complete = [
        (int(match.group(1)), path)
        for path in directory.iterdir()
        if (match := _STEP_DIR.fullmatch(path.name)) and (path / ".metadata").is_file()
    ]
    return max(complete)[1] if complete else None


@contextmanager
def _single_process_quiet():
    """DCP warns that it assumes one process whenever there is no process group, as intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


class _RunIndependentWriter(dcp.FileSystemWriter):
    """DCP's file writer, without the StorageMeta (checkpoint path, uuid4 save id) in .metadata."""

    def storage_meta(self) -> None:
        return None


def save_resumable(
    out: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, train_state: dict, keep: int
) -> Path:
    """Save a resumable checkpoint at `step` (a collective: every rank calls it) and keep the
    newest `keep` of them."""
    final = checkpoints_dir(out) / f"step-{step:08d}"
    temporary = final.with_name(f".tmp-{final.name}")
    if _rank() == 0:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "train": train_state}
    with _single_process_quiet():
        dcp.save(state, storage_writer=_RunIndependentWriter(temporary), no_dist=not dist.is_initialized())
    torch.save(_rng_states(), temporary / f"rng-rank{_rank()}.pt")
    barrier()
    if _rank() == 0:
        if final.exists():  # the same step again after a rollback: the newer save wins
            shutil.rmtree(final)
        os.replace(temporary, final)
        _prune(checkpoints_dir(out), keep)
    barrier()
    return final


def _prune(directory: Path, keep: int) -> None:
    steps = sorted(
        (int(match.group(1)), path) for path in directory.iterdir() if (match := _STEP_DIR.fullmatch(path.name))
    )
    for _, path in steps[:-keep]:
        shutil.rmtree(path)


def load_resumable(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, train_state: dict) -> dict:
    """Load a checkpoint into the model and optimizer (a collective); returns its training state.
    `train_state` gives the structure to read."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "train": train_state}
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=path, no_dist=not dist.is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    rng = torch.load(path / f"rng-rank{_rank()}.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"])
    return state["train"]


def save_model(path: Path, model: nn.Module, model_config: ModelConfig, train_config, step: int) -> None:
    """Write the full model to one file (a collective under FSDP; rank 0 writes), to a temporary
    name first so a crash never leaves half a file."""
    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if _rank() == 0:
        temporary = path.with_name(f".{path.name}.tmp")
        torch.save(
            {
                "model": weights,
                "step": step,
                "model_config": dataclasses.asdict(model_config),
                "train_config": dataclasses.asdict(train_config),
            },
            temporary,
        )
        os.replace(temporary, path)
    barrier()


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Transformer, dict]:
    """The model stored in a checkpoint.pt, and the checkpoint itself."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = Transformer(ModelConfig(**checkpoint["model_config"])).to(device)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint
