"""Training throughput and MFU of the model presets: tokens/s and model FLOPs utilisation (PaLM's
formula, trainer/metrics.py) against the device's dense bf16 peak, which it names.

    .venv/bin/python bench/train.py [--presets 125M 1B] [--steps 20] [--seq-len 2048]
                                    [--micro-batch 8] [--no-compile] [--recompute none|attention|block]
                                    [--precision auto|bf16|fp32]

Each preset trains on random token batches with the trainer's own step (trainer.train.train_step:
autocast, loss, backward, gradient clipping), its model, fused AdamW on a GPU, optional
torch.compile and activation recomputation, in one process. The first `--warmup` steps
(compilation, allocator warm-up) are not timed; tokens/s is over the rest. On a CPU it runs the
tiny preset in fp32 and reports no MFU unless --peak-flops is given. The data loader's tokens/s
(trainer.data.iterate_batches) is measured apart and set beside the fastest preset's.
Targets (issue 7): >= 50% MFU for 1B, >= 40% for 125M.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainer.data import iterate_batches, open_datasets  # noqa: E402
from trainer.distributed import RECOMPUTE, World, parallelize  # noqa: E402
from trainer.indexed_dataset import IndexedDatasetWriter  # noqa: E402
from trainer.metrics import flops_per_token, peak_flops  # noqa: E402
from trainer.train import PRECISION, TrainConfig, build_model, build_optimizer, train_step, uses_bf16  # noqa: E402


def measure(preset: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Time the trainer's own step (trainer.train.train_step, then AdamW) on one process."""
    config = TrainConfig(
        preset=preset, seq_len=args.seq_len, batch_size=args.micro_batch, lr=1e-4, warmup_steps=1,
        device=device.type, precision=args.precision, compile=args.compile, recompute=args.recompute,
    )
    world = World(0, 1, device)
    model, model_config = build_model(config, args.vocab_size, world)
    non_embedding, params = model.num_params(), model.num_params(non_embedding=False)
    model = parallelize(model, "none", world, config.compile)
    optimizer = build_optimizer(model, config)
    generator = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(0, args.vocab_size, (args.micro_batch, args.seq_len + 1), generator=generator).to(device)
    batch = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        train_step(model, batch, config, world)  # forward, backward, clipping; syncs on the loss
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
    flops = flops_per_token(model_config, non_embedding, args.seq_len)
    return {
        "preset": preset,
        "params": params,
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * flops / peak if peak else None,
        "memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def loader_tokens_per_s(args: argparse.Namespace, batches: int = 50) -> float:
    """What the trainer's data path (trainer.data.iterate_batches: memory-mapped documents,
    shuffled, packed, held-out split applied) delivers in one process, in tokens/s, on 2,000 random
    documents of 200 to 4,000 tokens."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        with IndexedDatasetWriter(f"{directory}/tokens", np.uint16) as writer:
            for _ in range(2000):
                writer.add_document(rng.integers(0, args.vocab_size, rng.integers(200, 4000)))
        sources = [(1.0, open_datasets([f"{directory}/tokens"]))]
        stream = iterate_batches(sources, args.seq_len, args.micro_batch, seed=0, holdout=0.01)
        next(stream)
        start = time.perf_counter()
        for _ in itertools.islice(stream, batches):
            pass
        return batches * args.micro_batch * args.seq_len / (time.perf_counter() - start)


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
    parser.add_argument("--recompute", choices=list(RECOMPUTE), default="none")
    parser.add_argument("--precision", choices=list(PRECISION), default="auto",
                        help="auto: bf16 on a GPU, fp32 on a CPU")
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
    precision = "bf16 autocast" if uses_bf16(TrainConfig(precision=args.precision), device) else "fp32"
    print(f"seq_len {args.seq_len}, micro-batch {args.micro_batch}, {precision}, "
          f"compile {args.compile}, recompute {args.recompute}; {args.steps} timed steps after {args.warmup}")
    print("| preset | params | tokens/s | MFU | peak memory |")
    print("|---|---:|---:|---:|---:|")
    fastest = 0.0
    for preset in args.presets:
        r = measure(preset, args, device)
        fastest = max(fastest, r["tokens_per_s"])
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        memory = f"{r['memory_gb']:.1f} GB" if r["memory_gb"] is not None else "-"
        print(f"| {preset} | {r['params'] / 1e6:,.0f} M | {r['tokens_per_s']:,.0f} | {mfu} | {memory} |")
        del r
        if gpu:
            torch.cuda.empty_cache()
    loader = loader_tokens_per_s(args)
    print(f"data loader: {loader:,.0f} tokens/s in one process, {loader / fastest:,.0f}x the fastest preset's training")


if __name__ == "__main__":
    main()
