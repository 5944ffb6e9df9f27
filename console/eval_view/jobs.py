"""Start an evaluation run (golden set version × policy × index) as a background job and follow it:
the jobs this browser started are kept in ?job=, so a reload finds them again; their outcome is
flashed once they end, and every running job has a live progress bar."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from backend.access import Action
from backend.background.jobs import CANCELLED, DONE, Job
from backend.errors import RagError
from backend.evaluation.runs import EVAL_JOB
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.eval_view.common import SS, keys
from console.i18n import N_, t
from console.job_progress import job_progress
from console.markup import escape_md
from console.state import describe

GOLDEN_PAGE = Path(__file__).resolve().parents[2] / "pages" / "golden_sets.py"
POLICY_INDEX = "__policy__"  # the index option meaning "the policy's own index (else the live alias)"


def _my_jobs() -> list[int]:
    """Jobs started from this browser (kept in ?job= so a reload follows them)."""
    if keys("jobs") not in SS:
        raw = st.query_params.get("job", "")
        SS[keys("jobs")] = [int(j) for j in raw.split(",") if j.strip().isdigit()]
    return SS[keys("jobs")]


def _save_jobs(ids: list[int]) -> None:
    SS[keys("jobs")] = ids
    if ids:
        st.query_params["job"] = ",".join(map(str, ids))
    else:
        st.query_params.pop("job", None)


def _on_start(services: Services) -> None:
    def start() -> int:
        index = SS.get(keys("index"))
        return services.evals.start_job(services.jobs, SS[keys("set")], services.policies.get(SS[keys("policy")]),
                                        current_actor(), version=SS.get(keys("version")),
                                        index=None if index == POLICY_INDEX else index,
                                        generate=bool(SS.get(keys("generate"), True)))

    job_id = kit.run(keys, start, failed=t("Not started"))
    if job_id is not None:
        _save_jobs(_my_jobs() + [job_id])
        kit.note(keys, t("Started evaluation job {id}: follow its progress here (it survives a reload) or keep "
                         "working.", id=job_id), "info")


def start_form(services: Services, expanded: bool) -> None:
    sets = [s for s in services.golden.list_sets() if s.latest_version]
    with st.expander(t("▶️ Start an evaluation run"), expanded=expanded):
        if not sets:
            st.caption(t("No frozen golden set yet: annotate and approve items, then freeze a version."))
            st.page_link(GOLDEN_PAGE, label=t("Build a golden set"), icon="🏷️")
            return
        names = [s.name for s in sets]
        if SS.get(keys("set")) not in names:  # the set the runs table shows, else the first
            SS[keys("set")] = SS.get(keys("filter_set")) if SS.get(keys("filter_set")) in names else names[0]
        latest = {s.name: s.latest_version for s in sets}
        versions = list(range(latest[SS[keys("set")]], 0, -1))
        if SS.get(keys("version")) not in versions:
            SS[keys("version")] = versions[0]
        try:
            policies = {p.name: p.versions for p in services.policies.list()}
            collections = services.store.collections()
        except RagError as exc:
            st.error(describe(exc), icon="🛑")
            return
        alias = services.settings.index_alias
        c1, c2, c3, c4 = st.columns([3, 1, 2, 3])
        policy_names = list(dict.fromkeys(["default", *policies]))
        policy_labels = {n: f"{n} (v{policies[n]})" if n in policies else t("{name} (built-in)", name=n)
                         for n in policy_names}
        index_labels = {POLICY_INDEX: t("the policy's index (else the live alias)"),
                        alias: t("{alias} (live alias)", alias=alias)}
        c1.selectbox(t("Golden set"), names, key=keys("set"))
        c2.selectbox(t("Version"), versions, key=keys("version"), format_func=lambda v: f"v{v}")
        c3.selectbox(t("Policy"), policy_names, key=keys("policy"), format_func=policy_labels.__getitem__,
                     help=t("Saved in the chat tester's sidebar (💾 Save as policy)"))
        c4.selectbox(t("Index"), [POLICY_INDEX, alias, *collections], key=keys("index"),
                     format_func=lambda o: index_labels.get(o, o),
                     help=t("An alias follows releases; a collection pins one index version"))
        with st.container(horizontal=True, vertical_alignment="center"):
            judge = services.evals.judge
            st.toggle(t("Answers and answer metrics"), value=True, key=keys("generate"),
                      help=t("Generate an answer per item and score it against the reference answer (string "
                             "similarity, ROUGE-L, exact match, context recall/precision), and have {model} judge "
                             "faithfulness, answer relevancy and context precision. Off: retrieval metrics only.",
                             model=judge.model) if judge else
                      t("Generate an answer per item and score it against the reference answer (string similarity, "
                        "ROUGE-L, exact match, context recall/precision). Off: retrieval metrics only."))
            st.button(t("▶️ Start run"), type="primary", key=keys("start"), on_click=_on_start, args=(services,),
                      **need(Action.run_evaluation))
        st.caption(t("⚖️ LLM judge: **{model}** (faithfulness, answer relevancy, context precision; its tokens go to "
                     "the cost ledger as kind `judge`)", model=escape_md(judge.model)) if judge else
                   t("⚖️ No LLM judge: set `JUDGE_BASE_URL` (and `JUDGE_MODEL`) for faithfulness, answer relevancy "
                     "and LLM context precision."))


def _job_text(job: Job) -> tuple[float, str]:
    d = job.detail
    what = f"**{escape_md(d.get('golden_set', '?'))} v{d.get('version', '?')}** × **{escape_md(d.get('policy', '?'))}** × " \
           f"`{d.get('collection', '?')}`"
    total, done = job.progress.get("total") or 0, job.progress.get("done") or 0
    if not total:
        return 0.0, t("Job {id} · {what} · loading the set and resolving its references… {seconds} s", id=job.id,
                      what=what, seconds=f"{job.seconds:.0f}")
    return done / total, t("Job {id} · {what} · item **{done} / {total}** · {seconds} s", id=job.id, what=what,
                           done=done, total=total, seconds=f"{job.seconds:.0f}")


def finished_jobs(services: Services) -> None:
    """The outcome of the jobs this browser started that have ended since the last rerun (as flashes;
    a finished run is opened)."""
    mine = _my_jobs()
    still = []
    for job_id in mine:
        try:
            job = services.jobs.get(job_id)
        except RagError:
            continue
        if job.active:
            still.append(job_id)
        elif job.status == DONE:
            run_id = (job.result or {}).get("run_id")
            kit.note(keys, t("Evaluation job {id} finished in {seconds} s: run **#{run}** is open below.", id=job.id,
                             seconds=f"{job.seconds:.1f}", run=run_id))
            if run_id is not None:
                SS[keys("open")] = run_id
        elif job.status == CANCELLED:
            kit.note(keys, t("Evaluation job {id} was cancelled: {error}", id=job.id, error=escape_md(job.error)),
                     "warning")
        else:
            kit.note(keys, t("Evaluation job {id} failed: {error}", id=job.id, error=escape_md(job.error)), "error")
    if still != mine:
        _save_jobs(still)


def running_jobs(services: Services) -> None:
    """A live progress bar per running evaluation job (anyone's: the state is in the database)."""
    active = [j for j in services.jobs.list(kind=EVAL_JOB, limit=20) if j.active]
    with st.container():  # one place whatever the number of jobs
        for job in reversed(active):
            job_progress(services.jobs, job.id, _job_text, N_("⏹️ Cancel"), keys(f"cancel.{job.id}"))
