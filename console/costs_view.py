"""Sections of the cost & latency dashboard (pages/costs.py) and the sidebar's firing alerts.

Every figure comes from a backend query (backend.ledger.queries: SQL over the daily roll-ups or
the raw rows); this module only turns small result sets into widgets and charts (console.charts). Widget
keys are namespaced "costs.*"; the range, filters and tab are mirrored to the URL. The Source filter
(api, console, system) separates API-key traffic from the console's own."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend.access import Action
from backend.alerts import MAX_THRESHOLD, METRICS as ALERT_METRICS, describe_value, redact_urls, webhook_label
from backend.budgets import MAX_LIMIT_USD, PERIODS, SCOPES
from backend.exports import frame_csv
from backend.ledger.costs import Costs
from backend.ledger.queries import FILTER_DIMENSIONS, SOURCES, Filters, TimeRange
from backend.pricing import MATCH_ORDER, MAX_PER_CALL_USD, MAX_USD_PER_M
from console import charts, kit
from console.access_view import locked, need
from console.auth import current_actor
from console.markup import escape_md

keys = kit.PageKeys("costs")
PAGE = Path(__file__).resolve().parent.parent / "pages" / "costs.py"
RANGES = ("Last 24 hours", "Last 7 days", "Last 30 days", "Last 90 days", "This month", "Custom days")
LABELS = {"policy": "Policy", "model": "Model", "user": "User", "variant": "A/B variant",
          "index_version": "Index version", "kind": "Call kind", "source": "Source"}
HELP = {"source": "Where the requests came from: api (an API key), console (a console user) or system (CLI, "
                  "evaluation, background jobs). Empty: all of them"}
NO_VARIANT = "(none)"  # shown (and put in the URL) for rows without an A/B variant; stored as ''
STAGE_ORDER = ["embed", "retrieve", "rerank", "generate", "judge", "cache", "total"]
STAGE_COLORS = {"embed": "#4e79a7", "retrieve": "#59a14f", "rerank": "#f1a340", "generate": "#e15759",
                "judge": "#b07aa1", "cache": "#8d99ae", "total": "#222222"}
OUTCOME_COLORS = {"ok": "#59a14f", "cache_hit": "#4e79a7", "error": "#e15759", "refused": "#f1a340",
                  "aborted": "#bab0ac"}
TABS = ["📈 Spend", "🔢 Tokens & requests", "⏱️ Latency", "🏆 Top users & questions", "🎯 Budgets", "🚨 Alerts", "🏷️ Prices",
        "🧾 Ledger rows"]
STACK_BY = ("model", "policy", "user", "kind", "variant", "index_version", "source")  # the cost chart's series
MAX_SERIES = 8  # stacked series beyond this are summed as "(other)"


# --- formatting (money, durations, percentages, counts and names: console.kit) ----------------------
def change(now: float, before: float) -> str | None:
    """Relative change against the previous range of the same length (the tile's help says so)."""
    if not before:
        return None
    return f"{(now - before) / before:+.0%}"


def _times(df: pd.DataFrame) -> pd.DataFrame:
    df["time"] = pd.to_datetime(df["bucket"], unit="s", utc=True)
    return df


def _download(df: pd.DataFrame, name: str, key: str) -> None:
    st.download_button("⬇️ CSV", frame_csv(df).encode(), file_name=f"{name}.csv", mime="text/csv",
                       key=keys("csv." + key), help="Download what this chart or table shows")


# --- confirmations ---------------------------------------------------------------------------
# kind -> (dialog title, button label, the backend call on (costs, actor, id), the flash with the target's name).
CONFIRMS = {
    "price.delete": ("Delete this price row?", "🗑️ Delete the row", lambda c, a, i: c.prices.delete(a, i),
                     "Price row {} deleted"),
    "budget.disable": ("Disable this budget?", "⏸️ Disable the budget",
                       lambda c, a, i: c.budgets.set_enabled(a, i, False), "Budget '{}' disabled"),
    "budget.delete": ("Delete this budget?", "🗑️ Delete the budget", lambda c, a, i: c.budgets.delete(a, i),
                      "Budget '{}' deleted"),
    "rule.disable": ("Disable this alert rule?", "⏸️ Disable the rule",
                     lambda c, a, i: c.alerts.set_rule_enabled(a, i, False), "Rule '{}' disabled"),
    "rule.delete": ("Delete this alert rule?", "🗑️ Delete the rule", lambda c, a, i: c.alerts.delete_rule(a, i),
                    "Rule '{}' deleted"),
}


def _dialog(costs: Costs, prefix: str) -> None:
    """Draw the open confirmation of this section (sections run only while their tab is open)."""
    d = kit.asked(keys)
    if d and d["kind"].startswith(prefix):
        title, label, call, done = CONFIRMS[d["kind"]]
        kit.confirm(keys, title, label, "", lambda: call(costs, current_actor(), d["id"]), ok=done.format(d["name"]),
                    body=d["what"])


def flash() -> None:
    """The message of the last successful change, once."""
    kit.flash(keys)


# --- controls --------------------------------------------------------------------------------
def controls(costs: Costs, now: datetime) -> tuple[TimeRange, Filters]:
    """Range and filters in the sidebar; their values live in the URL so a view can be shared."""
    with st.sidebar:
        st.markdown("**🔎 Range and filters**")
        choice = st.selectbox("Time range", RANGES, index=2, key=keys("range"), bind="query-params")
        today = now.date()
        if choice == "Last 24 hours":
            r = TimeRange.last_hours(24, now)
        elif choice == "This month":
            r = TimeRange.days(today.replace(day=1), today)
        elif choice == "Custom days":
            picked = st.date_input("Days (UTC, both included)", value=(today - timedelta(days=13), today),
                                   max_value=today, key=keys("days"))
            first, last = (tuple(picked) + (None, None))[:2] if isinstance(picked, (tuple, list)) else (picked, None)
            r = TimeRange.days(first or today, last or first or today)
        else:
            r = TimeRange.last_days(int(choice.split()[1]), now)
        options = costs.queries.options(r)
        chosen: dict[str, tuple[str, ...]] = {}
        for d in FILTER_DIMENSIONS:
            key = keys(d)
            opts = [NO_VARIANT if (d == "variant" and v == "") else v for v in options[d]]
            if d == "source":  # always the three, whether or not the range has rows of each
                opts += SOURCES
            opts = sorted(set(opts) | set(st.session_state.get(key) or []))  # keep a choice the range lacks
            picked = st.multiselect(LABELS[d], opts, key=key, placeholder="all", bind="query-params", help=HELP.get(d))
            chosen[d] = tuple("" if (d == "variant" and v == NO_VARIANT) else v for v in picked)
        if costs.prometheus is not None:
            st.segmented_control("Latency and request-rate source", ["Ledger", "Prometheus"], default="Ledger",
                                 key=keys("latency_source"), bind="query-params",
                                 help="Prometheus: histogram_quantile over rag_stage_latency_seconds (it knows the "
                                      "policy label only); ledger: the same estimate over the ledger's histogram")
        st.caption(f"{r.label()}. Days are UTC days; the last 24 hours are shown by hour.")
    return r, Filters(**chosen)


def warnings(costs: Costs, r: TimeRange) -> None:
    unpriced = costs.queries.unpriced_models(r)
    if unpriced:
        names = ", ".join(f"{kit.code(u['model'])} ({u['calls']:,} calls)" for u in unpriced)
        st.warning(f"**Models without a price in this range:** {names}. Their calls were recorded at \\$0 — "
                   "add a price under 🏷️ Prices (it applies to calls from its effective date on).", icon="🏷️")
    age = costs.prices.age_days()
    if age is None:
        st.warning("The price table is empty: every paid call is recorded at \\$0.", icon="🏷️")
    elif age > costs.max_price_age_days:
        st.warning(f"**The price table was last checked {age:,.0f} days ago** (limit "
                   f"{costs.max_price_age_days} days, PRICE_TABLE_MAX_AGE_DAYS). Compare it with the providers' "
                   "price lists, then mark it checked under 🏷️ Prices.", icon="⏳")


def firing_banner(costs: Costs) -> None:
    firing = costs.alerts.firing()
    for a in firing[:4]:
        icon = "💸" if a["source"] == "budget" else "🚨"
        st.error(f"**{escape_md(a['title'])}** — {escape_md(a['detail'])} · firing since "
                 f"{a['first_seen']:%Y-%m-%d %H:%M} UTC", icon=icon)
    if len(firing) > 4:
        st.caption(f"…and {len(firing) - 4} more under 🚨 Alerts.")


# --- tiles -----------------------------------------------------------------------------------
def latency_source(costs: Costs, f: Filters) -> tuple[str, str | None]:
    """('ledger' | 'prometheus', why the ledger is used although Prometheus was chosen)."""
    if costs.prometheus is None:
        return "ledger", None
    src = st.session_state.get(keys("latency_source"), "Ledger")
    if src != "Prometheus":
        return "ledger", None
    other = [LABELS[d] for d in f.active() if d != "policy"]
    if other:
        return "ledger", f"Prometheus has no {', '.join(other).lower()} label: these figures come from the ledger."
    return "prometheus", None


def tiles(costs: Costs, r: TimeRange, f: Filters, now: datetime) -> None:
    q = costs.queries
    s, prev = q.summary(r, f), q.summary(r.previous(), f)
    fc = q.month_forecast(now, f)
    src, why = latency_source(costs, f)
    lat, lat_note = s.latency_ms, "ledger"
    if src == "prometheus":
        try:
            lat = costs.prometheus.latency_quantiles(r.start, min(r.end, now), "total", f.policy)
            lat_note = "Prometheus"
        except Exception as exc:  # unreachable or bad answer: say so, keep the ledger's figures
            why = f"Prometheus did not answer ({type(exc).__name__}): latency tiles from the ledger."
    a = st.columns(6)
    a[0].metric("Spend", kit.money(s.cost_usd), delta=change(s.cost_usd, prev.cost_usd), delta_color="inverse", border=True,
                help=f"Change against the previous range ({r.previous().label()}): {kit.money(prev.cost_usd)}")
    a[1].metric("Month forecast", kit.money(fc["forecast"]), border=True,
                help=f"This UTC month: {kit.money(fc['month_to_date'])} in the first {fc['elapsed_days']:.1f} of {fc['days_in_month']} days "
                     "extended at the same daily rate (filters apply)")
    a[2].metric("Requests", f"{s.requests:,}", delta=change(s.requests, prev.requests), delta_color="off", border=True,
                help="Answered, failed or refused requests (one chat row each; retrieval-only requests not counted); "
                     f"change against the previous range: {prev.requests:,}")
    a[3].metric("Cost per request", kit.money(s.cost_per_request), border=True)
    a[4].metric("Cache hit rate", kit.pct(s.cache_hit_rate), border=True,
                help=f"{s.cache_hits:,} of {s.requests:,} requests answered from the cache")
    a[5].metric("Cache savings", kit.money(s.saved_usd), border=True,
                help="What the cached answers would have cost, at the prices in effect when they were served")
    b = st.columns(6)
    b[0].metric("Tokens in", kit.count(s.prompt_tokens), border=True,
                help=f"Prompt tokens of every call kind, of which {s.cached_tokens:,} were cached input")
    b[1].metric("Tokens out", kit.count(s.completion_tokens), border=True, help="Completion tokens")
    b[2].metric("Error rate", kit.pct(s.error_rate), border=True,
                help=f"{s.errors:,} failed and {s.refused:,} refused by a hard budget, of {s.requests:,} requests")
    for col, (qv, name) in zip(b[3:], ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))):
        col.metric(f"{name} latency", kit.duration(lat.get(qv)), border=True,
                   help=f"End to end ('total' stage), histogram estimate; source: {lat_note}")
    st.caption(f"Latency tiles: **{lat_note}**." + (f" {why}" if why else "")
               + (f" {s.unpriced_calls:,} calls had no price." if s.unpriced_calls else ""))


