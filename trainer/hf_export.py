"""Export a trainer checkpoint as a Hugging Face `LlamaForCausalLM` directory.

    python -m trainer.hf_export CHECKPOINT OUTPUT_DIR [--tokenizer TOKENIZER_MODEL]

`export_llama(checkpoint, out)` writes `out/` with

- `model.safetensors`: the weights under Hugging Face's names, in the checkpoint's dtype;
- `config.json`: a `LlamaConfig` with the checkpoint's shapes, RMSNorm eps and rotary theta;
- `generation_config.json`: BOS 1, EOS 2 (classifiers.tokenizer's ids), pad 0 (`<unk>`, as the
  tokenizer export names it);
- with `tokenizer_model`, the tokenizer files of classifiers.tokenizer_export (`tokenizer.json`,
  `tokenizer.model`, `tokenizer_config.json`, `special_tokens_map.json`).

`transformers.LlamaForCausalLM.from_pretrained(out)` then gives trainer.model.Transformer's logits
(to float32 rounding; tested with transformers 5.24.0). What the conversion has to account for:

- Rotary layout: trainer.model rotates adjacent pairs (x[2i], x[2i+1]) of each head (Meta's
  complex-number form); Hugging Face's Llama rotates the halves (x[i], x[i + head_dim/2])
  (`rotate_half`), with the same frequency i for pair i. So the rows of each head of wq and wk are
  reordered, 0, 2, 4, ..., 1, 3, 5, ... (`permute` in transformers' convert_llama_weights_to_hf.py):
  the rotated q and k are then the same vectors with their dims reordered alike, so every attention
  score is unchanged. wk has n_kv_heads heads. wv and wo are not rotated and are kept as they are.
- Grouped-query attention: query head h uses key/value head h // (n_heads // n_kv_heads), as in
  Hugging Face's `repeat_kv`. Scaling 1/sqrt(head_dim) and the causal mask are the same in both.
- RMSNorm: both normalise in float32, cast back to the input dtype, then multiply by the weight;
  `rms_norm_eps` is trainer.model's `norm_eps`, exactly.
- SwiGLU: w2(silu(w1(x)) * w3(x)) is down_proj(silu(gate_proj(x)) * up_proj(x)): w1 is gate_proj,
  w3 up_proj, w2 down_proj.
- Embeddings: trainer.model keeps the output projection untied. A checkpoint whose `output.weight`
  is missing or shares storage with `tok_embeddings.weight` is exported with
  `tie_word_embeddings: true` and no `lm_head.weight`; otherwise `lm_head.weight` is written.
- `max_position_embeddings` is the checkpoint's `max_seq_len`; trainer.model refuses longer inputs,
  Hugging Face's Llama does not (the rotary tables simply go on), untrained beyond that length.

`config.json` carries `rope_theta` both at the top level (transformers 4.x) and in
`rope_parameters` (5.x), and the dtype as both `torch_dtype` (4.x) and `dtype` (5.x).

Writing `model.safetensors` needs the `safetensors` package (safetensors==0.8.0), imported only
when exporting; neither transformers nor tokenizers is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

import torch

from stages.documents import atomic_dir
from trainer.model import ModelConfig, Transformer

# classifiers.tokenizer's ids (UNK_ID, BOS_ID, EOS_ID), which the trainer's data are tokenized with.
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors")
SAFETENSORS_PIN = "safetensors==0.8.0"

# trainer.model parameter name (after "layers.N.") to Hugging Face's.
_LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
# Prefixes a state dict gets from torch.compile and DistributedDataParallel wrappers.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def export_llama(
    checkpoint_path: str | Path, output_dir: str | Path, *, tokenizer_model: str | Path | None = None
) -> Path:
    """Write a Hugging Face Llama directory for the trainer checkpoint at `checkpoint_path`.

    The directory appears complete or not at all (built beside it, then renamed into place). An
    existing `output_dir` is replaced, but only if it holds nothing except a previous export's files.
    With `tokenizer_model` (a SentencePiece model of classifiers.tokenizer), its Hugging Face
    export goes in the same directory.
    """
    save_file = _safetensors_save_file()  # before reading a checkpoint that may take minutes to load
    output_dir = Path(output_dir)
    _check_replaceable(output_dir)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    config = ModelConfig(**checkpoint["model_config"])
    state = _model_state(checkpoint["model"], config)
    tensors, tied = hf_state_dict(state, config)
    dtype = state["tok_embeddings.weight"].dtype

    tokenizer_files = {}
    if tokenizer_model is not None:
        tokenizer_files = _tokenizer_files(Path(tokenizer_model), config)

    with atomic_dir(output_dir) as tmp:
        (tmp / "config.json").write_bytes(_json_bytes(llama_config(config, dtype=dtype, tied=tied)))
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        # safetensors creates its file private (0600); give it the mode of the export's other files.
        os.chmod(tmp / "model.safetensors", stat.S_IMODE((tmp / "config.json").stat().st_mode))
        (tmp / "generation_config.json").write_bytes(_json_bytes(generation_config()))
        for name, data in tokenizer_files.items():
            (tmp / name).write_bytes(data)
    return output_dir


def hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> tuple[dict[str, torch.Tensor], bool]:
    """Hugging Face Llama's tensors for a trainer.model state dict, and whether the output projection
    is tied to the embeddings (then there is no lm_head.weight)."""
    embeddings = state["tok_embeddings.weight"]
    output = state.get("output.weight")
    tied = output is None or _same_tensor(output, embeddings)
    dtype = embeddings.dtype
    tensors = {"model.embed_tokens.weight": embeddings, "model.norm.weight": state["norm.weight"]}
    if not tied:
        tensors["lm_head.weight"] = output
    for layer in range(config.n_layers):
        for ours, theirs in _LAYER_NAMES.items():
            tensor = state[f"layers.{layer}.{ours}"]
            if ours == "attention.wq.weight":
                tensor = interleaved_to_halves(tensor, config.n_heads)
            elif ours == "attention.wk.weight":
                tensor = interleaved_to_halves(tensor, config.n_kv_heads)
            tensors[f"model.layers.{layer}.{theirs}"] = tensor
    return {name: t.to(dtype).contiguous() for name, t in tensors.items()}, tied


def interleaved_to_halves(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's output rows of a q or k projection from adjacent rotary pairs
    (2i, 2i+1) to halves (i, i + head_dim/2): rows 0, 2, 4, ..., 1, 3, 5, ... of every head."""
    rows, cols = weight.shape
    head_dim = rows // n_heads
    if rows != n_heads * head_dim or head_dim % 2:
        raise ValueError(f"a {tuple(weight.shape)} projection does not split into {n_heads} even heads")
    return weight.reshape(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def llama_config(config: ModelConfig, *, dtype: torch.dtype = torch.float32, tied: bool = False) -> dict:
    """config.json of a LlamaForCausalLM with trainer.model's architecture."""
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": tied,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": UNK_ID,  # the tokenizer export's pad token (classifiers/tokenizer_export.py)
        "use_cache": True,
        "torch_dtype": dtype_name,
        "dtype": dtype_name,
    }


