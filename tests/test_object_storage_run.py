"""A run whose WARCs are in one bucket and whose run directory is in another, on a real
S3-compatible server: killed mid-stage, resumed, inspected, and identical to a local run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from manifests.store import read_manifest
from pipeline import storage
from tests.servers.s3 import s3_server
from tests.support import ROOT, WARCS, write_config

STAGES = "extract,langid"
# The samples but the largest (18 s of extraction alone): enough shards for a kill to land mid-stage.
SAMPLE = [w.name.removesuffix(".warc.gz") for w in WARCS if not w.name.startswith("ia-2008")]


def _objects(run: str) -> dict[str, bytes]:
    return {
        uri.removeprefix(run + "/"): storage.read_bytes(uri)
        for uri in storage.list_files(run, recursive=True)
        if not uri.removeprefix(run + "/").startswith(("manifests/", "logs/"))
    }


def _files(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "manifests" not in p.parts and "logs" not in p.parts
    }


def test_a_run_on_object_storage_resumes_and_matches_a_local_run(tmp_path, monkeypatch):
    config_path = write_config(tmp_path, warcs=SAMPLE)  # copies the sample WARCs to tmp_path/inputs
    local_inputs = tmp_path / "inputs"
    with s3_server() as s3:
        warcs, runs = s3.create_bucket("warcs"), s3.create_bucket("runs")
        for warc in sorted(local_inputs.iterdir()):
            s3.upload(warc, f"{warcs}/crawl/{warc.name}")
        config = yaml.safe_load(config_path.read_text())
        run = f"{runs}/run"
        config["run"]["output"] = run
        config["inputs"]["common_crawl"] = [f"{warcs}/crawl/*.warc.gz"]
        config_path.write_text(yaml.safe_dump(config))

        env = {**os.environ, **s3.env, "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        try:
            command = [sys.executable, "-m", "pipeline", "run", str(config_path), "--stages", STAGES]
            process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and len(read_manifest(run, "extract")) < 2:
                assert process.poll() is None, "the run ended before it could be killed"
                time.sleep(0.2)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            finished_before_kill = read_manifest(run, "extract")
            assert 2 <= len(finished_before_kill) < len(SAMPLE), "the kill should land mid-stage"

            resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert resumed.returncode == 0, resumed.stderr
            assert f"{len(finished_before_kill)} already done" in resumed.stderr
            after = {r["shard"]: r for r in read_manifest(run, "extract")}
            assert len(after) == len(SAMPLE) and all(r["status"] == "done" for r in after.values())
            for row in finished_before_kill:
                assert after[row["shard"]]["finished_at"] == row["finished_at"], "finished shards are not recomputed"
            assert all(r["output"].startswith(f"{run}/extract/") for r in after.values())
            assert storage.exists(f"{run}/logs/pipeline.log")

            inspect = subprocess.run([sys.executable, "-m", "pipeline", "inspect", run, "--shards"], cwd=ROOT,
                                     env=env, capture_output=True, text=True, timeout=120)
            assert inspect.returncode == 0, inspect.stderr
            assert f"extract: {len(SAMPLE)} shards done" in inspect.stdout
            assert f"langid: {len(SAMPLE)} shards done" in inspect.stdout

            local = tmp_path / "local"
            subprocess.run([*command, "--output", str(local), "--input", f"common_crawl={local_inputs}/*.warc.gz"],
                           cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
            remote_outputs, local_outputs = _objects(run), _files(local)
            assert sorted(remote_outputs) == sorted(local_outputs)
            assert remote_outputs == local_outputs, "the same shards, byte for byte"
        finally:
            storage.configure(None)  # the filesystem cached for this server's endpoint
