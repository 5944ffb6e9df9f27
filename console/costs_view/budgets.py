"""The 🎯 Budgets tab: each budget's use against its limit, the new-budget form, and enabling,
disabling or deleting one (confirmed first)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend.access import Action
from backend.ledger.budgets import MAX_LIMIT_USD, PERIODS, SCOPES, Budget, BudgetStatus
from backend.ledger.costs import Costs
from backend.ledger.queries import TimeRange
from console import charts, kit
from console.access_view import locked
from console.auth import current_actor
from console.costs_view.common import download, keys, manage
from console.i18n import N_, t
from console.markup import escape_md

PERIOD_NAMES = {"day": N_("UTC day"), "week": N_("week (from Monday)"), "month": N_("calendar month"),
                "rolling": N_("rolling N days")}
SCOPE_NAMES = {"global": N_("global"), "policy": N_("policy"), "user": N_("user"), "model": N_("model")}


def budget_bars(status: list[BudgetStatus]) -> go.Figure:
    """Each budget's use as a bar against its limit (100%), with a tick at each alert threshold."""
    names = [s.budget.name for s in status]
    shown = [min(s.pct, 150.0) for s in status]
    color = ["#bab0ac" if not s.budget.enabled else "#e15759" if s.pct >= 100 else "#f1a340" if s.fired else "#59a14f"
             for s in status]
    text = [t("{spend} of {limit} · {pct}%", spend=kit.money(s.spend_usd), limit=kit.money(s.budget.limit_usd),
              pct=f"{s.pct:.0f}") for s in status]
    top = max(125.0, max(shown) + 25)
    fig = charts.new(height=40 + 58 * len(status), legend=False)
    y = [charts.text(n) for n in names]
    fig.add_bar(x=[100.0] * len(status), y=y, orientation="h", width=0.8, marker_color="rgba(128,128,128,0.15)",
                hoverinfo="skip")
    fig.add_bar(x=shown, y=y, orientation="h", width=0.4, marker_color=color, text=text, textposition="outside",
                cliponaxis=False, customdata=text,
                hovertemplate=f"{t('budget')}: %{{y}}<br>{t('spend')}: %{{customdata}}<extra></extra>")
    ticks = [(charts.text(s.budget.name), float(x)) for s in status for x in s.budget.thresholds]
    if ticks:
        fig.add_scatter(x=[x for _, x in ticks], y=[n for n, _ in ticks], mode="markers+text",
                        marker=dict(symbol="line-ns", size=30, line=dict(width=2, color="#333")),
                        text=[f"{x:g}%" for _, x in ticks], textposition="top center", textfont=dict(size=10, color="#333"),
                        cliponaxis=False,
                        hovertemplate=f"{t('budget')}: %{{y}}<br>{t('threshold')}: %{{text}}<extra></extra>")
    fig.update_layout(barmode="overlay", xaxis=dict(range=[0, top], ticksuffix="%"),
                      yaxis=dict(type="category", categoryorder="array", categoryarray=y, autorange="reversed",
                                 automargin=True))
    return fig


def _table_row(s: BudgetStatus) -> dict:
    """A budget as a row of the table: columns under English names (shown translated), numbers left numbers."""
    b = s.budget
    return {
        N_("budget"): b.name, N_("kind"): t("hard") if b.hard else t("soft"), N_("scope"): b.scope_label,
        N_("period"): b.period_label, N_("spend"): s.spend_usd, N_("limit"): b.limit_usd,
        N_("used"): s.pct / 100, N_("thresholds"): ", ".join(f"{x}%" for x in b.thresholds),
        N_("fired"): ", ".join(f"{x}%" for x in s.fired) or "–",
        N_("state"): (t("disabled") if not b.enabled else t("refusing paid calls") if s.blocking else t("ok")),
        N_("resets"): s.resets.strftime("%Y-%m-%d") if s.resets else t("rolling"),
    }


