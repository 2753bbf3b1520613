#!/usr/bin/env bash
# The trainer's GPU checks in one go, for a machine with one GPU and a PyTorch of its own (the
# project's CPU venv is not needed: the trainer and this script import only torch and numpy):
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# 1. bench/train.py: tokens/s and MFU of 125M and 1B, bf16 autocast and torch.compile (issue 7's
#    targets: >= 40% and >= 50% MFU), and 125M at twice the micro-batch.
# 2. A real run through torchrun and NCCL: FSDP2 in one process, bf16, compile, checkpoints every
#    10 steps, on random tokens in a Megatron indexed dataset; then --resume to step 40.
#
# PYTHON, PRESET and DEVICE override the interpreter, the run's preset (125M) and device (cuda):
# `DEVICE=cpu PRESET=tiny bash bench/gpu_check.sh` rehearses it on a CPU (gloo instead of NCCL).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PRESET=${PRESET:-125M}
DEVICE=${DEVICE:-cuda}
OUT=${1:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
    "$PYTHON" bench/train.py --presets 125M 1B --steps 20
    "$PYTHON" bench/train.py --presets 125M --steps 20 --micro-batch 16
    SEQ_LEN=2048
else
    "$PYTHON" bench/train.py --presets "$PRESET" --steps 3 --warmup 1
    SEQ_LEN=64
fi

"$PYTHON" - "$OUT/tokens" <<'EOF'
import sys

import numpy as np

from trainer.indexed_dataset import IndexedDatasetWriter

rng = np.random.default_rng(0)
with IndexedDatasetWriter(sys.argv[1], np.uint16) as writer:
    for _ in range(2000):
        writer.add_document(rng.integers(0, 32000, rng.integers(200, 4000)).tolist())
EOF

run() {
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 1 -m trainer.train \
        --parallel fsdp --device "$DEVICE" --precision bf16 --compile --preset "$PRESET" \
        --data "$OUT/tokens" --vocab-size 32000 --out "$OUT/run" --seq-len "$SEQ_LEN" --batch-size 4 \
        --lr 3e-4 --warmup-steps 10 --checkpoint-every 10 --eval-every 10 --log-every 5 "$@"
}
run --steps 30
run --steps 40 --resume
"$PYTHON" - "$OUT/run/train_log.jsonl" <<'EOF'
import json
import sys

records = [json.loads(line) for line in open(sys.argv[1])]
steps = {r["step"]: r for r in records if "event" not in r}
assert sorted(steps) == list(range(40)), sorted(steps)
assert all(r["loss"] == r["loss"] for r in steps.values()), "NaN loss"
print(f"run: 40 steps (30, then resumed to 40); loss {steps[0]['loss']:.3f} -> {steps[39]['loss']:.3f}, "
      f"val {steps[39].get('val_loss', float('nan')):.3f}, "
      f"{steps[39]['tokens_per_s']:,.0f} tok/s" + (f", MFU {steps[39]['mfu']:.1%}" if "mfu" in steps[39] else ""))
EOF
