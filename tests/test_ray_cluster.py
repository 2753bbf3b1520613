"""The two-node test cluster of tests/servers/ray_cluster.py: a job's tasks run on both nodes."""

import json
import sys

from tests.servers.ray_cluster import cluster_fixture, submit_job

cluster = cluster_fixture(workers=1)

# Eight one-CPU tasks of half a second on two one-CPU nodes. SPREAD puts them on both nodes even when
# one node's worker process is up well before the other's (the default policy fills the local node
# first and could finish all eight there).
TASKS = """
import json, time
import ray

ray.init()

@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def where(i):
    time.sleep(0.5)
    return ray.get_runtime_context().get_node_id()

print("NODES " + json.dumps(ray.get([where.remote(i) for i in range(8)])))
"""


def test_a_job_runs_tasks_on_both_nodes(cluster, tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "tasks.py").write_text(TASKS)
    assert len(cluster.node_ids) == 2 and len(set(cluster.node_ids.values())) == 2

    job = submit_job(cluster, [sys.executable, "tasks.py"], working_dir=job_dir, env_vars={"PYTHONUNBUFFERED": "1"},
                     timeout=120)

    assert job.returncode == 0, job.stdout + job.stderr
    assert "succeeded" in job.stdout, job.stdout
    line = next(line for line in job.stdout.splitlines() if line.startswith("NODES "))
    nodes = json.loads(line.removeprefix("NODES "))
    assert len(nodes) == 8
    assert set(nodes) == set(cluster.node_ids.values()), (nodes, cluster.node_ids)
