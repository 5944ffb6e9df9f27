"""Ledger rows: the 🧾 Ledger rows tab, and the rows behind a clicked bar or point of a chart."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import streamlit as st

from backend.ledger.costs import Costs
from backend.ledger.queries import Filters, TimeRange
from console import kit
from console.costs_view.common import download, keys
from console.i18n import N_, t
from console.markup import escape_md


# The ledger's columns; those marked with N_ are shown under their translated names, the others with a label below.
ROW_COLUMNS = ["ts", N_("request_id"), N_("source"), N_("api_key"), N_("user"), N_("policy"), N_("variant"),
               N_("index_version"), N_("kind"), N_("model"), N_("prompt_tokens"), N_("completion_tokens"),
               N_("cached_tokens"), "cost_usd", "saved_usd", N_("cache_hit"), "latency_ms", "retrieve_ms", "total_ms",
               N_("status"), N_("error_class"), N_("token_method"), N_("question")]
LABELLED = ("ts", "cost_usd", "saved_usd", "latency_ms", "retrieve_ms", "total_ms")
WHOLE_RANGE = N_("whole range")
KINDS = ["all", "chat", "embedding", "rerank", "judge"]
ORDERS = [N_("newest"), N_("costliest")]


def show_rows(rows: list[dict], title: str, key: str) -> None:
    n = f"{len(rows):,}"
    st.markdown(t("**🔬 {title}** · {n} rows (first 500)", title=escape_md(title), n=n) if len(rows) >= 500
                else t("**🔬 {title}** · {n} rows", title=escape_md(title), n=n))
    if not rows:
        st.caption(t("No ledger rows."))
        return
    df = pd.DataFrame(rows)[ROW_COLUMNS]
    st.dataframe(df, hide_index=True, height=min(38 + 35 * len(df), 320), key=keys("rows." + key),
                 column_config=kit.columns(
                     [c for c in ROW_COLUMNS if c not in LABELLED],
                     ts=st.column_config.DatetimeColumn(t("time (UTC)"), format="YYYY-MM-DD HH:mm:ss"),
                     cost_usd=st.column_config.NumberColumn(t("cost"), format="$%.6f"),
                     saved_usd=st.column_config.NumberColumn(t("saved"), format="$%.6f"),
                     latency_ms=st.column_config.NumberColumn(t("call ms"), format="%.0f"),
                     retrieve_ms=st.column_config.NumberColumn(t("retrieve ms"), format="%.0f"),
                     total_ms=st.column_config.NumberColumn(t("total ms"), format="%.0f")))
    download(df, f"ledger-{key}", "rows." + key)


def bucket_label(bucket: int, r: TimeRange) -> str:
    at = datetime.fromtimestamp(bucket, timezone.utc)
    return f"{at:%Y-%m-%d %H:00} UTC" if r.grain == "hour" else f"{at:%Y-%m-%d}"


def rows_section(costs: Costs, r: TimeRange, f: Filters) -> None:
    buckets = []
    start = r.start
    while start < r.end:
        buckets.append(start)
        start += timedelta(seconds=r.bucket_s)
    c = st.columns(3)
    when = c[0].selectbox(t("When"), [WHOLE_RANGE] + [bucket_label(int(b.timestamp()), r) for b in reversed(buckets)],
                          key=keys("rows.when"), format_func=lambda o: t(o) if o == WHOLE_RANGE else o)
    kind = c[1].selectbox(t("Call kind"), KINDS, key=keys("rows.kind"), format_func=lambda k: t(k) if k == "all" else k)
    order = c[2].segmented_control(t("Order"), ORDERS, default="newest", format_func=t, key=keys("rows.order")) or "newest"
    bucket = None
    if when != WHOLE_RANGE:
        bucket = next(int(b.timestamp()) for b in buckets if bucket_label(int(b.timestamp()), r) == when)
    rows = costs.queries.rows(r, f, bucket=bucket, dim="kind" if kind != "all" else None,
                              value=kind if kind != "all" else None, order="time" if order == "newest" else "cost")
    show_rows(rows, t("Ledger rows · {when}", when=t(when) if when == WHOLE_RANGE else when), "all")
