"""The training loop: AdamW, linear warmup then cosine decay, gradient clipping and accumulation,
resumable checkpoints, loss-spike recovery, validation and MFU.

Model (trainer.model), data (trainer.data), parallelism (trainer.distributed), checkpoints
(trainer.checkpoint), spike detection (trainer.spikes) and logging (trainer.metrics) live in their
own modules; this one holds the configuration and the loop.

    python -m trainer.train --data PREFIX [PREFIX ...] --vocab-size N --out DIR
    torchrun --nproc-per-node 8 -m trainer.train --parallel fsdp --mixture DIR --vocab-size N --out DIR

Step s trains on global batch s + data_offset (trainer.data.iterate_batches); data_offset is 0
unless a loss spike made the run skip batches, and is saved in every checkpoint, so a resumed run
reads exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

from trainer.checkpoint import latest_checkpoint, load_checkpoint, load_resumable, save_model, save_resumable
from trainer.data import PackedDataset, iterate_batches, open_datasets
from trainer.distributed import (
    PARALLEL,
    RECOMPUTE,
    World,
    apply_recompute,
    close_world,
    distributed,
    gradient_sync,
    init_world,
    materialize,
    mean_over_ranks,
    parallelize,
)
from trainer.metrics import RunLog, flops_per_token, peak_flops
from trainer.model import PRESETS, ModelConfig, Transformer
from trainer.spikes import SpikeDetector

__all__ = [
    "TrainConfig", "build_model", "build_optimizer", "learning_rate", "load_checkpoint", "main", "train", "train_step",
]


@dataclass
class TrainConfig:
    preset: str = "tiny"
    seq_len: int = 256
    batch_size: int = 8  # micro-batch: samples per process per forward pass
    global_batch_tokens: int | None = None  # tokens per optimizer step; None: one micro-batch per process
    steps: int = 50
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 2000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # auto: bf16 autocast on a GPU, fp32 elsewhere | bf16 | fp32
    log_every: int = 1  # stdout only; train_log.jsonl gets every step
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    # Checkpoints (trainer.checkpoint): every checkpoint_every steps and at the end.
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the newest complete checkpoint in out_dir, if any
    # Validation on documents held out from training (trainer.data): every eval_every steps and at the end.
    holdout: float = 0.01
    eval_every: int = 1000
    eval_batches: int = 8
    # Loss-spike recovery (trainer.spikes); spike_window 0 leaves only the NaN/inf check.
    spike_window: int = 50
    spike_sigmas: float = 5.0
    spike_factor: float = 1.5
    spike_skip_batches: int = 200  # counted from the spike's batch, which is always skipped
    max_rollbacks: int = 5
    spike_test_batch: int | None = None  # testing aid: multiply this data batch's loss by 100
    # Measurement.
    peak_flops: float | None = None  # FLOP/s per process for MFU; None: known GPUs only
    tensorboard: bool = True
    # Parallelism and memory (trainer.distributed).
    parallel: str = "none"  # none | ddp | fsdp
    compile: bool = False  # torch.compile each block
    recompute: str = "none"  # none | attention | block: activation recomputation


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights and the optimizer."""

    step: int = 0  # completed optimizer steps
    data_offset: int = 0  # batches skipped after loss spikes
    losses: list[float] = dataclasses.field(default_factory=list)  # the spike detector's window
    config: dict = dataclasses.field(default_factory=dict)


PRECISION = ("auto", "bf16", "fp32")

# Fields a resumed run must share with its checkpoint: they change the model or the data stream.
RESUME_MUST_MATCH = ("preset", "seq_len", "seed", "holdout")


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup to config.lr, then cosine decay to min_lr_ratio * lr at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - 1 - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # Decay the matrices (linear and embedding weights) only, not norm gains.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # On a GPU, one fused kernel updates every parameter: faster than the default multi-tensor one.
    fused = all(p.device.type == "cuda" for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused or None)


