"""The evaluation run viewer (pages/eval_runs.py): start a run as a background job and follow its
progress, the runs table and metrics over time, one run's items with filters and drill-down, and
the diff of two runs. Widget keys are namespaced `runs.*`; the open run, the baseline, the set
filter and the jobs this browser started are mirrored to the URL (?run=, ?base=, ?set=, ?job=), so a
view can be linked and a reload finds its running job again. One module per part:

- `common`: the page's keys; `rows`: pure table and figure builders (tested without a browser);
- `jobs`: the start form and the jobs; `runs`: the run pickers and the 📋 Runs tab;
- `detail` (🔬 Run detail) and `diff` (⚖️ Diff)."""
from console.eval_view.common import keys
from console.eval_view.detail import run_detail
from console.eval_view.diff import diff_view
from console.eval_view.jobs import finished_jobs, running_jobs, start_form
from console.eval_view.rows import diff_item_rows, filter_items, metrics_figure, metrics_frame, runs_rows
from console.eval_view.runs import pickers, runs_overview, started_from_url

__all__ = ["diff_item_rows", "diff_view", "filter_items", "finished_jobs", "keys", "metrics_figure", "metrics_frame",
           "pickers", "run_detail", "running_jobs", "runs_overview", "runs_rows", "start_form", "started_from_url"]