# --- drill-down ------------------------------------------------------------------------------
ROW_COLUMNS = ["ts", "request_id", "source", "api_key", "user", "policy", "variant", "index_version", "kind", "model",
               "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd", "cache_hit", "latency_ms",
               "retrieve_ms", "total_ms", "status", "error_class", "token_method", "question"]


def show_rows(rows: list[dict], title: str, key: str) -> None:
    st.markdown(f"**🔬 {escape_md(title)}** · {len(rows):,} rows" + (" (first 500)" if len(rows) >= 500 else ""))
    if not rows:
        st.caption("No ledger rows.")
        return
    df = pd.DataFrame(rows)[ROW_COLUMNS]
    st.dataframe(df, hide_index=True, height=min(38 + 35 * len(df), 320), key=keys("rows." + key),
                 column_config={"ts": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                                "cost_usd": st.column_config.NumberColumn("cost", format="$%.6f"),
                                "saved_usd": st.column_config.NumberColumn("saved", format="$%.6f"),
                                "latency_ms": st.column_config.NumberColumn("call ms", format="%.0f"),
                                "retrieve_ms": st.column_config.NumberColumn("retrieve ms", format="%.0f"),
                                "total_ms": st.column_config.NumberColumn("total ms", format="%.0f")})
    _download(df, f"ledger-{key}", "rows." + key)