def autocast(config: TrainConfig, device: torch.device):
    """The forward pass's precision: bf16 autocast (weights, gradients and optimizer stay fp32;
    RMSNorm, rotary and the loss compute in fp32) or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(config, device))


def uses_bf16(config: TrainConfig, device: torch.device) -> bool:
    """Whether `precision` means bf16 autocast on this device."""
    return config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")


def accumulation_steps(config: TrainConfig, world_size: int) -> int:
    """Micro-batches per process per optimizer step: global_batch_tokens / (batch_size x seq_len x
    processes), which must be a whole number."""
    micro_tokens = config.batch_size * config.seq_len * world_size
    global_tokens = config.global_batch_tokens or micro_tokens
    if global_tokens % micro_tokens:
        raise ValueError(
            f"global batch of {global_tokens} tokens is not a multiple of {micro_tokens} "
            f"(batch_size {config.batch_size} x seq_len {config.seq_len} x {world_size} processes)"
        )
    return global_tokens // micro_tokens


def check_config(config: TrainConfig) -> None:
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose from {list(PRESETS)}")
    if config.precision not in PRECISION:
        raise ValueError(f"unknown precision {config.precision!r}; choose from {PRECISION}")
    if config.recompute not in RECOMPUTE:
        raise ValueError(f"unknown recompute {config.recompute!r}; choose from {RECOMPUTE}")
    if config.spike_skip_batches < 1:
        raise ValueError("spike_skip_batches must be at least 1: the spike's own batch is skipped")
    if not 0.0 <= config.holdout < 1.0:
        raise ValueError(f"holdout {config.holdout} is not a fraction in [0, 1)")


def _full(value: torch.Tensor) -> torch.Tensor:
    return value.full_tensor() if isinstance(value, DTensor) else value


def train_step(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, world: World,
    loss_scale: float = 1.0,
) -> tuple[float, float]:
    """Forward and backward over this process's micro-batches of one global batch, then clip.
    Returns the mean loss over the global batch and the gradient norm before clipping; the caller
    decides whether to take the optimizer step."""
    inputs, targets = batch
    micro_batches = list(zip(inputs.split(config.batch_size), targets.split(config.batch_size)))
    total = torch.zeros((), device=world.device)
    for i, (x, y) in enumerate(micro_batches):
        with gradient_sync(model, i == len(micro_batches) - 1):
            with autocast(config, world.device):
                _, loss = model(x.to(world.device), y.to(world.device))
            loss = loss * loss_scale
            (loss / len(micro_batches)).backward()
        total += loss.detach()
    loss = mean_over_ranks(total / len(micro_batches))
    grad_norm = _full(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
    return loss.item(), grad_norm.item()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], config: TrainConfig, world: World
) -> float:
    """The mean loss over the validation batches, each process its rows, a micro-batch at a time."""
    model.eval()
    losses = []
    for inputs, targets in batches:
        for x, y in zip(inputs.split(config.batch_size), targets.split(config.batch_size)):
            with autocast(config, world.device):
                losses.append(model(x.to(world.device), y.to(world.device))[1].float())
    model.train()
    return mean_over_ranks(torch.stack(losses).mean()).item()


def _restore(path: Path, model, optimizer) -> TrainState:
    saved = load_resumable(path, model, optimizer, {"state": ""})
    return TrainState(**json.loads(saved["state"]))


def _save(out: Path, model, optimizer, state: TrainState, config: TrainConfig) -> None:
    saved = {"state": json.dumps(dataclasses.asdict(state))}
    save_resumable(out, state.step, model, optimizer, saved, config.keep_checkpoints)


def _check_resumable(saved: dict, config: TrainConfig, global_tokens: int) -> None:
    now = dataclasses.asdict(config) | {"global_tokens": global_tokens}
    different = [key for key in (*RESUME_MUST_MATCH, "global_tokens") if saved.get(key) != now[key]]
    if different:
        raise ValueError(f"cannot resume: the checkpoint was trained with different {', '.join(different)}")


def build_model(config: TrainConfig, vocab_size: int, world: World) -> tuple[Transformer, ModelConfig]:
    """The preset's model with its recomputation applied: on this rank's device, initialised from
    config.seed, so every process starts from the same weights; for FSDP on the meta device, to be
    sharded, then materialised (trainer.distributed.materialize) with those same weights."""
    model_config = dataclasses.replace(PRESETS[config.preset], vocab_size=vocab_size, max_seq_len=config.seq_len)
    if config.parallel == "fsdp":
        with torch.device("meta"):
            model = Transformer(model_config)
    else:
        model = Transformer(model_config, config.seed).to(world.device)
    apply_recompute(model, config.recompute)
    return model, model_config


def train(data: list[tuple[float, list[str]]], vocab_size: int, out_dir: str, config: TrainConfig) -> dict:
    """Train on `data`, a blend of (weight, indexed dataset prefixes) per source.

    Every process of a torchrun launch calls this. Returns a summary; summary["checkpoint"] is the
    final model file (trainer.checkpoint.load_checkpoint reads it).
    """
    check_config(config)
    joined = not distributed()
    world = init_world(config.parallel, config.device)
    try:
        return _train(data, vocab_size, Path(out_dir), config, world)
    finally:
        if joined:
            close_world()


def _train(data, vocab_size: int, out: Path, config: TrainConfig, world: World) -> dict:
    if config.threads:
        torch.set_num_threads(config.threads)
    if world.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (precision fp32) on tensor cores
    out.mkdir(parents=True, exist_ok=True)
    # Weights and data draw from generators of their own; the global ones draw nothing the run
    # depends on, but every checkpoint saves their states, and each process starts them randomly.
    torch.manual_seed(config.seed)
    accumulation = accumulation_steps(config, world.size)
    global_samples = config.batch_size * accumulation * world.size
    global_tokens = global_samples * config.seq_len

    model, model_config = build_model(config, vocab_size, world)
    params, non_embedding = model.num_params(non_embedding=False), model.num_params()
    model = parallelize(model, config.parallel, world, config.compile, uses_bf16(config, world.device))
    if config.parallel == "fsdp":
        materialize(model, world.device, config.seed)
    optimizer = build_optimizer(model, config)

    sources = [(weight, open_datasets(prefixes)) for weight, prefixes in data]
    validation = _validation_batches(sources, config, global_samples, world)
    for batch in validation or ():
        _checked(batch, vocab_size)
    state = TrainState(config=dataclasses.asdict(config) | {"global_tokens": global_tokens})
    checkpoint = latest_checkpoint(out) if config.resume else None
    if checkpoint is not None:
        saved = _restore(checkpoint, model, optimizer)
        _check_resumable(saved.config, config, global_tokens)
        state = dataclasses.replace(saved, config=state.config)
    peak = peak_flops(world.device, config.peak_flops)
    flops = flops_per_token(model_config, non_embedding, config.seq_len)
    log = RunLog(out, world.is_main, append=checkpoint is not None, tensorboard=config.tensorboard)
    say = print if world.is_main else (lambda *args: None)
    say(f"model {config.preset}: {params:,} parameters ({non_embedding:,} non-embedding); "
        f"{world.size} process(es) x {accumulation} micro-batch(es) of {config.batch_size} = {global_tokens:,} tokens "
        f"a step, {config.steps:,} steps, {'bf16 autocast' if uses_bf16(config, world.device) else 'fp32'}"
        + (f"; resuming at step {state.step}" if checkpoint else ""))

    detector = SpikeDetector(config.spike_window, config.spike_sigmas, config.spike_factor, state.losses)
    losses: dict[int, float] = {}
    rollbacks, batches = 0, None
    started = time.perf_counter()
    while state.step < config.steps:
        step, batch_index = state.step, state.step + state.data_offset
        if batches is None:
            batches = iterate_batches(
                sources, config.seq_len, global_samples, config.seed, start=batch_index,
                rank=world.rank, world_size=world.size, holdout=config.holdout,
            )
        step_started = time.perf_counter()
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        scale = 100.0 if batch_index == config.spike_test_batch else 1.0
        loss, grad_norm = train_step(model, _checked(next(batches), vocab_size), config, world, scale)

        if detector.is_spike(loss, grad_norm):
            rollbacks += 1
            if rollbacks > config.max_rollbacks:
                raise RuntimeError(f"loss spike at step {step} after {config.max_rollbacks} rollbacks; giving up")
            state = _recover(out, model, optimizer, state, batch_index, config)
            detector = SpikeDetector(config.spike_window, config.spike_sigmas, config.spike_factor, state.losses)
            batches = None
            event = {"step": step, "event": "loss_spike", "loss": loss, "grad_norm": grad_norm, "batch": batch_index,
                     "rolled_back_to": state.step, "next_batch": state.step + state.data_offset}
            log.write(event)
            say(f"step {step:5d} | loss spike {loss:.4f}: rolled back to step {state.step}, "
                f"continuing at batch {event['next_batch']}")
            continue

        optimizer.step()
        detector.accept(loss)
        losses[step] = loss
        seconds = time.perf_counter() - step_started
        record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": global_tokens / seconds}
        if peak:
            record["mfu"] = record["tokens_per_s"] * flops / (peak * world.size)
        state = dataclasses.replace(state, step=step + 1, losses=list(detector.losses))
        last = state.step == config.steps
        if validation and (state.step % config.eval_every == 0 or last):
            record["val_loss"] = evaluate(model, validation, config, world)
        log.write(record)
        if step % config.log_every == 0 or last:
            remaining = (time.perf_counter() - started) / len(losses) * (config.steps - state.step)
            say(_format(record, remaining))
        if state.step % config.checkpoint_every == 0 or last:
            _save(out, model, optimizer, state, config)
    elapsed = time.perf_counter() - started
    log.close()

    final = out / "checkpoint.pt"
    save_model(final, model, model_config, config, state.step)
    trained = len(losses)
    return {
        "steps": config.steps,
        "first_loss": losses[min(losses)] if losses else None,
        "final_loss": losses[max(losses)] if losses else None,
        "tokens_seen": config.steps * global_tokens,
        "tokens_per_s": trained * global_tokens / elapsed if elapsed else 0.0,
        "params": params,
        "checkpoint": str(final),
    }


def _format(record: dict, remaining_seconds: float) -> str:
    parts = [
        f"step {record['step']:5d}", f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}",
        f"grad norm {record['grad_norm']:.3f}", f"{record['tokens_per_s']:,.0f} tok/s",
    ]
    if "mfu" in record:
        parts.append(f"MFU {record['mfu']:.1%}")
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f}")
    minutes, seconds = divmod(round(remaining_seconds), 60)
    parts.append(f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}")
    return " | ".join(parts)


def _checked(batch: tuple[torch.Tensor, torch.Tensor], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch, if its token ids fit the vocabulary; a wrong vocab_size would otherwise fail inside
    the embedding (on a GPU as an opaque device-side assert)."""
    largest = int(max(batch[0].max(), batch[1].max()))
    if largest >= vocab_size:
        raise ValueError(f"the data holds token id {largest} but the vocabulary has {vocab_size} ids: give the "
                         "vocab_size of the tokenizer that wrote the shards (SentencePiece's vocab_size())")
    return batch


