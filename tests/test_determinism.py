"""Two clean runs of the same config, in two directories, write the same files byte for byte, but
for what records time: the manifests' seconds, finished_at and node columns, logs/, the training
speed (train_log.jsonl, TensorBoard, whose event file is named by time, host and process) and the
quality model's training seconds."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from pipeline.config import load_config
from pipeline.runner import run_pipeline
from stages.mixture import read_blend
from tests.support import write_config
from tests.test_pipeline import OTHER_SOURCES, SMALL
from trainer.indexed_dataset import IndexedDataset

pytestmark = pytest.mark.usefixtures("ray_cluster")

MANIFEST_TIMINGS = ["seconds", "finished_at", "node"]
SPEED = {"tokens_per_s", "mfu"}
RUN_DIR = "<run>"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Every stage (as test_pipeline's finished run), four training steps with a checkpoint every two."""
    tmp_path = tmp_path_factory.mktemp("determinism")
    config_path = write_config(tmp_path, warcs=SMALL, stages={
        "quality_classifier": {"enabled": True}, "perplexity": {"enabled": True}, "stackexchange": {"sites": 1},
        "train": {"steps": 4, "checkpoint_every": 2},
    })
    runs = []
    for name in ("first", "second"):
        config = load_config(config_path, inputs=OTHER_SOURCES, output=str(tmp_path / name))
        run_pipeline(config)
        runs.append(config.output_dir)
    return tuple(runs)


def _in_run(text: str, run_dir: Path) -> str:
    return text.replace(str(run_dir), RUN_DIR)


def _manifest_rows(path: Path, run_dir: Path) -> list[dict]:
    """The runner records its shards' paths absolute, so they are compared relative to the run."""
    rows = pq.read_table(path).drop_columns(MANIFEST_TIMINGS).to_pylist()
    return [{**row, "inputs": [_in_run(p, run_dir) for p in row["inputs"]], "output": _in_run(row["output"], run_dir)}
            for row in rows]


def _quality_card(path: Path) -> dict:
    card = json.loads(path.read_text())
    del card["training"]["seconds"]
    return card


def _train_log(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in SPEED} for line in path.read_text().splitlines()]


def _scalars(path: Path) -> list[tuple]:
    return [(event.step, value.tag, list(value.tensor.float_val)) for event in EventFileLoader(str(path)).Load()
            for value in event.summary.value if value.tag.removeprefix("train/") not in SPEED]


def _name(path: Path, run_dir: Path) -> str:
    name = path.relative_to(run_dir).as_posix()
    return "train/tensorboard/events" if name.startswith("train/tensorboard/") else name


def _content(path: Path, run_dir: Path):
    name = _name(path, run_dir)
    if name.startswith("manifests/") and name.endswith(".parquet"):
        return _manifest_rows(path, run_dir)
    if name == "quality_model/quality.ftz.json":
        return _quality_card(path)
    if name == "train/train_log.jsonl":
        return _train_log(path)
    if name == "train/tensorboard/events":
        return _scalars(path)
    return path.read_bytes()


def _outputs(run_dir: Path) -> dict[str, object]:
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.relative_to(run_dir).parts[0] != "logs")
    return {_name(path, run_dir): _content(path, run_dir) for path in files}


def test_two_runs_in_two_directories_write_the_same_files(two_runs):
    first, second = map(_outputs, two_runs)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert {"train/checkpoints/step-00000004/rng-rank0.pt", "train/checkpoints/step-00000004/.metadata",
            "mixture/megatron_data_path.txt"} <= set(first)


def test_a_moved_run_directory_reads_its_blend(two_runs, tmp_path):
    moved = tmp_path / "moved"
    for part in ("mixture", "token_parts"):
        shutil.copytree(two_runs[0] / part, moved / part)
    prefixes = [p for source in read_blend(moved / "mixture") for p in source["prefixes"]]
    assert prefixes and all(p.startswith(str(moved)) and len(IndexedDataset(p)) for p in prefixes)
    megatron = (moved / "mixture" / "megatron_data_path.txt").read_text().split()[1::2]
    assert sorted(megatron) == sorted(str(Path(p).relative_to(moved)) for p in prefixes)
