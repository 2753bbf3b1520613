"""What a run reports: model FLOPs utilisation, the JSONL log and TensorBoard scalars.

MFU follows PaLM (Chowdhery et al. 2022, appendix B): training costs
    6N + 12 * L * H * Q * T  FLOPs per token,
N the non-embedding parameters (the token embedding is a lookup; the untied output projection
counts), L layers, H heads, Q head dimension, T sequence length. 6N is the forward and backward
matmuls with the weights; the second term the attention scores and their use (QK^T and AV, forward
and backward, counted in full as PaLM does though the causal half is masked). MFU = tokens/s x
FLOPs per token / (processes x peak FLOP/s), against the dense bf16 peak.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.model import ModelConfig

# Dense (not 2:4 sparse) bf16 tensor-core peaks, FLOP/s per GPU, from NVIDIA's datasheets, by a
# substring of the device name; the first match counts, so variants come before their family.
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def flops_per_token(config: ModelConfig, non_embedding_params: int, seq_len: int) -> float:
    return 6 * non_embedding_params + 12 * config.n_layers * config.n_heads * config.head_dim * seq_len


def peak_flops(device: torch.device, given: float | None) -> float | None:
    """`given` if set; else the known peak of this GPU; else None (no MFU is reported, as on a CPU)."""
    if given:
        return given
    if device.type == "cuda":
        return known_peak(torch.cuda.get_device_name(device))
    return None


def known_peak(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_FLOPS.items() if key in device_name), None)


class RunLog:
    """train_log.jsonl, one JSON object a line, and TensorBoard scalars under out/tensorboard.

    Step records hold step, loss, lr, grad_norm, tokens_per_s, (mfu, val_loss when known); event
    records hold step and event. Only the main rank writes; after a resume or rollback a step can
    appear again, and its last record is the one that counts.
    """

    def __init__(self, out: Path, active: bool, append: bool, tensorboard: bool):
        self.active = active
        self._file = open(out / "train_log.jsonl", "a" if append else "w") if active else None
        self._board = None
        if active and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(out / "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.active:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._board is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._board.add_scalar(f"train/{key}" if key != "val_loss" else "valid/loss", value, record["step"])

    def close(self) -> None:
        if self._file:
            self._file.close()
        if self._board is not None:
            self._board.close()
