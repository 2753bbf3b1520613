"""The HTML run report (`python -m pipeline report RUN_DIR`): RUN_DIR/report/index.html, from the
run's manifests and shards, at a cost bounded however many shards the run has."""

from manifests.report.page import write_report

__all__ = ["write_report"]
