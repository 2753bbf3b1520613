"""GitHub stage throughput on one core: extract_github on the real packages of samples/github/ as
directories, .tar.gz, .zip and a jsonl.gz table, and the three exact-dedup phases.

    .venv/bin/python bench/github.py [--copies 20] [--repeats 3]

Input: the three real packages (minimist, mwxml, warcio: 99 files, 238 KB). Each input form is run
once per package; the table holds `--copies` copies of every package under different repository
names (a copy's files are byte-identical, so the dedup phases find copies-1 duplicates of each
kept document). Timed: wall clock, in-process, pinned to core 0 with `os.sched_setaffinity`, best
of --repeats after a warm-up. Files/s counts every file found (docs_in); MB/s is the bytes of all
files found (the table: content bytes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.timing import best_of  # noqa: E402
from stages.github import extract_github, find_duplicate_files, hash_files, remove_duplicate_files  # noqa: E402

PACKAGES = sorted(p for p in (ROOT / "samples" / "github").iterdir() if p.is_dir())


def files_of(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="bench-github-"))
    n_files = sum(len(files_of(p)) for p in PACKAGES)
    n_bytes = sum(f.stat().st_size for p in PACKAGES for f in files_of(p))

    inputs: dict[str, list[Path]] = {"directory": PACKAGES, "tar.gz": [], "zip": []}
    for package in PACKAGES:
        tar = work / f"{package.name}.tar.gz"
        with tarfile.open(tar, "w:gz") as t:
            t.add(package, arcname=package.name)
        inputs["tar.gz"].append(tar)
        zipped = work / f"{package.name}.zip"
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files_of(package):
                z.write(f, f"{package.name}/{f.relative_to(package).as_posix()}")
        inputs["zip"].append(zipped)

    print(f"{n_files} files, {n_bytes / 1e6:.3f} MB in {len(PACKAGES)} packages; one core; best of {args.repeats}")
    print(f"{'input':<12} {'files':>6} {'s':>7} {'files/s':>8} {'MB/s':>6}")
    for kind, paths in inputs.items():
        def run(paths=paths):
            for i, path in enumerate(paths):
                extract_github(str(path), str(work / f"{kind}-{i}.parquet"))
        seconds = best_of(args.repeats, run)
        print(f"{kind:<12} {n_files:>6} {seconds:>7.3f} {n_files / seconds:>8.0f} {n_bytes / seconds / 1e6:>6.2f}")

    table = work / "table.jsonl.gz"
    with gzip.open(table, "wt") as out:
        for copy in range(args.copies):
            for package in PACKAGES:
                for f in files_of(package):
                    out.write(json.dumps({"repository": f"copy{copy}/{package.name}",
                                          "path": f.relative_to(package).as_posix(),
                                          "content": f.read_text()}) + "\n")
    shard = work / "table.parquet"
    seconds = best_of(args.repeats, lambda: extract_github(str(table), str(shard)))
    files, size = n_files * args.copies, n_bytes * args.copies
    print(f"{'jsonl.gz':<12} {files:>6} {seconds:>7.3f} {files / seconds:>8.0f} {size / seconds / 1e6:>6.2f}")

    def dedup():
        hash_files(str(shard), str(work / "hashes"), shard_index=0, partitions=2)
        for p in range(2):
            find_duplicate_files([str(work / "hashes" / f"part-{p:05d}.npy")], str(work / f"dups-{p}"), partition=p)
        return remove_duplicate_files(str(shard), [str(work / f"dups-{p}" / "shard-00000.npy") for p in range(2)],
                                      str(work / "deduped.parquet"))
    seconds = best_of(args.repeats, dedup)
    stats = dedup()
    print(f"{'dedup x3':<12} {stats.docs_in:>6} {seconds:>7.3f} {stats.docs_in / seconds:>8.0f} "
          f"docs/s ({stats.dropped['duplicate']} duplicates removed, {stats.docs_out} kept)")


if __name__ == "__main__":
    main()
