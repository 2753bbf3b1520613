"""A real multi-node Ray cluster on this one machine, for tests: a head node and N worker nodes.

`start_cluster(root, workers=N)` runs `ray start --head --block` and N × `ray start --address=<head GCS>
--block`, each in its own process group (so stopping them touches no other Ray on the machine, such as
the tests' embedded one in tests/conftest.py: `ray stop` is never used), each with its own cwd under
`root` (its `ray start` output goes there too), its own Ray temp dir and `--num-cpus=1` by default. It
waits until the GCS reports all N+1 nodes ALIVE and a trivial job succeeds, then yields a `RayCluster`
with the dashboard address (for `ray job submit --address`), the GCS address, the environment for
`ray` commands and the node ids; on exit it sends SIGTERM to every group, then SIGKILL.
`submit_job(cluster, [...])` runs `ray job submit` against it.

What Ray 2.60's `ray start` does here, found in `ray start --help` and ray/scripts/scripts.py:

* Ports. On one machine two raylets clash on the defaults that are not random: the dashboard agent's
  HTTP port (52365) and, on the head, the GCS (6379), the dashboard (8265) and the client server
  (10001). Every node therefore gets its own free port for every port flag it accepts:
  --object-manager-port, --node-manager-port, --dashboard-agent-listen-port,
  --dashboard-agent-grpc-port, --runtime-env-agent-port, --metrics-export-port and
  --ray-client-server-port (only the head starts a client server; a worker accepts and ignores it);
  the head also --port (GCS) and --dashboard-port. A worker node refuses --port, --redis-shard-ports
  and --include-dashboard ("should only be specified when starting head node"). The core workers'
  ports (--min/max-worker-port, --worker-port-list) are left unset: then every worker binds a port
  the OS picks (raylet --min_worker_port=0), which cannot clash. Free ports are picked with all
  their sockets held open at once, so one cluster never gets a port twice, and never one of Ray's
  defaults (which the embedded Ray may take later). --node-ip-address is not passed: Ray rewrites a
  loopback one to the machine's own address (services.resolve_ip_for_localhost), so the nodes
  register with that address; the GCS listens on every interface and the dashboard, by
  --dashboard-host, on 127.0.0.1, and the clients here use 127.0.0.1 for both.
* Temp dirs. --temp-dir is accepted on a worker node ("Can be specified per node"; a node without it
  inherits the head's): each node gets its own. They are short paths under /tmp, removed on exit,
  because Ray puts AF_UNIX sockets in <temp-dir>/session_<date>_<pid>/sockets/ and refuses paths over
  107 bytes, which a pytest tmp_path plus the session name can exceed.
* Environment. The embedded test Ray sets RAY_AUTH_MODE=token in the pytest process (and a token
  exists in ~/.ray); auth must match between the nodes and the clients, so the cluster's environment
  sets RAY_AUTH_MODE=disabled and drops RAY_ADDRESS, the auth token variables and the embedded
  driver's PYTHONBREAKPOINT. Readiness is polled from a child process with that environment, never
  from the pytest process, whose own `ray` module is connected to the embedded Ray.
* Stopping. On SIGTERM, `ray start --block` of Ray 2.60 first drains its node for up to 30 s
  (RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S), which with the GCS also signalled takes the whole 30 s:
  the cluster's environment sets it to 0, and a head then stops in about 3 s. The raylet starts each
  Ray worker process in a process group of its own (setpgrp), so the processes below the nodes are
  listed before the signals and any still there after the groups' SIGKILL are killed one by one.
* Jobs. Without --working-dir a job's entrypoint runs in the head node's cwd (root/head); with it,
  in the unpacked copy. The CLI joins the entrypoint's words with shlex.join and the job runs the
  line in a shell.

`ray job submit --working-dir DIR` (ray/dashboard/modules/dashboard_sdk.py, runtime_env/packaging.py):
the directory is zipped on the client and PUT to the dashboard. The zip honours every .gitignore and
.rayignore inside DIR (one per directory, gitwildmatch rules; not a .gitignore above DIR) unless
RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1, and always leaves out .git, .venv, venv and __pycache__ (the
default excludes, RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES overrides them); runtime_env "excludes"
add more. This repository's root therefore uploads without .venv and runs/ (measured: a 38 MiB zip of
310 files, mostly samples/). Limits: the dashboard takes request bodies up to 100 MiB
(DASHBOARD_CLIENT_MAX_SIZE), the GCS stores packages up to 512 MiB (RAY_max_grpc_message_size); Ray
warns for files over 10 MiB and packages over half the GCS limit. So the working dir's zip must stay
under 100 MiB.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
HOST = "127.0.0.1"
HEAD = "head"

# Ports Ray or the embedded test Ray take by default: never hand one of them out.
_RAY_DEFAULT_PORTS = frozenset({6379, 8265, 10001, 52365, 8076, 8077, 44217, 44227, 62365})
# Port flags for every node; the head also gets --port and --dashboard-port.
_NODE_PORT_FLAGS = ("object-manager-port", "node-manager-port", "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
                    "ray-client-server-port")
# Variables of the pytest process that must not reach the cluster or its clients.
_DROPPED_ENV = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_NAMESPACE", "RAY_JOB_ID",
                "PYTHONBREAKPOINT")


@dataclass(frozen=True)
class RayCluster:
    """A started cluster. `node_ids` maps node names ("head", "worker-1", ...) to Ray node ids."""

    dashboard_address: str  # http://127.0.0.1:PORT, for `ray job submit --address` and the job SDK
    gcs_address: str  # 127.0.0.1:PORT, for `ray start --address`, `ray status --address`, ray.init
    env: dict[str, str]  # the environment to run `ray` commands and clients with
    node_ids: dict[str, str]
    root: Path  # the nodes' cwds, root/<node name>, each with the node's ray-start.log
    temp_dirs: dict[str, Path] = field(default_factory=dict)  # each node's --temp-dir (removed on exit)

    @property
    def head_node_id(self) -> str:
        return self.node_ids[HEAD]

    @property
    def worker_node_ids(self) -> list[str]:
        return [node_id for name, node_id in self.node_ids.items() if name != HEAD]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on every interface, none of them one of Ray's defaults."""
    sockets: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            s = socket.socket()
            sockets.append(s)  # held open until all are picked, so the OS cannot hand one out twice
            s.bind(("", 0))
            port = s.getsockname()[1]
            if port not in _RAY_DEFAULT_PORTS:
                ports.append(port)
        return ports
    finally:
        for s in sockets:
            s.close()


