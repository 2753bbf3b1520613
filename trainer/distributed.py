"""Process groups and model wrapping: one process, DDP, or FSDP2.

Launch several processes with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `parallel` picks how the model is replicated across them:

    torchrun --nproc-per-node 8 -m trainer.train --parallel fsdp ...

The data needs no sampler: every rank reads its own rows of each global batch (trainer.data).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.tensor import DTensor, distribute_tensor

from trainer.model import next_token_loss

PARALLEL = ("none", "ddp", "fsdp")
RECOMPUTE = ("none", "attention", "block")


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(parallel: str, device: str) -> World:
    """Join the process group that torchrun describes (if `parallel` asks for one) and pick this
    rank's device."""
    if parallel not in PARALLEL:
        raise ValueError(f"unknown parallel {parallel!r}; choose from {PARALLEL}")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if parallel == "none":
        if size > 1:
            raise ValueError(f"{size} processes launched but parallel is 'none'; choose ddp or fsdp")
        return World(0, 1, torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), torch.device("cuda", local_rank) if on_gpu else torch.device(device))


def close_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def distributed() -> bool:
    return dist.is_initialized()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (the tensor itself in one process)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)  # a sum: gloo has no average
        value /= dist.get_world_size()
    return value


def apply_recompute(model: nn.Module, recompute: str) -> None:
    """Selective activation recomputation: keep only the inputs of each block's attention (or of
    the whole block) for the backward pass and recompute the rest. The wrapper leaves parameter
    names in state dicts unchanged."""
    if recompute not in RECOMPUTE:
        raise ValueError(f"unknown recompute {recompute!r}; choose from {RECOMPUTE}")
    if recompute == "none":
        return
    for i, block in enumerate(model.layers):
        if recompute == "block":
            model.layers[i] = checkpoint_wrapper(block)
        else:
            block.attention = checkpoint_wrapper(block.attention)


def parallelize(model: nn.Module, parallel: str, world: World, compile: bool = False, bf16: bool = False) -> nn.Module:
    """Wrap the model for `parallel` after optional torch.compile of each block and of the loss (in
    place, so parameter names do not change). FSDP2 shards each block, then the rest, over all ranks; with `bf16` it
    gathers parameters in bf16 (half the traffic and memory of fp32) and reduces gradients in fp32,
    the sharded weights and optimizer staying fp32."""
    if compile:
        for block in model.layers:
            block.compile()
        # Compiled, the loss never materialises fp32 logits: the upcast fuses into the softmax.
        model.loss_fn = torch.compile(next_token_loss)
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    if parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(world.device.type, (world.size,))
        precision = MixedPrecisionPolicy()
        if bf16:
            precision = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in model.layers:
            fully_shard(block, mesh=mesh, mp_policy=precision)
        fully_shard(model, mesh=mesh, mp_policy=precision)
    return model


def materialize(model: nn.Module, device: torch.device, seed: int) -> None:
    """Give a model built on the meta device (and sharded) storage on `device` and its initial
    values, drawn from `seed`: the same values as a model built whole (trainer.model.Transformer
    .init_weights), each rank keeping only its shard of each parameter. So FSDP never needs the full
    model in one process's memory, and its ranks start as one process would."""
    model.to_empty(device=device)
    model.init_weights(seed, assign=_assign_shard)


def _assign_shard(param: torch.Tensor, value: torch.Tensor) -> None:
    if isinstance(param, DTensor):
        # Every rank drew the same full value: each takes its own shard, with no communication.
        value = distribute_tensor(value.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
    param.copy_(value)


def gradient_sync(model: nn.Module, enabled: bool):
    """A context in which backward does (or, for all but the last micro-batch of an accumulation,
    does not) reduce gradients across ranks; the sum over micro-batches is the same either way."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not enabled:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)
    return nullcontext()
