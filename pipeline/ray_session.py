"""The Ray a run uses: the cluster the config or RAY_ADDRESS names, or an embedded one on this
machine for the run's duration.

The embedded Ray is reachable from this machine only. Ray binds its servers (GCS, raylet, object
manager, workers, agents) to every interface unless the node's address is 127.0.0.1, and on Linux
it takes the address of the interface that routes outwards; with `ray_constants.ENABLE_RAY_CLUSTER`
off (what RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 sets at import) the node is 127.0.0.1 and every server
listens on loopback. tests/test_ray_session.py checks the listening sockets of a real run.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import ray
import ray._private.ray_constants as ray_constants

from pipeline.config import RunConfig

log = logging.getLogger("pipeline")


@contextmanager
def ray_session(config: RunConfig):
    """Connect to the configured cluster, or start an embedded one for the run's duration."""
    address = config.run.ray_address or os.environ.get("RAY_ADDRESS") or "local"
    if ray.is_initialized():
        yield
        return
    log.info("starting Ray (%s)", "embedded local cluster on 127.0.0.1, no dashboard" if address == "local" else address)
    if address == "local":
        start_local_ray(config.run.num_cpus)
    else:
        context = ray.init(address=address, logging_level=logging.WARNING)
        log.info("Ray dashboard: %s", f"http://{context.dashboard_url}" if context.dashboard_url else "off on this cluster")
    try:
        yield
    finally:
        ray.shutdown()


def start_local_ray(num_cpus: int | None) -> None:
    """An embedded Ray of `num_cpus` (all by default) on this machine, every server on 127.0.0.1."""
    cluster_default = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_default
