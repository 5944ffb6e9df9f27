"""The 🔬 Run detail tab: one run's headline metrics with their 95% intervals, its exports and policy,
its items filtered (misses, unresolved references, a low answer metric) and one item drilled down
(gold references and their ranks, answer, retrieved chunks, per-item metrics)."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.evaluation.runs import HEADLINE, EvalRun, RunItem, export_run_csv, export_run_json
from backend.services import Services
from console import kit
from console.access_view import need
from console.eval_view.common import SS, keys
from console.eval_view.rows import ANSWER_METRICS, ITEM_COLUMNS, filter_items, item_rows
from console.i18n import N_, t

METRIC_COLUMNS = (N_("metric"), N_("mean"), N_("95% CI"), N_("n"))
GOLD_COLUMNS = (N_("doc"), N_("span"), N_("rank"), N_("quote"))
RETRIEVED_COLUMNS = (N_("rank"), N_("gold doc"), N_("doc"), N_("chunk"), N_("title"), N_("score"))
from console.markup import escape_md


def run_detail(services: Services, run: EvalRun | None) -> None:
    if run is None:
        st.caption(t("Open a finished run above."))
        return
    items = services.evals.items(run.id)
    spec = run.policy_spec
    st.markdown(t("**Run #{id}** · {set} v{version} · policy **{policy}** ({mode}, top {top_k}) · index `{index}` → "
                  "`{collection}` · {when} by {who} · {n} items in {seconds} s", id=run.id,
                  set=escape_md(run.golden_set), version=run.golden_version, policy=escape_md(run.policy),
                  mode=spec.get("retrieval_mode"), top_k=spec.get("top_k"), index=run.index,
                  collection=run.collection, when=f"{run.created_at:%Y-%m-%d %H:%M}",
                  who=escape_md(run.created_by), n=run.n_items, seconds=f"{run.seconds:.1f}")
                + (t(" · judged by **{judge}**", judge=escape_md(run.judge)) if run.judge else ""))
    judge_failures = sum(bool(i.judge_errors) for i in items)
    if judge_failures:
        st.warning(t("The judge gave no value for some metrics on {n} item(s); the drill-down says why.",
                     n=judge_failures), icon="⚖️")
    if run.unresolved:
        st.warning(t("{n} gold reference(s) could not be resolved on `{collection}`: the document is gone or its text "
                     "changed. Filter the items by *unresolved references* to see which.", n=run.unresolved,
                     collection=run.collection), icon="⚠️")
    headline = [m for m in HEADLINE if m in run.metrics] + [m for m in ("context_recall", "string_similarity",
                                                                        "faithfulness", "answer_relevancy")
                                                              if m in run.metrics]
    with st.container(horizontal=True, gap="small"):
        for m in headline:
            v = run.metrics[m]
            with st.container(border=True):
                st.metric(m, f"{v['mean']:.3f}")
                st.caption(t("95% CI [{low}, {high}]", low=f"{v['low']:.3f}", high=f"{v['high']:.3f}"))
    with st.expander(t("All {n} metrics · exports · policy", n=len(run.metrics))):
        left, right = st.columns([3, 2], gap="large")
        left.dataframe([{"metric": m, "mean": v["mean"], "95% CI": f"[{v['low']:.3f}, {v['high']:.3f}]", "n": v["n"]}
                        for m, v in sorted(run.metrics.items(), key=lambda kv: (kv[0] not in HEADLINE, kv[0]))],
                       hide_index=True, width="stretch", key=keys("metrics"), height="content",
                       column_config=kit.columns(METRIC_COLUMNS) | {
                           "mean": st.column_config.NumberColumn(t("mean"), format="%.4f")})
        with right:
            with st.container(horizontal=True, gap="small"):
                stem = f"eval-run-{run.id}"
                st.download_button(t("⬇️ Run JSON"), data=lambda: export_run_json(run, items), file_name=f"{stem}.json",
                                   mime="application/json", key=keys("export_json"), on_click="ignore",
                                   **need(Action.export))
                st.download_button(t("⬇️ Items CSV"), data=lambda: export_run_csv(items), file_name=f"{stem}.csv",
                                   mime="text/csv", key=keys("export_csv"), on_click="ignore", **need(Action.export))
            st.json(spec, expanded=False)
    present = [m for m in ANSWER_METRICS if any(m in i.metrics for i in items)]
    with st.container(horizontal=True, vertical_alignment="bottom", gap="medium"):
        misses = st.toggle(t("Misses only (hit@10 = 0)"), key=keys("misses"))
        unresolved = st.toggle(t("Unresolved references"), key=keys("unresolved"))
        low = st.selectbox(t("Low score on"), present, index=None, key=keys("low_metric"),
                           placeholder=t("any answer metric"), disabled=not present, width=240,
                           help=t("Items whose metric is under the threshold (answer metrics need reference answers)"))
        threshold = st.slider(t("Threshold"), 0.0, 1.0, 0.5, 0.05, key=keys("low_threshold"), disabled=low is None, width=240)
    shown = filter_items(items, misses, unresolved, low, threshold)
    st.caption(t("{n} of {total} items", n=len(shown), total=len(items)))
    st.dataframe(item_rows(shown), hide_index=True, width="stretch", key=keys("items"),
                 column_config=kit.columns(ITEM_COLUMNS) | {"question": st.column_config.TextColumn(t("question"), width="large"),
                                **{m: st.column_config.NumberColumn(format="%.3f") for m in
                                   ("recall@10", "ndcg@10", "mrr@10", *ANSWER_METRICS)}})
    if shown:
        item_drilldown(shown)


def item_drilldown(items: list[RunItem]) -> None:
    by_idx = {i.idx: i for i in items}
    if SS.get(keys("item")) not in by_idx:
        SS[keys("item")] = next(iter(by_idx))
    st.selectbox(t("Item"), list(by_idx), key=keys("item"),
                 format_func=lambda n: f"#{n + 1} · {'✅' if by_idx[n].metrics.get('hit@10') else '❌'} {by_idx[n].question[:110]}")
    item = by_idx[SS[keys("item")]]
    with st.container(border=True):
        st.markdown(t("**Question** — {question}", question=escape_md(item.question)))
        gold_docs = {g.doc_id for g in item.gold}
        left, right = st.columns(2, gap="large")
        with left:
            st.markdown(t("**Gold references** (document rank in this run)"))
            st.dataframe([{"doc": g.doc_id, "span": g.key, "rank": g.rank or t("not found"), "quote": g.quote}
                          for g in item.gold], hide_index=True, width="stretch", key=keys("gold"),
                         column_config=kit.columns(GOLD_COLUMNS))
            st.markdown(t("**Answer** ({kind})", kind=item.answer_kind or t("not generated")))
            st.markdown(escape_md(item.answer) if item.answer else t("_no answer: a retrieval-only run_"))
            if item.reference_answer:
                st.markdown(t("**Reference answer** — {answer}", answer=escape_md(item.reference_answer)))
            st.caption(t("⏱ retrieval {latency} · {tokens} tokens · {cost}", latency=kit.duration(item.latency_ms),
                         tokens=f"{item.tokens:,}", cost=kit.money(item.cost_usd, 6)).replace("$", "\\$"))
        with right:
            st.markdown(t("**Retrieved chunks** (chunk rank and score)"))
            st.dataframe([{"rank": r.rank, "gold doc": "✅" if r.doc_id in gold_docs else "", "doc": r.doc_id,
                           "chunk": r.chunk_id, "title": r.title, "score": r.score} for r in item.retrieved],
                         hide_index=True, width="stretch", key=keys("retrieved"), height=280,
                         column_config=kit.columns(RETRIEVED_COLUMNS) | {
                             "score": st.column_config.NumberColumn(t("score"), format="%.4f")})
            st.markdown(t("**Per-item metrics**"))
            st.dataframe([{"metric": k, "value": v} for k, v in sorted(item.metrics.items())], hide_index=True,
                         width="stretch", key=keys("item_metrics"),
                         column_config={"metric": t("metric"),
                                        "value": st.column_config.NumberColumn(t("value"), format="%.4f")})
            for metric, why in (item.judge_errors or {}).items():
                st.caption(t("⚖️ no {metric}: {reason}", metric=metric, reason=escape_md(why)))
