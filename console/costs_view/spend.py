"""The 📈 Spend tab: cost per hour or day stacked by a dimension (model, policy, user...), each value
in one color for the whole range; a click on a bar lists its ledger rows."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.ledger.costs import Costs
from backend.ledger.queries import SOURCES, Filters, TimeRange
from console import charts
from console.costs_view.common import LABELS, NO_VARIANT, OTHER, dimension, download, frame, keys, times, value_label
from console.costs_view.rows import bucket_label, show_rows
from console.i18n import t

STACK_BY = ("model", "policy", "user", "kind", "variant", "index_version", "source")  # the cost chart's series
MAX_SERIES = 8  # stacked series beyond this are summed as OTHER


def _top_keys(df: pd.DataFrame, value: str) -> pd.DataFrame:
    totals = df.groupby("key")[value].sum().sort_values(ascending=False)
    if len(totals) <= MAX_SERIES:
        return df
    keep = set(totals.index[: MAX_SERIES - 1])
    df = df.copy()
    df.loc[~df["key"].isin(keep), "key"] = OTHER
    return df.groupby(["bucket", "key"], as_index=False)[[value, "requests"]].sum()


PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#d62728"]


def series_color(by: str, key: str, costs: Costs, r: TimeRange) -> str:
    """One color per value for the whole range, whatever the filters: a model keeps its color
    when a filter removes the others."""
    if key == OTHER:
        return "#c9c3bd"
    if by == "kind":
        values = ["chat", "embedding", "rerank", "judge"]
    elif by == "source":
        values = list(SOURCES)
    else:
        values = [NO_VARIANT if (by == "variant" and v == "") else v for v in costs.queries.options(r).get(by, [])]
    i = values.index(key) if key in values else sum(map(ord, key))
    return PALETTE[i % len(PALETTE)]


def spend_chart(costs: Costs, r: TimeRange, f: Filters) -> None:
    by = st.segmented_control(t("Stack cost by"), list(STACK_BY), default="model", format_func=lambda d: t(LABELS[d]),
                              key=keys("stack_by")) or "model"
    df = frame(costs.queries.cost_series(r, f, by))
    if df.empty:
        st.info(t("No ledger rows in this range and filter."), icon="📭")
        return
    if by == "variant":
        df["key"] = df["key"].replace("", NO_VARIANT)
    df = times(_top_keys(df, "cost_usd"))
    order = [str(k) for k in df.groupby("key")["cost_usd"].sum().sort_values(ascending=False).index]
    df["key"] = df["key"].astype(str)
    title = t("Cost per hour by {dimension}", dimension=dimension(by)) if r.grain == "hour" else \
        t("Cost per day by {dimension}", dimension=dimension(by))
    fig = charts.new(title, height=340)
    hover = (f"{t('when')}: %{{x|{charts.when_format(r.grain)}}}<br>{dimension(by)}: %{{customdata[2]}}"
             f"<br>{t('cost')}: %{{y:$,.4f}}<extra></extra>")
    for k in order:  # the largest series first: at the bottom of each stack and first in the legend
        s = df[df["key"] == k]
        fig.add_bar(x=charts.utc_naive(s["time"]), y=s["cost_usd"], name=charts.text(value_label(k)),
                    marker_color=series_color(by, k, costs, r), hovertemplate=hover,
                    customdata=[[int(b), k, charts.text(value_label(k))] for b in s["bucket"]])
    fig.update_layout(barmode="stack", xaxis=charts.time_axis(r.grain), yaxis=dict(title="USD", tickformat="$,.2f"))
    point = charts.show(fig, keys("cost_chart"), fields=("bucket", "key"))
    st.caption(t("Source: ledger (cost fixed when each call was written). Click a bar to list its ledger rows "
                 "(double-click clears)."))
    download(df.drop(columns=["time"]), "cost-by-" + by, "cost")
    if point:
        bucket, key = int(point["bucket"]), str(point["key"])
        value = None if key == OTHER else ("" if (by == "variant" and key == NO_VARIANT) else key)
        rows = costs.queries.rows(r, f, bucket=bucket, dim=by if value is not None else None, value=value)
        show_rows(rows, f"{bucket_label(bucket, r)} · {dimension(by)} {value_label(key)}", "cost")