def budgets_section(costs: Costs, r: TimeRange) -> None:
    status = costs.budgets.status()
    if status:
        charts.show(budget_bars(status), keys("budget_chart"))
        table = pd.DataFrame([_table_row(s) for s in status])
        st.dataframe(table, hide_index=True, key=keys("budget_table"), column_config=kit.columns(
            list(table.columns), spend=st.column_config.NumberColumn(format="$%.4f"),
            limit=st.column_config.NumberColumn(format="$%.2f"),
            used=st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)))
        download(table, "budgets", "budgets")
        st.caption(t("Bars: spend of the current period; ticks: alert thresholds (each fires once per period). A hard "
                     "budget refuses new paid model calls of its scope once spent; cached answers still go out."))
    else:
        st.info(t("No budgets yet. A soft budget alerts at its thresholds; a hard one also refuses paid calls."), icon="🎯")
    if locked(Action.budgets, N_("Creating, disabling or deleting budgets")):
        return
    options = costs.queries.options(TimeRange.last_days(90))
    with st.expander(t("➕ New budget"), expanded=not status):
        with st.form(keys("budget_form"), clear_on_submit=False, border=False):
            c = st.columns(3)
            name = c[0].text_input(t("Name"), key=keys("b.name"), placeholder=t("team monthly"))
            limit = c[1].number_input(t("Limit (USD)"), min_value=0.0, max_value=MAX_LIMIT_USD, value=100.0, step=10.0,
                                      key=keys("b.limit"))
            hard = c[2].toggle(t("Hard (refuse paid calls when spent)"), key=keys("b.hard"))
            c = st.columns(3)
            scope = c[0].selectbox(t("Scope"), SCOPES, key=keys("b.scope"), format_func=lambda x: t(SCOPE_NAMES[x]))
            value = c[1].selectbox(t("Scope value"), [""] + sorted(set(options["policy"] + options["user"] + options["model"])),
                                   key=keys("b.value"), accept_new_options=True,
                                   help=t("The policy, user or model it covers (ignored for global)"))
            period = c[2].selectbox(t("Period"), PERIODS, index=2, key=keys("b.period"),
                                    format_func=lambda p: t(PERIOD_NAMES[p]))
            c = st.columns(3)
            days = c[0].number_input(t("Rolling days"), min_value=1, max_value=366, value=30, key=keys("b.days"))
            thresholds = c[1].text_input(t("Alert thresholds (% of the limit)"), value="80, 95, 100", key=keys("b.th"))
            if st.form_submit_button(t("Create the budget"), type="primary"):
                try:
                    ths = [int(x) for x in thresholds.replace(";", ",").split(",") if x.strip()]
                except ValueError:
                    st.error(t("Thresholds are whole percentages separated by commas."), icon="🛑")
                else:
                    kit.run(keys, lambda: costs.budgets.create(
                        current_actor(), name, limit, scope=scope, scope_value=value or None, period=period, hard=hard,
                        thresholds=ths, rolling_days=days if period == "rolling" else None),
                        ok=t("Budget '{name}' created", name=name), inline=True, rerun=True)
    if status:
        manage(costs, "budget", "b", [s.budget for s in status], disabling=_disabling, deleting=_deleting)


def _disabling(b: Budget, name: str) -> str:
    if b.hard:
        return t("{budget} stops alerting and refusing paid calls until it is enabled again. Its definition and history "
                 "are kept.", budget=_budget(b, name))
    return t("{budget} stops alerting until it is enabled again. Its definition and history are kept.",
             budget=_budget(b, name))


def _deleting(b: Budget, name: str) -> str:
    if b.hard:
        return t("{budget} is deleted for good and its firing alerts are resolved: its scope's paid calls are no longer "
                 "refused.", budget=_budget(b, name))
    return t("{budget} is deleted for good and its firing alerts are resolved.", budget=_budget(b, name))


def _budget(b: Budget, name: str) -> str:
    """How a confirmation names the budget: kind, name, limit per period and scope."""
    facts = dict(name=escape_md(name), limit=kit.money(b.limit_usd), period=b.period_label,
                 scope=escape_md(b.scope_label))
    return t("The hard budget **{name}** ({limit} per {period}, {scope})", **facts) if b.hard else \
        t("The soft budget **{name}** ({limit} per {period}, {scope})", **facts)