def _validation_batches(sources, config: TrainConfig, global_samples: int, world: World) -> list | None:
    """This process's rows of the first eval_batches global batches of the held-out split (the
    same set for any number of processes), blending the sources whose held-out documents fill at
    least one sample; None when none does (holdout 0, or tiny data)."""
    if config.eval_batches < 1 or config.holdout == 0:
        return None
    weighted = [(weight, datasets) for weight, datasets in sources if weight > 0]
    held = [
        (weight, datasets) for weight, datasets in weighted
        if len(PackedDataset(datasets, config.seq_len, config.seed, config.holdout, split="valid"))
    ]
    if len(held) < len(weighted) and world.is_main:
        print(f"validation on {len(held)} of {len(weighted)} sources: the others hold out fewer than "
              f"{config.seq_len + 1} tokens (a larger holdout gives them some)")
    if not held:
        return None
    batches = iterate_batches(
        held, config.seq_len, global_samples, config.seed,
        rank=world.rank, world_size=world.size, holdout=config.holdout, split="valid",
    )
    return list(itertools.islice(batches, config.eval_batches))


def _recover(out: Path, model, optimizer, state: TrainState, spike_batch: int, config: TrainConfig) -> TrainState:
    """PaLM's recipe: back to the newest checkpoint (without one, the spike's update is simply not
    taken), and on from data batch spike_batch + spike_skip_batches, so the batches from the
    checkpoint's position up to there are never trained on."""
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        state = dataclasses.replace(_restore(checkpoint, model, optimizer), config=state.config)
    return dataclasses.replace(state, data_offset=spike_batch + config.spike_skip_batches - state.step)