def cluster_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    # No token auth; and on SIGTERM no draining (Ray 2.60 waits up to 30 s for the node to drain).
    env.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
    env.update(extra or {})
    return env


@dataclass
class _Node:
    name: str
    process: subprocess.Popen
    log: Path


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _processes() -> dict[int, tuple[int, str]]:
    """Every process on the machine: pid -> (parent pid, start time), from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
                table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(roots: Sequence[int]) -> dict[int, str]:
    """The processes below `roots`: pid -> start time (to tell a reused pid)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    return found


def _stop(nodes: Sequence[_Node], timeout: float = 10) -> None:
    """SIGTERM to every node's process group (workers first), then SIGKILL to what is left.

    The raylet starts each Ray worker process in a process group of its own (setpgrp), so the
    processes below the nodes are listed first and those still there at the end are killed too.
    """
    below = _descendants([node.process.pid for node in nodes])
    for node in reversed(nodes):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node in reversed(nodes):
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for node in nodes:
        # The `ray start` process may be gone while its raylet or workers linger in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
    left = _processes()
    for pid, started in below.items():
        if pid in left and left[pid][1] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=5)


def _start_node(name: str, args: list[str], root: Path, env: dict[str, str]) -> _Node:
    cwd = root / name
    cwd.mkdir(parents=True, exist_ok=True)
    log = cwd / "ray-start.log"
    with log.open("wb") as out:
        process = subprocess.Popen([RAY, "start", "--block", *args], cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return _Node(name, process, log)


def _wait_for_port(port: int, nodes: Sequence[_Node], deadline: float) -> None:
    while True:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        _check_alive(nodes, deadline, f"the GCS port {port} did not open")
        time.sleep(0.2)


def _check_alive(nodes: Sequence[_Node], deadline: float, what: str, logs: Sequence[Path] = ()) -> None:
    dead = [n for n in nodes if n.process.poll() is not None]
    if dead or time.monotonic() > deadline:
        _fail(what, ", ".join(f"{n.name} exited with {n.process.returncode}" for n in dead) or "timed out",
              [n.log for n in nodes] + list(logs))


def _fail(what: str, reason: str, logs: Sequence[Path]) -> None:
    tails = "\n".join(f"--- {log}\n{_tail(log)}" for log in logs)
    raise RuntimeError(f"Ray cluster: {what} ({reason})\n{tails}")


def _keep_logs(temp_dirs: Mapping[str, Path], root: Path) -> None:
    """Each node's Ray logs (raylet.out, gcs_server.out, worker-*.err, ...) into root/<node>/logs."""
    for name, temp_dir in temp_dirs.items():
        logs = temp_dir / "session_latest" / "logs"
        if logs.is_dir():
            shutil.copytree(logs, root / name / "logs", symlinks=True, dirs_exist_ok=True,
                            ignore_dangling_symlinks=True)


# Run in a child process with the cluster's environment: waits until `expected` nodes are ALIVE and a
# trivial job has succeeded (the job API answers before its agent can take jobs), then prints the
# alive nodes as {name: id}.
_READY_SCRIPT = r"""
import json, sys, time
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_nodes

address, expected = sys.argv[1], int(sys.argv[2])
while True:
    try:
        nodes = list_nodes(address=address, filters=[("state", "=", "ALIVE")], timeout=5,
                           raise_on_missing_output=False)
    except Exception:
        nodes = []
    if len(nodes) >= expected:
        break
    time.sleep(0.3)
print(time.strftime("%H:%M:%S"), f"{len(nodes)} nodes alive", file=sys.stderr, flush=True)
client = JobSubmissionClient(address)
while True:
    try:
        job = client.submit_job(entrypoint=f"{sys.executable} -c pass")
        while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                             JobStatus.STOPPED):
            time.sleep(0.2)
        print(time.strftime("%H:%M:%S"), f"trivial job {job}: {status}", file=sys.stderr, flush=True)
        if status == JobStatus.SUCCEEDED:
            break
    except Exception as e:
        print(time.strftime("%H:%M:%S"), f"job API: {e!r}", file=sys.stderr, flush=True)
    time.sleep(0.5)
print(json.dumps({n.node_name: n.node_id for n in nodes}))
"""


@contextlib.contextmanager
def start_cluster(root: Path, workers: int = 1, *, num_cpus: int = 1, head_num_cpus: int | None = None,
                  object_store_memory: int | None = None, env: Mapping[str, str] | None = None,
                  timeout: float = 180, keep_logs: bool = True) -> Iterator[RayCluster]:
    """A head and `workers` worker nodes, each with `num_cpus` CPUs (the head `head_num_cpus` if given).

    `root` holds each node's cwd (root/head, root/worker-1, ...) with its `ray start` output, and on
    exit, if `keep_logs`, the node's Ray logs (root/<node>/logs); root/ready.log tells how the wait
    went. `env` adds variables for the nodes and clients. Raises RuntimeError, with the tails of
    those logs, when the cluster is not up within `timeout` seconds or a node exits meanwhile.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    env = cluster_env(env)
    temp_root = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))
    names = [HEAD] + [f"worker-{i}" for i in range(1, workers + 1)]
    temp_dirs = {name: temp_root / name for name in names}
    # All the cluster's ports from one call, so that no two of them are the same.
    ports = iter(free_ports(2 + len(_NODE_PORT_FLAGS) * len(names)))
    gcs_port, dashboard_port = next(ports), next(ports)
    gcs_address, dashboard_address = f"{HOST}:{gcs_port}", f"http://{HOST}:{dashboard_port}"
    common = ["--disable-usage-stats"]
    if object_store_memory is not None:
        common.append(f"--object-store-memory={object_store_memory}")

    def node_args(name: str, cpus: int) -> list[str]:
        flags = [f"--{flag}={next(ports)}" for flag in _NODE_PORT_FLAGS]
        return [*common, *flags, f"--temp-dir={temp_dirs[name]}", f"--num-cpus={cpus}", "--node-name", name]

    nodes: list[_Node] = []
    deadline = time.monotonic() + timeout
    try:
        head_cpus = num_cpus if head_num_cpus is None else head_num_cpus
        nodes.append(_start_node(HEAD, [
            "--head", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}", f"--dashboard-host={HOST}",
            *node_args(HEAD, head_cpus)], root, env))
        # A worker's `ray start` waits for the head's raylet to register, but needs the GCS to answer.
        _wait_for_port(gcs_port, nodes, deadline)
        for name in names[1:]:
            nodes.append(_start_node(name, [f"--address={gcs_address}", *node_args(name, num_cpus)], root, env))
        ready_log = root / "ready.log"
        with ready_log.open("w") as log:
            ready = subprocess.Popen([sys.executable, "-c", _READY_SCRIPT, dashboard_address, str(len(names))],
                                     cwd=root, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            while ready.poll() is None:
                _check_alive(nodes, deadline, f"{len(names)} nodes and the job API did not come up", [ready_log])
                time.sleep(0.2)
        finally:
            if ready.poll() is None:
                ready.kill()
            out = ready.communicate()[0]
        if ready.returncode:
            _fail("the readiness check failed", f"exit status {ready.returncode}", [ready_log])
        node_ids = json.loads(out.strip().splitlines()[-1])
        if sorted(node_ids) != sorted(names):
            _fail(f"expected the nodes {names}", f"the GCS has {node_ids}", [ready_log])
        yield RayCluster(dashboard_address=dashboard_address, gcs_address=gcs_address, env=env,
                         node_ids={name: node_ids[name] for name in names}, root=root, temp_dirs=temp_dirs)
    finally:
        _stop(nodes)
        if keep_logs:
            with contextlib.suppress(OSError, shutil.Error):
                _keep_logs(temp_dirs, root)
        shutil.rmtree(temp_root, ignore_errors=True)


def submit_job(cluster: RayCluster, entrypoint: list[str], *, working_dir: str | os.PathLike | None = None,
               env_vars: Mapping[str, str] | None = None, excludes: Sequence[str] | None = None,
               timeout: float = 300, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess[str]:
    """`ray job submit --address ... [--working-dir DIR] [--runtime-env-json ...] -- entrypoint...`, waited for.

    `env_vars` and `excludes` (gitwildmatch patterns relative to the working dir, on top of its
    .gitignore files and Ray's default excludes) go into --runtime-env-json. The CLI joins the
    entrypoint with shlex.join; the job runs it in a shell. The exit status is 0 when the job succeeded;
    stdout has the job's output. Raises subprocess.TimeoutExpired after `timeout` seconds.
    """
    command = [RAY, "job", "submit", "--address", cluster.dashboard_address]
    if working_dir is not None:
        command += ["--working-dir", str(working_dir)]
    runtime_env: dict = {}
    if env_vars:
        runtime_env["env_vars"] = dict(env_vars)
    if excludes:
        runtime_env["excludes"] = list(excludes)
    if runtime_env:
        command += ["--runtime-env-json", json.dumps(runtime_env)]
    return subprocess.run([*command, "--", *entrypoint], env=cluster.env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
