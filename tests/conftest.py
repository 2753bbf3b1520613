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


@pytest.fixture(scope="session")
def finished_run(ray_cluster, tmp_path_factory):
    """Every stage over small samples of every source, once a session (test_pipeline, test_report)."""
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline
    from tests.support import OTHER_SOURCES, SMALL, write_config

    tmp_path = tmp_path_factory.mktemp("full")
    config = load_config(
        write_config(tmp_path, warcs=SMALL, stages={"quality_classifier": {"enabled": True}, "perplexity": {"enabled": True},
                                                    "stackexchange": {"sites": 1}}),
        inputs=OTHER_SOURCES,
    )
    run_pipeline(config)
    return config