def _bucket_label(bucket: int, r: TimeRange) -> str:
    t = datetime.fromtimestamp(bucket, timezone.utc)
    return f"{t:%Y-%m-%d %H:00} UTC" if r.grain == "hour" else f"{t:%Y-%m-%d}"


# --- charts ----------------------------------------------------------------------------------
def _top_keys(df: pd.DataFrame, value: str) -> pd.DataFrame:
    totals = df.groupby("key")[value].sum().sort_values(ascending=False)
    if len(totals) <= MAX_SERIES:
        return df
    keep = set(totals.index[: MAX_SERIES - 1])
    df = df.copy()
    df.loc[~df["key"].isin(keep), "key"] = "(other)"
    return df.groupby(["bucket", "key"], as_index=False)[[value, "requests"]].sum()


PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#d62728"]


def series_color(by: str, key: str, costs: Costs, r: TimeRange) -> str:
    """One color per value for the whole range, whatever the filters: a model keeps its color
    when a filter removes the others."""
    if key == "(other)":
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
    by = st.segmented_control("Stack cost by", list(STACK_BY), default="model", format_func=LABELS.get,
                              key=keys("stack_by")) or "model"
    df = pd.DataFrame(costs.queries.cost_series(r, f, by))
    if df.empty:
        st.info("No ledger rows in this range and filter.", icon="📭")
        return
    if by == "variant":
        df["key"] = df["key"].replace("", NO_VARIANT)
    df = _times(_top_keys(df, "cost_usd"))
    order = [str(k) for k in df.groupby("key")["cost_usd"].sum().sort_values(ascending=False).index]
    df["key"] = df["key"].astype(str)
    title = f"Cost per {'hour' if r.grain == 'hour' else 'day'} by {LABELS[by].lower()}"
    fig = charts.new(title, height=340)
    hover = (f"when: %{{x|{charts.when_format(r.grain)}}}<br>{LABELS[by].lower()}: %{{customdata[2]}}"
             "<br>cost: %{y:$,.4f}<extra></extra>")
    for k in order:  # the largest series first: at the bottom of each stack and first in the legend
        s = df[df["key"] == k]
        fig.add_bar(x=charts.utc_naive(s["time"]), y=s["cost_usd"], name=charts.text(k),
                    marker_color=series_color(by, k, costs, r), hovertemplate=hover,
                    customdata=[[int(b), k, charts.text(k)] for b in s["bucket"]])
    fig.update_layout(barmode="stack", xaxis=charts.time_axis(r.grain), yaxis=dict(title="USD", tickformat="$,.2f"))
    point = charts.show(fig, keys("cost_chart"), fields=("bucket", "key"))
    st.caption("Source: ledger (cost fixed when each call was written). Click a bar to list its ledger rows "
               "(double-click clears).")
    _download(df.drop(columns=["time"]), "cost-by-" + by, "cost")
    if point:
        bucket, key = int(point["bucket"]), str(point["key"])
        value = None if key == "(other)" else ("" if (by == "variant" and key == NO_VARIANT) else key)
        rows = costs.queries.rows(r, f, bucket=bucket, dim=by if value is not None else None, value=value)
        show_rows(rows, f"{_bucket_label(bucket, r)} · {LABELS[by].lower()} {key}", "cost")


