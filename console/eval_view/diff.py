"""The ⚖️ Diff tab: a run against a baseline run over their shared items, per-metric deltas with a
paired bootstrap test, improved / regressed / unchanged items down to each gold reference's rank,
and the exports."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.errors import RagError
from backend.evaluation.runs import HEADLINE, EvalRun, export_diff_csv, export_diff_json
from backend.services import Services
from console import kit
from console.access_view import need
from console.eval_view.common import SS, keys
from console.eval_view.rows import DIFF_ITEM_COLUMNS, DIFF_METRIC_COLUMNS, diff_item_rows, diff_metric_rows
from console.i18n import N_, t
from console.markup import escape_md
from console.state import describe


def diff_view(services: Services, run: EvalRun | None, base: EvalRun | None) -> None:
    if run is None or base is None:
        st.caption(t("Open a run and choose a baseline run above to diff them: per-metric deltas with a paired "
                     "bootstrap test, improved / regressed / unchanged items, and the movement of every gold reference."))
        return
    common = [m for m in run.metrics if m in base.metrics]
    primary_options = [m for m in HEADLINE if m in common] + sorted(m for m in common if m not in HEADLINE)
    if SS.get(keys("primary")) not in primary_options:
        SS[keys("primary")] = "ndcg@10" if "ndcg@10" in primary_options else (primary_options or [None])[0]
    try:
        diff = services.evals.diff(base.id, run.id, primary=SS[keys("primary")] or "ndcg@10")
    except RagError as exc:
        st.error(describe(exc), icon="🛑")
        return
    st.markdown(t("**Run #{id}** ({policy}, `{collection}`) against baseline **#{base}** ({base_policy}, "
                  "`{base_collection}`) · {n} shared items", id=run.id, policy=escape_md(run.policy),
                  collection=run.collection, base=base.id, base_policy=escape_md(base.policy),
                  base_collection=base.collection, n=diff.n_items))
    with st.container(horizontal=True, vertical_alignment="bottom", gap="large"):
        st.selectbox(t("Items judged by"), primary_options, key=keys("primary"), width=220)
        for change, label in (("improved", N_("🟢 Improved")), ("regressed", N_("🔴 Regressed")),
                              ("unchanged", N_("⚪ Unchanged"))):
            st.metric(t(label), diff.count(change), width="content")
    st.dataframe(diff_metric_rows(diff, base, run), hide_index=True, width="stretch", key=keys("diff_metrics"), height="content",
                 column_config=kit.columns(DIFF_METRIC_COLUMNS) | {
                     "baseline": st.column_config.NumberColumn(t("baseline"), format="%.4f"),
                     "this run": st.column_config.NumberColumn(t("this run"), format="%.4f"),
                     "delta": st.column_config.NumberColumn(t("delta"), format="%+.4f"),
                     "p-value": st.column_config.NumberColumn(t("p-value"), format="%.4f")})
    st.caption(t("delta = this run − baseline over the shared items; 95% CI and p-value from a paired bootstrap "
                 "(2,000 resamples of item pairs)."))
    changed_only = st.toggle(t("Changed only"), key=keys("changed_only"))
    rows = diff_item_rows(diff, changed_only)
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("diff_items"),
                 column_config=kit.columns(DIFF_ITEM_COLUMNS) | {
                     "delta": st.column_config.NumberColumn(t("delta"), format="%+.3f", width="small"),
                     "baseline": st.column_config.NumberColumn(
                         t("baseline"), format="%.3f", width="small",
                         help=t("{metric} in the baseline run", metric=diff.primary)),
                     "this run": st.column_config.NumberColumn(t("this run"), format="%.3f", width="small",
                                                               help=t("{metric} in this run", metric=diff.primary)),
                     "question": st.column_config.TextColumn(t("question"), width="medium"),
                     "gold moves (baseline → this run)": st.column_config.TextColumn(
                         t("gold moves (baseline → this run)"), width="large")})
    if rows.empty:
        st.caption(t("No item changed on {metric}.", metric=diff.primary))
    stem = f"eval-diff-{base.id}-{run.id}"
    with st.container(horizontal=True, gap="small"):
        st.download_button(t("⬇️ Diff JSON"), data=lambda: export_diff_json(diff), file_name=f"{stem}.json",
                           mime="application/json", key=keys("diff_json"), on_click="ignore", **need(Action.export))
        st.download_button(t("⬇️ Items CSV"), data=lambda: export_diff_csv(diff), file_name=f"{stem}-items.csv",
                           mime="text/csv", key=keys("diff_csv"), on_click="ignore", **need(Action.export))
        st.download_button(t("⬇️ Metrics CSV"), data=lambda: export_diff_csv(diff, "metrics"),
                           file_name=f"{stem}-metrics.csv", mime="text/csv", key=keys("diff_metrics_csv"),
                           on_click="ignore", **need(Action.export))
