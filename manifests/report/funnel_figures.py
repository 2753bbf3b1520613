"""Per source, the documents each stage kept; per stage, the time its shards took."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from manifests.report.figure import COLORS, Figure, megabytes, styled
from manifests.report.run_data import SOURCE_STAGES, RunData, StageSummary


def source_stages(run: RunData, source: str) -> list[StageSummary]:
    return [run.stages[s] for s in SOURCE_STAGES[source] if s in run.stages]


def _funnel(run: RunData, source: str, stages: list[StageSummary]) -> Figure:
    first = stages[0]
    # A WARC's requests, metadata and other non-page records would dwarf the pages in the funnel.
    records = sum(n for reason, n in first.dropped.items() if reason.startswith("record_type_"))
    labels = [f"{first.stage} input" + (" (pages)" if first.stage == "extract" else "")]
    docs, notes = [first.docs_in - records], [""]
    for summary in stages:
        labels.append(summary.stage)
        docs.append(summary.docs_out)
        notes.append(megabytes(summary.bytes_out))
    tokenized = run.get("tokenize").by_source.get(source) if run.get("tokenize") else None
    if tokenized:
        labels.append("tokenize")
        docs.append(tokenized["docs_out"])
        notes.append(f"{tokenized['tokens']:,} tokens")
    plot = go.Figure(go.Funnel(
        y=labels, x=docs, customdata=notes, marker_color=COLORS["kept"],
        texttemplate="%{value:,} (%{percentInitial:.1%}) %{customdata}", textposition="auto", cliponaxis=False,
        hovertemplate="%{y}: %{value:,} documents out, %{customdata}<extra></extra>",
    ))
    failed = [f"{s.stage} ({s.failed_count:,})" for s in stages if s.failed_count]
    caption = (f"Documents out of each {source} stage (all {first.done:,} finished shards of {first.stage}), "
               "with the bytes it wrote.")
    if records:
        caption += f" The {records:,} WARC records that are not pages (record_type_*) are left out."
    if failed:
        caption += f" Failed shards are not counted: {', '.join(failed)}."
    return Figure(f"funnel-{source}", f"Funnel: {source}", caption,
                  styled(plot, height=120 + 45 * len(labels), margin=dict(l=170, r=110, t=20, b=30)))


def funnel_figures(run: RunData) -> list[Figure]:
    return [_funnel(run, source, stages) for source in SOURCE_STAGES if (stages := source_stages(run, source))]


def timing_figure(run: RunData) -> Figure | None:
    stages = [s for s in run.stages.values() if s.done]
    if not stages:
        return None
    names = [s.stage for s in stages]
    rate = [s.docs_in / s.seconds if s.seconds else 0 for s in stages]
    hover = [f"{s.done:,} shards, {s.docs_in:,} documents in, {megabytes(s.bytes_out)} out "
             f"({s.bytes_out / 1e6 / s.seconds if s.seconds else 0:,.2f} MB/s)" for s in stages]
    plot = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                         subplot_titles=("task seconds", "documents in per task second"))
    plot.add_trace(go.Bar(y=names, x=[s.seconds for s in stages], orientation="h", marker_color=COLORS["line"],
                          customdata=hover, hovertemplate="%{y}: %{x:,.1f} s; %{customdata}<extra></extra>"), 1, 1)
    plot.add_trace(go.Bar(y=names, x=rate, orientation="h", marker_color=COLORS["accent"], customdata=hover,
                          hovertemplate="%{y}: %{x:,.1f} documents/s; %{customdata}<extra></extra>"), 1, 2)
    plot.update_yaxes(autorange="reversed", tickfont_size=10)
    plot.update_xaxes(type="log")
    wall = (max(s.last_finished for s in stages) - min(s.first_finished for s in stages)).total_seconds()
    caption = (f"Summed wall time of each stage's shard tasks and its throughput (manifest columns seconds and "
               f"docs_in), in pipeline order; {sum(s.seconds for s in stages):,.0f} task-seconds in all, "
               f"{wall:,.0f} s from the first shard recorded to the last.")
    return Figure("stage-time", "Time and throughput per stage", caption,
                  styled(plot, height=140 + 18 * len(names), showlegend=False, margin=dict(l=170, r=20, t=40, b=40)))
