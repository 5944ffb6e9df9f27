"""The 🔢 Tokens & requests tab: tokens in (uncached, cached) vs out, and requests by outcome (from
the ledger, or Prometheus when chosen)."""
from __future__ import annotations

from datetime import datetime

import streamlit as st

from backend.ledger.costs import Costs
from backend.ledger.queries import Filters, TimeRange
from console import charts
from console.costs_view.common import download, frame, keys, times
from console.costs_view.controls import latency_source
from console.i18n import N_, t

OUTCOME_COLORS = {"ok": "#59a14f", "cache_hit": "#4e79a7", "error": "#e15759", "refused": "#f1a340",
                  "aborted": "#bab0ac"}
OUTCOMES = {"ok": N_("ok"), "cache_hit": N_("cache hit"), "error": N_("error"), "refused": N_("refused"),
            "aborted": N_("aborted")}  # the legend's names


def tokens_chart(costs: Costs, r: TimeRange, f: Filters) -> None:
    df = frame(costs.queries.token_series(r, f))
    if df.empty:
        return
    df = times(df)
    df["input (uncached)"] = df["prompt_tokens"] - df["cached_tokens"]
    fig = charts.new(t("Tokens in vs out"), height=300)
    x = charts.utc_naive(df["time"])
    hover = (f"{t('when')}: %{{x|{charts.when_format(r.grain)}}}<br>{t('part')}: %{{fullData.name}}<br>{t('tokens')}: "
             "%{y:,}<extra></extra>")
    # Two bars per bucket side by side (offset groups): input, stacked uncached + cached, and output.
    fig.add_bar(x=x, y=df["input (uncached)"], name=t("input (uncached)"), offsetgroup="in", marker_color="#4e79a7",
                hovertemplate=hover)
    fig.add_bar(x=x, y=df["cached_tokens"], base=df["input (uncached)"], name=t("input (cached)"), offsetgroup="in",
                marker_color="#a0cbe8", hovertemplate=hover)
    fig.add_bar(x=x, y=df["completion_tokens"], name=t("output"), offsetgroup="out", marker_color="#f28e2b",
                hovertemplate=hover)
    fig.update_layout(barmode="group", bargroupgap=0.05, xaxis=charts.time_axis(r.grain),
                      yaxis=dict(title=t("tokens"), tickformat=",~s"))
    charts.show(fig, keys("tokens_chart"))
    download(df.drop(columns=["time"]), "tokens", "tokens")


def requests_chart(costs: Costs, r: TimeRange, f: Filters, now: datetime) -> None:
    src, why = latency_source(costs, f)
    rows, note = None, t("ledger")
    if src == "prometheus":
        try:
            rows = costs.prometheus.request_series(r.start, min(r.end, now), r.bucket_s, f.policy)
            note = t("Prometheus ({url}), {query} by status", url=costs.prometheus.url,
                     query=f"increase(rag_requests_total[{r.bucket_s}s])")
        except Exception as exc:
            why = t("Prometheus did not answer ({error}); showing the ledger.", error=type(exc).__name__)
    if rows is None:
        rows = costs.queries.request_series(r, f)
    df = frame(rows)
    if df.empty:
        return
    df = times(df)
    fig = charts.new(t("Requests by outcome"), height=300)
    hover = (f"{t('when')}: %{{x|{charts.when_format(r.grain)}}}<br>{t('outcome')}: %{{fullData.name}}<br>"
             f"{t('requests')}: %{{y:,}}<extra></extra>")
    for outcome in [o for o in OUTCOME_COLORS if o in set(df["outcome"])]:
        s = df[df["outcome"] == outcome]
        fig.add_bar(x=charts.utc_naive(s["time"]), y=s["requests"], name=t(OUTCOMES[outcome]), marker_color=OUTCOME_COLORS[outcome],
                    hovertemplate=hover)
    fig.update_layout(barmode="stack", xaxis=charts.time_axis(r.grain), yaxis=dict(title=t("requests"),
                                                                                 tickformat=",~g"))
    charts.show(fig, keys("requests_chart"))
    st.caption(t("Source: **{source}**.", source=note) + (f" {why}" if why else ""))
    download(df.drop(columns=["time"]), "requests", "requests")
