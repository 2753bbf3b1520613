"""Corpus-wide line dedup on one core: throughput of the three phases against a plain Python
set-of-hashes dedup, and the memory of a partition task as the corpus grows.

    .venv/bin/python bench/line_dedup.py [--copies 8] [--scale 4] [--shard-mb 1.0] [--repeats 3]
                                         [--lines-per-partition 64000]

Corpus: every page `stages.extract.extract_warc` gets out of samples/warc/*.warc.gz (256 real
pages, 1.8 MB of text, 2008-2024, mostly English, some de/fr/es/zh/ja/ru). The 1x corpus is
`--copies` copies of them, the 4x corpus `--copies * --scale`: copy 0 is the real pages, every
other copy is a variant of each page in which each non-blank line is, at random, kept verbatim
(45%), re-typed so that it normalises to the same line (15%: case, digits, punctuation, spacing,
accents changed) or edited into a new line (40%: one word replaced by a word of another page);
after 5% of the lines a real line of another page is injected (boilerplate). The documents are
shuffled (fixed seed) and cut into parquet shards of ~`--shard-mb` MB, so copies of a line sit in
different shards. The 4x corpus has proportionally more duplicates (more copies of each page).

Timed (wall, in-process, pinned to core 0 with `os.sched_setaffinity(0, {0})`, best of --repeats
runs of each, after a warm-up run):
  ours        hash_lines on every shard, find_duplicate_lines on every partition,
              remove_duplicate_lines on every shard: parquet in, parquet out, with all hash and
              duplicates files written and read; partitions = --lines-per-partition sizing
  baseline    CCNet `hash_in_mem` style in one process: read every shard, for each line
              normalise with str methods (`lower`, NFD, `str.translate` with the same table,
              split/join), SHA-1, look up / add to one Python set of ints, write the shard
              (same keep rule and output: the bench checks the parquet files are identical)

Memory of find_duplicate_lines (untimed, again on the same hash files): the largest partition
task of each setting, (a) tracemalloc peak (numpy arrays and Python objects the task allocates)
in this process, second of two runs, and (b) peak RSS above the start of a fresh Python process
that runs only that task (VmHWM reset through /proc/self/clear_refs after the imports; it
includes ~0.5 MB of interpreter growth, which dominates small tasks). Settings: 1x with P
partitions, 4x with partitions sized the same way from its own line count (~4P: memory per task
stays flat) and 4x with P (memory per task grows ~4x).
The baseline's set is measured as sys.getsizeof of the set and of its int objects.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
import unicodedata
from hashlib import sha1
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from stages import line_dedup as ld  # noqa: E402
from stages.documents import read_documents, write_documents  # noqa: E402
from stages.extract import extract_warc  # noqa: E402

MIN_TEXT_CHARS = 200
SEED = 1234


def sample_pages(workdir: Path) -> tuple[list[dict], object]:
    docs, schema = [], None
    for warc in sorted((ROOT / "samples" / "warc").glob("*.warc.gz")):
        path = workdir / f"{warc.name.removesuffix('.warc.gz')}.parquet"
        extract_warc(str(warc), str(path))
        docs.extend(read_documents(path))
        schema = pq.read_schema(path)
    return docs, schema


# -- corpus ------------------------------------------------------------------------------------


def retyped(line: str, rng: random.Random) -> str:
    """The same line after normalisation: case, digits, punctuation, spacing and accents changed."""
    line = line.upper() if rng.random() < 0.5 else line.lower()
    line = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), line)
    return " " + line.replace(",", " ;").replace(" ", "  ").replace("e", "é") + " !"


def variant(text: str, vocab: list[str], boilerplate: list[str], rng: random.Random) -> str:
    out = []
    for line in text.split("\n"):
        words = line.split()
        if not words:
            out.append(line)
            continue
        r = rng.random()
        if r < 0.45:
            out.append(line)
        elif r < 0.60:
            out.append(retyped(line, rng))
        else:
            words[rng.randrange(len(words))] = rng.choice(vocab)
            out.append(" ".join(words))
        if rng.random() < 0.05:
            out.append(rng.choice(boilerplate))
    return "\n".join(out)


def build_corpus(pages: list[dict], copies: int, schema, directory: Path, shard_bytes: int) -> tuple[list[Path], int]:
    rng = random.Random(SEED + copies)
    lines = [line for p in pages for line in p["text"].split("\n") if line.strip()]
    vocab = sorted({w for line in lines for w in line.split()})
    boilerplate = rng.sample(lines, 300)
    docs = []
    for c in range(copies):
        for p in pages:
            text = p["text"] if c == 0 else variant(p["text"], vocab, boilerplate, rng)
            docs.append({**p, "id": f"{p['id']}-{c}", "text": text})
    rng.shuffle(docs)
    shards, current, size, total = [], [], 0, 0
    for doc in docs:
        current.append(doc)
        n = len(doc["text"].encode())
        size += n
        total += n
        if size >= shard_bytes:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards):
        paths.append(directory / f"shard-{i:05d}.parquet")
        write_documents(paths[-1], shard, schema)
    return paths, total


# -- ours and the baseline ---------------------------------------------------------------------


def run_ours(shards: list[Path], work: Path, partitions: int) -> dict:
    hash_dirs = [work / "hashes" / f"s{i:05d}" for i in range(len(shards))]
    dup_dirs = [work / "duplicates" / f"part-{p:05d}" for p in range(partitions)]
    times, stats = {}, {}
    start = time.perf_counter()
    stats["hash"] = [ld.hash_lines(str(s), str(h), shard_index=i, partitions=partitions)
                     for i, (s, h) in enumerate(zip(shards, hash_dirs))]
    times["hash"] = time.perf_counter() - start
    start = time.perf_counter()
    files = [[str(h / ld.partition_file(p)) for h in hash_dirs] for p in range(partitions)]
    stats["find"] = [ld.find_duplicate_lines(files[p], str(d), partition=p) for p, d in enumerate(dup_dirs)]
    times["find"] = time.perf_counter() - start
    start = time.perf_counter()
    outputs = [work / "out" / s.name for s in shards]
    stats["remove"] = [
        ld.remove_duplicate_lines(
            str(s), [str(d / ld.shard_file(i)) for d in dup_dirs], str(o), min_text_chars=MIN_TEXT_CHARS
        )
        for i, (s, o) in enumerate(zip(shards, outputs))
    ]
    times["remove"] = time.perf_counter() - start
    return {"times": times, "stats": stats, "outputs": outputs, "find_files": files, "dup_dirs": dup_dirs}


def translate_table() -> dict[int, str | None]:
    fold = ld._fold_tables()[0]
    changed = np.flatnonzero(fold != np.arange(fold.size, dtype=np.uint32))
    return {int(c): None if fold[c] == 0xFFFFFFFF else chr(fold[c]) for c in changed if c != 10} | {10: None}


def run_baseline(shards: list[Path], work: Path, table: dict) -> dict:
    """One process, one Python set of 64-bit hashes over the corpus (CCNet's hash_in_mem over
    everything), first occurrence kept; same normal form, hash, blank-line and short-document rules."""
    seen: set[int] = set()
    normalize, from_bytes = unicodedata.normalize, int.from_bytes
    outputs, removed = [], 0
    start = time.perf_counter()
    for shard in shards:
        schema = pq.read_schema(shard)
        kept_docs = []
        for doc in pq.read_table(shard).to_pylist():
            kept, lost = [], False
            for line in doc["text"].split("\n"):
                key = " ".join(normalize("NFD", line.lower()).translate(table).split())
                if key:
                    h = from_bytes(sha1(key.encode()).digest()[:8], "little")
                    if h in seen:
                        lost = True
                        removed += 1
                        continue
                    seen.add(h)
                kept.append(line)
            if not lost:
                kept_docs.append(doc)
            else:
                text = "\n".join(kept)
                if len(text.strip()) >= MIN_TEXT_CHARS:
                    kept_docs.append({**doc, "text": text})
        outputs.append(work / "baseline" / shard.name)
        write_documents(outputs[-1], kept_docs, schema)
    elapsed = time.perf_counter() - start
    set_bytes = sys.getsizeof(seen) + sum(map(sys.getsizeof, seen))
    return {"time": elapsed, "outputs": outputs, "removed": removed, "set_bytes": set_bytes, "distinct": len(seen)}


# -- memory of a partition task ----------------------------------------------------------------

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from stages import line_dedup as ld
import numpy as np
def status():
    fields = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
files, out, partition = json.loads(sys.argv[2])
np.load  # imports done; reset the high-water mark to the current RSS
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
before, _ = status()
ld.find_duplicate_lines(files, out, partition=partition)
print(json.dumps({"before_kb": before, "peak_kb": status()[1]}))
"""


