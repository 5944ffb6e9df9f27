"""Choosing runs and the 📋 Runs tab: the open run and the baseline (mirrored to ?run= and ?base=),
the tab a link opens on, the runs table (filtered by set, ?set=) and the metrics over time."""
from __future__ import annotations

import streamlit as st

from backend.evaluation.runs import HEADLINE, EvalRun
from console import charts, kit
from console.eval_view.common import SS, keys
from console.eval_view.rows import RUNS_COLUMNS, metrics_figure, run_label, runs_rows
from console.i18n import t


def pickers(runs: list[EvalRun]) -> tuple[EvalRun | None, EvalRun | None]:
    """'Open run' and 'compare with baseline'; returns the two runs."""
    done = [r for r in runs if r.status == "done"]
    by_id = {r.id: r for r in done}
    ids = list(by_id)
    opened = SS.pop(keys("open"), None)  # a run this browser just finished
    if opened in by_id:
        SS[keys("run")] = opened
        SS[keys("base")] = None
    kit.from_url(keys("run"), "run", ids, ids[0] if ids else None, int)
    base_ids = [i for i in ids if i != SS.get(keys("run"))]
    kit.from_url(keys("base"), "base", base_ids, None, int)
    if opened in by_id:
        kit.to_url(keys("run"), "run")
        kit.to_url(keys("base"), "base")
    if not ids:
        return None, None
    left, right = st.columns(2)
    left.selectbox(t("Open run"), ids, key=keys("run"), format_func=lambda i: run_label(by_id[i]), on_change=_on_run)
    right.selectbox(t("Compare with baseline run"), base_ids, index=None, key=keys("base"),
                    format_func=lambda i: run_label(by_id[i]), placeholder=t("choose a run to diff against"),
                    on_change=kit.to_url, args=(keys("base"), "base"))
    run = by_id.get(SS.get(keys("run")))
    return run, by_id.get(SS.get(keys("base")))


def _on_run() -> None:
    if SS.get(keys("base")) == SS.get(keys("run")):
        SS[keys("base")] = None
    kit.to_url(keys("run"), "run")
    kit.to_url(keys("base"), "base")


def started_from_url() -> str:
    """Which tab a link opens on (decided once per session, so clicking tabs later is never undone)."""
    if keys("tab") not in SS:
        SS[keys("tab")] = "diff" if st.query_params.get("base") else "run" if st.query_params.get("run") else "runs"
    return SS[keys("tab")]


def _chart_touched() -> None:
    SS[keys("chart_touched")] = True


def runs_overview(runs: list[EvalRun]) -> None:
    if not runs:
        st.info(t("No evaluation run yet: start one above."), icon="🧪")
        return
    names = sorted({r.golden_set for r in runs})
    kit.from_url(keys("filter_set"), "set", ["(all sets)", *names], "(all sets)")
    all_sets = t("(all sets)")
    st.selectbox(t("Golden set"), ["(all sets)", *names], key=keys("filter_set"), width=320,
                 format_func=lambda o: all_sets if o == "(all sets)" else o,
                 on_change=kit.to_url, args=(keys("filter_set"), "set"))
    chosen = SS[keys("filter_set")]
    shown = [r for r in runs if chosen == "(all sets)" or r.golden_set == chosen]
    st.dataframe(runs_rows(shown), hide_index=True, width="stretch", key=keys("table"),
                 column_config=kit.columns(RUNS_COLUMNS) | {
                     "run": st.column_config.NumberColumn(t("run"), format="#%d", width="small"),
                     "error": st.column_config.TextColumn(t("error"), width="small")})
    st.markdown(t("**📈 Metrics over time**"))
    all_metrics = sorted({m for r in shown for m in r.metrics})
    if not SS.get(keys("chart_touched")):  # until the user picks, the headline pair (once runs have metrics)
        SS[keys("chart_metrics")] = [m for m in HEADLINE[:2] if m in all_metrics]
    metrics = st.multiselect(t("Metrics"), all_metrics, key=keys("chart_metrics"), on_change=_chart_touched)
    for name in [n for n in names if chosen in ("(all sets)", n)]:
        if any(r.golden_set == name and r.status == "done" for r in runs):
            charts.show(metrics_figure(runs, name, metrics, t("{name}: metrics over time (95% CI)", name=name)),
                        keys(f"chart.{name}"))
