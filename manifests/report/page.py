"""The report page: one self-contained HTML file (plotly.js inline, no server, no network)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from manifests.report.figure import Figure
from manifests.report.funnel_figures import funnel_figures, source_stages, timing_figure
from manifests.report.run_data import SOURCE_STAGES, RunData, gather
from manifests.report.samples import run_samples
from manifests.report.score_figures import score_figures
from manifests.report.tables import drop_table, failure_list, sample_block, stage_table
from manifests.report.training import read_training
from manifests.report.training_figures import mixture_figure, tokens_figure, training_figure
from pipeline import storage

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 20px 40px;
       color: #222; }
h1 { margin: 18px 0 4px; } h2 { border-bottom: 2px solid #264653; padding-bottom: 3px; margin-top: 34px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 14px 22px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; background: #fff; }
.card h3 { margin: 2px 0; font-size: 15px; } .caption, .note { color: #555; font-size: 12.5px; margin: 4px 0; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b5361b; } .good { color: #1f7a6f; } .status { padding: 8px 12px; border-radius: 6px; background: #eef6f5; }
.status.failed { background: #fbeae5; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; border-top: 1px solid #eee; margin-top: 6px; }
.pair h4 { margin: 6px 0 2px; font-size: 13px; }
.doc { border-left: 3px solid #ccc; margin: 6px 0; padding-left: 8px; }
.doc pre { white-space: pre-wrap; word-break: break-word; font-size: 12px; margin: 2px 0; max-height: 14em;
           overflow: auto; }
.meta { color: #777; font-size: 11.5px; word-break: break-all; } details > summary { cursor: pointer; margin: 8px 0; }
ul.failures li { margin-bottom: 6px; } #report-errors:empty { display: none; }
#report-errors { color: #b5361b; border: 1px solid #b5361b; padding: 6px 24px; }
"""

# Errors are recorded in the page itself (#report-errors), so that a browser test sees them.
ERROR_HOOK = """
function reportError(message) {
  var item = document.createElement('li'); item.textContent = message;
  document.getElementById('report-errors').appendChild(item);
}
window.addEventListener('error', function (e) { reportError(e.message + ' (' + e.filename + ':' + e.lineno + ')'); });
window.addEventListener('unhandledrejection', function (e) { reportError('unhandled rejection: ' + e.reason); });
"""

# Sets #report-status's data-state to "rendered" once every figure is drawn.
RENDER = """
var figures = JSON.parse(document.getElementById('report-figures').textContent);
Promise.all(figures.map(function (f) {
  return Plotly.newPlot(f.key, f.figure.data, f.figure.layout, {responsive: true, displaylogo: false});
})).then(function () {
  var status = document.getElementById('report-status');
  status.dataset.figures = figures.length;
  status.dataset.state = 'rendered';
}, function (error) { reportError('plot failed: ' + error); });
"""


def _figure_card(figure: Figure, extra: str = "") -> str:
    return (f"<div class=card><h3>{escape(figure.title)}</h3><div class=report-figure id='{escape(figure.key)}'>"
            f"</div><p class=caption>{escape(figure.caption)}</p>{extra}</div>")


def _grid(figures: list[Figure | None]) -> str:
    return "<div class=grid>" + "".join(_figure_card(f) for f in figures if f) + "</div>"


def _figures_json(figures: list[Figure]) -> str:
    items = [f'{{"key": {json.dumps(f.key)}, "figure": {pio.to_json(f.plot, validate=False)}}}' for f in figures]
    return ("[" + ",".join(items) + "]").replace("</", "<\\/")  # text in a <script> must not close it


def _status(run: RunData) -> str:
    done = sum(s.done for s in run.stages.values())
    if not run.stages:
        return "<p class=status>Nothing recorded yet: no stage has finished a shard.</p>"
    last = max(s.last_finished for s in run.stages.values())
    state = (f"<b class=bad>{run.failed_count:,} shard(s) failed</b> (listed below)" if run.failed_count
             else "no shard failed")
    finished = "train finished" if run.get("train") and run.get("train").done else "training not finished (or not run)"
    return (f"<p class='status{' failed' if run.failed_count else ''}'>{len(run.stages)} stages recorded, "
            f"{done:,} shards done, {state}; {finished}; last shard recorded {last:%Y-%m-%d %H:%M:%S} UTC.</p>")


def _funnels(run: RunData, figures: list[Figure]) -> str:
    by_key = {f.key: f for f in figures}
    cards = []
    for source in SOURCE_STAGES:
        stages = source_stages(run, source)
        if stages:
            drops = f"<details><summary>drops by reason</summary>{drop_table(stages)}</details>"
            cards.append(_figure_card(by_key[f"funnel-{source}"], drops))
    return "<div class=grid>" + "".join(cards) + "</div>" if cards else "<p class=note>No source stage has run.</p>"


def render(run: RunData) -> str:
    funnels = funnel_figures(run)
    scores = score_figures(run)
    log = read_training(run)
    later = [tokens_figure(run), mixture_figure(run), training_figure(log)]
    timing = timing_figure(run)
    figures = [f for f in [*funnels, *scores, *later, timing] if f]
    samples = {s.stage: s for s in run_samples(run)}
    failures = failure_list(run)
    training_note = "" if log else "<p class=note>No training log yet (RUN_DIR/train/train_log.jsonl).</p>"
    sections = [
        f"<h1>Run report</h1><p class=meta>{escape(str(run.run_dir))} · written "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC from its manifests and shards</p>",
        "<ul id=report-errors></ul>", f"<script>{ERROR_HOOK}</script>",
        f"<div id=report-status data-state=rendering>{_status(run)}</div>",
        f"<h2>Failed shards</h2>{failures}" if failures else "",
        "<h2>What each stage kept and dropped</h2>", _funnels(run, funnels),
        "<h2>Languages and scores</h2>", _grid(scores) if scores else "<p class=note>No crawl scores yet.</p>",
        "<h2>Tokens, mixture and training</h2>", _grid(later), training_note,
        "<h2>Time and throughput</h2>", _grid([timing]), stage_table(run),
        "<h2>Dropped and kept documents</h2>",
        "<p class=note>For each stage's most frequent drop reasons, a few dropped documents beside a few it kept, "
        "from a few of its shards; text cut short.</p>",
        *(sample_block(samples[s], run.stages[s]) for s in samples),
    ]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Run report: "
            f"{escape(str(run.run_dir))}</title><style>{STYLE}</style></head><body>{''.join(sections)}"
            f"<script type=application/json id=report-figures>{_figures_json(figures)}</script>"
            f"<script>{get_plotlyjs()}</script><script>{RENDER}</script></body></html>")


def write_report(run_dir: str | Path) -> str:
    """Write RUN_DIR/report/index.html and return its path."""
    run = gather(run_dir)
    path = run.path("report", "index.html")
    storage.write_text(path, render(run))
    return path
