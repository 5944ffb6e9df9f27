"""Alerts: the banner of firing alerts at the top of the costs page, the 🚨 Alerts tab (firing now,
history, rules, a new rule, enabling, disabling or deleting one) and the firing alerts under the
sidebar status of every page."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from backend.access import Action
from backend.ledger.alerts import MAX_THRESHOLD
from backend.ledger.alerts import METRICS as ALERT_METRICS
from backend.ledger.alerts import AlertRule, describe_value, redact_urls, webhook_label
from backend.ledger.costs import Costs
from console import kit
from console.access_view import locked
from console.auth import current_actor
from console.costs_view.common import download, frame, keys, manage
from console.i18n import N_, t
from console.markup import escape_md

PAGE = Path(__file__).resolve().parents[2] / "pages" / "costs.py"
# The backend's names of the alert metrics (backend.ledger.alerts.METRICS), shown with t().
METRIC_NAMES = (N_("cost (USD) over the window"), N_("share of requests that failed (0-1)"),
                N_("p95 end-to-end latency (ms)"))
HISTORY = [N_("title"), N_("source"), N_("severity"), N_("first_seen"), N_("last_seen"), N_("resolved_at"),
           N_("notified_at"), N_("notify_error")]  # the history's columns, shown under their translated names


def firing_banner(costs: Costs) -> None:
    firing = costs.alerts.firing()
    for a in firing[:4]:
        icon = "💸" if a.source == "budget" else "🚨"
        st.error(t("**{title}** — {detail} · firing since {when} UTC", title=escape_md(a.title),
                   detail=escape_md(a.detail), when=kit.when(a.first_seen)), icon=icon)
    if len(firing) > 4:
        st.caption(t("…and {n} more under 🚨 Alerts.", n=len(firing) - 4))


def alerts_section(costs: Costs) -> None:
    head, button = st.columns([4, 1], vertical_alignment="bottom")
    head.markdown(t("**Firing now**"))
    if button.button(t("🔁 Evaluate now"), key=keys("evaluate"), help=t("Run every rule and budget check now")):
        costs.alerts.evaluate()
        costs.budgets.evaluate()
    firing = costs.alerts.firing()
    if not firing:
        st.success(t("No alert is firing."), icon="✅")
    for a in firing:
        st.error(t("**{title}** — {detail}  \nfirst seen {first} UTC · last seen {last}", title=escape_md(a.title),
                   detail=escape_md(a.detail), first=kit.when(a.first_seen), last=f"{a.last_seen:%H:%M}"),
                 icon="💸" if a.source == "budget" else "🚨")
    hook = webhook_label(costs.alerts.webhook_url)  # the URL's path and query hold its token: host only
    if hook:
        st.caption(t("Webhook: {hook} (ALERT_WEBHOOK_URL). Rules and budget periods are checked in the background every "
                     "HOUSEKEEPING_S (30 s by default).", hook=kit.code(hook)))
    else:
        st.caption(t("Webhook: none (set ALERT_WEBHOOK_URL). Rules and budget periods are checked in the background "
                     "every HOUSEKEEPING_S (30 s by default)."))
    hist = frame(costs.alerts.history(100))
    st.markdown(t("**History**"))
    if hist.empty:
        st.caption(t("No alerts yet."))
    else:
        hist = hist[HISTORY]
        hist["notify_error"] = hist["notify_error"].map(lambda e: redact_urls(e) if isinstance(e, str) else e)  # older rows
        st.dataframe(hist, hide_index=True, key=keys("alert_history"), height=min(38 + 35 * len(hist), 280),
                     column_config=kit.columns(HISTORY))
        download(hist, "alerts", "alerts")
    st.markdown(t("**Rules**"))
    rules = costs.alerts.rules()
    if rules:
        df = pd.DataFrame([{N_("name"): x.name, N_("metric"): x.metric,
                            N_("fires when above"): describe_value(x.metric, x.threshold),
                            N_("window"): t("{n} min", n=x.window_minutes), N_("policy"): x.policy or t("all"),
                            N_("model"): x.model or t("all"), N_("min requests"): x.min_requests,
                            N_("webhook"): x.webhook, N_("enabled"): x.enabled} for x in rules])
        st.dataframe(df, hide_index=True, key=keys("rules_table"), column_config=kit.columns(list(df.columns)))
    if locked(Action.alert_rules, N_("Creating, disabling or deleting alert rules")):
        return
    with st.expander(t("➕ New alert rule")):
        with st.form(keys("rule_form"), border=False):
            c = st.columns(3)
            name = c[0].text_input(t("Name"), key=keys("r.name"))
            metric = c[1].selectbox(t("Metric"), list(ALERT_METRICS), format_func=lambda m: t(ALERT_METRICS[m]),
                                    key=keys("r.metric"))
            threshold = c[2].number_input(t("Threshold (USD, share 0-1, or ms)"), min_value=0.0, max_value=MAX_THRESHOLD,
                                          value=0.05, key=keys("r.th"))
            c = st.columns(4)
            window = c[0].number_input(t("Window (minutes)"), min_value=1, value=15, key=keys("r.window"))
            policy = c[1].text_input(t("Policy (blank = all)"), key=keys("r.policy"))
            model = c[2].text_input(t("Model (blank = all)"), key=keys("r.model"))
            min_req = c[3].number_input(t("Min requests"), min_value=0, value=20, key=keys("r.min"))
            webhook = st.toggle(t("Send to the webhook"), value=True, key=keys("r.webhook"))
            if st.form_submit_button(t("Create the rule"), type="primary"):
                kit.run(keys, lambda: costs.alerts.create_rule(current_actor(), name, metric, threshold, window, policy,
                                                                model, min_req, webhook),
                        ok=t("Rule '{name}' created", name=name), inline=True, rerun=True)
    if rules:
        manage(costs, "rule", "r", rules,
               disabling=lambda x, name: t("{rule} stops being evaluated and its firing alert is resolved, until it is "
                                           "enabled again.", rule=_rule(x, name)),
               deleting=lambda x, name: t("{rule} is deleted for good and its firing alert is resolved; its past alerts "
                                          "stay in the history.", rule=_rule(x, name)))


def _rule(x: AlertRule, name: str) -> str:
    """How a confirmation names the rule: name, metric, threshold and window."""
    return t("The rule **{name}** ({metric} above {value} over {n} min)", name=escape_md(name),
             metric=escape_md(t(ALERT_METRICS[x.metric])), value=escape_md(describe_value(x.metric, x.threshold)),
             n=x.window_minutes)


def sidebar_alerts(costs: Costs) -> None:
    """Firing alerts under the sidebar status on every page (one small query; rules run in backend.background.housekeeping)."""
    firing = costs.alerts.firing()
    if not firing:
        return
    n = len(firing)
    with st.expander(t("🚨 {n} alerts firing", n=n) if n > 1 else t("🚨 {n} alert firing", n=n), expanded=True):
        for a in firing[:5]:
            st.caption(t("**{title}** · since {when} UTC", title=escape_md(a.title), when=f"{a.first_seen:%m-%d %H:%M}"))
        st.page_link(PAGE, label=t("Costs & latency"), icon="💰")