# --- command line ------------------------------------------------------------------------------

_CHOICES = {
    "preset": list(PRESETS), "parallel": list(PARALLEL), "recompute": list(RECOMPUTE), "precision": list(PRECISION),
}
_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float}


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field (betas aside), with the field's default."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        elif field.type in _TYPES:
            parser.add_argument(flag, type=_TYPES[field.type], default=field.default, choices=_CHOICES.get(field.name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train",
        description="Train a LLaMA-architecture model on Megatron indexed datasets (under torchrun for "
        "several processes). Every TrainConfig field is a flag.",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", nargs="+", metavar="PREFIX", help="indexed dataset prefixes (.bin/.idx), one source")
    data.add_argument("--mixture", metavar="DIR", help="a run's mixture directory: its sources blended by weight")
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--out", required=True, help="directory for train_log.jsonl, checkpoints/ and checkpoint.pt")
    _config_arguments(parser)
    args = vars(parser.parse_args(argv))
    config = TrainConfig(**{f.name: args[f.name] for f in dataclasses.fields(TrainConfig) if f.name in args})
    if args["mixture"]:
        from stages.mixture import read_blend

        blend = [(source["weight"], source["prefixes"]) for source in read_blend(args["mixture"])]
    else:
        blend = [(1.0, args["data"])]
    summary = train(blend, args["vocab_size"], args["out"], config)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
