"""A report figure: a plotly figure with the heading and caption the page shows around it."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

COLORS = {"kept": "#2a9d8f", "dropped": "#e76f51", "line": "#264653", "accent": "#e9c46a"}


@dataclass
class Figure:
    key: str  # the element id, unique in the page
    title: str
    caption: str  # plain text: what it shows and from how much of the run
    plot: go.Figure


def styled(plot: go.Figure, height: int = 380, **layout) -> go.Figure:
    plot.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=20, t=30, b=50),
                       legend=dict(orientation="h", y=1.12, x=0))
    plot.update_layout(**layout)
    return plot


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"
