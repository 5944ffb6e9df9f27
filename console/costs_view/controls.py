"""The top of the costs page: range and filters in the sidebar (mirrored to the URL, so a view can be
shared), the price-table warnings and the two rows of tiles; also which source the latency figures
come from (the ledger, or Prometheus when PROMETHEUS_URL is set and the filters allow it)."""
from __future__ import annotations

from datetime import datetime, timedelta

import streamlit as st

from backend.ledger.costs import Costs
from backend.ledger.queries import FILTER_DIMENSIONS, SOURCES, Filters, TimeRange
from console import kit
from console.costs_view.common import LABELS, NO_VARIANT, keys, value_label
from console.i18n import N_, language, t

RANGES = (N_("Last 24 hours"), N_("Last 7 days"), N_("Last 30 days"), N_("Last 90 days"), N_("This month"),
          N_("Custom days"))  # shown with t(); the code reads the English value
HELP = {"source": N_("Where the requests came from: api (an API key), console (a console user) or system (CLI, "
                     "evaluation, background jobs). Empty: all of them")}
LATENCY_SOURCES = (N_("Ledger"), "Prometheus")


def change(now: float, before: float) -> str | None:
    """Relative change against the previous range of the same length (the tile's help says so)."""
    if not before:
        return None
    return f"{(now - before) / before:+.0%}"


