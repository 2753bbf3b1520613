"""The training loop on the CPU: exact resume, gradient accumulation, loss-spike recovery, held-out
validation and the measurements."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.checkpoint import latest_checkpoint, load_checkpoint
from trainer.data import PackedDataset, held_out, open_datasets
from trainer.indexed_dataset import IndexedDatasetWriter
from trainer.metrics import flops_per_token, known_peak, peak_flops
from trainer.model import PRESETS
from trainer.spikes import SpikeDetector
from trainer.train import TrainConfig, accumulation_steps, train

REPO = Path(__file__).resolve().parents[1]


def text_dataset(directory: Path) -> list[tuple[float, list[str]]]:
    """The trainer's own source at byte level, a document a paragraph, as a one-source blend."""
    text = b"".join(path.read_bytes() for path in sorted((REPO / "trainer").glob("*.py")))
    with IndexedDatasetWriter(directory / "text", np.uint16) as writer:
        for paragraph in text.split(b"\n\n"):
            writer.add_document(list(paragraph + b"\n\n"))
    return [(1.0, [str(directory / "text")])]


def small_config(**changes) -> TrainConfig:
    settings = dict(
        preset="tiny", seq_len=32, batch_size=4, steps=8, lr=3e-3, warmup_steps=2, threads=1, log_every=100,
        holdout=0.1, eval_every=4, eval_batches=2, tensorboard=False,
    )
    return TrainConfig(**(settings | changes))


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def step_records(out: Path) -> dict[int, dict]:
    """The last record of each step (a resumed or rolled-back run logs some steps again)."""
    return {record["step"]: record for record in read_log(out) if "event" not in record}


@pytest.fixture
def data(tmp_path) -> list[tuple[float, list[str]]]:
    return text_dataset(tmp_path)


# --- exact resume ------------------------------------------------------------------------------


def test_resumed_run_repeats_the_uninterrupted_one_exactly(tmp_path, data):
    config = small_config(checkpoint_every=3, keep_checkpoints=5)
    train(data, 256, str(tmp_path / "full"), config)
    full = step_records(tmp_path / "full")
    assert sorted(full) == list(range(8))
    assert [p.name for p in sorted((tmp_path / "full" / "checkpoints").iterdir())] == [
        "step-00000003", "step-00000006", "step-00000008"
    ]

    # A run killed during step 5: its checkpoint at step 3 is complete, the one at 6 half written.
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000003", killed / "checkpoints" / "step-00000003")
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000006", killed / "checkpoints" / ".tmp-step-00000006")
    (killed / "checkpoints" / ".tmp-step-00000006" / ".metadata").unlink()
    assert latest_checkpoint(killed).name == "step-00000003"

    summary = train(data, 256, str(killed), small_config(checkpoint_every=3, keep_checkpoints=5, resume=True))
    resumed = step_records(killed)
    assert sorted(resumed) == list(range(3, 8))
    for step in range(3, 8):
        assert resumed[step]["loss"] == full[step]["loss"]  # bitwise
        assert resumed[step]["grad_norm"] == full[step]["grad_norm"]
    assert resumed[7]["val_loss"] == full[7]["val_loss"]
    final, _ = load_checkpoint(summary["checkpoint"])
    reference, _ = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), reference.state_dict().values()))
    assert not (killed / "checkpoints" / ".tmp-step-00000006").exists()  # the next save replaced it


def _cli(data, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainer.train", "--data", *data[0][1], "--vocab-size", "256", "--out", str(out),
            "--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--steps", "30", "--lr", "3e-3",
            "--warmup-steps", "2", "--threads", "1", "--holdout", "0.1", "--eval-every", "100",
            "--no-tensorboard", "--checkpoint-every", "4", "--keep-checkpoints", "10", *extra]


