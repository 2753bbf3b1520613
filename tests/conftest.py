import os

import pytest
import ray


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded local Ray for the whole test session (it takes seconds to start)."""
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()
