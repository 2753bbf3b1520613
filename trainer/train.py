"""The training loop: AdamW, linear warmup then cosine decay, gradient clipping, a checkpoint.

Single process. Model, data and loop live in separate modules so that distributed wrappers
and resumable checkpoints can be added around them.

    python -m trainer.train --data PREFIX [PREFIX ...] --vocab-size N --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.data import iterate_batches, open_datasets
from trainer.model import PRESETS, ModelConfig, Transformer


@dataclass
class TrainConfig:
    preset: str = "tiny"
    seq_len: int = 256
    batch_size: int = 8
    steps: int = 50
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    log_every: int = 1  # stdout only; train_log.jsonl gets every step
    threads: int | None = None  # torch CPU threads; None leaves torch's default


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
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


def save_checkpoint(
    path: Path, model: Transformer, optimizer: torch.optim.Optimizer, step: int, config: TrainConfig
) -> None:
    """Write the checkpoint to a temporary name and rename it, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "model_config": dataclasses.asdict(model.config),
            "train_config": dataclasses.asdict(config),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Transformer, dict]:
    """The model stored in a checkpoint, and the checkpoint itself."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = Transformer(ModelConfig(**checkpoint["model_config"])).to(device)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint


def train(data: list[tuple[float, list[str]]], vocab_size: int, out_dir: str, config: TrainConfig) -> dict:
    """Train on `data`, a blend of (weight, indexed dataset prefixes) per source."""
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose from {list(PRESETS)}")
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)

    model_config = dataclasses.replace(
        PRESETS[config.preset], vocab_size=vocab_size, max_seq_len=config.seq_len
    )
    model = Transformer(model_config).to(device)
    optimizer = build_optimizer(model, config)
    sources = [(weight, open_datasets(prefixes)) for weight, prefixes in data]
    batches = iterate_batches(sources, config.seq_len, config.batch_size, config.seed)
    params = model.num_params(non_embedding=False)
    print(f"model {config.preset}: {params:,} parameters ({model.num_params():,} non-embedding)")

    tokens_per_step = config.batch_size * config.seq_len
    losses = []
    started = time.perf_counter()
    with open(out / "train_log.jsonl", "w") as log:
        for step in range(config.steps):
            step_started = time.perf_counter()
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = (t.to(device) for t in next(batches))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                _, loss = model(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()

            losses.append(loss.item())  # also waits for the device, so the timing below is real
            tokens_per_s = tokens_per_step / (time.perf_counter() - step_started)
            record = {
                "step": step,
                "loss": losses[-1],
                "lr": lr,
                "grad_norm": grad_norm.item(),
                "tokens_per_s": tokens_per_s,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            if step % config.log_every == 0 or step == config.steps - 1:
                print(
                    f"step {step:5d} | loss {record['loss']:.4f} | lr {lr:.2e} "
                    f"| grad norm {record['grad_norm']:.3f} | {tokens_per_s:,.0f} tok/s"
                )
    elapsed = time.perf_counter() - started

    checkpoint = out / "checkpoint.pt"
    save_checkpoint(checkpoint, model, optimizer, config.steps, config)
    return {
        "steps": config.steps,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "tokens_seen": config.steps * tokens_per_step,
        "tokens_per_s": config.steps * tokens_per_step / elapsed if elapsed else 0.0,
        "params": params,
        "checkpoint": str(checkpoint),
    }


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train",
        description="Train a LLaMA-architecture model on Megatron indexed datasets.",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", nargs="+", metavar="PREFIX", help="indexed dataset prefixes (.bin/.idx), one source")
    data.add_argument("--mixture", metavar="DIR", help="a run's mixture directory: its sources blended by weight")
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--out", required=True, help="directory for train_log.jsonl and checkpoint.pt")
    parser.add_argument("--preset", choices=list(PRESETS), default=defaults.preset)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    args = parser.parse_args(argv)
    config = TrainConfig(
        preset=args.preset,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        device=args.device,
        log_every=args.log_every,
        threads=args.threads,
    )
    if args.mixture:
        from stages.mixture import read_blend

        blend = [(source["weight"], source["prefixes"]) for source in read_blend(args.mixture)]
    else:
        blend = [(1.0, args.data)]
    summary = train(blend, args.vocab_size, args.out, config)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
