"""StackExchange stage: throughput on the real samples and peak memory as a site grows.

    .venv/bin/python bench/stackexchange.py speed  [--repeats N]
    .venv/bin/python bench/stackexchange.py memory [--scales 1,4,16,64] [--7z-scales 1,16] [--cache-mb 64]

speed: the whole stage (expat, HTML to text, SQLite join, parquet) on each sample site directory,
CPU time of the best of N runs, pinned to one core; then html_to_text alone over every body.

memory: synthetic sites made by repeating history.meta's 1,657 real rows k times, each copy's Id,
ParentId and AcceptedAnswerId shifted by k * 100,000 (so they stay in Id order and every answer
keeps its question); "answers last" puts every answer after every question (the worst case for a
join held in memory: no question can be finished before the end). Each run is a fresh process that
reports its peak RSS (VmHWM) and its peak RSS after imports; `.7z` runs read the same XML from a
py7zr-made archive (LZMA2) through the streaming reader.

Measured on the shared 2-core machine (Python 3.11, py7zr 1.1.4, pyarrow 26.0.1), see the numbers
in the module docstring of stages/stackexchange.py and the report of the commit that added it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "samples" / "stackexchange"
HISTORY = SAMPLES / "history.meta.stackexchange.com" / "Posts.xml"
ID_ATTR = re.compile(rb'(\s)(Id|ParentId|AcceptedAnswerId)="(\d+)"')
OFFSET = 100_000


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def speed(repeats: int) -> None:
    from xml.etree import ElementTree as ET

    from stages.stackexchange import extract_stackexchange, html_to_text

    pin_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        for site in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
            posts = site / "Posts.xml"
            mb = posts.stat().st_size / 1e6
            best = float("inf")
            for i in range(repeats):
                start = time.process_time()
                stats = extract_stackexchange(str(site), f"{tmp}/{site.name}-{i}.parquet")
                best = min(best, time.process_time() - start)
            rows = stats.docs_in
            print(f"{site.name}: {rows} posts, {mb:.2f} MB Posts.xml -> {stats.docs_out} documents; "
                  f"stage {best:.3f} s CPU = {rows / best:,.0f} posts/s, {mb / best:.1f} MB/s")
            bodies = [e.get("Body") or "" for e in ET.parse(posts).getroot()]
            html_mb = sum(len(b.encode()) for b in bodies) / 1e6
            start = time.process_time()
            for body in bodies:
                html_to_text(body)
            took = time.process_time() - start
            print(f"  html_to_text alone: {len(bodies) / took:,.0f} bodies/s, {html_mb / took:.1f} MB/s of HTML "
                  f"({took / best:.0%} of the stage)")


def synthetic(path: Path, scale: int, answers_last: bool) -> int:
    lines = HISTORY.read_bytes().split(b"\n")
    head = [line for line in lines if b"<row " not in line and b"</posts>" not in line and line.strip()]
    rows = [line for line in lines if b"<row " in line]
    with open(path, "wb") as out:
        out.write(b"\n".join(head) + b"\n")
        kinds = (b'PostTypeId="1"', b'PostTypeId="2"') if answers_last else (None,)
        for kind in kinds:
            for k in range(scale):
                shift = k * OFFSET
                for row in rows:
                    if kind is None or kind in row or (kind == b'PostTypeId="1"' and b'PostTypeId="2"' not in row):
                        out.write(ID_ATTR.sub(lambda m: m.group(1) + m.group(2) + b'="%d"' % (int(m.group(3)) + shift), row) + b"\n")
        out.write(b"</posts>\n")
    return len(rows) * scale


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's RSS at fork time
    into a child's ru_maxrss across exec, which made small runs look as big as the bench driver."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(input_path: str, output: str, cache_mb: int) -> None:
    from stages.stackexchange import extract_stackexchange

    base = peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    stats = extract_stackexchange(input_path, output, site="history.meta.stackexchange.com", cache_mb=cache_mb)
    print(json.dumps({
        "rows": stats.counters["rows"], "docs": stats.docs_out, "dropped": sum(stats.dropped.values()),
        "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
        "rss_after_imports_mb": base, "peak_rss_mb": peak_rss_mb(),
    }))


def measure(input_path: Path, tmp: Path, cache_mb: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "_child", str(input_path), str(tmp / "out.parquet"), str(cache_mb)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(scales: list[int], archive_scales: list[int], cache_mb: int) -> None:
    import py7zr

    print("input                     rows    XML MB  docs    wall s  CPU s  RSS after imports  peak RSS")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        runs = [(s, False, False) for s in scales] + [(scales[-1], True, False)] + [(s, False, True) for s in archive_scales]
        for scale, answers_last, archived in runs:
            site = tmp / f"site-{scale}-{int(answers_last)}"
            site.mkdir(exist_ok=True)
            posts = site / "Posts.xml"
            rows = synthetic(posts, scale, answers_last)
            mb = posts.stat().st_size / 1e6
            target = site
            if archived:
                target = tmp / f"history-{scale}.7z"
                with py7zr.SevenZipFile(target, "w") as archive:
                    archive.write(posts, "Posts.xml")
            r = measure(target, tmp, cache_mb)
            assert r["rows"] == rows, (r, rows)
            label = f"{scale}x" + (" answers last" if answers_last else "") + (" .7z" if archived else "")
            print(f"{label:22s} {rows:8,d} {mb:9.1f} {r['docs']:6,d} {r['wall_s']:9.1f} {r['cpu_s']:6.1f} "
                  f"{r['rss_after_imports_mb']:12.0f} MB {r['peak_rss_mb']:9.0f} MB")
            posts.unlink()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["speed", "memory"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scales", default="1,4,16,64")
    parser.add_argument("--7z-scales", dest="archive_scales", default="1,16")
    parser.add_argument("--cache-mb", type=int, default=64, help="extract_stackexchange(cache_mb=...)")
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.repeats)
    else:
        memory([int(s) for s in args.scales.split(",")], [int(s) for s in args.archive_scales.split(",") if s], args.cache_mb)


if __name__ == "__main__":
    main()
