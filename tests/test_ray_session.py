"""The embedded Ray of a real run listens on loopback only, and a driver killed alone leaves nothing
that hinders the next run."""

import ipaddress
import os
import signal
import subprocess
import sys
import time

import psutil

from manifests.store import read_manifest
from tests.support import ROOT, write_config


def _listening(processes: dict[int, psutil.Process]) -> dict[str, str]:
    """`address:port -> process name` of every socket the processes listen on."""
    found = {}
    for process in processes.values():
        try:
            for connection in process.net_connections("inet"):
                if connection.status == psutil.CONN_LISTEN:
                    found[f"{connection.laddr.ip}:{connection.laddr.port}"] = process.name()
        except psutil.NoSuchProcess:
            pass
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def _descendants(pid: int) -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def test_embedded_ray_listens_on_loopback_only_and_a_killed_driver_leaves_no_obstacle(tmp_path):
    config = write_config(tmp_path, warcs=["wget-2024-academic-0", "wget-2024-academic-1", "cc-main-2024-22-whirlwind"])
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "pipeline", "run", str(config), "--stages", "extract"]
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ray_processes: dict[int, psutil.Process] = {}
    sockets: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not read_manifest(tmp_path / "run", "extract"):
        ray_processes |= _descendants(driver.pid)
        sockets |= _listening(ray_processes)
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
    driver.wait()
    try:
        assert any(name == "gcs_server" for name in sockets.values()), f"the run's Ray was not seen: {sockets}"
        exposed = {address: name for address, name in sockets.items() if not _is_loopback(address)}
        assert not exposed, f"listening beyond loopback: {exposed}"

        finished = len(read_manifest(tmp_path / "run", "extract"))
        rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert f"{finished} already done" in rerun.stderr
    finally:
        for process in ray_processes.values():  # Ray's agents outlive a killed driver by about a minute
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