def tokens_chart(costs: Costs, r: TimeRange, f: Filters) -> None:
    df = pd.DataFrame(costs.queries.token_series(r, f))
    if df.empty:
        return
    df = _times(df)
    df["input (uncached)"] = df["prompt_tokens"] - df["cached_tokens"]
    fig = charts.new("Tokens in vs out", height=300)
    x = charts.utc_naive(df["time"])
    hover = f"when: %{{x|{charts.when_format(r.grain)}}}<br>part: %{{fullData.name}}<br>tokens: %{{y:,}}<extra></extra>"
    # Two bars per bucket side by side (offset groups): input, stacked uncached + cached, and output.
    fig.add_bar(x=x, y=df["input (uncached)"], name="input (uncached)", offsetgroup="in", marker_color="#4e79a7",
                hovertemplate=hover)
    fig.add_bar(x=x, y=df["cached_tokens"], base=df["input (uncached)"], name="input (cached)", offsetgroup="in",
                marker_color="#a0cbe8", hovertemplate=hover)
    fig.add_bar(x=x, y=df["completion_tokens"], name="output", offsetgroup="out", marker_color="#f28e2b",
                hovertemplate=hover)
    fig.update_layout(barmode="group", bargroupgap=0.05, xaxis=charts.time_axis(r.grain),
                      yaxis=dict(title="tokens", tickformat=",~s"))
    charts.show(fig, keys("tokens_chart"))
    _download(df.drop(columns=["time"]), "tokens", "tokens")


def requests_chart(costs: Costs, r: TimeRange, f: Filters, now: datetime) -> None:
    src, why = latency_source(costs, f)
    rows, note = None, "ledger"
    if src == "prometheus":
        try:
            rows = costs.prometheus.request_series(r.start, min(r.end, now), r.bucket_s, f.policy)
            note = f"Prometheus ({costs.prometheus.url}), increase(rag_requests_total[{r.bucket_s}s]) by status"
        except Exception as exc:
            why = f"Prometheus did not answer ({type(exc).__name__}); showing the ledger."
    if rows is None:
        rows = costs.queries.request_series(r, f)
    df = pd.DataFrame(rows)
    if df.empty:
        return
    df = _times(df)
    fig = charts.new("Requests by outcome", height=300)
    hover = f"when: %{{x|{charts.when_format(r.grain)}}}<br>outcome: %{{fullData.name}}<br>requests: %{{y:,}}<extra></extra>"
    for outcome in [o for o in OUTCOME_COLORS if o in set(df["outcome"])]:
        s = df[df["outcome"] == outcome]
        fig.add_bar(x=charts.utc_naive(s["time"]), y=s["requests"], name=outcome, marker_color=OUTCOME_COLORS[outcome],
                    hovertemplate=hover)
    fig.update_layout(barmode="stack", xaxis=charts.time_axis(r.grain), yaxis=dict(title="requests", tickformat=",~g"))
    charts.show(fig, keys("requests_chart"))
    st.caption(f"Source: **{note}**." + (f" {why}" if why else ""))
    _download(df.drop(columns=["time"]), "requests", "requests")


def latency_chart(costs: Costs, r: TimeRange, f: Filters, now: datetime) -> None:
    which = st.segmented_control("Percentile", ["p50", "p95", "p99"], default="p95", key=keys("quantile")) or "p95"
    qv = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[which]
    src, why = latency_source(costs, f)
    rows, note = None, "ledger (histogram estimate over the latency buckets Prometheus uses too)"
    if src == "prometheus":
        try:
            rows = costs.prometheus.latency_series(r.start, min(r.end, now), r.bucket_s, f.policy, qs=(qv,))
            note = (f"Prometheus ({costs.prometheus.url}): histogram_quantile({qv}, sum by (le, stage) "
                    f"(increase(rag_stage_latency_seconds_bucket[{r.bucket_s}s])))")
        except Exception as exc:
            why = f"Prometheus did not answer ({type(exc).__name__}); showing the ledger."
    if rows is None:
        rows = costs.queries.latency_series(r, f, qs=(qv,))
    hint = "" if costs.prometheus is not None else " Set PROMETHEUS_URL to read latency and rates from Prometheus."
    df = pd.DataFrame([x for x in rows if x["ms"] is not None and x["q"] == qv])
    if df.empty:
        st.info("No latency data in this range and filter.", icon="📭")
        st.caption(f"Source: **{note}**." + (f" {why}" if why else "") + hint)
        return
    df = _times(df)
    stages = [s for s in STAGE_ORDER if s in set(df["stage"])] + sorted(set(df["stage"]) - set(STAGE_ORDER))
    spread = df["ms"].max() / max(df["ms"].min(), 0.1) > 50  # stages a hundredfold apart: log by default
    log = st.toggle("Log scale", value=bool(spread), key=keys("latency_log"),
                    help="A logarithmic ms axis, so fast stages (embed, cache) stay readable beside generation")
    fig = charts.new(f"{which} latency per stage", height=360)
    hover = (f"when: %{{x|{charts.when_format(r.grain)}}}<br>stage: %{{customdata[2]}}<br>ms: %{{y:,.0f}}"
             "<extra></extra>")
    for stage in stages:
        s = df[df["stage"] == stage].sort_values("bucket")
        color = STAGE_COLORS.get(stage, "#888888")
        fig.add_scatter(x=charts.utc_naive(s["time"]), y=s["ms"], name=charts.text(stage), mode="lines+markers",
                        line=dict(color=color, dash="dash" if stage == "total" else "solid", width=2),
                        marker=dict(color=color, size=8), hovertemplate=hover,
                        customdata=[[int(b), stage, charts.text(stage)] for b in s["bucket"]])
    yaxis = dict(title="ms", tickformat=",~g")
    if log:
        decades = [10.0 ** e for e in range(-1, 7) if df["ms"].min() / 10 <= 10.0 ** e <= df["ms"].max() * 10]
        yaxis.update(type="log", tickvals=decades)
    fig.update_layout(xaxis=charts.time_axis(r.grain), yaxis=yaxis)
    point = charts.show(fig, keys("latency_chart"), fields=("bucket", "stage"))
    st.caption(f"Source: **{note}**." + (f" {why}" if why else "") + " Click a point to list the slowest rows." + hint)
    _download(df.drop(columns=["time"]), f"latency-{which}", "latency")
    if point:
        bucket, stage = int(point["bucket"]), str(point["stage"])
        rows = costs.queries.rows(r, f, bucket=bucket, bucket_s=r.bucket_s, stage=stage)
        show_rows(rows, f"{_bucket_label(bucket, r)} · slowest '{stage}'", "latency")