def traced_peak(files: list[str], out: Path, partition: int) -> int:
    """The second of two traced runs: the first can include one-off interpreter growth (the
    interned-strings table resized, 1.9 MB, was seen inside one)."""
    for _ in range(2):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        ld.find_duplicate_lines(files, str(out), partition=partition)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    return peak


def fresh_process_peak(files: list[str], out: Path, partition: int) -> int:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), json.dumps([files, str(out), partition])],
        check=True, capture_output=True, text=True,
    )
    values = json.loads(result.stdout)
    return (values["peak_kb"] - values["before_kb"]) * 1024


def memory_row(label: str, run: dict, work: Path) -> dict:
    seen = [s.counters["lines_seen"] for s in run["stats"]["find"]]
    largest = int(np.argmax(seen))
    files = run["find_files"][largest]
    traced = traced_peak(files, work / "mem", largest)
    rss = fresh_process_peak(files, work / "mem-rss", largest)
    return {"label": label, "partitions": len(seen), "lines": max(seen), "traced": traced, "rss": rss}


# -- main --------------------------------------------------------------------------------------


def best(run, repeats: int) -> dict:
    """The fastest of `repeats` runs (the machine is shared: the others are noise)."""
    results = [run() for _ in range(repeats)]
    return min(results, key=lambda r: sum(r["times"].values()) if "times" in r else r["time"])


