"""Training throughput and MFU of the model presets: tokens/s and model FLOPs utilisation (PaLM's
formula, trainer/metrics.py) against the device's dense bf16 peak, which it names.

    .venv/bin/python bench/train.py [--presets 125M 1B] [--steps 20] [--seq-len 2048]
                                    [--micro-batch 8] [--no-compile] [--recompute none|attention|block]

Each preset trains on random token batches (the data path is not what is measured) with the
trainer's own pieces: its model, AdamW, bf16 autocast, gradient clipping, optional torch.compile
and activation recomputation, one process. The first `--warmup` steps (compilation, allocator
warm-up) are not timed; tokens/s is over the rest. On a CPU it runs the tiny preset in fp32 and
reports no MFU unless --peak-flops is given. Targets (issue 7): >= 50% MFU for 1B, >= 40% for 125M.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from trainer.distributed import apply_recompute  # noqa: E402
from trainer.metrics import flops_per_token, peak_flops  # noqa: E402
from trainer.model import PRESETS, Transformer  # noqa: E402
from trainer.train import TrainConfig, build_optimizer  # noqa: E402


def measure(preset: str, args: argparse.Namespace, device: torch.device) -> dict:
    config = dataclasses.replace(PRESETS[preset], vocab_size=args.vocab_size, max_seq_len=args.seq_len)
    model = Transformer(config).to(device)
    apply_recompute(model, args.recompute)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-4))
    if args.compile:  # per block, as the trainer compiles (trainer.distributed.parallelize)
        for block in model.layers:
            block.compile()
    generator = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(0, args.vocab_size, (args.micro_batch, args.seq_len + 1), generator=generator).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = args.steps * args.micro_batch * args.seq_len / seconds
    peak = peak_flops(device, args.peak_flops)
    flops = flops_per_token(config, model.num_params(), args.seq_len)
    return {
        "preset": preset,
        "params": model.num_params(non_embedding=False),
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * flops / peak if peak else None,
        "memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=None, help="default: 125M 350M 1B on a GPU, tiny on a CPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=None, help="default: 2048 on a GPU, 256 on a CPU")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile (default: on a GPU)")
    parser.add_argument("--recompute", choices=["none", "attention", "block"], default="none")
    parser.add_argument("--peak-flops", type=float, default=None, help="the device's peak FLOP/s, if not known")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    args.presets = args.presets or (["125M", "350M", "1B"] if gpu else ["tiny"])
    args.seq_len = args.seq_len or (2048 if gpu else 256)
    args.compile = gpu if args.compile is None else args.compile
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    peak = peak_flops(device, args.peak_flops)
    print(f"device: {name}; peak {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else f"device: {name}; no peak known")
    print(f"seq_len {args.seq_len}, micro-batch {args.micro_batch}, {'bf16 autocast' if gpu else 'fp32'}, "
          f"compile {args.compile}, recompute {args.recompute}; {args.steps} timed steps after {args.warmup}")
    print("| preset | params | tokens/s | MFU | peak memory |")
    print("|---|---:|---:|---:|---:|")
    for preset in args.presets:
        r = measure(preset, args, device)
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        memory = f"{r['memory_gb']:.1f} GB" if r["memory_gb"] is not None else "-"
        print(f"| {preset} | {r['params'] / 1e6:,.0f} M | {r['tokens_per_s']:,.0f} | {mfu} | {memory} |")
        del r
        if gpu:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
