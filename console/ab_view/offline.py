"""The 🧪 Offline tab: A then B over every item of a frozen golden set, both evaluation runs as one
background job (leave the page and come back, it keeps going), then the paired comparison of the two
runs: metrics, costs and the items that improved or regressed."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.background.jobs import DONE, Job
from backend.engine.policy import Policy
from backend.errors import RagError
from backend.evaluation.runs import HEADLINE
from backend.releases.online import OFFLINE_JOB, offline_diff, start_offline
from backend.services import Services
from console import kit
from console.ab_view.common import SS, headers, keys
from console.ab_view.rows import offline_cost_rows, offline_item_rows, offline_metric_rows
from console.access_view import need
from console.auth import current_actor
from console.i18n import N_, t
from console.job_progress import job_progress
from console.markup import escape_md
from console.state import describe

ENDED = {"failed": N_("failed"), "cancelled": N_("cancelled")}  # how an offline job that did not finish ended


def _on_start_offline(services: Services, a: Policy, b: Policy) -> None:
    job_id = kit.run(keys, lambda: start_offline(services.jobs, services.evals, services.golden, SS[keys("set")], a, b,
                                                 current_actor(), version=SS.get(keys("set_version")),
                                                 generate=bool(SS.get(keys("generate"), True))), failed=t("Not started"))
    if job_id is not None:
        SS[keys("offline_job")] = job_id
        kit.note(keys, t("Started offline comparison job {id}: {a} then {b} over the golden set.", id=job_id,
                         a=a.label(), b=b.label()), "info")


def _offline_text(job: Job) -> tuple[float, str]:
    d, p = job.detail, job.progress
    total, done = p.get("total") or 0, p.get("done") or 0
    what = t("**{set} v{version}** · A {a} then B {b}", set=escape_md(d.get("golden_set", "?")),
             version=d.get("version", "?"), a=escape_md(d.get("policy_a", "?")), b=escape_md(d.get("policy_b", "?")))
    seconds = f"{job.seconds:.0f}"
    if not total:
        return 0.0, t("Job {id} · {what} · loading the set… {seconds} s", id=job.id, what=what, seconds=seconds)
    return done / total, t("Job {id} · {what} · running {phase}: item **{done} / {total}** · {seconds} s", id=job.id,
                           what=what, phase=p.get("phase", "A"), done=done, total=total, seconds=seconds)


def _job_label(j: Job) -> str:
    d = j.detail
    return t("Job {id} · {set} v{version} · A {a} vs B {b} · {when}", id=j.id, set=d.get("golden_set"),
             version=d.get("version"), a=d.get("policy_a"), b=d.get("policy_b"), when=kit.when(j.created_at))


def offline(services: Services, a: Policy, b: Policy) -> None:
    sets = [s for s in services.golden.list_sets() if s.latest_version]
    if not sets:
        st.info(t("No frozen golden set yet: import or annotate one on the Golden sets page and freeze it."), icon="🏷️")
    else:
        names = [s.name for s in sets]
        latest = {s.name: s.latest_version for s in sets}
        with st.container(horizontal=True, vertical_alignment="bottom"):
            name = kit.select(t("Golden set"), names, keys("set"), width=280)
            kit.select(t("Version"), list(range(latest[name], 0, -1)), keys("set_version"), format_func=lambda v: f"v{v}",
                       width=110)
            st.toggle(t("Answers and answer metrics"), value=True, key=keys("generate"),
                      help=t("Also generate an answer per item and score it against the reference answer; off: retrieval "
                             "metrics only (faster)."))
            st.button(t("▶️ Run A and B"), type="primary", key=keys("offline_start"), on_click=_on_start_offline,
                      args=(services, a, b), **need(Action.run_evaluation))
        st.caption(t("Runs {a} then {b} over every item (each policy on its own index, else the live alias) as one "
                     "background job; leave the page and come back, it keeps going.", a=escape_md(a.label()),
                     b=escape_md(b.label())))
    jobs = services.jobs.list(kind=OFFLINE_JOB, limit=50)
    for job in [j for j in jobs if j.active]:
        job_progress(services.jobs, job.id, _offline_text, N_("⏹️ Cancel"), keys(f"cancel.{job.id}"))
    finished = [j for j in jobs if j.status == DONE and (j.result or {}).get("run_b")]
    for j in jobs:
        if not j.active and j.status != DONE and j.id == SS.get(keys("offline_job")):
            st.error(t("Offline comparison job {id} {status}: {error}", id=j.id, status=t(ENDED.get(j.status, j.status)),
                       error=escape_md(j.error)), icon="🛑")
    if not finished:
        return
    ids = [j.id for j in finished]
    if SS.get(keys("offline_job")) in ids and SS.get(keys("offline_pick")) != SS[keys("offline_job")]:
        SS[keys("offline_pick")] = SS.pop(keys("offline_job"))  # the job this browser just ran
    by_id = {j.id: j for j in finished}
    job = by_id[kit.select(t("Comparison"), ids, keys("offline_pick"), format_func=lambda i: _job_label(by_id[i]))]
    offline_result(services, job)


def offline_result(services: Services, job: Job) -> None:
    run_a, run_b = services.evals.get(job.result["run_a"]), services.evals.get(job.result["run_b"])
    common = [m for m in run_b.metrics if m in run_a.metrics]
    primaries = [m for m in HEADLINE if m in common] or sorted(common)
    if SS.get(keys("primary")) not in primaries:
        SS[keys("primary")] = "ndcg@10" if "ndcg@10" in primaries else primaries[0]
    try:
        diff = offline_diff(services.evals, run_a.id, run_b.id, primary=SS[keys("primary")])
    except RagError as exc:
        st.error(describe(exc), icon="🛑")
        return
    st.markdown(t("**A** {a} (run #{run_a}, `{index_a}`) vs **B** {b} (run #{run_b}, `{index_b}`) · {n} items of "
                  "{set} v{version}", a=escape_md(run_a.policy), run_a=run_a.id, index_a=run_a.collection,
                  b=escape_md(run_b.policy), run_b=run_b.id, index_b=run_b.collection, n=diff.quality.n_items,
                  set=escape_md(run_a.golden_set), version=run_a.golden_version))
    with st.container(horizontal=True, vertical_alignment="bottom", gap="large"):
        st.selectbox(t("Items judged by"), primaries, key=keys("primary"), width=200)
        for change, label in (("improved", N_("🟢 Improved")), ("regressed", N_("🔴 Regressed")),
                              ("unchanged", N_("⚪ Unchanged"))):
            st.metric(t(label), diff.quality.count(change), width="content")
    metrics = offline_metric_rows(diff, run_a, run_b)
    st.dataframe(metrics, hide_index=True, width="stretch", key=keys("offline_metrics"),
                 column_config=headers(metrics, **{c: st.column_config.NumberColumn(format="%.4f")
                                                   for c in ("A", "B", "p-value")},
                                       **{"delta (B − A)": st.column_config.NumberColumn(format="%+.4f")}))
    costs = offline_cost_rows(diff)
    st.dataframe(costs, hide_index=True, width="stretch", key=keys("offline_costs"),
                 column_config=headers(costs, **{"A": st.column_config.NumberColumn(format="%.4g"),
                                                 "B": st.column_config.NumberColumn(format="%.4g"),
                                                 "delta (B − A)": st.column_config.NumberColumn(format="%+.4g"),
                                                 "p-value": st.column_config.NumberColumn(format="%.4f")}))
    st.caption(t("delta = B − A over the shared items; 95% CI and p-value from a paired bootstrap (2,000 resamples of "
                 "item pairs). Latency is the retrieval stage of each item; tokens and cost are the answer's."))
    changed_only = st.toggle(t("Changed items only"), key=keys("offline_changed_only"))
    rows = offline_item_rows(diff, changed_only)
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("offline_items"),
                 column_config=headers(rows, **{"delta": st.column_config.NumberColumn(format="%+.3f"),
                                                "question": st.column_config.TextColumn(width="medium"),
                                                "gold moves (A → B)": st.column_config.TextColumn(width="large")}))
    if not rows:
        st.caption(t("No item changed on this metric."))
