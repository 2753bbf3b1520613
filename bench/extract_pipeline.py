"""Extract and language ID end to end: WARC files in, English documents out, per page and core.

    .venv/bin/python bench/extract_pipeline.py one-core [--copies 2] [--rows ROW,...] [--pin 0]
    .venv/bin/python bench/extract_pipeline.py scaling [--copies 3] [--extractor trafilatura] [--repeats 1]

Input: the 7 sample WARCs `samples/warc/*.warc.gz` (257 HTML pages, as `stages.extract` reads
them), copied `--copies` times under distinct names (`c000-<name>.warc.gz`, ...) into the work
folder, so that the run is long enough for start-up not to dominate. The same files feed every row,
and every row's pages/s divides by the same number: the HTML pages `stages.extract` reads in them
(257 x copies); each row's own count of pages it looked at is printed beside it.

Rows of `one-core` (each a fresh process, all pinned to core `--pin` with sched_setaffinity,
which the processes they start inherit):
  cli-<extractor>       `python -m pipeline run CONFIG --stages extract,langid` with run.num_cpus: 1,
                        stages.extract.extractor <extractor>, min_text_chars 200, timeout_s 5;
                        langid en, threshold 0.5, samples/models/lid.176.ftz: the embedded Ray, the
                        parquet shards, manifests and all
  direct-<extractor>    the same two stage functions, `stages.extract.extract_warc` then
                        `stages.langid.identify_languages`, called file by file in one process, no Ray
  datatrove-ours        datatrove 0.10.1's LocalPipelineExecutor(tasks=1, workers=1) running
                        WarcReader -> Trafilatura -> LanguageFilter(en, 0.5), Trafilatura with the
                        settings of our trafilatura path (favour_precision=False, deduplicate=False,
                        fast=False, include_tables=True, comments off, timeout 5 s)
  datatrove-default     the same with datatrove's Trafilatura defaults (favour_precision=True,
                        deduplicate=True, timeout 1 s); LanguageFilter loads the bundled lid.176.ftz
                        (datatrove would download lid.176.bin) and predicts all 176 labels, as it does
  bare-warcio-trafilatura   warcio ArchiveIterator -> 200 text/html responses -> trafilatura.extract
                        (our settings) -> fastText predict, no parquet, no timeout
  bare-fastwarc-resiliparse FastWARC -> resiliparse extract_plain_text (our settings) -> fastText:
                        the floor of the fast path

Timing: CPU time is the sum over every process of the command (the Ray processes too), read from
/proc every 0.2 s and once more at each marker and at exit; `getrusage(RUSAGE_CHILDREN)` would miss
the Ray workers, which the raylet reaps without accounting them. "Whole" is the command from start
to exit (imports, Ray start and shutdown included); "work" excludes start-up: for the CLI rows from
the run's first planning log line ("[extract] N shards: ...", printed once Ray is up) to its last
shard line, for the others from just after the imports to the end of the loop (model loading
inside). CPU time is what the ratios use: the machine is shared, so wall time is noisier.

`scaling` runs the CLI (extract+langid) over 7 x --copies files with run.num_cpus 1 and 2, in turn,
unpinned, and prints the wall and CPU ratios.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_WARCS = sorted((ROOT / "samples" / "warc").glob("*.warc.gz"))
LID_MODEL = ROOT / "samples" / "models" / "lid.176.ftz"
WORK = ROOT / "runs" / "bench" / "extract_pipeline"
MIN_TEXT_CHARS = 200
TIMEOUT_S = 5.0
LANGUAGES = ["en"]
THRESHOLD = 0.5
# Drop reasons of records that never became HTML pages (stages.extract.records).
RECORD_REASONS = re.compile(r"^(record_type_|not_http$|http_status_|not_html$|unsupported_encoding$|"
                            r"html_too_large$|empty_payload$|corrupt_)")
ROWS = ["cli-trafilatura", "direct-trafilatura", "cli-resiliparse", "direct-resiliparse", "datatrove-ours",
        "datatrove-default", "bare-warcio-trafilatura", "bare-fastwarc-resiliparse"]
BEGIN, END = "BENCH-BEGIN", "BENCH-END "
PR_SET_CHILD_SUBREAPER = 36


# ---------------------------------------------------------------------------------------------
# Measuring a command: wall time, CPU time of all its processes, their peak RSS, its output lines


class ProcessTree:
    """CPU seconds and peak RSS of every process below this one, sampled from /proc.

    This process is made a child subreaper, so that processes whose parent died (Ray's, at
    shutdown) are re-parented here rather than to init, and stay in view."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.cpu: dict[tuple[int, float], float] = {}
        self.hwm_kb: dict[tuple[int, float], int] = {}
        self.names: dict[tuple[int, float], set[str]] = {}
        self.lock = threading.Lock()

    def sample(self) -> float:
        """Refresh every process's figures; return the total CPU seconds so far."""
        with self.lock:
            for proc in self.me.children(recursive=True):
                try:
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    self.cpu[key] = times.user + times.system
                    self.names.setdefault(key, set()).add(" ".join(proc.cmdline())[:80] or proc.name())
                    self.hwm_kb[key] = max(self.hwm_kb.get(key, 0), _vm_hwm_kb(proc.pid))
                except self.psutil.Error:
                    continue
            return sum(self.cpu.values())

    def processes(self) -> list[dict]:
        return sorted(
            ({"pid": k[0], "cpu_s": round(v, 2), "peak_rss_mb": round(self.hwm_kb.get(k, 0) / 1024, 1),
              "names": sorted(self.names.get(k, ()))} for k, v in self.cpu.items()),
            key=lambda p: -p["cpu_s"],
        )


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def measure(cmd: list[str], *, cpus: set[int] | None = None, log_path: Path | None = None,
            echo: re.Pattern | None = None, interval: float = 0.2, env: dict | None = None) -> dict:
    """Run `cmd`; return its exit status, wall and CPU seconds, per-process figures and its
    output lines, each with its arrival time and the total CPU seconds at that moment when the
    line is a marker (BENCH-*, Ray's start, stage planning, shard done, progress)."""
    _become_subreaper()
    tree = ProcessTree()
    tree.sample()
    baseline = dict(tree.cpu)  # nothing should be running; kept out of the figures if it is
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            preexec_fn=preexec, cwd=ROOT, env=env)
    lines: list[dict] = []
    marker = re.compile(r"BENCH-|starting Ray|\] \d+ shards: |\] \d+/\d+ shard |ETA|pages/s|MB/s")
    log = open(log_path, "w") if log_path else None

    def read() -> None:
        for text in proc.stdout:
            text = text.rstrip("\n")
            entry = {"t": time.monotonic() - start, "line": text}
            if marker.search(text):
                entry["cpu"] = tree.sample()
            lines.append(entry)
            if log:
                log.write(f"{entry['t']:9.3f} {text}\n")
            if echo and echo.search(text):
                print(f"      | {text[:150]}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            tree.sample()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: still readable
    wall = time.monotonic() - start
    stop.set()
    poller.join()
    total = tree.sample()
    proc.wait()
    reader.join(timeout=30)
    if log:
        log.close()
    _reap_orphans(tree)
    total = max(total, tree.sample()) - sum(baseline.values())
    before = {pid for pid, _ in baseline}
    return {"rc": proc.returncode, "wall": wall, "cpu": total, "lines": lines,
            "processes": [p for p in tree.processes() if p["pid"] not in before]}


def _reap_orphans(tree: ProcessTree, timeout: float = 20.0) -> None:
    """Wait for processes re-parented to this one (Ray's, after shutdown); sample them as they go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            tree.sample()
            time.sleep(0.1)


def _first(lines: list[dict], pattern: str) -> dict | None:
    return next((entry for entry in lines if re.search(pattern, entry["line"])), None)


def _last(lines: list[dict], pattern: str) -> dict | None:
    return next((entry for entry in reversed(lines) if re.search(pattern, entry["line"])), None)


# ---------------------------------------------------------------------------------------------
# Inputs


def prepare_inputs(folder: Path, copies: int) -> list[Path]:
    """`copies` copies of each sample WARC under distinct names (shard names must be unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"c{i:03d}-{warc.name}": warc for i in range(copies) for warc in SAMPLE_WARCS}
    for stale in folder.glob("*.warc.gz"):
        if stale.name not in wanted:
            stale.unlink()
    for name, warc in wanted.items():
        target = folder / name
        if not target.exists() or target.stat().st_size != warc.stat().st_size:
            shutil.copyfile(warc, target)
    return sorted(folder / name for name in wanted)


def html_pages(warcs: list[Path]) -> int:
    """HTML pages `stages.extract` reads in `warcs` (records that become pages, before extraction)."""
    from stages.accounting import ShardStats
    from stages.extract import read_html_pages

    return sum(sum(1 for _ in read_html_pages(str(w), ShardStats(), 5_000_000)) for w in warcs)


def pages_of(stats: dict) -> int:
    """Pages an extract shard (or several) read: records minus record-level drops."""
    return stats["docs_in"] - sum(n for reason, n in stats["dropped"].items() if RECORD_REASONS.match(reason))


def write_config(path: Path, inputs: Path, output: Path, extractor: str, num_cpus: int) -> Path:
    import yaml

    config = {
        "run": {"output": str(output), "num_cpus": num_cpus},
        "inputs": {"common_crawl": [str(inputs / "*.warc.gz")]},
        "stages": {
            "extract": {"extractor": extractor, "min_text_chars": MIN_TEXT_CHARS, "timeout_s": TIMEOUT_S},
            "langid": {"model": str(LID_MODEL), "languages": LANGUAGES, "threshold": THRESHOLD},
            "quality_classifier": {"enabled": False},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def manifest_totals(run_dir: Path, stage: str) -> dict:
    from manifests.store import read_manifest

    rows = read_manifest(run_dir, stage)
    dropped: dict[str, int] = {}
    for row in rows:
        for reason, n in row["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    return {"shards": len(rows), "docs_in": sum(r["docs_in"] for r in rows), "seconds": {r["shard"]: r["seconds"] for r in rows},
            "docs_out": sum(r["docs_out"] for r in rows), "dropped": dropped,
            "task_s": sum(r["seconds"] for r in rows), "status": sorted({r["status"] for r in rows})}


# ---------------------------------------------------------------------------------------------
# The rows that run inside a process of their own (`_row`)


def _begin() -> None:
    print(BEGIN, flush=True)


def _end(**figures) -> None:
    print(END + json.dumps(figures), flush=True)


def row_direct(inputs: Path, out: Path, extractor: str) -> None:
    from stages.extract import extract_warc
    from stages.langid import identify_languages

    warcs = sorted(inputs.glob("*.warc.gz"))
    _begin()
    pages = kept = 0
    for warc in warcs:
        name = warc.name.removesuffix(".warc.gz")
        extracted, labelled = out / "extract" / f"{name}.parquet", out / "langid" / f"{name}.parquet"
        extracted.parent.mkdir(parents=True, exist_ok=True)
        labelled.parent.mkdir(parents=True, exist_ok=True)
        stats = extract_warc(str(warc), str(extracted), extractor=extractor, clean=True,
                             min_text_chars=MIN_TEXT_CHARS, max_html_bytes=5_000_000, timeout_s=TIMEOUT_S)
        pages += pages_of({"docs_in": stats.docs_in, "dropped": dict(stats.dropped)})
        kept += identify_languages(str(extracted), str(labelled), model=str(LID_MODEL), languages=LANGUAGES,
                                   threshold=THRESHOLD).docs_out
    _end(pages=pages, kept=kept)


def row_datatrove(inputs: Path, out: Path, settings: str) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.utils.lid import FT176LID

    class LocalFT176LID(FT176LID):
        """lid.176 from the bundled file instead of a download (datatrove fetches lid.176.bin)."""

        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(str(LID_MODEL))
            return self._model

    if settings == "ours":  # stages.extract.extractors.trafilatura_extractor's, and its 5 s limit
        extractor = Trafilatura(favour_precision=False, deduplicate=False, timeout=TIMEOUT_S, fast=False,
                                include_tables=True)
    else:
        extractor = Trafilatura()
    language = LanguageFilter(languages=LANGUAGES, language_threshold=THRESHOLD)
    language.model = LocalFT176LID(LANGUAGES)
    executor = LocalPipelineExecutor(
        pipeline=[WarcReader(str(inputs), glob_pattern="*.warc.gz"), extractor, language],
        tasks=1, workers=1, logging_dir=str(out / "logs"),
    )
    _begin()
    stats = executor.run()
    steps = json.loads(stats.to_json()) if hasattr(stats, "to_json") else None
    _end(pages=_datatrove_count(steps, 0), kept=_datatrove_count(steps, 2), steps=steps)


def _datatrove_count(steps, index: int) -> int | None:
    """Documents a datatrove step passed on (its `forwarded` stat; the reader's `documents`)."""
    try:
        step = steps[index]["stats"]
        value = step.get("forwarded", step.get("documents"))
        return value["total"] if isinstance(value, dict) else value
    except (TypeError, KeyError, IndexError):
        return None


def row_bare_warcio(inputs: Path) -> None:
    import fasttext
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    warcs = sorted(inputs.glob("*.warc.gz"))
    charset = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)
    spaces = re.compile(r"\s+")
    _begin()
    model = fasttext.load_model(str(LID_MODEL))
    pages = kept = 0
    for warc in warcs:
        with open(warc, "rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type != "response" or record.http_headers is None:
                    continue
                content_type = record.http_headers.get_header("Content-Type") or ""
                if record.http_headers.get_statuscode() != "200" or "html" not in content_type.lower():
                    continue
                body = record.content_stream().read()
                match = charset.search(content_type)
                try:
                    html = body.decode(match.group(1) if match else "utf-8", errors="replace")
                except LookupError:
                    html = body.decode("utf-8", errors="replace")
                pages += 1
                text = trafilatura.extract(html, fast=False, include_comments=False, include_tables=True)
                if text and len(text) >= MIN_TEXT_CHARS:
                    (label,), (score,) = model.predict(spaces.sub(" ", text).strip(), k=1)
                    kept += label == "__label__en" and score >= THRESHOLD
    _end(pages=pages, kept=int(kept))


def row_bare_fastwarc(inputs: Path) -> None:
    import fasttext
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    warcs = sorted(inputs.glob("*.warc.gz"))
    spaces = re.compile(r"\s+")
    _begin()
    model = fasttext.load_model(str(LID_MODEL))
    pages = kept = 0
    for warc in warcs:
        with open(warc, "rb") as stream:
            for record in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True,
                                          auto_decode="all"):
                if record.http_headers is None or record.http_headers.status_code != 200:
                    continue
                if record.http_content_type not in ("text/html", "application/xhtml+xml"):
                    continue
                body = record.reader.read()
                html = bytes_to_str(body, record.http_charset or detect_encoding(body))
                pages += 1
                text = extract_plain_text(html, main_content=True, preserve_formatting=True, comments=False,
                                          alt_texts=False, list_bullets=False)
                if text and len(text) >= MIN_TEXT_CHARS:
                    (label,), (score,) = model.predict(spaces.sub(" ", text).strip(), k=1)
                    kept += label == "__label__en" and score >= THRESHOLD
    _end(pages=pages, kept=int(kept))


def run_row_here(kind: str, inputs: Path, out: Path) -> None:
    if kind.startswith("direct-"):
        row_direct(inputs, out, kind.removeprefix("direct-"))
    elif kind.startswith("datatrove-"):
        row_datatrove(inputs, out, kind.removeprefix("datatrove-"))
    elif kind == "bare-warcio-trafilatura":
        row_bare_warcio(inputs)
    elif kind == "bare-fastwarc-resiliparse":
        row_bare_fastwarc(inputs)
    else:
        raise SystemExit(f"unknown row {kind!r}")


# ---------------------------------------------------------------------------------------------
# Running rows from the driver


def run_cli(inputs: Path, work: Path, label: str, extractor: str, num_cpus: int, *, stages: str = "extract,langid",
            cpus: set[int] | None = None, echo: re.Pattern | None = None) -> dict:
    out = work / "out" / label
    shutil.rmtree(out, ignore_errors=True)
    config = write_config(work / f"{label}.yaml", inputs, out, extractor, num_cpus)
    cmd = [sys.executable, "-m", "pipeline", "run", str(config), "--stages", stages]
    result = measure(cmd, cpus=cpus, log_path=work / f"{label}.log", echo=echo)
    lines, last_stage = result["lines"], stages.split(",")[-1]
    ray = _first(lines, r"starting Ray")
    planned = _first(lines, r"\] \d+ shards: ")
    done = _last(lines, rf"\[{re.escape(last_stage)}\] (\d+)/\1 shard ")
    if result["rc"] != 0 or not (planned and done):
        tail = "\n".join(e["line"] for e in lines[-25:])
        raise RuntimeError(f"{label}: the pipeline failed (exit {result['rc']}):\n{tail}")
    extract = manifest_totals(out, "extract")
    shard_s = dict(extract["seconds"])
    if last_stage != "extract":
        for shard, seconds in manifest_totals(out, last_stage)["seconds"].items():
            shard_s[shard] = shard_s.get(shard, 0.0) + seconds
    result.update(shard_s=shard_s,
        pages=pages_of(extract), extract=extract,
        kept=manifest_totals(out, last_stage)["docs_out"] if last_stage != "extract" else extract["docs_out"],
        ray_start_s=planned["t"] - ray["t"] if ray else None,
        work_wall=done["t"] - planned["t"], work_cpu=done["cpu"] - planned["cpu"],
        shutdown_s=result["wall"] - done["t"],
    )
    shutil.rmtree(out, ignore_errors=True)
    return result


def run_python_row(kind: str, inputs: Path, work: Path, cpus: set[int] | None) -> dict:
    out = work / "out" / kind
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_row", kind, "--inputs", str(inputs), "--out", str(out)]
    result = measure(cmd, cpus=cpus, log_path=work / f"{kind}.log")
    begin, end = _first(result["lines"], "^" + BEGIN), _last(result["lines"], "^" + END)
    if result["rc"] != 0 or not (begin and end):
        tail = "\n".join(e["line"] for e in result["lines"][-25:])
        raise RuntimeError(f"{kind} failed (exit {result['rc']}):\n{tail}")
    figures = json.loads(end["line"].removeprefix(END))
    result.update(pages=figures["pages"], kept=figures["kept"], work_wall=end["t"] - begin["t"],
                  work_cpu=end["cpu"] - begin["cpu"], ray_start_s=None)
    shutil.rmtree(out, ignore_errors=True)
    return result


def one_core(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(work / "inputs", args.copies)
    pages = html_pages(SAMPLE_WARCS) * args.copies
    cpus = {args.pin} if args.pin >= 0 else None
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else ROWS
    print(f"{len(inputs)} WARC files ({args.copies} copies of {len(SAMPLE_WARCS)} samples, "
          f"{sum(p.stat().st_size for p in inputs) / 1e6:.1f} MB), {pages:,} HTML pages; "
          f"pinned to {sorted(cpus) if cpus else 'no core'}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, dict] = {}
    missing = _datatrove_missing()
    for kind in rows:
        if kind.startswith("datatrove-") and missing:
            print(f"  {kind}: skipped, datatrove's WarcReader and LanguageFilter need {', '.join(missing)} "
                  "(.venv/bin/pip install faust-cchardet python-magic fasteners)", flush=True)
            continue
        print(f"  {kind} ...", flush=True)
        if kind.startswith("cli-"):
            result = run_cli(inputs[0].parent, work, kind, kind.removeprefix("cli-"), 1, cpus=cpus)
        else:
            result = run_python_row(kind, inputs[0].parent, work, cpus)
        result["load"] = os.getloadavg()[0]
        results[kind] = {k: v for k, v in result.items() if k != "lines"}
        print(f"    wall {result['wall']:.1f}s, CPU {result['cpu']:.1f}s; work wall {result['work_wall']:.1f}s, "
              f"CPU {result['work_cpu']:.1f}s; {result['pages']} pages seen, {result['kept']} kept", flush=True)
    summary = {"copies": args.copies, "files": len(inputs), "pages": pages, "pinned": sorted(cpus) if cpus else None,
               "rows": results}
    (work / "one_core.json").write_text(json.dumps(summary, indent=1, default=str))
    print_one_core(summary)


def _datatrove_missing() -> list[str]:
    """The modules datatrove's WarcReader and LanguageFilter import that it does not install."""
    import importlib.util

    return [name for name, module in (("faust-cchardet", "cchardet"), ("python-magic", "magic"),
                                      ("fasteners", "fasteners")) if importlib.util.find_spec(module) is None]


def print_one_core(summary: dict) -> None:
    pages, rows = summary["pages"], summary["rows"]
    refs = {name: rows[name] for name in ("datatrove-ours", "datatrove-default") if name in rows}

    def ratio(row: dict, ref: str, key: str) -> str:
        return f"{refs[ref][key] / row[key]:.2f}x" if ref in refs else "-"

    print(f"\n{pages:,} HTML pages ({summary['files']} files); pages/s = {pages:,} / seconds; "
          "ratios on CPU time, against datatrove's pipeline with our trafilatura settings / its defaults\n")
    print("| row | pages seen | kept | whole: wall s | CPU s | pages/CPU-s | vs dt ours | vs dt default "
          "| Ray start s | work: wall s | CPU s | pages/s wall | pages/CPU-s | vs dt ours | vs dt default |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        ray = f"{r['ray_start_s']:.1f}" if r.get("ray_start_s") is not None else "-"
        print(f"| {name} | {r['pages']:,} | {r['kept']:,} | {r['wall']:.1f} | {r['cpu']:.1f} | {pages / r['cpu']:,.0f} "
              f"| {ratio(r, 'datatrove-ours', 'cpu')} | {ratio(r, 'datatrove-default', 'cpu')} | {ray} "
              f"| {r['work_wall']:.1f} | {r['work_cpu']:.1f} | {pages / r['work_wall']:,.0f} | {pages / r['work_cpu']:,.0f} "
              f"| {ratio(r, 'datatrove-ours', 'work_cpu')} | {ratio(r, 'datatrove-default', 'work_cpu')} |")
    print()
    for extractor in ("trafilatura", "resiliparse"):
        cli, direct = rows.get(f"cli-{extractor}"), rows.get(f"direct-{extractor}")
        if cli and direct:
            print(f"pipeline overhead over the direct calls, {extractor}: work CPU "
                  f"{cli['work_cpu'] / direct['work_cpu'] - 1:+.1%} ({cli['work_cpu']:.1f} vs {direct['work_cpu']:.1f} s), "
                  f"whole-command CPU {cli['cpu'] / direct['cpu'] - 1:+.1%}, work wall "
                  f"{cli['work_wall'] / direct['work_wall'] - 1:+.1%}")


def lpt_makespan(seconds: list[float], workers: int) -> float:
    """The wall time of tasks of these durations run largest first on `workers` workers."""
    loads = [0.0] * workers
    for duration in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += duration
    return max(loads)


def scaling(args: argparse.Namespace) -> None:
    work = Path(args.work) / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(work / "inputs", args.copies)
    pages = html_pages(SAMPLE_WARCS) * args.copies
    print(f"{len(inputs)} WARC files ({args.copies} copies of the samples), {pages:,} HTML pages, extractor "
          f"{args.extractor}, unpinned; load average {os.getloadavg()[0]:.2f}", flush=True)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for num_cpus in (1, 2):
            label = f"scaling-{args.extractor}-{num_cpus}cpu"
            result = run_cli(inputs[0].parent, work, label, args.extractor, num_cpus)
            result["load"] = os.getloadavg()[0]
            runs[num_cpus].append({k: v for k, v in result.items() if k != "lines"})
            print(f"  num_cpus {num_cpus}: wall {result['wall']:.1f}s, CPU {result['cpu']:.1f}s; work wall "
                  f"{result['work_wall']:.1f}s, CPU {result['work_cpu']:.1f}s; {result['kept']} kept "
                  f"(load {result['load']:.2f})", flush=True)
    summary = {"copies": args.copies, "files": len(inputs), "pages": pages, "extractor": args.extractor, "runs": runs}
    (work / f"scaling-{args.extractor}.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n| num_cpus | whole: wall s | CPU s | work: wall s | CPU s | pages/s (work wall) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (1, 2):
        for r in runs[n]:
            print(f"| {n} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['work_wall']:.1f} | {r['work_cpu']:.1f} "
                  f"| {pages / r['work_wall']:,.0f} |")
    for a, b in zip(runs[1], runs[2]):
        print(f"2 CPUs vs 1: whole wall {a['wall'] / b['wall']:.2f}x, work wall {a['work_wall'] / b['work_wall']:.2f}x; "
              f"work CPU {b['work_cpu'] / a['work_cpu']:.2f}x of the 1-CPU run's")
    for a in runs[1]:
        tasks = list(a["shard_s"].values())
        print(f"balance bound from the 1-CPU run's {len(tasks)} task times, largest first on 2 workers: "
              f"{sum(tasks) / lpt_makespan(tasks, 2):.2f}x (largest task {max(tasks):.1f}s of {sum(tasks):.1f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    one = verbs.add_parser("one-core", help="every row on one core, same inputs")
    one.add_argument("--copies", type=int, default=2, help="copies of the 7 sample WARCs (default 2)")
    one.add_argument("--rows", help=f"comma-separated subset of {','.join(ROWS)}")
    one.add_argument("--pin", type=int, default=0, help="core to pin every row to (-1: none)")
    scale = verbs.add_parser("scaling", help="the CLI with run.num_cpus 1 and 2")
    scale.add_argument("--copies", type=int, default=3, help="copies of the 7 sample WARCs (default 3: 21 files)")
    scale.add_argument("--extractor", default="trafilatura", choices=["trafilatura", "resiliparse"])
    scale.add_argument("--repeats", type=int, default=1)
    for sub in (one, scale):
        sub.add_argument("--work", default=str(WORK), help=f"work folder (default {WORK.relative_to(ROOT)})")
    row = verbs.add_parser("_row", help="(internal) run one row in this process")
    row.add_argument("kind")
    row.add_argument("--inputs", required=True)
    row.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.verb == "one-core":
        one_core(args)
    elif args.verb == "scaling":
        scaling(args)
    else:
        run_row_here(args.kind, Path(args.inputs), Path(args.out))


if __name__ == "__main__":
    main()
