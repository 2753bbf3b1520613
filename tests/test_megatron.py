"""Megatron-LM reads what the pipeline writes: a source's token shards merged into parts, and the
blend of them built by megatron-core's BlendedMegatronDatasetBuilder into GPTDatasets on the CPU,
with Megatron-LM's usual --split 969,30,1."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from manifests.store import read_manifest
from pipeline.config import TokenPartsParams, load_config
from pipeline.registry import STAGES, plan_mixture, plan_token_parts, run_mixture, run_token_parts
from stages.mixture import absolute_data_path, main, read_blend
from stages.token_parts import group_shards, megatron_split_minimum, merge_shards, read_part
from stages.tokenize import read_parts, write_token_shard
from tests.support import write_config
from trainer.indexed_dataset import IndexedDataset

SPLIT = "969,30,1"
# A tiny corpus: Megatron-LM users shorten the sequence and ask for few samples.
SEQUENCE_LENGTH = 32
SAMPLES = [4000, 400, 100]  # train, validation, test
VOCAB = 1000
# Documents per source, in shards of 1 to 9 documents as the demo's smaller sources have.
CORPUS = {"common_crawl": 3000, "wikipedia": 700, "books": 620, "github": 650, "arxiv": 600, "stackexchange": 640}


@pytest.fixture(scope="module")
def megatron(tmp_path_factory):
    """megatron-core's dataset builder (its compiled helpers ship in the wheel), in a process group
    of one as Megatron-LM always runs it (the builder asks for its rank before writing its cache)."""
    import torch.distributed as dist
    from megatron.core.datasets import blended_megatron_dataset_config as config
    from megatron.core.datasets import helpers_cpp
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset as MegatronIndexedDataset
    from megatron.core.datasets.utils import get_blend_from_list
    from megatron.core.tokenizers import MegatronTokenizer

    assert helpers_cpp.__file__.endswith(".so"), "built by the wheel, not by compile_helpers() at run time"
    store = tmp_path_factory.mktemp("megatron-group") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        yield {
            "builder": BlendedMegatronDatasetBuilder, "gpt": GPTDataset, "gpt_config": GPTDatasetConfig,
            "blend": get_blend_from_list, "indexed": MegatronIndexedDataset, "tokenizer": MegatronTokenizer,
            "split_matrix": lambda split: config.convert_split_vector_to_split_matrix(config.parse_and_normalize_split(split)),
            "cache": tmp_path_factory.mktemp("megatron-cache"),
        }
    finally:
        dist.destroy_process_group()


def _build(megatron, words: list[str], split: str, sizes: list[int], tokenizer) -> list:
    # A cache folder of the test's own: without one Megatron writes its indices beside the parts.
    config = megatron["gpt_config"](
        random_seed=1234, sequence_length=SEQUENCE_LENGTH, blend=megatron["blend"](words), split=split,
        path_to_cache=str(megatron["cache"]), tokenizer=tokenizer, reset_position_ids=False, reset_attention_mask=False,
        eod_mask_loss=False)
    return megatron["builder"](megatron["gpt"], sizes, lambda: True, config).build()


def _empty_shares(megatron, documents: int, split: str = SPLIT) -> list[int]:
    """The shares of `split` that a dataset of this many documents gives none (Megatron's rounding)."""
    return [i for i, bounds in enumerate(megatron["split_matrix"](split))
            if bounds and round(bounds[0] * documents) >= round(bounds[1] * documents)]


def _realised_shares(blended) -> dict[str, float]:
    """Each source's share of the samples a BlendedDataset draws (parts are token_parts/<source>/part-N)."""
    counts = np.bincount(blended.dataset_index, minlength=len(blended.datasets))
    shares: dict[str, float] = {}
    for dataset, count in zip(blended.datasets, counts):
        source = Path(dataset.dataset_path).parent.name
        shares[source] = shares.get(source, 0.0) + count / counts.sum()
    return shares


def test_parts_hold_at_least_half_unless_the_source_does_not():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(1, 400, size=rng.integers(1, 60)).tolist()
        groups = group_shards(sizes, 1000)
        assert [i for group in groups for i in group] == list(range(len(sizes)))
        part_sizes = [sum(sizes[i] for i in group) for group in groups]
        assert all(size >= 500 for size in part_sizes) or part_sizes == [sum(sizes)] and sum(sizes) < 500
        assert all(size <= 1000 + 500 for size in part_sizes)
        assert groups == group_shards(sizes, 1000)
    assert group_shards([100, 5000, 100], 1000) == [[0, 1, 2]]  # over the limit only by a shard that alone is
    grown = group_shards([300] * 20 + [300] * 5, 1000)
    assert grown[:5] == group_shards([300] * 20, 1000)[:5], "shards added at the end regroup only the last parts"


def test_the_split_minimum_is_megatrons(megatron):
    for split in (SPLIT, "99,1,0", "98,2,0", "100,0,0"):
        minimum = megatron_split_minimum(split)
        assert not _empty_shares(megatron, minimum, split)
        assert minimum == 1 or _empty_shares(megatron, minimum - 1, split)
    assert megatron_split_minimum(SPLIT) == 501


def _corpus(run_dir: Path) -> list[dict]:
    """Tokenized shards as the tokenize stage writes them, and its manifest rows for them."""
    rng = np.random.default_rng(17)
    rows = []
    for source, documents in CORPUS.items():
        shard = 0
        while documents > 0:
            count = min(documents, int(rng.integers(1, 10)))
            docs = [np.array([1, *rng.integers(3, VOCAB, size=int(rng.integers(8, 90))), 2], dtype=np.uint16)
                    for _ in range(count)]
            output = run_dir / "tokens" / source / f"shard-{shard:05d}"
            write_token_shard(output, docs, np.dtype(np.uint16))
            rows.append({"shard": f"{source}/shard-{shard:05d}", "output": str(output), "docs_out": count,
                         "tokens": sum(len(d) for d in docs)})
            documents -= count
            shard += 1
    return rows


@pytest.fixture(scope="module")
def merged_run(tmp_path_factory):
    """The corpus through the registry's token_parts and mixture planners and run functions, as
    the runner calls them, with parts small enough that Common Crawl's are several."""
    tmp_path = tmp_path_factory.mktemp("megatron")
    config = load_config(write_config(tmp_path, warcs=["cc-main-2024-22-whirlwind"],
                                      stages={"tokenizer": {"vocab_size": VOCAB}}))
    config = config.model_copy(update={"stages": config.stages.model_copy(
        update={"token_parts": TokenPartsParams(max_part_bytes=200_000)})})
    tokenize_rows = _corpus(config.output_dir)
    part_rows = []
    for task in plan_token_parts(config, {"tokenize": tokenize_rows}):
        stats = run_token_parts(task, STAGES["token_parts"].params(config))
        part_rows.append({"shard": task.shard, "output": task.output, "inputs": task.inputs, "stats": stats})
    [task] = plan_mixture(config, {"token_parts": part_rows})
    run_mixture(task, {**STAGES["mixture"].params(config), **task.options})
    return config, tokenize_rows, part_rows


def test_parts_account_for_every_shard_and_document(merged_run):
    config, tokenize_rows, part_rows = merged_run
    assert sorted(p for row in part_rows for p in row["inputs"]) == sorted(r["output"] for r in tokenize_rows)
    for source, documents in CORPUS.items():
        rows = [r for r in part_rows if r["shard"].startswith(f"{source}/")]
        assert sum(r["stats"].docs_in for r in rows) == sum(r["stats"].docs_out for r in rows) == documents
        for row in rows:
            part = read_part(row["output"] + ".json")
            shards = [prefix for shard in row["inputs"] for prefix in (p["prefix"] for p in read_parts(shard))]
            assert part["documents"] == row["stats"].docs_out and part["shards"] == [Path(s).name for s in row["inputs"]]
            joined = b"".join(Path(prefix + ".bin").read_bytes() for prefix in shards)
            assert Path(row["output"] + ".bin").read_bytes() == joined
            assert part["bin_bytes"] == len(joined) and part["documents"] >= megatron_split_minimum()
    assert len([r for r in part_rows if r["shard"].startswith("common_crawl/")]) >= 2


def test_a_merge_that_fails_leaves_no_part_and_a_remerge_writes_the_same_bytes(merged_run, tmp_path):
    _, _, part_rows = merged_run
    row = part_rows[0]
    copies = [shutil.copytree(shard, tmp_path / Path(shard).name) for shard in row["inputs"]]
    merge_shards([str(c) for c in copies], str(tmp_path / "again"))
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"again{suffix}").read_bytes() == Path(row["output"] + suffix).read_bytes()
    damaged = read_parts(copies[-1])[0]["prefix"] + ".bin"
    Path(damaged).write_bytes(Path(damaged).read_bytes()[:-2])
    with pytest.raises(ValueError, match="bytes"):
        merge_shards([str(c) for c in copies], str(tmp_path / "broken"))
    assert not (tmp_path / "broken.idx").exists() and not (tmp_path / "broken.bin").exists()
    assert not list(tmp_path.glob(".broken*.tmp-*"))


