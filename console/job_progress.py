"""The live progress bar of a background job (rebuild, gate, evaluation run, offline A/B), shared by
the pages: it reads the job's row every second, so a reload or another tab shows the same state,
and reruns the whole page when the job ends so its result appears."""
from __future__ import annotations

from typing import Callable

import streamlit as st

from backend.access import Action
from backend.background.jobs import Job, JobRunner
from backend.errors import RagError
from console.access_view import need
from console.auth import current_actor
from console.i18n import t
from console.state import describe

Describe = Callable[[Job], tuple[float, str]]  # job -> (fraction done, markdown line)


@st.fragment(run_every=1)
def job_progress(jobs: JobRunner, job_id: int, describe_job: Describe, cancel_label: str | None = None,
                 cancel_key: str = "", cancelling: str | None = None) -> None:
    """`cancel_label` None: no cancel button (jobs that cannot stop midway). The labels are messages
    (shown through t(): mark them with N_ or translate them); `cancelling` defaults to "cancelling
    after this item"."""
    job = jobs.get(job_id)
    if not job.active:
        st.rerun()
    fraction, text = describe_job(job)
    with st.container(horizontal=True, vertical_alignment="center"):
        st.progress(fraction, text=text, width="stretch")
        if cancel_label is None:
            return
        if job.cancel_requested:
            st.caption(t(cancelling) if cancelling else t("⏹️ cancelling after this item…"))
        else:
            st.button(t(cancel_label), key=cancel_key, on_click=_cancel, args=(jobs, job_id), **need(Action.cancel_job))
    refused = st.session_state.pop(f"job_progress.refused.{job_id}", None)
    if refused:
        st.error(refused, icon="🛑")


def _cancel(jobs: JobRunner, job_id: int) -> None:
    """Button callback: runs before the rerun, so the bar redraws with the cancel already recorded."""
    try:
        jobs.cancel(job_id, current_actor())
    except RagError as exc:
        st.session_state[f"job_progress.refused.{job_id}"] = describe(exc)