def _ranking(labels: list[str], cost: pd.Series, color: str, title: str, customdata: list, hover: str):  # noqa: ANN202
    """Horizontal bars, the costliest on top."""
    fig = charts.new(title, height=360, legend=False)
    fig.add_bar(x=cost, y=labels, orientation="h", marker_color=color, customdata=customdata, hovertemplate=hover)
    fig.update_layout(xaxis=dict(tickformat="$,.2f"), yaxis=dict(autorange="reversed", automargin=True, type="category"))
    return fig


def top_charts(costs: Costs, r: TimeRange, f: Filters) -> None:
    left, right = st.columns(2)
    with left:
        users = pd.DataFrame(costs.queries.top_users(r, f, 10))
        if users.empty:
            st.info("No users in this range.", icon="📭")
        else:
            users = users.sort_values("cost_usd", ascending=False, kind="stable").reset_index(drop=True)
            fig = _ranking([charts.text(u) for u in users["user"]], users["cost_usd"], "#4e79a7",
                           "Top users by cost", [[u, charts.text(u), int(n)] for u, n in zip(users["user"], users["requests"])],
                           "user: %{customdata[1]}<br>cost: %{x:$,.4f}<br>requests: %{customdata[2]:,}<extra></extra>")
            point = charts.show(fig, keys("users_chart"), fields=("user",))
            _download(users, "top-users", "users")
            if point:
                user = str(point["user"])
                show_rows(costs.queries.rows(r, f, dim="user", value=user), f"user {user}", "user")
    with right:
        qs = pd.DataFrame(costs.queries.top_questions(r, f, 10))
        if qs.empty:
            st.info("No questions in this range.", icon="📭")
        else:
            qs["question"] = qs["question"].fillna("?")
            labels = [f"{i + 1}. {charts.text(charts.shorten(x, 49))}" for i, x in enumerate(qs["question"])]
            data = [[h, q, charts.text(q, wrap=80), int(n), float(s)]
                    for h, q, n, s in zip(qs["question_hash"], qs["question"], qs["requests"], qs["saved_usd"])]
            fig = _ranking(labels, qs["cost_usd"], "#e15759", "Top questions by cost", data,
                           "question: %{customdata[2]}<br>cost: %{x:$,.4f}<br>requests: %{customdata[3]:,}"
                           "<br>cache saved: %{customdata[4]:$,.4f}<extra></extra>")
            point = charts.show(fig, keys("questions_chart"), fields=("question_hash", "question"))
            _download(qs, "top-questions", "questions")
            if point:
                qh, text = str(point["question_hash"]), str(point["question"])
                show_rows(costs.queries.rows(r, f, question_hash=qh), f"question: {text[:80]}", "question")
    st.caption("Source: ledger. Click a bar to list its ledger rows.")


# --- budgets ---------------------------------------------------------------------------------
def budget_bars(status: list[dict]) -> go.Figure:
    """Each budget's use as a bar against its limit (100%), with a tick at each alert threshold."""
    names = [b["name"] for b in status]
    shown = [min(b["pct"], 150.0) for b in status]
    color = ["#bab0ac" if not b["enabled"] else "#e15759" if b["pct"] >= 100 else "#f1a340" if b["fired"] else "#59a14f"
             for b in status]
    text = [f"{kit.money(b['spend_usd'])} of {kit.money(b['limit_usd'])} · {b['pct']:.0f}%" for b in status]
    top = max(125.0, max(shown) + 25)
    fig = charts.new(height=40 + 58 * len(status), legend=False)
    y = [charts.text(n) for n in names]
    fig.add_bar(x=[100.0] * len(status), y=y, orientation="h", width=0.8, marker_color="rgba(128,128,128,0.15)",
                hoverinfo="skip")
    fig.add_bar(x=shown, y=y, orientation="h", width=0.4, marker_color=color, text=text, textposition="outside",
                cliponaxis=False, customdata=text, hovertemplate="budget: %{y}<br>spend: %{customdata}<extra></extra>")
    ticks = [(charts.text(b["name"]), float(t)) for b in status for t in b["thresholds"]]
    if ticks:
        fig.add_scatter(x=[t for _, t in ticks], y=[n for n, _ in ticks], mode="markers+text",
                        marker=dict(symbol="line-ns", size=30, line=dict(width=2, color="#333")),
                        text=[f"{t:g}%" for _, t in ticks], textposition="top center", textfont=dict(size=10, color="#333"),
                        cliponaxis=False, hovertemplate="budget: %{y}<br>threshold: %{text}<extra></extra>")
    fig.update_layout(barmode="overlay", xaxis=dict(range=[0, top], ticksuffix="%"),
                      yaxis=dict(type="category", categoryorder="array", categoryarray=y, autorange="reversed",
                                 automargin=True))
    return fig


