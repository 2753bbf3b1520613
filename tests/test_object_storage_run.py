"""Runs whose WARCs are in one bucket and whose run directory is in another, on a real
S3-compatible server (moto's, on 127.0.0.1): killed mid-stage and resumed, inspected, run as a job
on a two-node Ray cluster; each identical, byte for byte, to an embedded run on local files."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from manifests.store import read_manifest
from pipeline import storage
from tests.servers.ray_cluster import start_cluster, submit_job
from tests.servers.s3 import S3Server, s3_server
from tests.support import ROOT, WARCS, write_config

STAGES = "extract,langid"
# The samples but the largest (18 s of extraction alone): enough shards for a kill to land mid-stage.
SAMPLE = [w.name.removesuffix(".warc.gz") for w in WARCS if not w.name.startswith("ia-2008")]


@dataclass(frozen=True)
class Crawl:
    s3: S3Server
    config: Path  # inputs.common_crawl: the bucket's WARCs
    local_outputs: dict[str, bytes]  # an embedded run's, on the same WARCs as local files
    env: dict[str, str]

    def run(self, output: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "pipeline", "run", str(self.config), "--stages", STAGES, "--output", output, *extra]


def _objects(run: str) -> dict[str, bytes]:
    return {
        uri.removeprefix(run + "/"): storage.read_bytes(uri)
        for uri in storage.list_files(run, recursive=True)
        if not uri.removeprefix(run + "/").startswith(("manifests/", "logs/", "report/"))
    }


def _files(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "manifests" not in p.parts and "logs" not in p.parts and "report" not in p.parts
    }


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    root = tmp_path_factory.mktemp("crawl")
    config_path = write_config(root, warcs=SAMPLE)  # copies the WARCs to root/inputs
    local_inputs = root / "inputs"
    with s3_server() as s3, pytest.MonkeyPatch.context() as env:
        for key, value in s3.env.items():
            env.setenv(key, value)  # for this process's reads of the bucket
        warcs = s3.create_bucket("warcs")
        s3.create_bucket("runs")
        for warc in sorted(local_inputs.iterdir()):
            s3.upload(warc, f"{warcs}/crawl/{warc.name}")
        config = yaml.safe_load(config_path.read_text())
        config["inputs"]["common_crawl"] = [f"{warcs}/crawl/*.warc.gz"]
        config_path.write_text(yaml.safe_dump(config))
        run_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        run_env.pop("RAY_ADDRESS", None)
        crawl = Crawl(s3, config_path, {}, run_env)
        local = root / "local"
        subprocess.run(crawl.run(str(local), "--input", f"common_crawl={local_inputs}/*.warc.gz"), cwd=ROOT,
                       env=run_env, check=True, capture_output=True, timeout=300)
        yield Crawl(s3, config_path, _files(local), run_env)


def test_a_run_on_object_storage_resumes_and_matches_a_local_run(crawl):
    run = "s3://runs/resumed"
    process = subprocess.Popen(crawl.run(run), cwd=ROOT, env=crawl.env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(read_manifest(run, "extract")) < 2:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before_kill = read_manifest(run, "extract")
    assert 2 <= len(finished_before_kill) < len(SAMPLE), "the kill should land mid-stage"

    resumed = subprocess.run(crawl.run(run), cwd=ROOT, env=crawl.env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished_before_kill)} already done" in resumed.stderr
    after = {r["shard"]: r for r in read_manifest(run, "extract")}
    assert len(after) == len(SAMPLE) and all(r["status"] == "done" for r in after.values())
    for row in finished_before_kill:
        assert after[row["shard"]]["finished_at"] == row["finished_at"], "finished shards are not recomputed"
    assert all(r["output"].startswith(f"{run}/extract/") for r in after.values())
    assert storage.exists(f"{run}/logs/pipeline.log")

    inspect = subprocess.run([sys.executable, "-m", "pipeline", "inspect", run, "--shards"], cwd=ROOT,
                             env=crawl.env, capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    assert f"extract: {len(SAMPLE)} shards done" in inspect.stdout
    assert f"langid: {len(SAMPLE)} shards done" in inspect.stdout
    assert _objects(run) == crawl.local_outputs, "the same shards, byte for byte"


def test_a_two_node_cluster_runs_the_first_stages_on_object_storage(crawl, tmp_path):
    with start_cluster(tmp_path / "cluster", workers=1) as cluster:
        run = "s3://runs/cluster"
        job = submit_job(cluster, crawl.run(run), env_vars={**crawl.s3.env, "PYTHONUNBUFFERED": "1"}, timeout=300)
        assert job.returncode == 0, job.stdout + job.stderr
        assert "succeeded" in job.stdout
        assert f"Ray dashboard: {cluster.dashboard_address}" in job.stdout, "printed at start, for the user to open"

        # A local run directory would be one node's disk: refused before any work, saying what to do.
        refused = submit_job(cluster, crawl.run(str(tmp_path / "local-run")), env_vars=crawl.s3.env, timeout=120)
        assert refused.returncode != 0
        assert "on this machine's disk" in refused.stdout and "run.shared_filesystem" in refused.stdout

    rows = read_manifest(run, "extract") + read_manifest(run, "langid")
    assert len(rows) == 2 * len(SAMPLE) and all(r["status"] == "done" for r in rows)
    assert {r["node"] for r in rows} == set(cluster.node_ids.values()), "shards ran on both nodes"
    assert _objects(run) == crawl.local_outputs, "the cluster's shards are the embedded run's, byte for byte"
    assert not (tmp_path / "local-run").exists()


def test_one_node_takes_local_paths(ray_cluster, tmp_path):
    """The refusal is for clusters of several nodes: on one, local paths are the node's own."""
    from pipeline.config import load_config
    from pipeline.runner import _check_reachable_by_every_node

    _check_reachable_by_every_node(load_config(write_config(tmp_path, warcs=SAMPLE[:1])), ["extract"])
