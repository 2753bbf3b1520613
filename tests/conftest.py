import os

import pytest
import ray

from pipeline.ray_session import start_local_ray


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded local Ray for the whole test session (it takes seconds to start)."""
    os.environ.pop("RAY_ADDRESS", None)
    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()
