"""What the modules of the costs page share: its widget keys (`costs.*`, console.kit.PageKeys: one
instance, so the flash and the confirmation dialog are the page's own), the filter labels, the CSV
download under each chart or table, and the confirmations of destructive actions with the one
"enable, disable or delete" control of budgets and alert rules."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pandas as pd
import streamlit as st

from backend.exports import frame_csv
from backend.ledger.costs import Costs
from console import kit
from console.auth import current_actor
from console.i18n import N_, language, t

keys = kit.PageKeys("costs")
LABELS = {"policy": N_("Policy"), "model": N_("Model"), "user": N_("User"), "variant": N_("A/B variant"),
          "index_version": N_("Index version"), "kind": N_("Call kind"), "source": N_("Source")}
NO_VARIANT = N_("(none)")  # the value (put in the URL) of rows without an A/B variant, stored as ''; shown with t()
OTHER = N_("(other)")  # the series summing the smaller ones; shown with t()
TABS = [N_("📈 Spend"), N_("🔢 Tokens & requests"), N_("⏱️ Latency"), N_("🏆 Top users & questions"), N_("🎯 Budgets"),
        N_("🚨 Alerts"), N_("🏷️ Prices"), N_("🧾 Ledger rows")]  # shown with t()


def tabs() -> list:
    """The page's tabs, lazy (only the open one runs). The open tab is in the URL as ?tab= with its
    English name, so a link opens the same tab in either language."""
    names = {t(x): x for x in TABS}
    wanted = st.query_params.get("tab")
    return st.tabs(list(names), key=keys("tab"), default=t(wanted) if wanted in TABS else None,
                   on_change=_tab_to_url, args=(names,))


def _tab_to_url(names: dict[str, str]) -> None:
    st.query_params["tab"] = names.get(st.session_state.get(keys("tab")), TABS[0])


def dimension(d: str) -> str:
    """A filter dimension's name inside a sentence ("by model"): lower case in English."""
    name = t(LABELS[d])
    return name.lower() if language() == "en" else name


def value_label(value: object) -> str:
    """A series or filter value as shown: the placeholders (none) and (other) translated, data as is."""
    return t(value) if value in (NO_VARIANT, OTHER) else str(value)


def frame(records: Sequence[Any]) -> pd.DataFrame:
    """A chart's or table's DataFrame from the backend's records (frozen dataclasses): a column per field."""
    return pd.DataFrame([dataclasses.asdict(x) for x in records])


def times(df: pd.DataFrame) -> pd.DataFrame:
    df["time"] = pd.to_datetime(df["bucket"], unit="s", utc=True)
    return df


def download(df: pd.DataFrame, name: str, key: str) -> None:
    st.download_button(t("⬇️ CSV"), frame_csv(df).encode(), file_name=f"{name}.csv", mime="text/csv",
                       key=keys("csv." + key), help=t("Download what this chart or table shows"))


# --- confirmations ---------------------------------------------------------------------------
# kind -> (dialog title, button label, the backend call on (costs, actor, id), the flash with the target's {name}),
# the texts marked with N_ and shown with t().
CONFIRMS = {
    "price.delete": (N_("Delete this price row?"), N_("🗑️ Delete the row"), lambda c, a, i: c.prices.delete(a, i),
                     N_("Price row {name} deleted")),
    "budget.disable": (N_("Disable this budget?"), N_("⏸️ Disable the budget"),
                       lambda c, a, i: c.budgets.set_enabled(a, i, False), N_("Budget '{name}' disabled")),
    "budget.delete": (N_("Delete this budget?"), N_("🗑️ Delete the budget"), lambda c, a, i: c.budgets.delete(a, i),
                      N_("Budget '{name}' deleted")),
    "rule.disable": (N_("Disable this alert rule?"), N_("⏸️ Disable the rule"),
                     lambda c, a, i: c.alerts.set_rule_enabled(a, i, False), N_("Rule '{name}' disabled")),
    "rule.delete": (N_("Delete this alert rule?"), N_("🗑️ Delete the rule"), lambda c, a, i: c.alerts.delete_rule(a, i),
                    N_("Rule '{name}' deleted")),
}
# noun -> (the expander, the picker's label, the flash once one is enabled again).
NOUNS = {"budget": (N_("⚙️ Enable, disable or delete a budget"), N_("Budget"), N_("Budget '{name}' enabled")),
         "rule": (N_("⚙️ Enable, disable or delete a rule"), N_("Rule"), N_("Rule '{name}' enabled"))}


def dialog(costs: Costs, prefix: str) -> None:
    """Draw the open confirmation of this section (sections run only while their tab is open)."""
    d = kit.asked(keys)
    if d and d["kind"].startswith(prefix):
        title, label, call, done = CONFIRMS[d["kind"]]
        kit.confirm(keys, t(title), t(label), "", lambda: call(costs, current_actor(), d["id"]),
                    ok=t(done, name=d["name"]), body=d["what"])


def flash() -> None:
    """The message of the last successful change, once."""
    kit.flash(keys)


# kind -> the backend call on (costs, actor, id) that enables a row again (no confirmation: nothing is lost).
ENABLE = {"budget": lambda c, a, i: c.budgets.set_enabled(a, i, True),
          "rule": lambda c, a, i: c.alerts.set_rule_enabled(a, i, True)}


class Managed(Protocol):
    """What the control needs of a row (a Budget or an AlertRule)."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def enabled(self) -> bool: ...


def manage(costs: Costs, noun: str, short: str, rows: Sequence[Managed], disabling: Callable[[Any, str], str],
           deleting: Callable[[Any, str], str]) -> None:
    """The "⚙️ Enable, disable or delete" expander of budgets and alert rules, then its open confirmation.
    `noun` ("budget", "rule") names the confirmations (CONFIRMS `noun`.disable and `noun`.delete) and the
    call that enables (ENABLE); `short` the widget keys (costs.`short`.pick, .toggle, .delete);
    `disabling` and `deleting` say in Markdown what the confirmation will do to the picked row (row, name)."""
    expander, picker, enabled = NOUNS[noun]
    with st.expander(t(expander)):
        by_name = {x.name: x for x in rows}
        pick = st.selectbox(t(picker), list(by_name), key=keys(f"{short}.pick"))
        x = by_name[pick]
        c = st.columns(3)
        if x.enabled:
            c[0].button(t("⏸️ Disable"), key=keys(f"{short}.toggle"), on_click=kit.ask, args=(keys, f"{noun}.disable"),
                        kwargs=dict(id=x.id, name=pick, what=disabling(x, pick)))
        elif c[0].button(t("▶️ Enable"), key=keys(f"{short}.toggle")):
            kit.run(keys, lambda: ENABLE[noun](costs, current_actor(), x.id),
                    ok=t(enabled, name=pick), inline=True, rerun=True)
        c[1].button(t("🗑️ Delete"), key=keys(f"{short}.delete"), on_click=kit.ask, args=(keys, f"{noun}.delete"),
                    kwargs=dict(id=x.id, name=pick, what=deleting(x, pick)))
    dialog(costs, f"{noun}.")
