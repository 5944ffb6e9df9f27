"""The console's charts: Vega-Lite through Altair, drawn by Streamlit's own chart element.

Why not Plotly: its script costs ~0.85 s of the browser's main thread in every new tab (measured:
a bare Streamlit page with one Plotly bar draws at 1.65 s, the same page with a Vega-Lite bar at
~0.8 s), which alone broke the cost page's 2 s first render. Vega-Lite keeps hover tooltips, zoom,
and click selection (the drill-downs), and draws SVG whose marks carry ARIA labels the browser tests read."""
from __future__ import annotations

from typing import Any

import altair as alt
import streamlit as st

PICK = "pick"  # the name of every chart's click selection


def clickable(chart: alt.Chart, *fields: str) -> alt.Chart:
    """Make each mark clickable: a click reports these fields of its row (see `show`) and fades the
    other marks; a double-click clears."""
    selection = alt.selection_point(name=PICK, fields=list(fields), on="click", clear="dblclick")
    return chart.encode(opacity=alt.condition(selection, alt.value(1.0), alt.value(0.35))).add_params(selection)


def time_unit(grain: str) -> str:
    """The Vega-Lite time unit of a ledger bucket (the ledger's buckets are UTC hours or days)."""
    return "utcyearmonthdatehours" if grain == "hour" else "utcyearmonthdate"


def time_x(grain: str = "day", discrete: bool = False) -> alt.X:
    """Buckets on a UTC time axis, one band per hour or day; `discrete` for bars side by side (xOffset)."""
    return alt.X(f"{time_unit(grain)}(time):{'O' if discrete else 'T'}", title=None,
                 axis=alt.Axis(format="%H:%M %b %d" if grain == "hour" else "%b %d", labelAngle=0, labelOverlap=True))


def when_tooltip(grain: str) -> alt.Tooltip:
    return alt.Tooltip(f"{time_unit(grain)}(time):T", title="when",
                       format="%Y-%m-%d %H:00 UTC" if grain == "hour" else "%Y-%m-%d")


def colors(domain: list[str], palette: list[str], field: str = "key") -> alt.Color:
    """Fixed colors per series, the legend in a row above the plot."""
    return alt.Color(f"{field}:N", scale=alt.Scale(domain=domain, range=palette),
                     legend=alt.Legend(orient="top", direction="horizontal", title=None, labelLimit=260))


def show(chart: alt.TopLevelMixin, key: str, title: str | None = None, height: int = 320,
         selectable: bool = False) -> dict | None:
    """Draw a chart full width. With `selectable` (a chart made `clickable`), a click reruns the page
    and this returns the clicked mark's fields, else None."""
    if title:
        chart = chart.properties(title=alt.TitleParams(title, anchor="start", fontSize=14))
    chart = chart.properties(height=height).configure_view(stroke=None)
    if not selectable:
        st.altair_chart(chart, key=key, width="stretch")
        return None
    event = st.altair_chart(chart, key=key, width="stretch", on_select="rerun")
    points = event.selection.get(PICK) if event is not None else None
    return points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else None
