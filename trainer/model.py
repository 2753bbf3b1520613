"""The LLaMA architecture in plain PyTorch.

Pre-norm RMSNorm, rotary position embeddings, grouped-query attention, a SwiGLU feed-forward,
no biases and an output projection untied from the token embeddings. Parameter names follow
Meta's reference implementation (wq/wk/wv/wo, w1/w2/w3), which eases conversion to other formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 32000
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None  # None: as many as query heads (no grouping)
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 2048

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden_dim(self) -> int:
        # 2/3 of the usual 4*dim keeps SwiGLU's three matrices at the cost of a two-matrix MLP.
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)


# Shapes only; the caller sets vocab_size and max_seq_len with dataclasses.replace.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, multiple_of=32, max_seq_len=256),
    "125M": ModelConfig(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, max_seq_len=2048),
    "350M": ModelConfig(dim=1024, n_layers=24, n_heads=16, n_kv_heads=8, max_seq_len=2048),
    "1B": ModelConfig(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, max_seq_len=2048),  # TinyLlama
    "7B": ModelConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, max_seq_len=4096),  # LLaMA-2 7B
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 even under bf16 autocast, as the reference does.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rotary_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's rotation angles, shape (max_seq_len, head_dim // 2)."""
    frequencies = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), frequencies)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of each head by their position's angles.

    x is (batch, seq, heads, head_dim); cos and sin are (seq, head_dim // 2). Adjacent pairs,
    not halves, match Meta's complex-number formulation.
    """
    even, odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[:, None, :], sin[:, None, :]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, self.n_heads, self.head_dim)
        k = self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, seq, head_dim)
        # Query head h attends with key/value head h // group, as in the reference repeat_kv.
        group = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.ffn_hidden_dim
        self.w1 = nn.Linear(config.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, config.dim, bias=False)
        self.w3 = nn.Linear(config.dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of the targets, computed in fp32 whatever the logits' precision."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.reshape(-1))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.loss_fn = next_token_loss  # trainer.distributed.parallelize may swap in a compiled one
        # Derived from the config, so kept out of the state dict.
        self.register_buffer("rope_cos", torch.empty(config.max_seq_len, config.head_dim // 2), persistent=False)
        self.register_buffer("rope_sin", torch.empty(config.max_seq_len, config.head_dim // 2), persistent=False)
        if not self.output.weight.is_meta:  # a model built on the meta device is initialised once placed
            self.init_weights(seed)

    @torch.no_grad()
    def init_weights(
        self, seed: int, assign: Callable[[torch.Tensor, torch.Tensor], None] = torch.Tensor.copy_
    ) -> None:
        """Fill the rotary tables and give every parameter its initial value, drawn whole on the CPU
        from a generator seeded with `seed`, parameter after parameter in a fixed order.

        `assign(parameter, value)` stores each value; a sharded model passes one that keeps this
        rank's shard, so it starts exactly as the whole model would without ever holding it.
        """
        cos, sin = rotary_tables(self.config.head_dim, self.config.max_seq_len, self.config.rope_theta)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)
        generator = torch.Generator().manual_seed(seed)
        for param, std in self._initialisation():
            if std is None:
                assign(param, torch.ones(param.shape))
            else:
                assign(param, torch.empty(param.shape).normal_(0.0, std, generator=generator))

    def _initialisation(self) -> Iterator[tuple[nn.Parameter, float | None]]:
        """Each parameter with the std of its normal initialisation (None: ones, for norm gains).
        GPT-2/nanoGPT: the projections that write into the residual stream are shrunk, so its
        variance does not grow with depth."""
        std, residual_std = 0.02, 0.02 / math.sqrt(2 * self.config.n_layers)
        yield self.tok_embeddings.weight, std
        for layer in self.layers:  # attribute access passes through activation-checkpoint wrappers
            attention, feed_forward = layer.attention, layer.feed_forward
            yield layer.attention_norm.weight, None
            yield from ((attention.wq.weight, std), (attention.wk.weight, std), (attention.wv.weight, std))
            yield attention.wo.weight, residual_std
            yield layer.ffn_norm.weight, None
            yield from ((feed_forward.w1.weight, std), (feed_forward.w2.weight, residual_std))
            yield feed_forward.w3.weight, std
        yield self.norm.weight, None
        yield self.output.weight, std

    def forward(
        self, tokens: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (batch, seq, vocab) and, given targets, the mean next-token cross-entropy."""
        seq = tokens.shape[1]
        if seq > self.config.max_seq_len:
            raise ValueError(f"sequence of {seq} tokens exceeds max_seq_len {self.config.max_seq_len}")
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.output(self.norm(x))
        return logits, None if targets is None else self.loss_fn(logits, targets)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; non_embedding leaves out the token embedding table.

        The table is a lookup and costs no FLOPs, unlike the untied output projection, so this
        is the N of the 6N FLOPs-per-token estimate.
        """
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.tok_embeddings.weight.numel()
        return total
