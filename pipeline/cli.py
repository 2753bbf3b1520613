"""Command line: `python -m pipeline run|inspect|report|validate ...` (also installed as `llama-data`)."""

from __future__ import annotations

import argparse
import logging
import sys

from manifests.inspect import format_run
from pipeline.config import ConfigError, load_config
from pipeline.registry import STAGE_GROUPS, STAGE_ORDER, expand_stages


def _parse_input(value: str) -> tuple[str, str]:
    source, sep, pattern = value.partition("=")
    if not sep or not source or not pattern:
        raise argparse.ArgumentTypeError(f"expected SOURCE=GLOB, got {value!r}")
    return source, pattern


def _parse_stages(value: str) -> list[str]:
    try:
        return expand_stages([s.strip() for s in value.split(",") if s.strip()])
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llama-data", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="run config YAML (e.g. configs/demo.yaml)")
        p.add_argument("--output", help="run directory, replacing run.output")
        p.add_argument(
            "--input",
            action="append",
            type=_parse_input,
            default=[],
            metavar="SOURCE=GLOB",
            help="replace a source's inputs (repeat for several globs or sources; books.COLLECTION=GLOB for books)",
        )
        p.add_argument("--ray-address", help="Ray cluster address, replacing run.ray_address")

    run = verbs.add_parser("run", help="run the pipeline, or some of its stages, resuming finished shards")
    add_config_args(run)
    run.add_argument(
        "--stages", type=_parse_stages, help=f"comma-separated stages or groups: {','.join([*STAGE_ORDER, *STAGE_GROUPS])} (default: all)"
    )

    validate = verbs.add_parser("validate", help="check a config and its inputs without running anything")
    add_config_args(validate)

    inspect = verbs.add_parser("inspect", help="print each stage's funnel from a run's manifests")
    inspect.add_argument("run_dir", help="run directory (run.output of its config)")
    inspect.add_argument("--stage", choices=STAGE_ORDER, help="only this stage")
    inspect.add_argument("--shards", action="store_true", help="add per-shard detail")

    report = verbs.add_parser("report", help="write the run's HTML report, RUN_DIR/report/index.html")
    report.add_argument("run_dir", help="run directory (run.output of its config)")
    return parser


def _report(run_dir) -> None:
    from manifests.report import write_report  # plotly: only when a report is written

    print(f"report: {write_report(run_dir)}")


def _load(args: argparse.Namespace):
    inputs: dict[str, list[str]] = {}
    for source, pattern in args.input:
        inputs.setdefault(source, []).append(pattern)
    return load_config(args.config, output=args.output, inputs=inputs, ray_address=args.ray_address)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.verb == "inspect":
            print(format_run(args.run_dir, stage=args.stage, shards=args.shards))
            return 0
        if args.verb == "report":
            _report(args.run_dir)
            return 0
        config = _load(args)
        if args.verb == "validate":
            config.check_inputs()  # as `run` does before starting Ray
            warcs = len(config.input_files("common_crawl"))
            print(f"{args.config}: valid; {warcs:,} WARC files; run directory {config.output_dir}")
            return 0
        from pipeline.runner import StageFailed, run_pipeline

        try:
            run_pipeline(config, args.stages)
        except StageFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            _report(config.output_dir)
            return 1
        print(format_run(config.output_dir))
        _report(config.output_dir)
        return 0
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a store that refuses or cannot be reached
        print(f"error: {exc}\ncheck the location, the credentials (AWS_ACCESS_KEY_ID, ...) and the endpoint "
              "(run.storage.s3_endpoint_url, or AWS_ENDPOINT_URL)", file=sys.stderr)
        return 2
