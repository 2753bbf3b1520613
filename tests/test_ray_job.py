"""The same entry point on a real Ray cluster: `ray start --head`, then `ray job submit`."""

import sys

from manifests.store import read_manifest
from tests.servers.ray_cluster import cluster_fixture, submit_job
from tests.support import write_config

# A head node only, with the two CPUs the old fixture gave it (tests/servers/ray_cluster.py).
cluster = cluster_fixture(workers=0, num_cpus=2)


def test_pipeline_runs_as_a_ray_job(cluster, tmp_path):
    config = write_config(tmp_path, warcs=["wget-2024-academic-0", "cc-main-2024-22-whirlwind"])
    job = submit_job(cluster, [sys.executable, "-m", "pipeline", "run", str(config), "--stages", "extract,langid"],
                     timeout=300)
    assert job.returncode == 0, job.stdout + job.stderr
    assert "succeeded" in job.stdout
    rows = read_manifest(tmp_path / "run", "langid")
    assert len(rows) == 2 and all(r["status"] == "done" for r in rows)
    assert sum(r["docs_out"] for r in rows) > 0
