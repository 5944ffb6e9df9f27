"""Evaluation runs: start a run (golden set version × policy × index) as a background job, compare
runs over time, drill into one run's items, and diff two runs down to each gold reference's rank."""
import streamlit as st

from console import eval_view as view
from console import kit, state
from console.i18n import t

services = state.get_services()
st.title(t("🧪 Evaluation runs"))
runs = services.evals.list()
view.start_form(services, expanded=not runs)
view.finished_jobs(services)
kit.flash(view.keys)
view.running_jobs(services)
runs = services.evals.list()  # again: a job may have just finished
run, base = view.pickers(runs)
labels = [t("📋 Runs"), t("🔬 Run detail"), t("⚖️ Diff")]
default = dict(zip(("runs", "run", "diff"), labels))[view.started_from_url()]
overview, detail, diff = st.tabs(labels, default=default)
with overview:
    view.runs_overview(runs)
with detail:
    view.run_detail(services, run)
with diff:
    view.diff_view(services, run, base)