def test_megatron_reads_every_part_exactly(megatron, merged_run, monkeypatch):
    config, _, _ = merged_run
    words = (config.output_dir / "mixture" / "megatron_data_path.txt").read_text().split()
    monkeypatch.chdir(config.output_dir)  # the blend names its parts relative to the run directory
    for prefix in words[1::2]:
        theirs, ours = megatron["indexed"](prefix), IndexedDataset(prefix)
        assert len(theirs) == len(ours) > 0
        assert all(np.array_equal(theirs[i], ours[i]) for i in range(len(ours)))


def test_megatron_builds_the_blend_with_a_969_30_1_split_at_the_configs_weights(megatron, merged_run, tmp_path):
    config, tokenize_rows, _ = merged_run
    # One dataset a shard, as before the parts: Megatron's builder would loop forever on these.
    assert all(_empty_shares(megatron, row["docs_out"]) for row in tokenize_rows)

    # The run directory copied elsewhere, its blend made absolute for where it is now.
    moved = tmp_path / "moved"
    for folder in ("token_parts", "mixture"):
        shutil.copytree(config.output_dir / folder, moved / folder)
    words = absolute_data_path(moved).split()
    assert all(Path(prefix).is_relative_to(moved) for prefix in words[1::2])
    tokenizer = megatron["tokenizer"].from_pretrained(metadata_path={"library": "null"}, vocab_size=VOCAB)
    train, valid, test = _build(megatron, words, SPLIT, SAMPLES, tokenizer)
    assert len(train) >= SAMPLES[0] and len(valid) >= SAMPLES[1] and len(test) >= SAMPLES[2]
    assert len(train[0]["tokens"]) == SEQUENCE_LENGTH

    weights = {source: share.weight for source, share in config.stages.mixture.sources.items()}
    expected = {source: weight / sum(weights.values()) for source, weight in weights.items()}
    realised = _realised_shares(train)
    assert realised.keys() == expected.keys()
    assert all(abs(realised[s] - expected[s]) < 0.002 for s in expected), (realised, expected)
    assert {source["source"]: source["weight"] for source in read_blend(moved / "mixture")} == pytest.approx(expected)


