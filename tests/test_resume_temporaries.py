"""What a killed attempt leaves half-written goes: a worker killed mid-shard (Ray retries the shard)
and a rerun leave no temporary file in the run directory, audit output and manifests included."""

import os
import signal
import threading
import time

import psutil
import pytest

from manifests.store import read_manifest
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from tests.support import write_config

pytestmark = pytest.mark.usefixtures("ray_cluster")
SHARD = "web-pages-2019-2021"  # seconds of extraction: time to kill its worker mid-shard


def _temporaries(run_dir) -> list:
    return sorted(p for p in run_dir.rglob(".*") if ".tmp" in p.name or ".stale-" in p.name)


def _kill_the_worker_running(task_name: str) -> None:
    for process in psutil.process_iter(["cmdline"]):
        if (process.info["cmdline"] or [""])[0].startswith(f"ray::{task_name}"):
            os.kill(process.pid, signal.SIGKILL)
            return
    raise AssertionError(f"no worker runs {task_name}")


def test_a_worker_killed_mid_shard_leaves_no_temporaries(tmp_path):
    config = load_config(write_config(tmp_path, warcs=[SHARD]))
    run = threading.Thread(target=run_pipeline, args=(config, ["extract", "langid"]))
    run.start()
    deadline = time.monotonic() + 60
    while not (half_written := list((config.output_dir / "extract").glob(f".{SHARD}.parquet.tmp-*"))):
        assert time.monotonic() < deadline and run.is_alive(), "the shard never started writing"
        time.sleep(0.05)
    _kill_the_worker_running("extract+langid")
    run.join(timeout=120)

    assert [r["status"] for r in read_manifest(config.output_dir, "langid")] == ["done"], "Ray retried the shard"
    assert not half_written[0].exists()
    assert _temporaries(config.output_dir) == []


def test_a_rerun_removes_what_killed_attempts_left(tmp_path):
    config = load_config(write_config(tmp_path, warcs=["cc-main-2024-22-whirlwind"]))
    run_pipeline(config, ["extract", "langid"])
    run_dir = config.output_dir
    [row] = read_manifest(run_dir, "langid")
    left = [
        run_dir / "dropped" / "langid" / ".cc-main-2024-22-whirlwind.parquet.tmp-0a1b2c3d",  # an audit output
        run_dir / "langid" / ".cc-main-2024-22-whirlwind.parquet.tmp-4e5f6a7b",
        run_dir / "manifests" / "langid.rows" / ".0123456789abcdef0123.json.tmp-8c9d0e1f",  # the driver's row file
        run_dir / "manifests" / ".langid.parquet.tmp-2a3b4c5d",
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    replaced = run_dir / "extract" / ".cc-main-2024-22-whirlwind.parquet.stale-6e7f8a9b"
    replaced.mkdir()
    unrelated = run_dir / "extract" / ".notes"
    unrelated.write_text("not the pipeline's")

    run_pipeline(config, ["extract", "langid"])
    assert read_manifest(run_dir, "langid") == [row], "nothing is recomputed"
    assert _temporaries(run_dir) == []
    assert unrelated.exists()