def throughput_row(label: str, shards: list[Path], text_bytes: int, run: dict, base: dict) -> dict:
    removed = sum(s.counters["lines_removed"] for s in run["stats"]["remove"])
    identical = all(a.read_bytes() == b.read_bytes() for a, b in zip(run["outputs"], base["outputs"]))
    if removed != base["removed"] or not identical:
        raise SystemExit(f"ours and the baseline disagree: {removed} vs {base['removed']} lines removed, "
                         f"parquet identical: {identical}")
    remove_stats = run["stats"]["remove"]
    return {
        "label": label, "mb": text_bytes / 1e6, "shards": len(shards),
        "docs": sum(s.docs_in for s in run["stats"]["hash"]),
        "lines": sum(s.counters["lines_hashed"] for s in run["stats"]["hash"]),
        "partitions": len(run["stats"]["find"]), "removed": removed,
        "bytes_removed": sum(s.counters["bytes_removed"] for s in remove_stats),
        "dropped": sum(sum(s.dropped.values()) for s in remove_stats),
        "times": run["times"], "total": sum(run["times"].values()), "base": base["time"],
        "set_bytes": base["set_bytes"], "distinct": base["distinct"],
    }


def print_tables(rows: list[dict], memory: list[dict], lines_per_partition: int) -> None:
    print(f"\nThroughput, one core, text MB/s, parquet shards in and out; ours = the three phases in "
          f"sequence, partitions = ceil(lines / {lines_per_partition:,}); our output parquet files are "
          f"byte-identical to the baseline's (checked)\n")
    print("| corpus | text MB | shards | docs | lines hashed | lines removed | bytes removed | docs dropped "
          "| partitions | hash s | find s | remove s | ours MB/s | baseline MB/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = r["times"]
        print(f"| {r['label']} | {r['mb']:.1f} | {r['shards']} | {r['docs']:,} | {r['lines']:,} "
              f"| {r['removed']:,} ({r['removed'] / r['lines']:.0%}) | {r['bytes_removed'] / 1e6 / r['mb']:.0%} "
              f"| {r['dropped']:,} | {r['partitions']} | {t['hash']:.2f} | {t['find']:.2f} | {t['remove']:.2f} "
              f"| {r['mb'] / r['total']:.1f} | {r['mb'] / r['base']:.1f} | {r['base'] / r['total']:.2f}x |")
    print("\nMemory of the largest find_duplicate_lines task\n")
    print("| corpus, partitions | lines in the task | traced peak MB | bytes/line "
          "| fresh-process RSS peak MB | bytes/line |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in memory:
        print(f"| {m['label']} | {m['lines']:,} | {m['traced'] / 1e6:.2f} | {m['traced'] / m['lines']:.1f} "
              f"| {m['rss'] / 1e6:.1f} | {m['rss'] / m['lines']:.1f} |")
    print()
    for r in rows:
        print(f"Baseline's set at {r['label']}: {r['distinct']:,} hashes, {r['set_bytes'] / 1e6:.1f} MB "
              f"({r['set_bytes'] / r['distinct']:.0f} bytes a distinct line), in one process.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=8, help="copies of the sample pages in the 1x corpus")
    parser.add_argument("--scale", type=int, default=4, help="the large corpus is this many times the 1x corpus")
    parser.add_argument("--shard-mb", type=float, default=1.0, help="text per shard, MB")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method; the fastest counts")
    parser.add_argument("--lines-per-partition", type=int, default=64_000,
                        help="partition sizing: partitions = ceil(hashed lines / this)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})

    with tempfile.TemporaryDirectory(prefix="bench-line-dedup-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        pages, schema = sample_pages(tmp / "extracted")
        page_mb = sum(len(p["text"].encode()) for p in pages) / 1e6
        print(f"{len(pages)} real pages from samples/warc/*.warc.gz, {page_mb:.2f} MB of text (extraction "
              f"{time.perf_counter() - start:.1f} s, not timed). Corpus 1x = {args.copies} copies of them, "
              f"{args.scale}x = {args.copies * args.scale}: the first copy as extracted, the others with each line "
              f"kept (45%), re-typed to the same normal form (15%) or edited by one word (40%), plus 5% injected "
              f"real lines of other pages; documents shuffled into ~{args.shard_mb:g} MB shards.")
        table = translate_table()
        ld._fold_tables()  # built once per process (~0.4 s), not timed; both methods use it

        rows, memory = [], []
        shards, text_bytes = build_corpus(pages, args.copies, schema, tmp / "corpus-1x", int(args.shard_mb * 1e6))
        probe = run_ours(shards, tmp / "probe", 1)  # warm-up, and the line count for sizing
        lines = sum(s.counters["lines_hashed"] for s in probe["stats"]["hash"])
        partitions = max(1, -(-lines // args.lines_per_partition))
        run = best(lambda: run_ours(shards, tmp / "ours-1x", partitions), args.repeats)
        base = best(lambda: run_baseline(shards, tmp / "base-1x", table), args.repeats)
        rows.append(throughput_row("1x", shards, text_bytes, run, base))
        memory.append(memory_row(f"1x, {partitions} partitions", run, tmp / "mem-1x"))

        big = args.scale
        shards, text_bytes = build_corpus(pages, args.copies * big, schema, tmp / f"corpus-{big}x",
                                          int(args.shard_mb * 1e6))
        lines = sum(s.counters["lines_hashed"] for s in run_ours(shards, tmp / "probe-big", 1)["stats"]["hash"])
        scaled = max(1, -(-lines // args.lines_per_partition))
        run = best(lambda: run_ours(shards, tmp / f"ours-{big}x", scaled), args.repeats)
        base = best(lambda: run_baseline(shards, tmp / f"base-{big}x", table), args.repeats)
        rows.append(throughput_row(f"{big}x", shards, text_bytes, run, base))
        memory.append(memory_row(f"{big}x, {scaled} partitions (scaled)", run, tmp / f"mem-{big}x"))
        fixed = run_ours(shards, tmp / f"ours-{big}x-fixed", partitions)
        memory.append(memory_row(f"{big}x, {partitions} partitions (not scaled)", fixed, tmp / f"mem-{big}x-fixed"))

    print_tables(rows, memory, args.lines_per_partition)


if __name__ == "__main__":
    main()