def budgets_section(costs: Costs, r: TimeRange) -> None:
    status = costs.budgets.status()
    if status:
        charts.show(budget_bars(status), keys("budget_chart"))
        table = pd.DataFrame([{
            "budget": b["name"], "kind": "hard" if b["hard"] else "soft", "scope": b["scope_label"],
            "period": b["period_label"], "spend": b["spend_usd"], "limit": b["limit_usd"], "used": b["pct"] / 100,
            "thresholds": ", ".join(f"{t}%" for t in b["thresholds"]),
            "fired": ", ".join(f"{t}%" for t in b["fired"]) or "–",
            "state": ("disabled" if not b["enabled"] else "refusing paid calls" if b["blocking"] else "ok"),
            "resets": b["resets"].strftime("%Y-%m-%d") if b["resets"] else "rolling",
        } for b in status])
        st.dataframe(table, hide_index=True, key=keys("budget_table"), column_config={
            "spend": st.column_config.NumberColumn(format="$%.4f"), "limit": st.column_config.NumberColumn(format="$%.2f"),
            "used": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})
        _download(table, "budgets", "budgets")
        st.caption("Bars: spend of the current period; ticks: alert thresholds (each fires once per period). "
                   "A hard budget refuses new paid model calls of its scope once spent; cached answers still go out.")
    else:
        st.info("No budgets yet. A soft budget alerts at its thresholds; a hard one also refuses paid calls.", icon="🎯")
    if locked(Action.budgets, "Creating, disabling or deleting budgets"):
        return
    options = costs.queries.options(TimeRange.last_days(90))
    with st.expander("➕ New budget", expanded=not status):
        with st.form(keys("budget_form"), clear_on_submit=False, border=False):
            c = st.columns(3)
            name = c[0].text_input("Name", key=keys("b.name"), placeholder="team monthly")
            limit = c[1].number_input("Limit (USD)", min_value=0.0, max_value=MAX_LIMIT_USD, value=100.0, step=10.0, key=keys("b.limit"))
            hard = c[2].toggle("Hard (refuse paid calls when spent)", key=keys("b.hard"))
            c = st.columns(3)
            scope = c[0].selectbox("Scope", SCOPES, key=keys("b.scope"))
            value = c[1].selectbox("Scope value", [""] + sorted(set(options["policy"] + options["user"] + options["model"])),
                                   key=keys("b.value"), accept_new_options=True,
                                   help="The policy, user or model it covers (ignored for global)")
            period = c[2].selectbox("Period", PERIODS, index=2, key=keys("b.period"),
                                    format_func=lambda p: {"day": "UTC day", "week": "week (from Monday)",
                                                           "month": "calendar month", "rolling": "rolling N days"}[p])
            c = st.columns(3)
            days = c[0].number_input("Rolling days", min_value=1, max_value=366, value=30, key=keys("b.days"))
            thresholds = c[1].text_input("Alert thresholds (% of the limit)", value="80, 95, 100", key=keys("b.th"))
            if st.form_submit_button("Create the budget", type="primary"):
                try:
                    ths = [int(x) for x in thresholds.replace(";", ",").split(",") if x.strip()]
                except ValueError:
                    st.error("Thresholds are whole percentages separated by commas.", icon="🛑")
                else:
                    kit.run(keys, lambda: costs.budgets.create(
                        current_actor(), name, limit, scope=scope, scope_value=value or None, period=period, hard=hard,
                        thresholds=ths, rolling_days=days if period == "rolling" else None),
                        ok=f"Budget '{name}' created", inline=True, rerun=True)
    if status:
        with st.expander("⚙️ Enable, disable or delete a budget"):
            by_name = {b["name"]: b for b in status}
            pick = st.selectbox("Budget", list(by_name), key=keys("b.pick"))
            b = by_name[pick]
            kind = "hard" if b["hard"] else "soft"
            c = st.columns(3)
            if b["enabled"]:
                c[0].button("⏸️ Disable", key=keys("b.toggle"), on_click=kit.ask, args=(keys, "budget.disable"), kwargs=dict(
                    id=b["id"], name=pick,
                    what=f"The {kind} budget **{escape_md(pick)}** ({kit.money(b['limit_usd'])} per {b['period_label']}, "
                    f"{escape_md(b['scope_label'])}) stops alerting" + (" and refusing paid calls" if b["hard"] else "")
                    + " until it is enabled again. Its definition and history are kept."))
            elif c[0].button("▶️ Enable", key=keys("b.toggle")):
                kit.run(keys, lambda: costs.budgets.set_enabled(current_actor(), b["id"], True),
                        ok=f"Budget '{pick}' enabled", inline=True, rerun=True)
            c[1].button("🗑️ Delete", key=keys("b.delete"), on_click=kit.ask, args=(keys, "budget.delete"), kwargs=dict(
                id=b["id"], name=pick,
                what=f"The {kind} budget **{escape_md(pick)}** ({kit.money(b['limit_usd'])} per {b['period_label']}, "
                f"{escape_md(b['scope_label'])}) is deleted for good and its firing alerts are resolved"
                + (": its scope's paid calls are no longer refused." if b["hard"] else ".")))
        _dialog(costs, "budget.")


