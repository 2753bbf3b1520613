"""Hugging Face Llama export of a trainer checkpoint: transformers must give the trainer's logits.

A small random model with grouped-query attention is saved in the trainer's checkpoint.pt layout,
exported, and loaded with transformers 5.x (a test-only dependency) as LlamaForCausalLM.
"""

from __future__ import annotations

import dataclasses
import json
import math
import stat

import pytest
import sentencepiece as spm
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaForCausalLM

from classifiers.tokenizer import BOS_ID, EOS_ID, UNK_ID, train_sentencepiece
from classifiers.tokenizer_export import HF_FILES
from stages.tokenizer import sentencepiece_lines
from tests.support import SAMPLES
from trainer import hf_export
from trainer.hf_export import MODEL_FILES, export_llama, interleaved_to_halves, main
from trainer.model import PRESETS, Transformer, apply_rotary, rotary_tables

TOLERANCE = 1e-4
BOOK = SAMPLES / "books" / "gutenberg" / "pg1342-0.txt"  # Pride and Prejudice


def small_model(vocab_size: int = 320, seed: int = 0, **changes) -> Transformer:
    """The tiny preset's shapes (4 query heads, 2 key/value heads) with 3 layers, and weights large
    enough that attention is sharp and position-dependent: with the trainer's 0.02 init every
    attention pattern is almost uniform and a wrong rotary layout would hardly show in the logits."""
    config = dataclasses.replace(
        PRESETS["tiny"], vocab_size=vocab_size, n_layers=3, max_seq_len=64, norm_eps=1e-3, rope_theta=500.0,
        **changes,
    )
    torch.manual_seed(seed)
    model = Transformer(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.3 * torch.randn_like(param))  # distinct gains show a misplaced norm
            elif name.endswith(("wq.weight", "wk.weight")):
                param.normal_(0.0, 2.0 / math.sqrt(param.shape[1]))
            elif name == "tok_embeddings.weight":
                param.normal_(0.0, 1.0)
            else:
                param.normal_(0.0, 1.0 / math.sqrt(param.shape[1]))
    return model.eval()


def write_checkpoint(path, model: Transformer):
    """checkpoint.pt as the trainer writes it (trainer.train.save_checkpoint, the consolidated model
    of trainer.checkpoint.save_model): torch.save of the state dict and the configs as dicts."""
    torch.save(
        {
            "model": model.state_dict(),
            "step": 7,
            "model_config": dataclasses.asdict(model.config),
            "train_config": {"preset": "tiny", "seq_len": model.config.max_seq_len},
        },
        path,
    )
    return path


def logits_difference(model: Transformer, exported, tokens: torch.Tensor) -> float:
    hf = LlamaForCausalLM.from_pretrained(exported, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ours, _ = model(tokens)
        theirs = hf(tokens).logits
    assert theirs.shape == ours.shape
    return (ours - theirs).abs().max().item()


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", model)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export_llama(checkpoint, tmp_path_factory.mktemp("hf") / "llama")


@pytest.fixture(scope="module")
def tokens(model):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (2, 32), generator=generator)


def test_logits_match(model, exported, tokens):
    difference = logits_difference(model, exported, tokens)
    print(f"max abs logit difference {difference:.3g}")
    assert difference < TOLERANCE
    with torch.no_grad():
        ours, _ = model(tokens)
    assert ours.std() > 1.0  # logits spread enough for the tolerance to mean something


