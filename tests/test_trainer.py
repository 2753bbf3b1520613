"""The trainer: Megatron indexed datasets, the LLaMA model, packed data and a short CPU training run."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.data import BlendedSamples, PackedDataset, blend_order, iterate_batches, open_datasets
from trainer.indexed_dataset import IndexedDataset, IndexedDatasetWriter, best_dtype
from trainer.model import PRESETS, ModelConfig, Transformer, apply_rotary, rotary_tables
from trainer.distributed import World
from trainer.train import TrainConfig, build_model, build_optimizer, learning_rate, load_checkpoint, main, train

REPO = Path(__file__).resolve().parents[1]


def write_dataset(prefix: Path, documents: list[list[int]], dtype=np.uint16) -> IndexedDatasetWriter:
    with IndexedDatasetWriter(prefix, dtype) as writer:
        for document in documents:
            writer.add_document(document)
    return writer


def tiny_config(**changes) -> ModelConfig:
    return dataclasses.replace(PRESETS["tiny"], vocab_size=256, max_seq_len=32, **changes)


# --- indexed dataset ---------------------------------------------------------------------------


def test_round_trip(tmp_path):
    documents = [[1, 2, 3], [], [65535, 0], list(range(100))]
    writer = write_dataset(tmp_path / "ds", documents)

    dataset = IndexedDataset(tmp_path / "ds")
    assert len(dataset) == 4
    assert dataset.dtype == np.uint16
    assert [dataset[i].tolist() for i in range(4)] == documents
    assert dataset.num_tokens == writer.num_tokens == 105
    assert writer.num_documents == 4
    assert writer.bytes_written == sum((tmp_path / name).stat().st_size for name in ("ds.bin", "ds.idx"))


def test_idx_byte_layout_matches_megatron(tmp_path):
    documents = [[5, 6, 7], [8], [9, 10]]
    write_dataset(tmp_path / "ds", documents, dtype=np.int32)
    raw = (tmp_path / "ds.idx").read_bytes()

    assert raw[:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack_from("<Q", raw, 9) == (1,)  # version
    assert struct.unpack_from("<B", raw, 17) == (4,)  # int32
    assert struct.unpack_from("<Q", raw, 18) == (3,)  # sequences
    assert struct.unpack_from("<Q", raw, 26) == (4,)  # documents + 1
    assert struct.unpack_from("<3i", raw, 34) == (3, 1, 2)  # lengths
    assert struct.unpack_from("<3q", raw, 34 + 3 * 4) == (0, 12, 16)  # byte offsets into .bin
    assert struct.unpack_from("<4q", raw, 34 + 3 * 12) == (0, 1, 2, 3)  # document boundaries
    assert len(raw) == 34 + 3 * 12 + 4 * 8
    assert (tmp_path / "ds.bin").read_bytes() == struct.pack("<6i", 5, 6, 7, 8, 9, 10)


def test_best_dtype_and_its_code(tmp_path):
    assert best_dtype(32000) == np.uint16
    assert best_dtype(65499) == np.uint16
    assert best_dtype(65500) == np.int32
    assert best_dtype(128256) == np.int32
    write_dataset(tmp_path / "small", [[1]], dtype=best_dtype(32000))
    assert (tmp_path / "small.idx").read_bytes()[17] == 8  # uint16
    assert (tmp_path / "small.bin").stat().st_size == 2


def test_interrupted_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="interrupted"):
        with IndexedDatasetWriter(tmp_path / "ds", np.uint16) as writer:
            writer.add_document([1, 2, 3])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_rejects_tokens_that_do_not_fit(tmp_path):
    with pytest.raises(ValueError, match="do not fit in uint16"):
        write_dataset(tmp_path / "ds", [[70000]])
    assert list(tmp_path.iterdir()) == []


def test_corrupt_files_give_clear_errors(tmp_path):
    write_dataset(tmp_path / "ds", [[1, 2, 3]])
    idx = tmp_path / "ds.idx"
    good = idx.read_bytes()

    idx.write_bytes(b"NOTMAGIC!" + good[9:])
    with pytest.raises(ValueError, match="not a Megatron indexed dataset"):
        IndexedDataset(tmp_path / "ds")

    idx.write_bytes(good[:-8])
    with pytest.raises(ValueError, match="expected"):
        IndexedDataset(tmp_path / "ds")

    idx.write_bytes(good)
    (tmp_path / "ds.bin").write_bytes(b"\x01\x00")
    with pytest.raises(ValueError, match="describes 3 uint16 tokens"):
        IndexedDataset(tmp_path / "ds")

    with pytest.raises(FileNotFoundError, match="missing"):
        IndexedDataset(tmp_path / "absent")


# --- model -------------------------------------------------------------------------------------


def test_model_shapes_and_initial_loss():
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    tokens = torch.randint(0, 256, (2, 16))
    logits, loss = model(tokens, tokens)
    assert logits.shape == (2, 16, 256)
    # Small initial weights: predictions start close to uniform over the vocabulary.
    assert abs(loss.item() - math.log(256)) < 0.1
    assert model(tokens)[1] is None
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_grouped_query_attention_parameters():
    config = tiny_config()
    model = Transformer(config)
    attention = model.layers[0].attention
    dim, head_dim = config.dim, config.head_dim
    assert attention.wq.weight.shape == (config.n_heads * head_dim, dim)
    assert attention.wk.weight.shape == attention.wv.weight.shape == (config.n_kv_heads * head_dim, dim)
    assert config.n_kv_heads < config.n_heads
    assert all(not name.endswith("bias") for name, _ in model.named_parameters())

    hidden = config.ffn_hidden_dim
    per_layer = 2 * dim * dim + 2 * dim * config.n_kv_heads * head_dim + 3 * dim * hidden + 2 * dim
    embedding = config.vocab_size * dim
    assert model.num_params(non_embedding=False) == config.n_layers * per_layer + dim + 2 * embedding
    assert model.num_params() == model.num_params(non_embedding=False) - embedding


def test_7b_preset_has_llama2_7b_shape():
    with torch.device("meta"):
        model = Transformer(dataclasses.replace(PRESETS["7B"], vocab_size=32000))
    assert PRESETS["7B"].ffn_hidden_dim == 11008
    assert model.num_params(non_embedding=False) == 6_738_415_616


def test_initialisation_covers_every_parameter_once_and_depends_on_the_seed_only():
    """A model materialised from the meta device holds garbage wherever init_weights does not write."""
    model = Transformer(tiny_config())
    initialised = [id(param) for param, _ in model._initialisation()]
    assert sorted(initialised) == sorted(id(param) for param in model.parameters())
    again, other = Transformer(tiny_config()), Transformer(tiny_config(), seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert not torch.equal(model.output.weight, other.output.weight)
    assert model.layers[0].attention.wo.weight.std() < 0.5 * model.layers[0].attention.wq.weight.std()


def test_fsdp_builds_the_model_on_the_meta_device():
    """Under FSDP no process ever holds the whole model: 7B is built without memory, then sharded."""
    config = TrainConfig(preset="7B", seq_len=4096, parallel="fsdp", recompute="block")
    model, _ = build_model(config, 32000, World(0, 1, torch.device("cpu")))
    assert all(param.is_meta for param in model.parameters())
    assert model.num_params(non_embedding=False) == 6_738_415_616


def test_causal():
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    tokens = torch.randint(0, 256, (1, 20))
    changed = tokens.clone()
    changed[0, 12] = (changed[0, 12] + 1) % 256
    with torch.no_grad():
        before, _ = model(tokens)
        after, _ = model(changed)
    torch.testing.assert_close(before[:, :12], after[:, :12], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 12:], after[:, 12:])


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = rotary_tables(head_dim=8, max_seq_len=16, theta=10000.0)
    q, k = torch.randn(2, 8)

    def score(q_position: int, k_position: int) -> float:
        positions = [q_position, k_position]
        rotated = apply_rotary(torch.stack([q, k])[None, :, None, :], cos[positions], sin[positions])
        return (rotated[0, 0, 0] @ rotated[0, 1, 0]).item()

    assert score(5, 2) == pytest.approx(score(12, 9), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-5)


# --- data --------------------------------------------------------------------------------------


@pytest.fixture
def two_datasets(tmp_path) -> tuple[list[str], list[list[int]]]:
    """Two datasets of documents whose tokens count up, so every token is distinct."""
    lengths = [[5, 0, 9, 3, 12], [7, 1, 4]]
    documents, prefixes, next_token = [], [], 0
    for n, dataset_lengths in enumerate(lengths):
        dataset_documents = []
        for length in dataset_lengths:
            dataset_documents.append(list(range(next_token, next_token + length)))
            next_token += length
        write_dataset(tmp_path / f"ds{n}", dataset_documents)
        prefixes.append(str(tmp_path / f"ds{n}"))
        documents += dataset_documents
    return prefixes, documents


def test_packing_covers_shuffled_documents_in_order(two_datasets):
    prefixes, documents = two_datasets
    seq_len, seed = 6, 3
    packed = PackedDataset(open_datasets(prefixes), seq_len, seed)

    order = np.random.RandomState(seed).permutation(len(documents))
    assert packed.document_order.tolist() == order.tolist()
    stream = [token for i in order for token in documents[i]]
    assert len(packed) == (len(stream) - 1) // seq_len
    for i in range(len(packed)):
        assert packed.sample(i).tolist() == stream[i * seq_len : i * seq_len + seq_len + 1]
    # Consecutive samples share one token; only a tail shorter than a sample is left out.
    assert 0 <= len(stream) - (len(packed) * seq_len + 1) < seq_len

    inputs, targets = packed[0]
    assert inputs.dtype == targets.dtype == torch.int64
    assert inputs.shape == targets.shape == (seq_len,)
    assert torch.equal(inputs[1:], targets[:-1])
    with pytest.raises(IndexError):
        packed.sample(len(packed))


def test_packing_is_deterministic_for_a_seed(two_datasets):
    datasets = open_datasets(two_datasets[0])

    def samples(seed: int) -> list[list[int]]:
        packed = PackedDataset(datasets, 6, seed)
        return [packed.sample(i).tolist() for i in range(len(packed))]

    assert samples(7) == samples(7)
    assert samples(7) != samples(8)


def test_batches_cycle_epochs_with_new_shuffles(two_datasets):
    datasets = open_datasets(two_datasets[0])
    seq_len, batch_size, seed = 4, 3, 11
    per_epoch = len(PackedDataset(datasets, seq_len, seed))

    def take(n: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batches = iterate_batches([(1.0, datasets)], seq_len, batch_size, seed, start=start)
        return [next(batches) for _ in range(n)]

    batches = take(per_epoch // batch_size + 2)
    for inputs, targets in batches:
        assert inputs.shape == targets.shape == (batch_size, seq_len)
        assert inputs.dtype == torch.int64
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
    rows = [row.tolist() for inputs, _ in batches for row in inputs]
    first_epoch = PackedDataset(datasets, seq_len, seed)
    second_epoch = PackedDataset(datasets, seq_len, seed + 1)
    assert rows[0] == first_epoch.sample(0)[:-1].tolist()
    assert rows[per_epoch] == second_epoch.sample(0)[:-1].tolist()  # the next pass, reshuffled
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, take(len(batches))))
    # Starting at batch b gives exactly the batches from b on.
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[3:], take(len(batches) - 3, start=3)))

    with pytest.raises(ValueError, match="cannot fill one sample"):
        next(iterate_batches([(1.0, datasets)], seq_len=10_000, batch_size=8, seed=0))


def test_blend_follows_the_weights_in_every_prefix():
    order = blend_order([0.7, 0.2, 0.1], 1000)
    for n in (10, 100, 1000):
        counts = np.bincount(order[:n], minlength=3)
        assert np.all(np.abs(counts - np.array([0.7, 0.2, 0.1]) * n) <= 1)


def test_blended_batches_draw_each_source_by_weight(two_datasets):
    a, b = open_datasets(two_datasets[0][:1]), open_datasets(two_datasets[0][1:])
    blend = BlendedSamples([(3.0, a), (1.0, b)], seq_len=4, seed=0)
    n = 12
    order = blend_order([3.0, 1.0], n)
    assert list(np.bincount(order)) == [9, 3]
    # Each source's samples in its own order, epoch after epoch (b has 2 samples a pass).
    streams = [
        [PackedDataset(a, 4, e).sample(i).tolist() for e in range(2) for i in range(len(PackedDataset(a, 4, e)))],
        [PackedDataset(b, 4, e).sample(i).tolist() for e in range(2) for i in range(len(PackedDataset(b, 4, e)))],
    ]
    assert len(PackedDataset(b, 4, 0)) == 2
    taken = [0, 0]
    for k in range(n):
        source = order[k]
        assert blend.sample(k).tolist() == streams[source][taken[source]]
        taken[source] += 1


# --- training ----------------------------------------------------------------------------------


def test_learning_rate_schedule():
    config = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    rates = [learning_rate(step, config) for step in range(config.steps)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))


def test_weight_decay_only_on_matrices():
    groups = build_optimizer(Transformer(tiny_config()), TrainConfig()).param_groups
    decayed, not_decayed = groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert not_decayed["weight_decay"] == 0.0 and all(p.dim() == 1 for p in not_decayed["params"])


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--vocab-size" in capsys.readouterr().out


def test_training_lowers_loss_and_checkpoint_restores_model(tmp_path):
    # Real text at byte level (vocabulary 256): the trainer's own source, one document a paragraph.
    text = b"".join(path.read_bytes() for path in sorted((REPO / "trainer").glob("*.py")))
    documents = [list(paragraph + b"\n\n") for paragraph in text.split(b"\n\n")]
    write_dataset(tmp_path / "text", documents, dtype=best_dtype(256))

    config = TrainConfig(
        preset="tiny", seq_len=64, batch_size=8, steps=40, lr=3e-3, warmup_steps=5, log_every=10, holdout=0.1
    )
    summary = train([(1.0, [str(tmp_path / "text")])], vocab_size=256, out_dir=str(tmp_path / "run"), config=config)

    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == list(range(40))
    assert set(log[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
    losses = [record["loss"] for record in log]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert summary["first_loss"] == losses[0] and summary["final_loss"] == losses[-1]
    assert summary["tokens_seen"] == 40 * 8 * 64
    assert summary["tokens_per_s"] > 0
    assert summary["params"] == Transformer(tiny_config()).num_params(non_embedding=False)

    assert "val_loss" in log[-1] and log[-1]["val_loss"] < losses[0] - 1.0  # held-out documents
    assert (tmp_path / "run" / "checkpoints" / "step-00000040" / ".metadata").is_file()  # resumable

    model, checkpoint = load_checkpoint(summary["checkpoint"])
    assert checkpoint["step"] == 40
    assert checkpoint["train_config"]["seq_len"] == 64
    rebuilt = Transformer(ModelConfig(**checkpoint["model_config"]))
    rebuilt.load_state_dict(checkpoint["model"])
    inputs, targets = next(iterate_batches([(1.0, open_datasets([tmp_path / "text"]))], 64, 8, seed=0))
    with torch.no_grad():
        logits, loss = model(inputs, targets)
        assert torch.equal(logits, rebuilt(inputs)[0])
    # The restored weights are the trained ones, not a fresh initialisation.
    assert loss.item() < losses[0] - 1.0
