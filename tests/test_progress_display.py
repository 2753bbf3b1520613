"""A stage's progress in a real pseudo-terminal: a bar redrawn in place, log lines printed above it,
and the run's log file given plain lines without a control code."""

import logging
import os
import re
import select
import sys

import pytest

import pipeline.progress_display
from pipeline.progress import StageProgress
from pipeline.progress_display import LiveBar, PlainLines, stage_display


def _drain(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture
def terminal(monkeypatch):
    """A pseudo-terminal, with a log handler writing to it as logging.basicConfig sets one (the test
    makes it sys.stderr: pytest's capture sets its own between a fixture and the test)."""
    controller, device = os.openpty()
    stderr = os.fdopen(device, "w", buffering=1)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "80")
    for variable in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(variable, raising=False)
    handler = logging.StreamHandler(stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    yield controller, stderr, handler
    root.removeHandler(handler)
    stderr.close()
    os.close(controller)


def test_a_terminal_gets_a_live_bar_and_the_log_file_plain_lines(terminal, tmp_path, monkeypatch):
    controller, stderr, terminal_handler = terminal
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(pipeline.progress_display, "REFRESH_S", 0.0)
    log_file = logging.FileHandler(tmp_path / "pipeline.log")
    log = logging.getLogger("pipeline")
    log.addHandler(log_file)
    log.setLevel(logging.INFO)
    progress = StageProgress("extract", total_shards=2, total_bytes=200_000_000)
    try:
        with stage_display(progress) as display:
            assert isinstance(display, LiveBar)
            progress.finish("a", {"docs_in": 100, "docs_out": 40}, input_bytes=100_000_000)
            display.show()
            log.info("shard a written")
        assert terminal_handler.stream is sys.stderr, "the terminal's handler is given back its stream"
    finally:
        log.removeHandler(log_file)
        log_file.close()

    screen = _drain(controller)
    assert "\x1b[" in screen, "redrawn in place with control codes"
    assert "[extract]" in screen and "1/2 shards · ETA " in screen
    assert "shard a written" in screen
    assert "[extract] 1/2 shards · 100 docs" not in screen, "the plain lines stay out of the terminal"
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"\[extract\] [━╸╺]{20} 1/2 shards", shown), "a narrow terminal keeps the name and the bar"
    written = (tmp_path / "pipeline.log").read_text()
    assert "shard a written" in written and "[extract] 1/2 shards · 100 docs in (" in written
    assert "\x1b" not in written and "\r" not in written


def test_output_that_is_not_a_terminal_gets_plain_lines(tmp_path, monkeypatch):
    with open(tmp_path / "stderr", "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        monkeypatch.setenv("FORCE_COLOR", "1")  # as some CI sets: still no bar in a file
        with stage_display(StageProgress("langid", total_shards=3, total_bytes=0)) as display:
            assert isinstance(display, PlainLines)
