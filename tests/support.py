"""Shared test helpers: sample paths and small run configs."""

import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
WARCS = sorted((SAMPLES / "warc").glob("*.warc.gz"))
LID_MODEL = SAMPLES / "models" / "lid.176.ftz"

# Small and quick settings; the English WARC samples give enough text for these sizes.
FAST_STAGES = {
    "extract": {"min_text_chars": 200, "timeout_s": 5.0},
    "langid": {"model": str(LID_MODEL), "languages": ["en"], "threshold": 0.5},
    "line_dedup": {"partitions": 3, "min_text_chars": 200},
    "quality": {"url_blocklist": str(SAMPLES / "assets" / "url_blocklist.txt")},
    # Off unless a test gives Wikipedia input to train its models on.
    "perplexity": {"enabled": False, "vocab_size": 2000, "train_memory": "200M", "num_threads": 1},
    "near_dedup": {"partitions": 3},
    # Off unless a test gives Wikipedia input; then a model that trains in a second.
    "quality_classifier": {"enabled": False, "min_chars": 800, "epoch": 25, "dim": 16, "bucket": 20_000,
                           "cutoff": 2_000},
    "tokenizer": {"vocab_size": 1000, "num_threads": 1},
    "tokenize": {"num_threads": 1},
    "train": {"preset": "tiny", "steps": 12, "seq_len": 64, "batch_size": 4, "warmup_steps": 3, "threads": 1},
}
ENGLISH_WARCS = ["wget-2024-academic-0", "wget-2024-academic-1", "cc-main-2024-22-whirlwind"]
# The session's full run (conftest.finished_run): these WARCs and one small real sample of every other source.
SMALL = ["wget-2024-academic-0", "wget-2024-academic-1", "cc-main-2024-22-whirlwind", "cc-main-2020-34-excerpt"]
OTHER_SOURCES = {
    "wikipedia": [str(ROOT / "samples" / "wikipedia" / "enwiki-table-markup.xml.bz2")],
    "arxiv": [str(ROOT / "samples" / "arxiv" / "1802.06067_note-on-cam16")],
    "stackexchange": [str(ROOT / "samples" / "stackexchange" / "*.com")],
    "github": [str(ROOT / "samples" / "github" / "npm_minimist-1.2.8")],
    "books.gutenberg": [str(ROOT / "samples" / "books" / "gutenberg" / "pg1342-0.txt")],
}



def write_config(tmp_path: Path, *, warcs: list[str] | None = None, stages: dict | None = None) -> Path:
    """A run config over copies of some sample WARCs, so tests may alter their inputs."""
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    for warc in WARCS:
        if warcs is None or warc.name.removesuffix(".warc.gz") in warcs:
            shutil.copy(warc, inputs / warc.name)
    config = {
        "run": {"output": str(tmp_path / "run"), "keep_dropped": True},
        "inputs": {"common_crawl": [str(inputs / "*.warc.gz")]},
        "stages": {name: {**FAST_STAGES[name], **(stages or {}).get(name, {})} for name in FAST_STAGES},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_warc(path: Path, pages: list[tuple[str, str]]) -> Path:
    """A gzipped WARC of HTTP 200 HTML responses, one per (url, html) page."""
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, html in pages:
            body = html.encode("utf-8")
            headers = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
                protocol="HTTP/1.1",
            )
            writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body), http_headers=headers))
    return path
