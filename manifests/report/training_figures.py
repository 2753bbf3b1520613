"""Tokens per source, the realised data mix against its target, and the training curves."""

from __future__ import annotations

import json

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from manifests.report.figure import COLORS, Figure, styled
from manifests.report.run_data import RunData
from manifests.report.training import TrainingLog
from pipeline import storage
from pipeline.storage import location


def tokens_figure(run: RunData) -> Figure | None:
    tokenize = run.get("tokenize")
    if not tokenize or not tokenize.by_source:
        return None
    sources = sorted(tokenize.by_source, key=lambda s: -tokenize.by_source[s]["tokens"])
    plot = go.Figure(go.Bar(
        x=sources, y=[tokenize.by_source[s]["tokens"] for s in sources], marker_color=COLORS["line"],
        customdata=[tokenize.by_source[s]["docs_out"] for s in sources],
        hovertemplate="%{x}: %{y:,} tokens in %{customdata:,} documents<extra></extra>",
    ))
    caption = f"Tokens each source's clean documents became (tokenize manifest, all {tokenize.done:,} shards)."
    return Figure("tokens", "Tokens per source", caption, styled(plot, yaxis_title="tokens"))


def read_mixture(run: RunData) -> dict | None:
    mixture = run.get("mixture")
    if not mixture or not mixture.sample:
        return None
    path = str(location(mixture.sample[0]["output"]) / "mixture.json")
    return json.loads(storage.read_text(path)) if storage.exists(path) else None


def mixture_figure(run: RunData) -> Figure | None:
    mixture = read_mixture(run)
    if not mixture:
        return None
    table = mixture["table"]
    sources = list(table)
    total = sum(row["tokens"] for row in table.values())
    epochs = [f"{table[s]['epochs']:.2f} epochs, {table[s]['tokens']:,} tokens" for s in sources]
    hover = "%{x}: %{y:.1%}; %{customdata}<extra></extra>"
    plot = go.Figure([
        go.Bar(x=sources, y=[table[s]["tokens"] / total for s in sources], name="share of the tokens the run has",
               marker_color=COLORS["accent"], customdata=epochs, hovertemplate=hover),
        go.Bar(x=sources, y=[table[s]["share"] for s in sources], name="sampling proportion in training (target)",
               marker_color=COLORS["line"], customdata=epochs, hovertemplate=hover),
    ])
    caption = (f"Each source's share of the {mixture['token_budget']:,}-token training budget (mixture.json: the "
               "configured weights renormalised over the sources the run has, or its epochs) against its share of "
               "the tokens the run produced; hover for the epochs it is seen.")
    return Figure("mixture", "Data mixture", caption,
                  styled(plot, barmode="group", yaxis=dict(title="share", tickformat=".0%")))


def training_figure(log: TrainingLog | None) -> Figure | None:
    if log is None or not log.steps:
        return None
    steps = [r["step"] for r in log.steps]
    plot = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.6, 0.2, 0.2])
    plot.add_trace(go.Scatter(x=steps, y=[r["loss"] for r in log.steps], name="training loss",
                              line_color=COLORS["line"]), 1, 1)
    if log.validation:
        plot.add_trace(go.Scatter(x=[r["step"] for r in log.validation], y=[r["val_loss"] for r in log.validation],
                                  name="validation loss", mode="lines+markers", line_color=COLORS["kept"]), 1, 1)
    if log.spikes:
        plot.add_trace(go.Scatter(
            x=[r["step"] for r in log.spikes], y=[r["loss"] for r in log.spikes], name="loss spike (rolled back)",
            mode="markers", marker=dict(symbol="x", size=12, color=COLORS["dropped"]),
            customdata=[r.get("rolled_back_to") for r in log.spikes],
            hovertemplate="step %{x}: loss %{y:.3f}, rolled back to step %{customdata}<extra></extra>"), 1, 1)
    plot.add_trace(go.Scatter(x=steps, y=[r["lr"] for r in log.steps], name="learning rate",
                              line_color=COLORS["accent"]), 2, 1)
    plot.add_trace(go.Scatter(x=steps, y=[r["grad_norm"] for r in log.steps], name="gradient norm",
                              line_color="#8d99ae"), 3, 1)
    plot.update_yaxes(title_text="loss", row=1)
    plot.update_yaxes(title_text="lr", row=2)
    plot.update_yaxes(title_text="grad norm", row=3)
    plot.update_xaxes(title_text="step", row=3)
    last = log.last_step
    speeds = sorted(r["tokens_per_s"] for r in log.steps)
    parts = [f"{last['step'] + 1:,} steps logged", f"loss {log.steps[0]['loss']:.3f} -> {last['loss']:.3f}"]
    if log.validation:
        parts.append(f"validation loss {log.validation[-1]['val_loss']:.3f} at step {log.validation[-1]['step']:,}")
    parts.append(f"{speeds[len(speeds) // 2]:,.0f} tokens/s (median step)")
    parts.append(f"{len(log.spikes)} loss spike(s) rolled back" if log.spikes else "no loss spikes")
    thinned = f" (every {log.stride}th step shown)" if log.stride > 1 else ""
    caption = f"From {log.path}{thinned}: " + "; ".join(parts) + "."
    return Figure("training", "Training", caption, styled(plot, height=560))