def test_mixture_prints_its_blend_absolute(merged_run, capsys):
    config, _, _ = merged_run
    main(["--absolute", str(config.output_dir)])
    words = capsys.readouterr().out.split()
    relative = (config.output_dir / "mixture" / "megatron_data_path.txt").read_text().split()
    assert words[::2] == relative[::2]
    assert words[1::2] == [str(config.output_dir.resolve() / prefix) for prefix in relative[1::2]]


def test_the_runs_blend_builds_in_megatron_and_names_what_is_too_small_to_split(megatron, finished_run, tmp_path):
    """The session's run: one part a source (1 GB parts); its arXiv paper and its book are one
    document each, which no split with validation or test shares can divide."""
    run = finished_run.output_dir
    tokenized = read_manifest(run, "tokenize")
    parts = read_manifest(run, "token_parts")
    for source in {r["shard"].split("/")[0] for r in tokenized if r["tokens"]}:
        mine = [r for r in parts if r["shard"].startswith(f"{source}/")]
        assert len(mine) == 1
        assert mine[0]["docs_out"] == sum(r["docs_out"] for r in tokenized if r["shard"].startswith(f"{source}/"))
        assert mine[0]["tokens"] == sum(r["tokens"] for r in tokenized if r["shard"].startswith(f"{source}/"))
    note = (run / "mixture" / "mixture.md").read_text()
    assert f"--split {SPLIT} needs 501 documents a part" in note and "arxiv (1)" in note and "books (1)" in note

    tokenizer = megatron["tokenizer"].from_pretrained(
        tokenizer_path=str(run / "tokenizer" / "tokenizer.model"), metadata_path={"library": "sentencepiece"})
    [train, _, _] = _build(megatron, absolute_data_path(run).split(), "100,0,0", [2000, 0, 0], tokenizer)
    realised = _realised_shares(train)
    assert realised["common_crawl"] == pytest.approx(0.82, abs=0.002)
    assert all(realised[s] == pytest.approx(share.weight, abs=0.002)
               for s, share in finished_run.stages.mixture.sources.items())