# --- alerts ----------------------------------------------------------------------------------
def alerts_section(costs: Costs) -> None:
    head, button = st.columns([4, 1], vertical_alignment="bottom")
    head.markdown("**Firing now**")
    if button.button("🔁 Evaluate now", key=keys("evaluate"), help="Run every rule and budget check now"):
        costs.alerts.evaluate()
        costs.budgets.evaluate()
    firing = costs.alerts.firing()
    if not firing:
        st.success("No alert is firing.", icon="✅")
    for a in firing:
        st.error(f"**{escape_md(a['title'])}** — {escape_md(a['detail'])}  \nfirst seen {a['first_seen']:%Y-%m-%d %H:%M} "
                 f"UTC · last seen {a['last_seen']:%H:%M}", icon="💸" if a["source"] == "budget" else "🚨")
    hook = webhook_label(costs.alerts.webhook_url)  # the URL's path and query hold its token: host only
    st.caption(f"Webhook: {kit.code(hook) + ' (ALERT_WEBHOOK_URL)' if hook else 'none (set ALERT_WEBHOOK_URL)'}. Rules and "
               "budget periods are checked in the background every HOUSEKEEPING_S (30 s by default).")
    hist = pd.DataFrame(costs.alerts.history(100))
    st.markdown("**History**")
    if hist.empty:
        st.caption("No alerts yet.")
    else:
        hist = hist[["title", "source", "severity", "first_seen", "last_seen", "resolved_at", "notified_at", "notify_error"]]
        hist["notify_error"] = hist["notify_error"].map(lambda e: redact_urls(e) if isinstance(e, str) else e)  # older rows
        st.dataframe(hist, hide_index=True, key=keys("alert_history"), height=min(38 + 35 * len(hist), 280))
        _download(hist, "alerts", "alerts")
    st.markdown("**Rules**")
    rules = costs.alerts.rules()
    if rules:
        df = pd.DataFrame([{"name": x["name"], "metric": x["metric"],
                            "fires when above": describe_value(x["metric"], x["threshold"]),
                            "window": f"{x['window_minutes']} min", "policy": x["policy"] or "all",
                            "model": x["model"] or "all", "min requests": x["min_requests"],
                            "webhook": x["webhook"], "enabled": x["enabled"]} for x in rules])
        st.dataframe(df, hide_index=True, key=keys("rules_table"))
    if locked(Action.alert_rules, "Creating, disabling or deleting alert rules"):
        return
    with st.expander("➕ New alert rule"):
        with st.form(keys("rule_form"), border=False):
            c = st.columns(3)
            name = c[0].text_input("Name", key=keys("r.name"))
            metric = c[1].selectbox("Metric", list(ALERT_METRICS), format_func=ALERT_METRICS.get, key=keys("r.metric"))
            threshold = c[2].number_input("Threshold (USD, share 0-1, or ms)", min_value=0.0, max_value=MAX_THRESHOLD, value=0.05, key=keys("r.th"))
            c = st.columns(4)
            window = c[0].number_input("Window (minutes)", min_value=1, value=15, key=keys("r.window"))
            policy = c[1].text_input("Policy (blank = all)", key=keys("r.policy"))
            model = c[2].text_input("Model (blank = all)", key=keys("r.model"))
            min_req = c[3].number_input("Min requests", min_value=0, value=20, key=keys("r.min"))
            webhook = st.toggle("Send to the webhook", value=True, key=keys("r.webhook"))
            if st.form_submit_button("Create the rule", type="primary"):
                kit.run(keys, lambda: costs.alerts.create_rule(current_actor(), name, metric, threshold, window, policy,
                                                                model, min_req, webhook),
                        ok=f"Rule '{name}' created", inline=True, rerun=True)
    if rules:
        with st.expander("⚙️ Enable, disable or delete a rule"):
            by_name = {x["name"]: x for x in rules}
            pick = st.selectbox("Rule", list(by_name), key=keys("r.pick"))
            x = by_name[pick]
            rule = (f"**{escape_md(pick)}** ({escape_md(ALERT_METRICS[x['metric']])} above "
                    f"{escape_md(describe_value(x['metric'], x['threshold']))} over {x['window_minutes']} min)")
            c = st.columns(3)
            if x["enabled"]:
                c[0].button("⏸️ Disable", key=keys("r.toggle"), on_click=kit.ask, args=(keys, "rule.disable"), kwargs=dict(
                    id=x["id"], name=pick,
                    what=f"The rule {rule} stops being evaluated and its firing alert is resolved, until it is enabled "
                    "again."))
            elif c[0].button("▶️ Enable", key=keys("r.toggle")):
                kit.run(keys, lambda: costs.alerts.set_rule_enabled(current_actor(), x["id"], True),
                        ok=f"Rule '{pick}' enabled", inline=True, rerun=True)
            c[1].button("🗑️ Delete", key=keys("r.delete"), on_click=kit.ask, args=(keys, "rule.delete"), kwargs=dict(
                id=x["id"], name=pick,
                what=f"The rule {rule} is deleted for good and its firing alert is resolved; its past alerts stay in the "
                "history."))
        _dialog(costs, "rule.")


