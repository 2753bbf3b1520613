"""The same entry point on a real Ray cluster: `ray start --head`, then `ray job submit`."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests.store import read_manifest
from tests.support import write_config

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path_factory):
    """A head node in its own process group, so stopping it cannot touch other Ray instances."""
    # Token auth must be the same for the head and the client; the test cluster turns it off.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    dashboard = _free_port()
    # Fixed default ports (the agent's 52365, the client server's 10001, ...) would clash with the
    # tests' embedded Ray, whose agent then takes the jobs' place: give every one a free port.
    ports = [f"--{name}={_free_port()}" for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port")]
    temp_dir = tmp_path_factory.mktemp("ray")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", *ports, f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
         f"--temp-dir={temp_dir}", "--num-cpus=2", "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        # The job API answers before its agent can take jobs; a trivial job proves it can.
        deadline = time.monotonic() + 90
        ready = [RAY, "job", "submit", "--address", address, "--", sys.executable, "-c", "pass"]
        while subprocess.run(ready, env=env, capture_output=True).returncode:
            assert time.monotonic() < deadline and head.poll() is None, "the Ray head did not come up"
            time.sleep(1)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)


def test_pipeline_runs_as_a_ray_job(cluster, tmp_path):
    address, env = cluster
    config = write_config(tmp_path, warcs=["wget-2024-academic-0", "cc-main-2024-22-whirlwind"])
    job = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--",
         sys.executable, "-m", "pipeline", "run", str(config), "--stages", "extract,langid"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert "succeeded" in job.stdout
    rows = read_manifest(tmp_path / "run", "langid")
    assert len(rows) == 2 and all(r["status"] == "done" for r in rows)
    assert sum(r["docs_out"] for r in rows) > 0