def test_a_killed_process_resumes_to_the_same_loss_curve(tmp_path, data):
    """SIGKILL a real training process once it has checkpointed, then `--resume`: the steps from the
    checkpoint on repeat the uninterrupted run's losses exactly, and its checkpoints' RNG states."""
    subprocess.run(_cli(data, tmp_path / "full"), cwd=REPO, check=True, capture_output=True, timeout=300)
    full = step_records(tmp_path / "full")

    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli(data, killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (killed / "checkpoints" / "step-00000008").is_dir():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = latest_checkpoint(killed)
    assert checkpoint is not None and int(checkpoint.name.split("-")[1]) < 30, "the kill should land mid-run"

    subprocess.run(_cli(data, killed, "--resume"), cwd=REPO, check=True, capture_output=True, timeout=300)
    resumed = step_records(killed)
    assert sorted(resumed) == list(range(30))
    assert [resumed[s]["loss"] for s in range(30)] == [full[s]["loss"] for s in range(30)]
    # Byte for byte, though not the model files: their config says resume.
    assert _rng_and_metadata_digests(killed) == _rng_and_metadata_digests(tmp_path / "full")


def _rng_and_metadata_digests(out: Path) -> dict[str, str]:
    checkpoints = out / "checkpoints"
    files = sorted(checkpoints.glob("step-*/rng-rank*.pt")) + sorted(checkpoints.glob("step-*/.metadata"))
    return {str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def test_compiled_blocks_train_as_eager_ones(tmp_path, data):
    """torch.compile (inductor, on the CPU here) changes speed, not the losses."""
    train(data, 256, str(tmp_path / "eager"), small_config(steps=3))
    train(data, 256, str(tmp_path / "compiled"), small_config(steps=3, compile=True))
    eager, compiled = step_records(tmp_path / "eager"), step_records(tmp_path / "compiled")
    for step in range(3):
        assert compiled[step]["loss"] == pytest.approx(eager[step]["loss"], rel=1e-4)


def test_bf16_autocast_trains_close_to_fp32_with_fp32_weights(tmp_path, data):
    """The GPU default's mixed precision, exercised on the CPU: bf16 matmuls move the losses a
    little; the weights (and so the optimizer and checkpoints) stay fp32."""
    fp32 = train(data, 256, str(tmp_path / "fp32"), small_config(steps=4))
    bf16 = train(data, 256, str(tmp_path / "bf16"), small_config(steps=4, precision="bf16"))
    exact, mixed = step_records(tmp_path / "fp32"), step_records(tmp_path / "bf16")
    assert any(mixed[step]["loss"] != exact[step]["loss"] for step in range(4))
    for step in range(4):
        assert mixed[step]["loss"] == pytest.approx(exact[step]["loss"], rel=2e-2)
    assert bf16["final_loss"] < bf16["first_loss"]
    saved = torch.load(bf16["checkpoint"], weights_only=True)["model"]
    assert {tensor.dtype for tensor in saved.values()} == {torch.float32}
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        train(data, 256, str(tmp_path / "bad"), small_config(precision="fp16"))


def test_a_vocabulary_smaller_than_the_data_is_a_clear_error(tmp_path, data):
    with pytest.raises(ValueError, match="holds token id 1.. but the vocabulary has 100 ids"):
        train(data, 100, str(tmp_path / "run"), small_config(steps=1))


def test_resume_without_a_checkpoint_starts_afresh_and_refuses_another_model(tmp_path, data):
    config = small_config(steps=2, resume=True)
    train(data, 256, str(tmp_path / "run"), config)
    assert sorted(step_records(tmp_path / "run")) == [0, 1]
    with pytest.raises(ValueError, match="different seq_len"):
        train(data, 256, str(tmp_path / "run"), small_config(steps=3, resume=True, seq_len=16))


# --- gradient accumulation ---------------------------------------------------------------------


def test_two_accumulated_micro_batches_of_4_make_one_batch_of_8(tmp_path, data):
    one = train(data, 256, str(tmp_path / "one"), small_config(steps=3, batch_size=8))
    two = train(data, 256, str(tmp_path / "two"), small_config(steps=3, batch_size=4, global_batch_tokens=8 * 32))
    assert one["tokens_seen"] == two["tokens_seen"] == 3 * 8 * 32
    for a, b in zip(step_records(tmp_path / "one").values(), step_records(tmp_path / "two").values()):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    model_one, _ = load_checkpoint(one["checkpoint"])
    model_two, _ = load_checkpoint(two["checkpoint"])
    for a, b in zip(model_one.parameters(), model_two.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_accumulation_steps_must_divide():
    assert accumulation_steps(TrainConfig(batch_size=4, seq_len=32, global_batch_tokens=1024), world_size=2) == 4
    assert accumulation_steps(TrainConfig(batch_size=4, seq_len=32), world_size=2) == 1
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_steps(TrainConfig(batch_size=4, seq_len=32, global_batch_tokens=1000), world_size=1)


def test_defaults_follow_the_llama_recipe():
    config = TrainConfig()
    assert (config.betas, config.eps, config.weight_decay, config.grad_clip) == ((0.9, 0.95), 1e-5, 0.1, 1.0)
    assert (config.warmup_steps, config.min_lr_ratio) == (2000, 0.1)


# --- loss spikes -------------------------------------------------------------------------------


def test_spike_rule():
    detector = SpikeDetector(window=4, sigmas=5.0, factor=1.5)
    assert detector.is_spike(float("nan"), 1.0) and detector.is_spike(2.0, float("inf"))
    assert not detector.is_spike(100.0, 1.0)  # the window is not full yet
    for loss in (3.0, 2.9, 3.1, 3.0):
        detector.accept(loss)
    assert detector.is_spike(6.0, 1.0)
    assert not detector.is_spike(3.3, 1.0)  # far above the noise, but not 1.5x the median
    flat = SpikeDetector(window=4, sigmas=5.0, factor=1.5, history=[2.0, 2.0, 2.0, 2.0])
    assert flat.is_spike(3.1, 1.0) and not flat.is_spike(2.9, 1.0)


def test_spike_rolls_back_skips_batches_and_recovers(tmp_path, data):
    config = small_config(
        steps=16, checkpoint_every=4, spike_window=4, spike_test_batch=10, spike_skip_batches=3, eval_every=100
    )
    summary = train(data, 256, str(tmp_path / "run"), config)
    log = read_log(tmp_path / "run")
    events = [record for record in log if "event" in record]
    assert len(events) == 1
    event = events[0]
    assert (event["event"], event["step"], event["batch"]) == ("loss_spike", 10, 10)
    assert (event["rolled_back_to"], event["next_batch"]) == (8, 13)
    assert event["loss"] > 50
    # Steps 8 and 9 ran twice: before the spike on batches 8 and 9, after it on batches 13 and 14.
    position = log.index(event)
    before, after = log[position - 2 : position], log[position + 1 : position + 3]
    assert [r["step"] for r in before] == [r["step"] for r in after] == [8, 9]
    assert all(a["loss"] != b["loss"] for a, b in zip(before, after))
    records = step_records(tmp_path / "run")
    assert sorted(records) == list(range(16))
    assert math.isfinite(summary["final_loss"]) and summary["final_loss"] < records[0]["loss"] - 1.0
    assert max(r["loss"] for r in records.values()) < 10  # the spike's loss was never accepted


# --- validation split and measurements ---------------------------------------------------------


def test_held_out_documents_are_a_fixed_fraction_disjoint_from_training(data):
    datasets = open_datasets(data[0][1])
    train_split = PackedDataset(datasets, 32, seed=0, holdout=0.2)
    valid = PackedDataset(datasets, 32, seed=0, holdout=0.2, split="valid")
    documents = len(datasets[0])
    assert set(train_split.document_order).isdisjoint(valid.document_order)
    assert len(train_split.document_order) + len(valid.document_order) == documents
    assert 0.1 * documents < len(valid.document_order) < 0.3 * documents
    # The split depends on the document, not the shuffle seed.
    assert set(PackedDataset(datasets, 32, seed=5, holdout=0.2, split="valid").document_order) == set(
        valid.document_order
    )
    keys = np.arange(100_000)
    assert held_out(np.zeros_like(keys), keys, 0.01).mean() == pytest.approx(0.01, abs=0.002)
    assert not held_out(np.zeros_like(keys), keys, 0.0).any()


def test_validation_blends_the_sources_that_hold_out_enough(tmp_path, data, capsys):
    """A source too small to hold out one sample (three 20-token documents) trains but is left out
    of validation, which goes on over the others, with a message saying so."""
    with IndexedDatasetWriter(tmp_path / "small", np.uint16) as writer:
        for start in (0, 20, 40):
            writer.add_document(list(range(start, start + 20)))
    blend = [*data, (1.0, [str(tmp_path / "small")])]
    train(blend, 256, str(tmp_path / "run"), small_config(steps=2, eval_every=2))
    assert "validation on 1 of 2 sources" in capsys.readouterr().out
    assert "val_loss" in step_records(tmp_path / "run")[1]
    train(blend, 256, str(tmp_path / "none"), small_config(steps=2, holdout=0.0))
    assert "val_loss" not in step_records(tmp_path / "none")[1]


def test_mfu_formula_and_peaks():
    config = PRESETS["7B"]
    n = 6_476_005_376  # LLaMA-2 7B less its 32000 x 4096 embedding table
    assert flops_per_token(config, n, 4096) == 6 * n + 12 * 32 * 32 * 128 * 4096
    assert peak_flops(torch.device("cpu"), None) is None
    assert peak_flops(torch.device("cpu"), 1e12) == 1e12
    assert known_peak("NVIDIA H100 80GB HBM3") == known_peak("NVIDIA H200") == 989e12
    assert known_peak("NVIDIA H100 PCIe") == 756e12
    assert known_peak("Tesla T4") is None


def test_log_has_mfu_with_a_peak_and_tensorboard_scalars(tmp_path, data):
    train(data, 256, str(tmp_path / "run"), small_config(steps=2, peak_flops=1e12, tensorboard=True))
    first, last = (record for record in read_log(tmp_path / "run"))
    assert set(first) == {"step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"}
    assert 0 < first["mfu"] < 1
    assert "val_loss" in last
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_recomputation_changes_memory_not_results(tmp_path, data):
    plain = train(data, 256, str(tmp_path / "plain"), small_config(steps=2))
    for mode in ("attention", "block"):
        summary = train(data, 256, str(tmp_path / mode), small_config(steps=2, recompute=mode))
        assert summary["final_loss"] == pytest.approx(plain["final_loss"], rel=1e-6)
        model, _ = load_checkpoint(summary["checkpoint"])  # parameter names unchanged by the wrapper
        assert model.state_dict().keys() == load_checkpoint(plain["checkpoint"])[0].state_dict().keys()


def test_cli_flags_reach_the_config(tmp_path, data, capsys):
    from trainer.train import main

    main(["--data", data[0][1][0], "--vocab-size", "256", "--out", str(tmp_path / "run"), "--steps", "2",
          "--seq-len", "32", "--batch-size", "2", "--global-batch-tokens", "128", "--warmup-steps", "1",
          "--no-tensorboard", "--peak-flops", "1e12", "--threads", "1", "--eval-batches", "1"])
    assert '"tokens_seen": 256' in capsys.readouterr().out
    assert "mfu" in read_log(tmp_path / "run")[0]
    assert not (tmp_path / "run" / "tensorboard").exists()
