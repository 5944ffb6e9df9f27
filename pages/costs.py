"""Costs & latency: spend, tokens, latency, budgets and alerts from the token ledger (and from
Prometheus when PROMETHEUS_URL is set). Range, filters (the Source filter puts API traffic beside
the console's) and tab are in the URL."""
from datetime import datetime, timezone

import streamlit as st

from console import costs_view as view
from console import state
from console.i18n import t

costs = state.get_services().costs
now = datetime.now(timezone.utc)  # reading only: periods and alert rules move on in backend.background.housekeeping

st.title(t("💰 Costs & latency"))
view.flash()
r, f = view.controls(costs, now)
view.firing_banner(costs)
view.warnings(costs, r)
view.tiles(costs, r, f, now)

spend, volume, latency, top, budgets, alerts, prices, rows = view.tabs()
with spend:
    if spend.open:
        view.spend_chart(costs, r, f)
with volume:
    if volume.open:
        view.tokens_chart(costs, r, f)
        view.requests_chart(costs, r, f, now)
with latency:
    if latency.open:
        view.latency_chart(costs, r, f, now)
with top:
    if top.open:
        view.top_charts(costs, r, f)
with budgets:
    if budgets.open:
        view.budgets_section(costs, r)
with alerts:
    if alerts.open:
        view.alerts_section(costs)
with prices:
    if prices.open:
        view.prices_section(costs, r)
with rows:
    if rows.open:
        view.rows_section(costs, r, f)
