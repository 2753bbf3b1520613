"""Two processes on the CPU (gloo): DDP and FSDP2 train exactly as one process does on the same
global batch, and an FSDP2 checkpoint written by both ranks resumes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_trainer_loop import small_config, step_records, text_dataset
from trainer.train import train

WORLD = 2


def worker(rank: int, data: list, root: Path) -> None:
    """One rank: a DDP run, an FSDP2 run with two accumulated micro-batches, the FSDP2 run resumed
    from its step-2 checkpoint, then an FSDP2 run in bf16. The ranks meet through a file, not a port that another
    process could take first; torchrun would set these variables and a TCP rendezvous."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{root / 'rendezvous'}", rank=rank, world_size=WORLD)
    try:
        train(data, 256, str(root / "ddp"), small_config(steps=4, parallel="ddp", batch_size=4))
        fsdp = small_config(steps=4, parallel="fsdp", batch_size=2, global_batch_tokens=8 * 32, checkpoint_every=2,
                            keep_checkpoints=3, recompute="attention")
        train(data, 256, str(root / "fsdp"), fsdp)
        if rank == 0:
            shutil.copytree(root / "fsdp" / "checkpoints" / "step-00000002", root / "resumed" / "checkpoints" / "step-00000002")
        dist.barrier()
        train(data, 256, str(root / "resumed"), small_config(**{**fsdp.__dict__, "resume": True}))
        bf16 = small_config(steps=4, parallel="fsdp", batch_size=4, precision="bf16")
        train(data, 256, str(root / "fsdp-bf16"), bf16)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    data = text_dataset(root)
    train(data, 256, str(root / "single"), small_config(steps=4, batch_size=8))
    train(data, 256, str(root / "single-bf16"), small_config(steps=4, batch_size=8, precision="bf16"))
    mp.start_processes(worker, args=(data, root), nprocs=WORLD, start_method="spawn")
    return root


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(runs, parallel):
    single, parallel_run = step_records(runs / "single"), step_records(runs / parallel)
    assert sorted(parallel_run) == list(range(4))
    for step in range(4):
        assert parallel_run[step]["loss"] == pytest.approx(single[step]["loss"], rel=1e-5)
        assert parallel_run[step]["grad_norm"] == pytest.approx(single[step]["grad_norm"], rel=1e-4)
    assert parallel_run[3]["val_loss"] == pytest.approx(single[3]["val_loss"], rel=1e-5)
    final = torch.load(runs / parallel / "checkpoint.pt", weights_only=True)["model"]
    reference = torch.load(runs / "single" / "checkpoint.pt", weights_only=True)["model"]
    assert final.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(final[name], reference[name], rtol=1e-4, atol=1e-5)


def test_fsdp_in_bf16_gathers_bf16_and_keeps_fp32_weights(runs):
    """FSDP2's mixed precision (bf16 parameters gathered, fp32 gradients reduced) trains as one
    process under bf16 autocast does, up to bf16 rounding, and saves fp32 weights."""
    single, sharded = step_records(runs / "single-bf16"), step_records(runs / "fsdp-bf16")
    exact = step_records(runs / "single")
    assert any(sharded[step]["loss"] != exact[step]["loss"] for step in range(4))
    for step in range(4):
        assert sharded[step]["loss"] == pytest.approx(single[step]["loss"], rel=2e-3)
    final = torch.load(runs / "fsdp-bf16" / "checkpoint.pt", weights_only=True)["model"]
    assert {tensor.dtype for tensor in final.values()} == {torch.float32}


def test_fsdp_checkpoint_from_two_ranks_resumes(runs):
    assert sorted(p.name for p in (runs / "fsdp" / "checkpoints" / "step-00000002").glob("rng-rank*.pt")) == [
        "rng-rank0.pt", "rng-rank1.pt"
    ]
    original, resumed = step_records(runs / "fsdp"), step_records(runs / "resumed")
    assert sorted(resumed) == [2, 3]
    for step in (2, 3):
        assert resumed[step]["loss"] == original[step]["loss"]


def test_torchrun_launches_the_cli(runs, tmp_path):
    """The real launcher: `torchrun --standalone --nproc-per-node 2 -m trainer.train --parallel ddp`
    (its own rendezvous on a free port), micro-batches of 4 on each of 2 ranks, trains as the single
    process did on batches of 8."""
    import subprocess
    import sys

    prefix = str(runs / "text")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
        "-m", "trainer.train", "--data", prefix, "--vocab-size", "256", "--out", str(tmp_path / "torchrun"),
        "--parallel", "ddp", "--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--steps", "4",
        "--lr", "3e-3", "--warmup-steps", "2", "--threads", "1", "--holdout", "0.1", "--eval-every", "4",
        "--eval-batches", "2", "--no-tensorboard",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single, launched = step_records(runs / "single"), step_records(tmp_path / "torchrun")
    for step in range(4):
        assert launched[step]["loss"] == pytest.approx(single[step]["loss"], rel=1e-5)
