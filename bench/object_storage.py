"""What a run directory on object storage costs, against an S3-compatible server on loopback
(moto's; real S3 adds network latency to every request, so these are the floor of the costs).

    .venv/bin/python bench/object_storage.py [--shards 5000] [--repeats 3]

  finished check   at the start of a stage, which shards' outputs exist: a HEAD request per shard
                   (`storage.exists` each, the simple way) against one listing per folder
                   (`storage.existing`, what the runner does), at --shards finished shards
  row commit       recording one shard's manifest row (`record_row`): local disk against the store
  extract+langid   the whole CLI on the bundled WARC samples, inputs and run directory local against
                   both on the store (each shard's WARC staged to the worker and its outputs
                   uploaded), wall time, median of --repeats
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manifests.store import record_row  # noqa: E402
from pipeline import storage  # noqa: E402
from tests.servers.s3 import s3_server  # noqa: E402

SAMPLES = sorted((ROOT / "samples" / "warc").glob("*.warc.gz"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def finished_check(bucket: str, shards: int) -> None:
    uris = [f"{bucket}/run/extract/shard-{i:06d}.parquet" for i in range(shards)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda uri: storage.write_bytes(uri, b"x"), uris))
    per_request = timed(lambda: [storage.exists(uri) for uri in uris])
    listing = timed(lambda: storage.existing(uris))
    print(f"finished check, {shards:,} shards: a request each {per_request:.2f} s, one listing per folder "
          f"{listing:.2f} s ({per_request / listing:.0f}x)")


def _row(i: int) -> dict:
    return {"stage": "extract", "shard": f"shard-{i:06d}", "inputs": ["s3://crawl/x.warc.gz"], "output": "o",
            "docs_in": 30, "docs_out": 10, "dropped": {f"reason_{k}": 1 for k in range(20)}, "bytes_out": 1,
            "tokens": None, "counters": {"bytes_skipped": 0}, "seconds": 1.0, "config_hash": "h", "status": "done",
            "error": None, "finished_at": datetime.now(timezone.utc), "node": "n"}


def row_commit(bucket: str, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as local:
        record_row(local, "extract", _row(0))  # warm
        on_disk = statistics.median(timed(lambda i=i: record_row(local, "extract", _row(i))) for i in range(20 * repeats))
    record_row(f"{bucket}/run", "extract", _row(0))
    on_store = statistics.median(
        timed(lambda i=i: record_row(f"{bucket}/run", "extract", _row(i))) for i in range(20 * repeats))
    print(f"row commit: local {on_disk * 1e3:.2f} ms, object store {on_store * 1e3:.2f} ms ({on_store / on_disk:.1f}x)")


def pipeline(s3, repeats: int, workdir: Path) -> None:
    crawl = s3.create_bucket("crawl")
    for warc in SAMPLES:
        s3.upload(warc, f"{crawl}/warc/{warc.name}")
    s3.create_bucket("runs")
    env = {**os.environ, **s3.env}
    env.pop("RAY_ADDRESS", None)
    base = [sys.executable, "-m", "pipeline", "run", "configs/demo.yaml", "--stages", "extract,langid"]

    def run(output: str, inputs: str) -> float:
        return timed(lambda: subprocess.run([*base, "--output", output, "--input", f"common_crawl={inputs}"],
                                            cwd=ROOT, env=env, check=True, capture_output=True))

    local = [run(str(workdir / f"local-{k}"), str(ROOT / "samples/warc/*.warc.gz")) for k in range(repeats)]
    remote = [run(f"s3://runs/run-{k}", f"{crawl}/warc/*.warc.gz") for k in range(repeats)]
    size = sum(w.stat().st_size for w in SAMPLES) / 1e6
    print(f"extract+langid, {len(SAMPLES)} WARCs ({size:.1f} MB): local {statistics.median(local):.1f} s, "
          f"object store {statistics.median(remote):.1f} s ({statistics.median(remote) / statistics.median(local):.2f}x; "
          f"runs {', '.join(f'{t:.1f}' for t in local)} / {', '.join(f'{t:.1f}' for t in remote)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with s3_server() as s3, tempfile.TemporaryDirectory() as workdir:
        os.environ.update(s3.env)
        bucket = s3.create_bucket("bench")
        finished_check(bucket, args.shards)
        row_commit(bucket, args.repeats)
        pipeline(s3, args.repeats, Path(workdir))


if __name__ == "__main__":
    main()
