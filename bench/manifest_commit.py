"""The cost of recording one finished shard in its stage's manifest, at shard 10 and at 10,000.

    .venv/bin/python bench/manifest_commit.py [--shards 10000] [--repeats 5]

Rows are extract-shaped (a WARC input, 20 drop reasons, a few counters). Rows are recorded into
a local run directory, one core, wall time, median of `--repeats`:

  rewrite   what the runner did before: after every shard, the whole table so far written again
            (`write_manifest` of all rows recorded), so shard N costs O(N)
  row file  what it does now: `record_row`, the shard's row alone as JSON in `manifests/<stage>.rows/`
            (a stage's row files are folded into its table at its start and end)

Also the once-a-stage costs at `--shards`: folding the row files into the table
(`write_manifest`), and reading a manifest back while its rows are still in row files (a killed
run resuming) and after folding.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manifests.store import read_manifest, record_row, write_manifest  # noqa: E402

STAGE = "extract"


def row(i: int) -> dict:
    dropped = {f"reason_{k}": 10 + k for k in range(20)}
    return {
        "stage": STAGE, "shard": f"CC-MAIN-20240522-{i:06d}", "inputs": [f"s3://commoncrawl/crawl-data/{i:06d}.warc.gz"],
        "output": f"runs/cc/extract/{i:06d}.parquet", "docs_in": 40_000 + sum(dropped.values()), "docs_out": 40_000,
        "dropped": dropped, "bytes_out": 120_000_000, "tokens": None, "counters": {"bytes_skipped": 0, "pages": 41_000},
        "seconds": 30.5, "config_hash": "0123456789abcdef", "status": "done", "error": None,
        "finished_at": datetime.now(timezone.utc),
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(repeats: int, fn) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    rows = [row(i) for i in range(args.shards + 1)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for at in (10, args.shards):
            run_dir = Path(tmp) / f"rewrite-{at}"
            results[("rewrite", at)] = median_of(args.repeats, lambda: write_manifest(run_dir, STAGE, rows[: at + 1]))

            run_dir = Path(tmp) / f"rows-{at}"
            for r in rows[:at]:
                record_row(run_dir, STAGE, r)
            record_row(run_dir, STAGE, rows[0])  # warm: the directory exists, the code is loaded
            results[("row file", at)] = median_of(args.repeats, lambda: record_row(run_dir, STAGE, rows[at]))
        run_dir = Path(tmp) / f"rows-{args.shards}"
        read_pending = timed(lambda: read_manifest(run_dir, STAGE))
        fold = timed(lambda: write_manifest(run_dir, STAGE, read_manifest(run_dir, STAGE)))
        read_folded = timed(lambda: read_manifest(run_dir, STAGE))
        shutil.rmtree(run_dir)

    n = args.shards
    print(f"Recording one finished shard's manifest row (ms, median of {args.repeats}, one core)\n")
    print(f"| method   | at shard 10 | at shard {n:,} | growth |")
    print("|----------|------------:|--------------:|-------:|")
    for method in ("rewrite", "row file"):
        small, large = results[(method, 10)], results[(method, n)]
        print(f"| {method:<8} | {small * 1e3:11.2f} | {large * 1e3:13.2f} | {large / small:5.1f}x |")
    ratio = results[("rewrite", n)] / results[("row file", n)]
    print(f"\nAt shard {n:,} the row file is {ratio:,.0f}x cheaper than the rewrite; over the whole stage the"
          f" rewrite costs ~{sum_rewrite(results, n):,.0f} s, the row files ~{results[('row file', n)] * n:,.1f} s.")
    print(f"Once a stage, at {n:,} shards: fold row files into the table {fold:.2f} s; read with the rows "
          f"still in row files (resuming a killed run) {read_pending:.2f} s; read after folding {read_folded:.3f} s.")


def sum_rewrite(results: dict, n: int) -> float:
    """The rewrite's cost summed over a whole stage, its per-shard cost growing linearly to shard n."""
    small, large = results[("rewrite", 10)], results[("rewrite", n)]
    slope = (large - small) / (n - 10)
    return sum(small + slope * (k - 10) for k in range(1, n + 1))


if __name__ == "__main__":
    main()
