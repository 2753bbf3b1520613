"""The runner's progress lines and its fusing of per-document stages, on a real local Ray."""

import logging
from pathlib import Path

import pytest
import ray

import pipeline.progress_display
import stages.extract.shard
from manifests.store import read_manifest
from pipeline.config import load_config
from pipeline.progress import ProgressBoard, StageProgress, format_duration, shard_reporter
from pipeline.registry import STAGES
from pipeline.runner import DISABLED, fused_steps, run_pipeline
from stages.extract import extract_warc
from tests.support import SAMPLES, write_config

pytestmark = pytest.mark.usefixtures("ray_cluster")
TWO = ["wget-2024-academic-0", "wget-2024-academic-1"]


def test_progress_line_adds_running_shards_to_finished_ones():
    progress = StageProgress("extract", total_shards=3, total_bytes=300_000_000)
    progress.finish("a", {"docs_in": 100, "docs_out": 40}, input_bytes=100_000_000)
    progress.running = {"b": (50, 20, 50_000_000)}
    line = progress.line()
    assert line.startswith("[extract] 1/3 shards · 150 docs in (")
    assert ", 60 out · 150.0/300.0 MB (" in line and " MB/s) · ETA " in line


def test_durations_read_as_a_person_writes_them():
    assert [format_duration(s) for s in (4.4, 61, 3600 * 2 + 60 * 5 + 9)] == ["4s", "1m01s", "2h05m"]


def test_per_document_stages_fuse_with_the_stage_they_read():
    assert fused_steps(["extract", "langid", "line_dedup_hash"]) == [["extract", "langid"], ["line_dedup_hash"]]
    assert fused_steps(["perplexity", "quality", "near_dedup_signatures"]) == [
        ["perplexity", "quality"], ["near_dedup_signatures"]]
    assert fused_steps(["langid", "quality"]) == [["langid"], ["quality"]]
    # Without the perplexity filter, the quality stage reads line dedup's shards, and fuses with it.
    without_perplexity = {name: DISABLED if name.startswith("perplexity") else "hash" for name in STAGES}
    assert fused_steps(["line_dedup", "quality"], without_perplexity) == [["line_dedup", "quality"]]
    assert fused_steps(["line_dedup", "quality"]) == [["line_dedup"], ["quality"]]


def test_a_running_shard_reports_to_the_board(tmp_path, monkeypatch):
    monkeypatch.setattr(stages.extract.shard, "PROGRESS_EVERY_S", 0.0)
    board = ProgressBoard.remote()
    warc = SAMPLES / "warc" / "wget-2024-academic-0.warc.gz"
    stats = extract_warc(str(warc), str(tmp_path / "out.parquet"), progress=shard_reporter(board, "shard-0"))
    docs_in, docs_out, bytes_read = ray.get(board.snapshot.remote([]))["shard-0"]
    assert 0 < docs_in <= stats.docs_in and docs_out <= stats.docs_out
    assert 0 < bytes_read < warc.stat().st_size
    assert ray.get(board.snapshot.remote(["shard-0"])) == {}  # a finished shard is forgotten
    ray.kill(board)


def test_extract_and_langid_run_fused_with_progress_in_terminal_and_log(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(pipeline.progress_display, "REFRESH_S", 0.2)
    config = load_config(write_config(tmp_path, warcs=TWO))
    with caplog.at_level(logging.INFO, logger="pipeline"):
        run_pipeline(config, ["extract", "langid"])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[extract+langid] ")]
    assert lines and all(" shards · " in line and " MB/s) · ETA " in line for line in lines)
    log_file = (Path(config.output_dir) / "logs" / "pipeline.log").read_text()
    assert lines[-1] in log_file
    extract, langid = (read_manifest(config.output_dir, s) for s in ("extract", "langid"))
    assert [r["shard"] for r in extract] == [r["shard"] for r in langid] == TWO
    assert all(r["status"] == "done" for r in extract + langid)

    # The second stage's output lost: only it reruns, for that shard only.
    Path(langid[0]["output"]).unlink()
    run_pipeline(config, ["extract", "langid"])
    assert read_manifest(config.output_dir, "extract") == extract
    again = read_manifest(config.output_dir, "langid")
    assert again[1] == langid[1] and again[0]["finished_at"] > langid[0]["finished_at"]
    assert {k: v for k, v in again[0].items() if k not in ("finished_at", "seconds")} == {
        k: v for k, v in langid[0].items() if k not in ("finished_at", "seconds")}
