"""The console's charts: Plotly figures drawn by `st.plotly_chart`.

Plotly is the charting library the product was specified with (the user's choice): hover tooltips,
zoom and range selection by dragging, the mode bar's PNG download, and click selection through
`on_select="rerun"` (the drill-downs: each mark carries the fields a click reports in its `customdata`).
What it costs, measured: Plotly's script takes ~0.8–0.9 s of a new tab's main thread (a bare Streamlit
page with one Plotly bar drew at 1.6–1.9 s where the same page with a Vega-Lite bar drew at ~0.8–1.1 s),
so the cost page's first render is compared with a bare page that also draws one Plotly chart
(bench/first_render.py). Dates go to Plotly as naive UTC: Plotly.js has no time zones.
Plotly charts are opaque to AppTest: tests check the figure built here, and the drawing in Chromium."""
from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

TABLEAU10 = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
             "#bab0ac"]


def utc_naive(times: pd.Series) -> pd.Series:
    """UTC timestamps without their zone (Plotly.js would otherwise drop or shift it)."""
    t = pd.to_datetime(times, utc=True)
    return t.dt.tz_convert(None)


def when_format(grain: str) -> str:
    """The d3 time format of a ledger bucket in a tooltip (the buckets are UTC hours or days)."""
    return "%Y-%m-%d %H:00 UTC" if grain == "hour" else "%Y-%m-%d"


def time_axis(grain: str = "day") -> dict:
    """Buckets on a UTC time axis, labels as the Vega charts had them."""
    return dict(type="date", tickformat="%H:%M %b %d" if grain == "hour" else "%b %d", title=None, tickangle=0)


def new(title: str | None = None, height: int = 320, legend: bool = True) -> go.Figure:
    """An empty figure with the console's layout: title top left, the legend in a row above the
    plot, hover on the nearest mark, zoom by dragging (double-click resets it and clears a selection)."""
    fig = go.Figure()
    top = (34 if title else 8) + (30 if legend else 0)
    fig.update_layout(
        height=height, margin=dict(l=8, r=8, t=top, b=8), showlegend=legend, hovermode="closest",
        dragmode="zoom", legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom", title_text=None,
                                     traceorder="normal"),
        hoverlabel=dict(namelength=-1))
    if title:
        fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=1, yanchor="top", pad=dict(t=4, l=4),
                                     font=dict(size=14)))
    return fig


def config(name: str) -> dict:
    """The mode bar: no Plotly logo; its camera button downloads a PNG named after the chart."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": name.replace(".", "-"), "scale": 2}}


def show(fig: go.Figure, key: str, fields: Sequence[str] = ()) -> dict | None:
    """Draw a figure full width. With `fields` (the names of each trace's customdata columns), a click
    on a mark reruns the page and this returns that mark's fields, else None."""
    if not fields:
        st.plotly_chart(fig, key=key, width="stretch", config=config(key))
        return None
    event = st.plotly_chart(fig, key=key, width="stretch", config=config(key), on_select="rerun",
                            selection_mode="points")
    points = list(event["selection"]["points"] or []) if event else []
    data = points[0].get("customdata") if points and isinstance(points[0], dict) else None
    if not isinstance(data, (list, tuple)) or len(data) < len(fields):
        return None
    return dict(zip(fields, data))


def text(value: object, wrap: int | None = None) -> str:
    """A value shown inside a figure (names, ticks, tooltips): Plotly reads a subset of HTML there,
    so `<` and `&` are escaped; `wrap` breaks long text into lines of about that many characters."""
    s = html.escape(str(value), quote=False)
    return "<br>".join(textwrap.wrap(s, wrap, break_long_words=True)) if wrap and len(s) > wrap else s


def shorten(value: str, limit: int) -> str:
    return value[: limit - 1] + "…" if len(value) > limit else value