# --- prices ----------------------------------------------------------------------------------
def prices_section(costs: Costs, r: TimeRange) -> None:
    rows = costs.prices.list()
    age = costs.prices.age_days()
    c = st.columns([3, 1], vertical_alignment="bottom")
    c[0].caption(f"{len(rows)} price rows · USD per million tokens · last checked "
                 f"{age:,.0f} days ago" if age is not None else "empty")
    if c[1].button("✅ Mark checked today", key=keys("p.checked"),
                   **need(Action.edit_prices, help="You compared the table with the providers' price lists today")):
        kit.run(keys, lambda: costs.prices.mark_checked(current_actor()), ok="Price table marked as checked today",
                inline=True, rerun=True)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df[["id", "pattern", "match", "input_per_m", "output_per_m", "cached_input_per_m", "per_call_usd",
                 "effective_from", "checked_at", "note"]]
        st.dataframe(df, hide_index=True, key=keys("prices_table"), height=320, column_config={
            "input_per_m": st.column_config.NumberColumn("input $/M", format="%.3f"),
            "output_per_m": st.column_config.NumberColumn("output $/M", format="%.3f"),
            "cached_input_per_m": st.column_config.NumberColumn("cached input $/M", format="%.4f"),
            "per_call_usd": st.column_config.NumberColumn("per call $", format="%.4f"),
            "effective_from": st.column_config.DatetimeColumn("effective from", format="YYYY-MM-DD HH:mm"),
            "checked_at": st.column_config.DatetimeColumn("checked", format="YYYY-MM-DD")})
    st.caption("The most specific pattern wins (exact, then the longest prefix, then a regex); of its rows, the one in "
               "effect at the call's time. A change is a new row with a later date: past ledger rows keep their cost.")
    test = st.text_input("Which price applies to a model?", key=keys("p.test"), placeholder="e.g. gpt-4o-mini-2024-07-18")
    if test.strip():
        p = costs.prices.price(test.strip())
        if p is None:
            st.warning(f"No price matches {kit.code(test.strip())}: its calls are recorded at \\$0.", icon="🏷️")
        else:
            st.info(f"{kit.code(p.pattern)} ({p.match}) since {p.effective_from:%Y-%m-%d}: 1M input + 1M output "
                    f"tokens cost {kit.money(p.cost(1_000_000, 1_000_000))}", icon="🏷️")
    left, right = st.columns(2)
    with right:
        with st.expander("📤 Export CSV"):
            st.download_button("📤 Export the price table", costs.prices.export_csv().encode(), "prices.csv",
                               mime="text/csv", key=keys("p.export"))
    if locked(Action.edit_prices, "Adding, importing or deleting prices"):
        return
    with left:
        with st.expander("➕ Add a price (or a price change)"):
            with st.form(keys("price_form"), border=False):
                c = st.columns(2)
                pattern = c[0].text_input("Model pattern", key=keys("p.pattern"))
                match = c[1].selectbox("Match", list(MATCH_ORDER), key=keys("p.match"))
                c = st.columns(4)
                pin = c[0].number_input("Input $/M", min_value=0.0, max_value=MAX_USD_PER_M, format="%.4f", key=keys("p.in"))
                pout = c[1].number_input("Output $/M", min_value=0.0, max_value=MAX_USD_PER_M, format="%.4f", key=keys("p.out"))
                pcached = c[2].text_input("Cached input $/M", placeholder="as input", key=keys("p.cached"))
                pcall = c[3].number_input("Per call $", min_value=0.0, max_value=MAX_PER_CALL_USD, format="%.4f", key=keys("p.call"))
                c = st.columns(2)
                eff = c[0].date_input("Effective from (UTC)", key=keys("p.eff"))
                note = c[1].text_input("Note", key=keys("p.note"))
                if st.form_submit_button("Add the price", type="primary"):
                    kit.run(keys, lambda: costs.prices.add(current_actor(), pattern, match, pin, pout, pcached or None,
                                                           pcall, eff, note),
                            ok=f"Price for '{pattern}' added", inline=True, rerun=True)
    with right:
        with st.expander("📥 Import CSV"):
            up = st.file_uploader("CSV with the export's columns", type=["csv"], key=keys("p.upload"))
            if up is not None and st.button("📥 Import", key=keys("p.import")):
                csv = up.getvalue().decode("utf-8", errors="replace")
                kit.run(keys, lambda: costs.prices.import_csv(current_actor(), csv),
                        ok=lambda res: f"Imported: {res['added']} rows added, {res['skipped']} already present",
                        inline=True, rerun=True)
        if rows:
            with st.expander("🗑️ Delete a price row"):
                labels = {f"#{x['id']} {x['pattern']} ({x['match']}) from {x['effective_from']:%Y-%m-%d}": x["id"]
                          for x in rows}
                pick = st.selectbox("Row", list(labels), key=keys("p.pick"))
                st.button("Delete this row", key=keys("p.delete"), on_click=kit.ask, args=(keys, "price.delete"), kwargs=dict(
                    id=labels[pick], name=pick,
                    what=f"The price row **{escape_md(pick)}** is deleted. Ledger rows keep the cost they were written "
                    "with; calls from now on use the next matching row, or cost \\$0 when none matches."))
    _dialog(costs, "price.")


# --- ledger rows -----------------------------------------------------------------------------
def rows_section(costs: Costs, r: TimeRange, f: Filters) -> None:
    buckets = []
    t = r.start
    while t < r.end:
        buckets.append(t)
        t += timedelta(seconds=r.bucket_s)
    c = st.columns(3)
    when = c[0].selectbox("When", ["whole range"] + [_bucket_label(int(b.timestamp()), r) for b in reversed(buckets)],
                          key=keys("rows.when"))
    kind = c[1].selectbox("Call kind", ["all", "chat", "embedding", "rerank", "judge"], key=keys("rows.kind"))
    order = c[2].segmented_control("Order", ["newest", "costliest"], default="newest", key=keys("rows.order")) or "newest"
    bucket = None
    if when != "whole range":
        bucket = next(int(b.timestamp()) for b in buckets if _bucket_label(int(b.timestamp()), r) == when)
    rows = costs.queries.rows(r, f, bucket=bucket, dim="kind" if kind != "all" else None,
                              value=kind if kind != "all" else None, order="time" if order == "newest" else "cost")
    show_rows(rows, f"Ledger rows · {when}", "all")


# --- sidebar ---------------------------------------------------------------------------------
def sidebar_alerts(costs: Costs) -> None:
    """Firing alerts under the sidebar status on every page (one small query; rules run in backend.housekeeping)."""
    firing = costs.alerts.firing()
    if not firing:
        return
    with st.expander(f"🚨 {len(firing)} alert{'s' if len(firing) > 1 else ''} firing", expanded=True):
        for a in firing[:5]:
            st.caption(f"**{escape_md(a['title'])}** · since {a['first_seen']:%m-%d %H:%M} UTC")
        st.page_link(PAGE, label="Costs & latency", icon="💰")
