"""The ⏱️ Latency tab: a percentile of each stage's latency over time (the ledger's histogram estimate,
or Prometheus); a click on a point lists the slowest rows of that stage."""
from __future__ import annotations

from datetime import datetime

import streamlit as st

from backend.ledger.costs import Costs
from backend.ledger.queries import Filters, TimeRange
from console import charts
from console.costs_view.common import download, frame, keys, times
from console.costs_view.controls import latency_source
from console.costs_view.rows import bucket_label, show_rows
from console.i18n import t

STAGE_ORDER = ["embed", "retrieve", "rerank", "generate", "judge", "cache", "total"]
STAGE_COLORS = {"embed": "#4e79a7", "retrieve": "#59a14f", "rerank": "#f1a340", "generate": "#e15759",
                "judge": "#b07aa1", "cache": "#8d99ae", "total": "#222222"}


def latency_chart(costs: Costs, r: TimeRange, f: Filters, now: datetime) -> None:
    which = st.segmented_control(t("Percentile"), ["p50", "p95", "p99"], default="p95", key=keys("quantile")) or "p95"
    qv = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[which]
    src, why = latency_source(costs, f)
    rows, note = None, t("ledger (histogram estimate over the latency buckets Prometheus uses too)")
    if src == "prometheus":
        try:
            rows = costs.prometheus.latency_series(r.start, min(r.end, now), r.bucket_s, f.policy, qs=(qv,))
            note = (f"Prometheus ({costs.prometheus.url}): histogram_quantile({qv}, sum by (le, stage) "
                    f"(increase(rag_stage_latency_seconds_bucket[{r.bucket_s}s])))")
        except Exception as exc:
            why = t("Prometheus did not answer ({error}); showing the ledger.", error=type(exc).__name__)
    if rows is None:
        rows = costs.queries.latency_series(r, f, qs=(qv,))
    hint = "" if costs.prometheus is not None else t(" Set PROMETHEUS_URL to read latency and rates from Prometheus.")
    df = frame([x for x in rows if x.ms is not None and x.q == qv])
    if df.empty:
        st.info(t("No latency data in this range and filter."), icon="📭")
        st.caption(t("Source: **{source}**.", source=note) + (f" {why}" if why else "") + hint)
        return
    df = times(df)
    stages = [s for s in STAGE_ORDER if s in set(df["stage"])] + sorted(set(df["stage"]) - set(STAGE_ORDER))
    spread = df["ms"].max() / max(df["ms"].min(), 0.1) > 50  # stages a hundredfold apart: log by default
    log = st.toggle(t("Log scale"), value=bool(spread), key=keys("latency_log"),
                    help=t("A logarithmic ms axis, so fast stages (embed, cache) stay readable beside generation"))
    fig = charts.new(t("{quantile} latency per stage", quantile=which), height=360)
    hover = (f"{t('when')}: %{{x|{charts.when_format(r.grain)}}}<br>{t('stage')}: %{{customdata[2]}}<br>"
             f"{t('ms')}: %{{y:,.0f}}<extra></extra>")
    for stage in stages:
        s = df[df["stage"] == stage].sort_values("bucket")
        color = STAGE_COLORS.get(stage, "#888888")
        fig.add_scatter(x=charts.utc_naive(s["time"]), y=s["ms"], name=charts.text(stage), mode="lines+markers",
                        line=dict(color=color, dash="dash" if stage == "total" else "solid", width=2),
                        marker=dict(color=color, size=8), hovertemplate=hover,
                        customdata=[[int(b), stage, charts.text(stage)] for b in s["bucket"]])
    yaxis = dict(title=t("ms"), tickformat=",~g")
    if log:
        decades = [10.0 ** e for e in range(-1, 7) if df["ms"].min() / 10 <= 10.0 ** e <= df["ms"].max() * 10]
        yaxis.update(type="log", tickvals=decades)
    fig.update_layout(xaxis=charts.time_axis(r.grain), yaxis=yaxis)
    point = charts.show(fig, keys("latency_chart"), fields=("bucket", "stage"))
    st.caption(t("Source: **{source}**.", source=note) + (f" {why}" if why else "")
               + t(" Click a point to list the slowest rows.") + hint)
    download(df.drop(columns=["time"]), f"latency-{which}", "latency")
    if point:
        bucket, stage = int(point["bucket"]), str(point["stage"])
        rows = costs.queries.rows(r, f, bucket=bucket, bucket_s=r.bucket_s, stage=stage)
        show_rows(rows, t("{when} · slowest '{stage}'", when=bucket_label(bucket, r), stage=stage), "latency")