def generation_config() -> dict:
    return {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": UNK_ID}


def _model_state(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The checkpoint's model state dict, checked against trainer.model's names and shapes."""
    while state and (prefix := next((p for p in _WRAPPER_PREFIXES if all(n.startswith(p) for n in state)), None)):
        state = {name.removeprefix(prefix): tensor for name, tensor in state.items()}
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in Transformer(config).state_dict().items()}
    optional = {"output.weight"}  # absent where the output projection is tied to the embeddings
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{name} {tuple(state[name].shape)} (expected {shape})"
        for name, shape in expected.items()
        if name in state and tuple(state[name].shape) != shape
    )
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
    if wrong:
        problems.append(f"wrong shapes {', '.join(wrong[:5])}" + (" ..." if len(wrong) > 5 else ""))
    if problems:
        raise ValueError(
            f"the checkpoint's model does not match trainer.model for its model_config: {'; '.join(problems)}"
        )
    floating = {name: t.dtype for name, t in state.items() if not t.is_floating_point()}
    if floating:
        raise ValueError(f"non-floating-point parameters in the checkpoint: {floating}")
    return state


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.shape == b.shape
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    )


def _tokenizer_files(model_path: Path, config: ModelConfig) -> dict[str, bytes]:
    from classifiers.tokenizer_export import hf_tokenizer_files, read_model

    model_bytes = model_path.read_bytes()
    files = hf_tokenizer_files(model_bytes)  # also checks the model's settings
    spec = read_model(model_bytes)
    vocab = len(spec["pieces"])
    if vocab > config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab} pieces but the model only {config.vocab_size} embeddings")
    ids = tuple(spec["trainer"][key] for key in ("unk_id", "bos_id", "eos_id"))
    if ids != (UNK_ID, BOS_ID, EOS_ID):
        raise ValueError(f"the tokenizer's unk, BOS and EOS ids are {ids}, not ({UNK_ID}, {BOS_ID}, {EOS_ID})")
    return files


def _check_replaceable(output_dir: Path) -> None:
    if not (output_dir.is_symlink() or output_dir.exists()):
        return
    if not output_dir.is_dir() or output_dir.is_symlink():
        raise FileExistsError(f"{output_dir} exists and is not a directory")
    from classifiers.tokenizer_export import HF_FILES

    ours = set(MODEL_FILES) | set(HF_FILES)
    others = sorted(p.name for p in output_dir.iterdir() if p.name not in ours)
    if others:
        raise FileExistsError(
            f"{output_dir} holds files other than a model export ({', '.join(others[:5])}); "
            "export to an empty or new directory"
        )


def _safetensors_save_file():
    try:
        from safetensors.torch import save_file
    except ImportError as error:
        raise ImportError(
            f"exporting to Hugging Face format writes model.safetensors and needs the safetensors "
            f"package: pip install {SAFETENSORS_PIN}"
        ) from error
    return save_file


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.hf_export",
        description="Export a trainer checkpoint as a Hugging Face LlamaForCausalLM directory.",
    )
    parser.add_argument("checkpoint", help="checkpoint written by trainer.train (checkpoint.pt)")
    parser.add_argument("output_dir", help="directory to write (replaced if it holds a previous export)")
    parser.add_argument("--tokenizer", help="SentencePiece tokenizer.model to export alongside")
    args = parser.parse_args(argv)
    out = export_llama(args.checkpoint, args.output_dir, tokenizer_model=args.tokenizer)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
