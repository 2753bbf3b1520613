"""The run report: one self-contained page from the session's full run, every plot drawn in a real
browser (headless Chromium), and the page of a run with a failed shard naming it and its error."""

import contextlib
import io
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from manifests.report import run_data, write_report
from manifests.store import read_manifest, record_row

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian's `chromium`; `make setup` installs it as root): "
                             "the report is not rendered in a browser")

FIGURES = {f"funnel-{s}" for s in ("common_crawl", "wikipedia", "arxiv", "stackexchange", "github", "books")} | {
    "languages", "language-score", "perplexity", "quality-score", "cluster-size", "tokens", "mixture", "training",
    "stage-time"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class RenderedPage(HTMLParser):
    """From the DOM Chromium dumps: the render marker, the recorded script errors, and for each
    figure element the plotly SVGs drawn inside it."""

    def __init__(self, dom: str):
        super().__init__()
        self.status: dict = {}
        self.errors: list[str] = []
        self.plots: dict[str, int] = {}
        self._open: list[tuple[str, str | None]] = []  # (tag, the figure or error list it opens)
        self.feed(dom)

    def _inside(self, kind: str) -> str | None:
        return next((owner for tag, owner in reversed(self._open) if owner and owner.startswith(kind)), None)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        owner = None
        if "report-figure" in classes:
            owner = "figure:" + attrs["id"]
            self.plots[attrs["id"]] = 0
        elif attrs.get("id") == "report-errors":
            owner = "errors"
        elif attrs.get("id") == "report-status":
            self.status = attrs
        if "main-svg" in classes and (figure := self._inside("figure:")):
            self.plots[figure.removeprefix("figure:")] += 1
        if tag not in VOID:
            self._open.append((tag, owner))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self._open.pop()

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        if data.strip() and self._inside("errors"):
            self.errors.append(data.strip())


def render(page: str, screenshot: Path | None = None) -> RenderedPage:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000", "--dump-dom"]
    if screenshot:
        command += [f"--screenshot={screenshot}", "--window-size=1280,2400"]
    result = subprocess.run([*command, Path(page).as_uri()], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return RenderedPage(result.stdout)


@pytest.fixture(scope="module")
def report(finished_run):
    from pipeline.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["report", str(finished_run.output_dir)]) == 0
    page = finished_run.output_dir / "report" / "index.html"
    assert printed.getvalue() == f"report: {page}\n"
    return page


def test_report_is_one_page_that_needs_nothing_else(report):
    html = report.read_text()
    assert html.count(get_plotlyjs()) == 1  # the library, inline, once
    markup = html.replace(get_plotlyjs(), "")
    assert "src=" not in markup and "<link" not in markup and "@import" not in markup  # nothing loaded from elsewhere
    for key in FIGURES:
        assert f"id='{key}'" in html, key
    assert "from 4 of 4 shards" in html  # what the histograms were drawn from
    assert "dropped: language:" in html and "<h4 class=good>kept</h4>" in html  # samples beside each other
    assert "no shard failed" in html


@needs_chromium
def test_every_plot_renders_in_a_browser_without_script_errors(report):
    screenshot = report.parent / "screenshot.png"
    page = render(str(report), screenshot)
    assert page.errors == []
    assert page.status.get("data-state") == "rendered", page.status
    assert set(page.plots) == FIGURES
    assert int(page.status["data-figures"]) == len(FIGURES)
    drawn = [key for key, svgs in page.plots.items() if svgs]
    assert len(drawn) == len(FIGURES), {k: v for k, v in page.plots.items() if not v}
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000


def test_histograms_read_a_bounded_sample_of_shards(finished_run, tmp_path, monkeypatch):
    monkeypatch.setattr(run_data, "SAMPLE_SHARDS", 2)
    run = tmp_path / "run"
    shutil.copytree(finished_run.output_dir / "manifests", run / "manifests")
    html = Path(write_report(run)).read_text()
    assert "kept (from 2 of 4 shards)" in html and "from 4 of 4 shards" not in html
    assert "run.keep_dropped was off" in html  # the copy has no dropped/ folder


def test_report_of_a_failed_unfinished_run_names_the_shard_and_its_error(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run.output_dir / "manifests", run / "manifests",
                    ignore=shutil.ignore_patterns("train.*"))  # training has not run
    row, damaged = read_manifest(finished_run.output_dir, "langid")[:2]
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nArrowInvalid: <b>not parquet</b> & more'
    now = datetime.now(timezone.utc)
    record_row(run, "langid", {**row, "status": "failed", "error": error, "finished_at": now})
    (tmp_path / "damaged.parquet").write_bytes(b"not parquet")  # a done shard whose output was damaged since
    record_row(run, "langid", {**damaged, "output": str(tmp_path / "damaged.parquet"), "finished_at": now})

    page = Path(write_report(run))
    html = page.read_text()
    assert "1 shard(s) failed" in html and "langid: 1 of 4 shards failed" in html
    assert f"<code>{row['shard']}</code>" in html
    assert "ArrowInvalid: &lt;b&gt;not parquet&lt;/b&gt; &amp; more" in html and "<b>not parquet</b>" not in html
    assert "No training log yet" in html and "training not finished" in html
    assert "Failed shards are not counted: langid (1)" in html
    assert "kept (from 2 of 3 shards)" in html  # the damaged shard is passed over
    if CHROMIUM:
        rendered = render(str(page))
        assert rendered.errors == [] and rendered.status.get("data-state") == "rendered"
        assert all(rendered.plots.values()) and "training" not in rendered.plots
