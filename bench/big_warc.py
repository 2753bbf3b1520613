"""A Common-Crawl-sized WARC from the real sample pages, and the extract stage run on it.

    .venv/bin/python bench/big_warc.py build [--size-mb 1000] [--out FILE]
    .venv/bin/python bench/big_warc.py run [--size-mb 1000] [--extractor resiliparse] [--time-box 1800]

`build` writes a gzipped WARC/1.0 file of about --size-mb MB, one gzip member per record as
Common Crawl's, streaming (one record in memory at a time): the records of
samples/warc/*.warc.gz and of samples/extraction_eval/pages.warc.gz (or
/work/shared/data/extraction_eval/pages.warc.gz without it) in their order, copy after copy, until
the file is large enough. HTML pages (HTTP 200 text/html) keep their HTTP headers (transfer and
content encoding undone, Content-Length fixed) with their body edited per copy: the copy number
is put into the title and a sentence with it and a varying number after `<body>`; their target URL
gets `bench_copy=<n>` (requests too, so pairs still match). Every other record (requests,
metadata, redirects, 404s, images, dns) is kept as it was, interleaved as in the source crawls;
one warcinfo record opens the file. Every record gets a new WARC-Record-ID and digests. The file
is cached (default under runs/bench/big_warc/, gitignored) with a `.json` beside it (records,
HTML pages, bytes), and not rebuilt while both exist.

`run` (building first if needed) runs `python -m pipeline run CONFIG --stages extract` on that
one file with the fast extractor and reports pages, wall and CPU seconds, pages/s and MB/s, the
peak RSS of the Ray worker that ran the shard (VmHWM read from /proc every 0.2 s; rusage of
children sees a worker only when it happens to outlive the raylet at shutdown and is re-parented to
this process, a child subreaper: the raylet reaps its workers without accounting), and the progress
lines printed while it ran (lines with "ETA"): how many, and how often.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
import zlib
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from warcio.archiveiterator import WARCIterator  # noqa: E402
from warcio.warcwriter import WARCWriter  # noqa: E402

import extract_pipeline as ep  # noqa: E402

WORK = ROOT / "runs" / "bench" / "big_warc"
EVAL_PAGES = [ROOT / "samples" / "extraction_eval" / "pages.warc.gz",
              Path("/work/shared/data/extraction_eval/pages.warc.gz")]
HTML_TYPES = ("text/html", "application/xhtml+xml")
DROPPED_HTTP_HEADERS = ("Transfer-Encoding", "Content-Encoding", "Content-Length")
GZIP_LEVEL = 6  # gzip's default; warcio's writer uses 9


def sources() -> list[Path]:
    found = list(ep.SAMPLE_WARCS)
    for candidate in EVAL_PAGES:
        if candidate.is_file():
            found.append(candidate)
            break
    return found


def _copy_url(url: str | None, copy: int) -> str | None:
    if not url or not url.startswith(("http://", "https://")):
        return url
    base, hash_, fragment = url.partition("#")
    return f"{base}{'&' if '?' in base else '?'}bench_copy={copy}{hash_}{fragment}"


def _edit_html(body: bytes, copy: int, serial: int) -> bytes:
    """The page with the copy number in its title and a sentence of its own after <body>."""
    if b"\x00" in body[:2048]:  # UTF-16 or binary: not ASCII-compatible, left as it is
        return body
    body = re.sub(rb"(<title[^>]*>)", lambda m: m.group(1) + f"[{copy}] ".encode(), body, count=1, flags=re.I)
    sentence = (f"<p>Archived copy {copy} of this page, number {serial:,} in the collection, "
                f"checked {(serial * 7919 + copy) % 997} times.</p>").encode()
    edited, n = re.subn(rb"(<body[^>]*>)", lambda m: m.group(1) + sentence, body, count=1, flags=re.I)
    return edited if n else sentence + body


def _is_html_page(record) -> bool:
    http = record.http_headers
    if record.rec_type != "response" or http is None or http.get_statuscode() != "200":
        return False
    content_type = (http.get_header("Content-Type") or "").split(";")[0].strip().lower()
    return content_type in HTML_TYPES


def _member(writer_record, scratch: BytesIO, writer: WARCWriter) -> bytes:
    """One record serialised, then gzipped as a member of its own."""
    scratch.seek(0)
    scratch.truncate()
    writer.write_record(writer_record)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return compressor.compress(scratch.getvalue()) + compressor.flush()


def build(out: Path, size_mb: float) -> dict:
    meta_path = out.with_name(out.name + ".json")
    if out.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("target_mb") == size_mb:
            print(f"{out}: present ({out.stat().st_size / 1e6:,.0f} MB, {meta['html_pages']:,} HTML pages); not rebuilt")
            return meta
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    scratch = BytesIO()
    writer = WARCWriter(scratch, gzip=False, warc_version="1.0")
    counts = {"records": 0, "html_pages": 0, "other_records": {}}
    target = size_mb * 1e6
    started = time.monotonic()
    copy = serial = 0
    with open(temporary, "wb") as stream:
        info = writer.create_warc_record("big-warc-bench.warc.gz", "warcinfo", payload=BytesIO(
            b"software: bench/big_warc.py\r\nformat: WARC File Format 1.0\r\n"
            b"description: real sample pages repeated with edits, for throughput figures\r\n"),
            warc_content_type="application/warc-fields")
        stream.write(_member(info, scratch, writer))
        while stream.tell() < target:
            for source in sources():
                with open(source, "rb") as raw:
                    for record in WARCIterator(raw):
                        if record.rec_type == "warcinfo":
                            continue
                        new = _rewrite(record, writer, copy, serial)
                        if new is None:
                            continue
                        if _is_html_page(record):
                            counts["html_pages"] += 1
                            serial += 1
                        else:
                            kind = record.rec_type if record.rec_type != "response" else "response_other"
                            counts["other_records"][kind] = counts["other_records"].get(kind, 0) + 1
                        counts["records"] += 1
                        stream.write(_member(new, scratch, writer))
                        if stream.tell() >= target:
                            break
                if stream.tell() >= target:
                    break
            copy += 1
            print(f"  copy {copy}: {stream.tell() / 1e6:,.0f} MB, {counts['html_pages']:,} HTML pages "
                  f"({time.monotonic() - started:,.0f}s)", flush=True)
    os.replace(temporary, out)
    meta = {"target_mb": size_mb, "bytes": out.stat().st_size, "copies_started": copy,
            "sources": [str(s.relative_to(ROOT)) if s.is_relative_to(ROOT) else str(s) for s in sources()],
            "build_s": round(time.monotonic() - started, 1), **counts}
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def _rewrite(record, writer: WARCWriter, copy: int, serial: int):
    """The record for copy `copy`: a new id, HTML pages edited; None for one it cannot reread."""
    headers = record.rec_headers
    url = _copy_url(headers.get_header("WARC-Target-URI"), copy)
    fields = {name: value for name, value in headers.headers
              if name.lower() in ("warc-date", "warc-ip-address", "warc-identified-payload-type")}
    http = record.http_headers
    if _is_html_page(record):
        body = _edit_html(record.content_stream().read(), copy, serial)
        for name in DROPPED_HTTP_HEADERS:
            http.remove_header(name)
        http.add_header("Content-Length", str(len(body)))
        block = http.to_bytes() + body
    else:
        block = (http.to_bytes() if http is not None else b"") + record.raw_stream.read()
    content_type = headers.get_header("Content-Type") or ""
    return writer.create_warc_record(url or "", record.rec_type, payload=BytesIO(block), length=len(block),
                                     warc_content_type=content_type, warc_headers_dict={
                                         **fields, "WARC-Record-ID": f"<urn:uuid:{uuid.uuid4()}>"})


def run(args: argparse.Namespace) -> None:
    out = Path(args.out) if args.out else WORK / f"crawl-{args.size_mb:g}mb.warc.gz"
    meta = build(out, args.size_mb)
    size = out.stat().st_size
    work = out.parent
    inputs = work / "inputs"
    inputs.mkdir(exist_ok=True)
    link = inputs / out.name
    if not link.exists():
        os.symlink(out, link)
    label = f"big-{args.extractor}"
    run_dir = work / "out" / label
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    config = ep.write_config(work / f"{label}.yaml", inputs, run_dir, args.extractor, args.num_cpus)
    cmd = ["timeout", "--signal=INT", "--kill-after=30", str(args.time_box),
           sys.executable, "-m", "pipeline", "run", str(config), "--stages", "extract"]
    print(f"{out.name}: {size / 1e6:,.0f} MB, {meta['records']:,} records, {meta['html_pages']:,} HTML pages; "
          f"extract ({args.extractor}) through the CLI, time box {args.time_box}s", flush=True)
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = ep.measure(cmd, log_path=work / f"{label}.log", echo=re.compile(r"ETA|FAILED|error|Error"))
    children_maxrss_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    lines = result["lines"]
    planned = ep._first(lines, r"\] \d+ shards: ")
    done = ep._last(lines, r"\[extract\] (\d+)/\1 shard ")
    progress = [e for e in lines if "ETA" in e["line"]]
    gaps = [b["t"] - a["t"] for a, b in zip(progress, progress[1:])]
    workers = [p for p in result["processes"] if any("extract" in n for n in p["names"])] or \
              [p for p in result["processes"] if any(n.startswith("ray::") for n in p["names"])][:1]
    summary = {"file": str(out), "bytes": size, "build": meta, "rc": result["rc"], "wall": result["wall"],
               "cpu": result["cpu"], "children_maxrss_mb": children_maxrss_mb,
               "processes": result["processes"][:12], "progress_lines": len(progress),
               "progress_gap_s": {"min": min(gaps), "median": sorted(gaps)[len(gaps) // 2], "max": max(gaps)}
               if gaps else None, "progress_first": progress[0]["line"] if progress else None,
               "progress_last": progress[-1]["line"] if progress else None,
               "worker_prints": sum(1 for e in lines if "MB/s" in e["line"] and "ETA" not in e["line"])}
    if planned and done and result["rc"] == 0:
        extract = ep.manifest_totals(run_dir, "extract")
        summary.update(pages=ep.pages_of(extract), docs_out=extract["docs_out"], task_s=extract["task_s"],
                       work_wall=done["t"] - planned["t"], work_cpu=done["cpu"] - planned["cpu"],
                       ray_start_s=planned["t"] - ep._first(lines, "starting Ray")["t"], dropped=extract["dropped"])
    (work / f"{label}.json").write_text(json.dumps(summary, indent=1, default=str))
    print_run(summary)
    shutil.rmtree(run_dir, ignore_errors=True)


def print_run(s: dict) -> None:
    mb = s["bytes"] / 1e6
    if "pages" not in s:
        print(f"did not finish (exit {s['rc']}) within the time box: wall {s['wall']:.0f}s, CPU {s['cpu']:.0f}s")
    else:
        print(f"\n| file MB | pages | docs out | whole: wall s | CPU s | work: wall s | CPU s | pages/s (work wall) "
              f"| pages/CPU-s | MB/s (work wall) | worker peak RSS MB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        worker = next((p for p in s["processes"] if any("extract" in n for n in p["names"])), None)
        print(f"| {mb:,.0f} | {s['pages']:,} | {s['docs_out']:,} | {s['wall']:.0f} | {s['cpu']:.0f} | {s['work_wall']:.0f} "
              f"| {s['work_cpu']:.0f} | {s['pages'] / s['work_wall']:,.0f} | {s['pages'] / s['work_cpu']:,.0f} "
              f"| {mb / s['work_wall']:.1f} | {worker['peak_rss_mb'] if worker else '?'} |")
    print("\nprocesses (CPU s, peak RSS MB):")
    for p in s["processes"][:8]:
        print(f"  {p['cpu_s']:8.1f} {p['peak_rss_mb']:8.1f}  {', '.join(p['names'])[:100]}")
    print(f"rusage of children, ru_maxrss: {s['children_maxrss_mb']:.0f} MB (the largest process reaped by this "
          "one or by a reaped parent: the Ray worker only when it outlived the raylet and was re-parented here)")
    gaps = s["progress_gap_s"]
    print(f"progress lines with ETA: {s['progress_lines']}"
          + (f", every {gaps['median']:.1f}s (min {gaps['min']:.1f}, max {gaps['max']:.1f})" if gaps else ""))
    if s["progress_first"]:
        print(f"  first: {s['progress_first']}\n  last:  {s['progress_last']}")
    print(f"lines printed by the worker itself (MB/s, no ETA): {s['worker_prints']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in ("build", "run"):
        sub = verbs.add_parser(name)
        sub.add_argument("--size-mb", type=float, default=1000, help="file size to reach, MB (default 1000)")
        sub.add_argument("--out", help=f"the WARC file (default {WORK.relative_to(ROOT)}/crawl-<size>mb.warc.gz)")
        if name == "run":
            sub.add_argument("--extractor", default="resiliparse", choices=["trafilatura", "resiliparse"])
            sub.add_argument("--num-cpus", type=int, default=1, help="run.num_cpus (one file is one task)")
            sub.add_argument("--time-box", type=int, default=1800, help="seconds before the run is interrupted")
    args = parser.parse_args()
    if args.verb == "build":
        out = Path(args.out) if args.out else WORK / f"crawl-{args.size_mb:g}mb.warc.gz"
        print(json.dumps(build(out, args.size_mb), indent=1))
    else:
        run(args)


if __name__ == "__main__":
    main()
