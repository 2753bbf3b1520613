"""Speed of the arXiv stage (stages/arxiv.py) on the sample papers.

    .venv/bin/python bench/arxiv.py [--repeats N]

CPU time of `extract_arxiv`, pinned to one core, after a warm-up: each sample folder on its own,
then a bulk source tar built in a temporary folder from the three samples (each as a gzipped tar,
repeated under 10 ids each, so 30 papers). "MB of LaTeX" counts the bytes of every `.tex` file in
the sources, used or not.
"""

import argparse
import gzip
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.arxiv import extract_arxiv  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "arxiv"
COPIES = 10


def tex_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.tex")) / 1e6


def gzipped_tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return gzip.compress(buffer.getvalue(), mtime=0)


def bulk_tar(folders: list[Path], path: Path) -> None:
    with tarfile.open(path, "w") as tar:
        for copy in range(COPIES):
            for n, folder in enumerate(folders):
                data = gzipped_tar(folder)
                info = tarfile.TarInfo(f"2101/2101.{copy:03d}{n:02d}.gz")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def cpu_seconds(input_path: str, output: str, repeats: int) -> float:
    extract_arxiv(input_path, output)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        extract_arxiv(input_path, output)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    folders = sorted(p for p in SAMPLES.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        output = str(Path(tmp) / "out.parquet")
        print(f"{'input':40} {'papers':>6} {'MB LaTeX':>9} {'CPU s':>7} {'papers/s':>9} {'MB/s':>6}")
        rows = [(f.name, str(f), 1, tex_megabytes(f)) for f in folders]
        bulk = Path(tmp) / "arXiv_src_2101_001.tar"
        bulk_tar(folders, bulk)
        rows.append((f"bulk tar ({COPIES}x the samples)", str(bulk), COPIES * len(folders),
                     COPIES * sum(tex_megabytes(f) for f in folders)))
        for name, path, papers, mb in rows:
            seconds = cpu_seconds(path, output, args.repeats)
            print(f"{name:40} {papers:6d} {mb:9.2f} {seconds:7.3f} {papers / seconds:9.1f} {mb / seconds:6.2f}")


if __name__ == "__main__":
    main()