def test_files_and_config(model, exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted(MODEL_FILES)
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp dir left
    config = json.loads((exported / "config.json").read_text())
    c = model.config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (
        c.dim, c.ffn_hidden_dim, c.n_layers)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["vocab_size"] == 320 and config["max_position_embeddings"] == 64
    assert config["rms_norm_eps"] == 1e-3 and config["rope_theta"] == 500.0
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 500.0}
    assert config["tie_word_embeddings"] is False
    assert (config["bos_token_id"], config["eos_token_id"]) == (BOS_ID, EOS_ID) == (1, 2)
    assert config["torch_dtype"] == config["dtype"] == "float32"
    assert config["hidden_act"] == "silu" and config["attention_bias"] is False and config["mlp_bias"] is False
    assert json.loads((exported / "generation_config.json").read_text()) == {
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    assert config["pad_token_id"] == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in exported.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"]

    names = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for layer in range(c.n_layers):
        names |= {f"model.layers.{layer}.{n}" for n in (
            "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
            "input_layernorm.weight", "post_attention_layernorm.weight")}
    with safe_open(exported / "model.safetensors", framework="pt") as f:
        assert set(f.keys()) == names
        assert f.metadata() == {"format": "pt"}
        assert tuple(f.get_tensor("model.layers.0.self_attn.k_proj.weight").shape) == (2 * c.head_dim, c.dim)
        assert torch.equal(f.get_tensor("model.layers.1.mlp.gate_proj.weight"), model.layers[1].feed_forward.w1.weight)
        assert torch.equal(f.get_tensor("model.layers.1.mlp.up_proj.weight"), model.layers[1].feed_forward.w3.weight)
        assert torch.equal(f.get_tensor("lm_head.weight"), model.output.weight)


def test_wrong_rotary_layout_is_caught(model, checkpoint, tokens, tmp_path, monkeypatch):
    """Without the q/k row permutation the logits differ by far more than the tolerance: the
    comparison above does test the rotary conversion."""
    monkeypatch.setattr(hf_export, "interleaved_to_halves", lambda weight, n_heads: weight)
    assert logits_difference(model, export_llama(checkpoint, tmp_path / "unpermuted"), tokens) > 1000 * TOLERANCE


def test_interleaved_to_halves_matches_rotate_half():
    """The permuted projection, rotated by halves (transformers' rotate_half), gives the trainer's
    interleaved rotation with its dims reordered alike, so q.k is unchanged."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    heads, head_dim, dim, seq = 3, 8, 16, 5
    weight, x = torch.randn(heads * head_dim, dim), torch.randn(1, seq, dim)
    cos, sin = rotary_tables(head_dim, seq, 10000.0)
    ours = apply_rotary((x @ weight.T).view(1, seq, heads, head_dim), cos, sin)
    theirs_in = (x @ interleaved_to_halves(weight, heads).T).view(1, seq, heads, head_dim).transpose(1, 2)
    full_cos, full_sin = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]
    theirs, _ = apply_rotary_pos_emb(theirs_in, theirs_in, full_cos, full_sin)
    order = torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))
    torch.testing.assert_close(theirs.transpose(1, 2), ours[..., order])


def test_tied_embeddings(tmp_path):
    model = small_model(seed=3)
    model.output.weight = model.tok_embeddings.weight  # tied: one parameter, saved as shared storage
    exported = export_llama(write_checkpoint(tmp_path / "tied.pt", model), tmp_path / "tied")
    assert json.loads((exported / "config.json").read_text())["tie_word_embeddings"] is True
    with safe_open(exported / "model.safetensors", framework="pt") as f:
        assert "lm_head.weight" not in f.keys()
    tokens = torch.randint(0, 320, (2, 20), generator=torch.Generator().manual_seed(2))
    assert logits_difference(model, exported, tokens) < TOLERANCE


def test_replaces_only_a_previous_export(checkpoint, tmp_path):
    out = tmp_path / "out"
    export_llama(checkpoint, out)
    (out / "config.json").write_text("stale")
    export_llama(checkpoint, out)  # a previous export is replaced
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_llama(checkpoint, out)
    assert (out / "notes.txt").read_text() == "mine"


def test_compiled_model_prefix(model, exported, tmp_path):
    """A state dict saved from a torch.compile'd model (names under "_orig_mod.") exports the same."""
    path = tmp_path / "compiled.pt"
    state = {f"_orig_mod.{name}": tensor for name, tensor in model.state_dict().items()}
    torch.save({"model": state, "model_config": dataclasses.asdict(model.config)}, path)
    out = export_llama(path, tmp_path / "compiled")
    assert (out / "model.safetensors").read_bytes() == (exported / "model.safetensors").read_bytes()
    assert (out / "config.json").read_bytes() == (exported / "config.json").read_bytes()


def test_rejects_mismatched_checkpoint(model, tmp_path):
    state = {k: v for k, v in model.state_dict().items() if k != "layers.2.ffn_norm.weight"}
    path = tmp_path / "bad.pt"
    torch.save({"model": state, "model_config": dataclasses.asdict(model.config)}, path)
    with pytest.raises(ValueError, match="layers.2.ffn_norm.weight"):
        export_llama(path, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


# --- with the tokenizer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    text = BOOK.read_text(encoding="utf-8")
    start = text.index("It is a truth universally acknowledged")
    lines = list(sentencepiece_lines(text[start : start + 150_000]))
    path = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    train_sentencepiece(lines, path, vocab_size=400, character_coverage=1.0, num_threads=1, seed=0)
    return path


def test_with_tokenizer_and_generate(sentencepiece_model, tmp_path, capsys):
    sp = spm.SentencePieceProcessor(model_file=str(sentencepiece_model))
    model = small_model(vocab_size=sp.vocab_size(), seed=5)
    checkpoint = write_checkpoint(tmp_path / "checkpoint.pt", model)
    out = tmp_path / "hf"
    main([str(checkpoint), str(out), "--tokenizer", str(sentencepiece_model)])  # the CLI
    assert f"wrote {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(MODEL_FILES + HF_FILES)
    assert (out / "tokenizer.model").read_bytes() == sentencepiece_model.read_bytes()

    tokenizer = AutoTokenizer.from_pretrained(out)
    sentence = "Mr. Bennet was so odd a mixture of quick parts and caprice."
    ids = tokenizer(sentence).input_ids
    assert len(ids) + 8 <= model.config.max_seq_len
    assert ids == [BOS_ID] + sp.encode(sentence)
    assert tokenizer.decode(ids, skip_special_tokens=True) == sentence

    prompt = torch.tensor([ids])
    new_tokens = 8
    expected = prompt
    with torch.no_grad():
        for _ in range(new_tokens):  # our model's greedy continuation
            logits, _ = model(expected)
            expected = torch.cat((expected, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
        hf = LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
        generated = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False,
        )
    assert generated.tolist() == expected.tolist()
    assert logits_difference(model, out, expected) < TOLERANCE

    # A batch padded on the left (with the export's pad token, <unk>) generates what each prompt does alone.
    tokenizer.padding_side = "left"
    prompts = [sentence, "Elizabeth laughed."]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    assert batch.input_ids[1, 0].item() == UNK_ID == tokenizer.pad_token_id
    with torch.no_grad():
        together = hf.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        for row, text in zip(together, prompts):
            alone = hf.generate(**tokenizer([text], return_tensors="pt"), max_new_tokens=4, min_new_tokens=4,
                                do_sample=False)
            assert row[-4:].tolist() == alone[0, -4:].tolist()


def test_rejects_tokenizer_larger_than_model(sentencepiece_model, checkpoint, tmp_path):
    with pytest.raises(ValueError, match="pieces but the model only 320"):
        export_llama(checkpoint, tmp_path / "hf", tokenizer_model=sentencepiece_model)
    assert not (tmp_path / "hf").exists()