def controls(costs: Costs, now: datetime) -> tuple[TimeRange, Filters]:
    """Range and filters in the sidebar; their values live in the URL so a view can be shared."""
    with st.sidebar:
        st.markdown(t("**🔎 Range and filters**"))
        # In the URL by its English value, so a link opens the same view in either language.
        kit.from_url(keys("range"), "range", list(RANGES), "Last 30 days")
        choice = st.selectbox(t("Time range"), RANGES, key=keys("range"), format_func=kit.shown(RANGES),
                              on_change=kit.to_url, args=(keys("range"), "range"))
        today = now.date()
        if choice == "Last 24 hours":
            r = TimeRange.last_hours(24, now)
        elif choice == "This month":
            r = TimeRange.days(today.replace(day=1), today)
        elif choice == "Custom days":
            picked = st.date_input(t("Days (UTC, both included)"), value=(today - timedelta(days=13), today),
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
            picked = st.multiselect(t(LABELS[d]), opts, key=key, placeholder=t("all"), bind="query-params",
                                    format_func=value_label, help=t(HELP[d]) if d in HELP else None)
            chosen[d] = tuple("" if (d == "variant" and v == NO_VARIANT) else v for v in picked)
        if costs.prometheus is not None:
            kit.from_url(keys("latency_source"), "latency", list(LATENCY_SOURCES), "Ledger")
            st.segmented_control(t("Latency and request-rate source"), list(LATENCY_SOURCES),
                                 format_func=kit.shown(LATENCY_SOURCES), key=keys("latency_source"),
                                 on_change=kit.to_url, args=(keys("latency_source"), "latency"),
                                 help=t("Prometheus: histogram_quantile over rag_stage_latency_seconds (it knows the "
                                        "policy label only); ledger: the same estimate over the ledger's histogram"))
        st.caption(t("{range}. Days are UTC days; the last 24 hours are shown by hour.", range=r.label()))
    return r, Filters(**chosen)


def warnings(costs: Costs, r: TimeRange) -> None:
    unpriced = costs.queries.unpriced_models(r)
    if unpriced:
        names = ", ".join(t("{model} ({n} calls)", model=kit.code(u.model), n=f"{u.calls:,}") for u in unpriced)
        st.warning(t("**Models without a price in this range:** {models}. Their calls were recorded at \\$0 — add a "
                     "price under 🏷️ Prices (it applies to calls from its effective date on).", models=names), icon="🏷️")
    age = costs.prices.age_days()
    if age is None:
        st.warning(t("The price table is empty: every paid call is recorded at \\$0."), icon="🏷️")
    elif age > costs.max_price_age_days:
        st.warning(t("**The price table was last checked {days} days ago** (limit {limit} days, "
                     "PRICE_TABLE_MAX_AGE_DAYS). Compare it with the providers' price lists, then mark it checked under "
                     "🏷️ Prices.", days=f"{age:,.0f}", limit=costs.max_price_age_days), icon="⏳")


def latency_source(costs: Costs, f: Filters) -> tuple[str, str | None]:
    """('ledger' | 'prometheus', why the ledger is used although Prometheus was chosen)."""
    if costs.prometheus is None:
        return "ledger", None
    src = st.session_state.get(keys("latency_source"), "Ledger")
    if src != "Prometheus":
        return "ledger", None
    other = [t(LABELS[d]) for d in f.active() if d != "policy"]
    if other:
        names = ", ".join(other)
        return "ledger", t("Prometheus has no {labels} label: these figures come from the ledger.",
                           labels=names.lower() if language() == "en" else names)
    return "prometheus", None


def tiles(costs: Costs, r: TimeRange, f: Filters, now: datetime) -> None:
    q = costs.queries
    s, prev = q.summary(r, f), q.summary(r.previous(), f)
    fc = q.month_forecast(now, f)
    src, why = latency_source(costs, f)
    lat, lat_note = s.latency_ms, t("ledger")
    if src == "prometheus":
        try:
            lat = costs.prometheus.latency_quantiles(r.start, min(r.end, now), "total", f.policy)
            lat_note = "Prometheus"
        except Exception as exc:  # unreachable or bad answer: say so, keep the ledger's figures
            why = t("Prometheus did not answer ({error}): latency tiles from the ledger.", error=type(exc).__name__)
    a = st.columns(6)
    a[0].metric(t("Spend"), kit.money(s.cost_usd), delta=change(s.cost_usd, prev.cost_usd), delta_color="inverse",
                border=True, help=t("Change against the previous range ({range}): {spend}", range=r.previous().label(),
                                    spend=kit.money(prev.cost_usd)))
    a[1].metric(t("Month forecast"), kit.money(fc.forecast), border=True,
                help=t("This UTC month: {spend} in the first {elapsed} of {days} days extended at the same daily rate "
                       "(filters apply)", spend=kit.money(fc.month_to_date), elapsed=f"{fc.elapsed_days:.1f}",
                       days=fc.days_in_month))
    a[2].metric(t("Requests"), f"{s.requests:,}", delta=change(s.requests, prev.requests), delta_color="off", border=True,
                help=t("Answered, failed or refused requests (one chat row each; retrieval-only requests not counted); "
                       "change against the previous range: {n}", n=f"{prev.requests:,}"))
    a[3].metric(t("Cost per request"), kit.money(s.cost_per_request), border=True)
    a[4].metric(t("Cache hit rate"), kit.pct(s.cache_hit_rate), border=True,
                help=t("{hits} of {n} requests answered from the cache", hits=f"{s.cache_hits:,}", n=f"{s.requests:,}"))
    a[5].metric(t("Cache savings"), kit.money(s.saved_usd), border=True,
                help=t("What the cached answers would have cost, at the prices in effect when they were served"))
    b = st.columns(6)
    b[0].metric(t("Tokens in"), kit.count(s.prompt_tokens), border=True,
                help=t("Prompt tokens of every call kind, of which {n} were cached input", n=f"{s.cached_tokens:,}"))
    b[1].metric(t("Tokens out"), kit.count(s.completion_tokens), border=True, help=t("Completion tokens"))
    b[2].metric(t("Error rate"), kit.pct(s.error_rate), border=True,
                help=t("{errors} failed and {refused} refused by a hard budget, of {n} requests", errors=f"{s.errors:,}",
                       refused=f"{s.refused:,}", n=f"{s.requests:,}"))
    for col, (qv, name) in zip(b[3:], ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))):
        col.metric(t("{quantile} latency", quantile=name), kit.duration(lat.get(qv)), border=True,
                   help=t("End to end ('total' stage), histogram estimate; source: {source}", source=lat_note))
    st.caption(t("Latency tiles: **{source}**.", source=lat_note) + (f" {why}" if why else "")
               + (t(" {n} calls had no price.", n=f"{s.unpriced_calls:,}") if s.unpriced_calls else ""))
