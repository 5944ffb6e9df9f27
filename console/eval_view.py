"""Sections of the evaluation run viewer: start a run as a background job and follow its progress,
the runs table and metrics over time, one run's items with filters and drill-down, and the diff of
two runs. Widget keys are namespaced `runs.*` (console.kit.PageKeys); the open run, the baseline, the set filter and the
jobs this browser started are mirrored to the URL (?run=, ?base=, ?set=, ?job=), so a view can be
linked and a reload finds its running job again.

The table/figure builders at the top are pure functions of backend rows (no Streamlit calls), so
tests can check what the page shows without a browser."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend.access import Action
from backend.errors import RagError
from backend.eval_runs import EVAL_JOB, HEADLINE, export_diff_csv, export_diff_json, export_run_csv, export_run_json
from backend.jobs import CANCELLED, DONE, Job
from backend.judge import JUDGED_METRICS
from backend.services import Services
from console import charts, kit
from console.access_view import need
from console.auth import current_actor
from console.job_progress import job_progress
from console.markup import escape_md
from console.state import describe

keys = kit.PageKeys("runs", icons={"success": "🏁", "warning": "⏹️"})
SS = st.session_state
STATUS_ICONS = {"done": "✅", "running": "⏳", "failed": "🔴", "cancelled": "⏹️"}
CHANGE_ICONS = {"improved": "🟢 improved", "regressed": "🔴 regressed", "unchanged": "⚪ unchanged"}
GOLDEN_PAGE = Path(__file__).resolve().parent.parent / "pages" / "golden_sets.py"
POLICY_INDEX = "__policy__"  # the index option meaning "the policy's own index (else the live alias)"
ANSWER_METRICS = ("string_similarity", "rouge_l", "exact_match", "string_presence", "context_recall",
                  "context_precision", *JUDGED_METRICS)


# --- pure builders ------------------------------------------------------------------------------------
def ci(m: dict | None, digits: int = 3) -> str:
    """'0.833 [0.667, 1.000]': a mean with its 95% bootstrap interval."""
    if not m:
        return ""
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def run_label(r: dict) -> str:
    return (f"#{r['id']} · {r['golden_set']} v{r['golden_version']} · {r['policy']} · {r['collection']} · "
            f"{r['created_at']:%Y-%m-%d %H:%M}")


def runs_rows(runs: list[dict]) -> list[dict]:
    """The runs table: one row per run, headline metrics as 'mean [95% CI]'."""
    rows = []
    for r in runs:
        index = r["collection"] if r["index"] == r["collection"] else f"{r['index']} → {r['collection']}"
        rows.append({"run": r["id"], "status": f"{STATUS_ICONS.get(r['status'], '')} {r['status']}",
                     "set": f"{r['golden_set']} v{r['golden_version']}", "policy": r["policy"], "index": index,
                     "date": f"{r['created_at']:%Y-%m-%d %H:%M:%S}", "items": f"{r['done_items']}/{r['n_items']}",
                     **{m: ci(r["metrics"].get(m)) for m in HEADLINE},
                     "unresolved refs": r["unresolved"], "judge": r.get("judge") or "", "seconds": round(r["seconds"], 1),
                     "by": r["created_by"],
                     "error": r["error"]})
    return rows


def metrics_frame(runs: list[dict], set_name: str, metrics: list[str]) -> pd.DataFrame:
    """Each metric's mean and 95% interval over the finished runs of one set, oldest run first."""
    done = sorted((r for r in runs if r["golden_set"] == set_name and r["status"] == "done"), key=lambda r: r["created_at"])
    return pd.DataFrame([{"time": r["created_at"], "metric": m, "mean": r["metrics"][m]["mean"], "low": r["metrics"][m]["low"],
                          "high": r["metrics"][m]["high"], "run": f"#{r['id']} · v{r['golden_version']}",
                          "policy": r["policy"], "index": r["collection"]}
                         for r in done for m in metrics if m in r["metrics"]],
                        columns=["time", "metric", "mean", "low", "high", "run", "policy", "index"])


def metrics_figure(runs: list[dict], set_name: str, metrics: list[str], title: str | None = None) -> go.Figure:
    """Each metric's mean over the finished runs of one set (a line per metric, colored in the order
    asked), with its 95% interval as error bars."""
    df = metrics_frame(runs, set_name, metrics)
    span = (df["time"].max() - df["time"].min()).total_seconds() if len(df) else 0
    fig = charts.new(title, height=340)
    hover = ("metric: %{fullData.name}<br>mean: %{y:.3f}<br>low: %{customdata[0]:.3f}<br>high: %{customdata[1]:.3f}"
             "<br>run: %{customdata[2]}<br>policy: %{customdata[3]}<br>index: %{customdata[4]}<extra></extra>")
    for i, m in enumerate(metrics):
        s = df[df["metric"] == m]
        if s.empty:
            continue
        color = charts.TABLEAU10[i % len(charts.TABLEAU10)]
        fig.add_scatter(x=charts.utc_naive(s["time"]), y=s["mean"], name=charts.text(m), mode="lines+markers",
                        line=dict(color=color, width=2), marker=dict(color=color, size=8),
                        error_y=dict(type="data", symmetric=False, array=s["high"] - s["mean"],
                                     arrayminus=s["mean"] - s["low"], color=color, thickness=1, width=0),
                        customdata=[[lo, hi, charts.text(run), charts.text(p), charts.text(ix)] for lo, hi, run, p, ix
                                    in zip(s["low"], s["high"], s["run"], s["policy"], s["index"])],
                        hovertemplate=hover)
    fig.update_layout(xaxis=dict(type="date", title=None, tickangle=0, nticks=6,
                                 tickformat="%b %d %H:%M:%S" if span < 2 * 86400 else "%b %d"),
                      yaxis=dict(title="mean", range=[0, 1.05]))
    return fig


def gold_ranks(item: dict) -> str:
    return "; ".join(f"{g['doc_id']}: {'rank ' + str(g['rank']) if g['rank'] else 'not found'}" for g in item["gold"])


def filter_items(items: list[dict], misses: bool = False, unresolved: bool = False, low_metric: str | None = None,
                 threshold: float = 0.5) -> list[dict]:
    """Misses: hit@10 == 0. Unresolved: a gold reference that no chunk of the run's index covers.
    Low metric: the item has the metric and it is under the threshold."""
    out = items
    if misses:
        out = [i for i in out if i["metrics"].get("hit@10", 0) == 0]
    if unresolved:
        out = [i for i in out if i["metrics"].get("unresolved_refs", 0) > 0]
    if low_metric:
        out = [i for i in out if low_metric in i["metrics"] and i["metrics"][low_metric] < threshold]
    return out


def item_rows(items: list[dict]) -> list[dict]:
    extra = [m for m in ANSWER_METRICS if any(m in i["metrics"] for i in items)]
    return [{"#": i["idx"] + 1, "question": i["question"], "hit@10": "✅" if i["metrics"].get("hit@10") else "❌",
             **{m: i["metrics"].get(m) for m in ("recall@10", "ndcg@10", "mrr@10")},
             **{m: i["metrics"].get(m) for m in extra},
             "gold ranks": gold_ranks(i), "unresolved": i["metrics"].get("unresolved_refs", 0),
             "latency ms": round(i["latency_ms"], 1)} for i in items]


def diff_metric_rows(diff: dict, base: dict, run: dict) -> list[dict]:
    """Per metric: baseline and this run's means, the paired delta with its 95% CI and p-value."""
    rows = []
    for m, d in diff["metrics"].items():
        verdict = (("▲ better" if d["delta"] > 0 else "▼ worse") if kit.significant(d["p_value"], d["low"], d["high"])
                   else "≈ no significant change")
        rows.append({"metric": m, "baseline": (base["metrics"].get(m) or {}).get("mean"),
                     "this run": (run["metrics"].get(m) or {}).get("mean"), "delta": d["delta"],
                     "95% CI": f"[{d['low']:+.3f}, {d['high']:+.3f}]", "p-value": d["p_value"], "verdict": verdict})
    return sorted(rows, key=lambda r: (r["metric"] not in HEADLINE, r["metric"]))


def diff_item_rows(diff: dict, changed_only: bool) -> pd.DataFrame:
    """One row per shared item (or per changed item): its change, the primary metric in the baseline
    and in this run, and every gold reference's movement. Keeps its columns when no row is left."""
    columns = ["change", "question", "baseline", "this run", "delta", "gold moves (baseline → this run)"]
    p = diff["primary"]
    rows = [[CHANGE_ICONS[r["change"]], r["question"], r[f"{p} A"], r[f"{p} B"], r["delta"], r["gold moves"]]
            for r in diff["items"] if not changed_only or r["change"] != "unchanged"]
    return pd.DataFrame(rows, columns=columns)


# --- URL mirroring -------------------------------------------------------------------------------
# --- start a run, follow its job ---------------------------------------------------------------
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

    job_id = kit.run(keys, start, failed="Not started")
    if job_id is not None:
        _save_jobs(_my_jobs() + [job_id])
        kit.note(keys, f"Started evaluation job {job_id}: follow its progress here (it survives a reload) or keep "
                       "working.", "info")


def start_form(services: Services, expanded: bool) -> None:
    sets = [s for s in services.golden.list_sets() if s["latest_version"]]
    with st.expander("▶️ Start an evaluation run", expanded=expanded):
        if not sets:
            st.caption("No frozen golden set yet: annotate and approve items, then freeze a version.")
            st.page_link(GOLDEN_PAGE, label="Build a golden set", icon="🏷️")
            return
        names = [s["name"] for s in sets]
        if SS.get(keys("set")) not in names:  # the set the runs table shows, else the first
            SS[keys("set")] = SS.get(keys("filter_set")) if SS.get(keys("filter_set")) in names else names[0]
        latest = {s["name"]: s["latest_version"] for s in sets}
        versions = list(range(latest[SS[keys("set")]], 0, -1))
        if SS.get(keys("version")) not in versions:
            SS[keys("version")] = versions[0]
        try:
            policies = {p["name"]: p["versions"] for p in services.policies.list()}
            collections = services.store.collections()
        except RagError as exc:
            st.error(describe(exc), icon="🛑")
            return
        alias = services.settings.index_alias
        c1, c2, c3, c4 = st.columns([3, 1, 2, 3])
        c1.selectbox("Golden set", names, key=keys("set"))
        c2.selectbox("Version", versions, key=keys("version"), format_func=lambda v: f"v{v}")
        c3.selectbox("Policy", list(dict.fromkeys(["default", *policies])), key=keys("policy"),
                     format_func=lambda n: f"{n} (v{policies[n]})" if n in policies else f"{n} (built-in)",
                     help="Saved in the chat tester's sidebar (💾 Save as policy)")
        c4.selectbox("Index", [POLICY_INDEX, alias, *collections], key=keys("index"),
                     format_func=lambda o: "the policy's index (else the live alias)" if o == POLICY_INDEX else
                     f"{o} (live alias)" if o == alias else o,
                     help="An alias follows releases; a collection pins one index version")
        with st.container(horizontal=True, vertical_alignment="center"):
            judge = services.evals.judge
            st.toggle("Answers and answer metrics", value=True, key=keys("generate"),
                      help="Generate an answer per item and score it against the reference answer "
                           "(string similarity, ROUGE-L, exact match, context recall/precision)"
                           + (f", and have {judge.model} judge faithfulness, answer relevancy and context precision"
                              if judge else "") + ". Off: retrieval metrics only.")
            st.button("▶️ Start run", type="primary", key=keys("start"), on_click=_on_start, args=(services,),
                      **need(Action.run_evaluation))
        st.caption(f"⚖️ LLM judge: **{escape_md(judge.model)}** (faithfulness, answer relevancy, context precision; "
                   "its tokens go to the cost ledger as kind `judge`)" if judge else
                   "⚖️ No LLM judge: set `JUDGE_BASE_URL` (and `JUDGE_MODEL`) for faithfulness, answer relevancy and "
                   "LLM context precision.")


def _job_text(job: Job) -> tuple[float, str]:
    d = job.detail
    what = f"**{escape_md(d.get('golden_set', '?'))} v{d.get('version', '?')}** × **{escape_md(d.get('policy', '?'))}** × " \
           f"`{d.get('collection', '?')}`"
    total, done = job.progress.get("total") or 0, job.progress.get("done") or 0
    if not total:
        return 0.0, f"Job {job.id} · {what} · loading the set and resolving its references… {job.seconds:.0f} s"
    return done / total, f"Job {job.id} · {what} · item **{done} / {total}** · {job.seconds:.0f} s"


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
            kit.note(keys, f"Evaluation job {job.id} finished in {job.seconds:.1f} s: run **#{run_id}** is open below.")
            if run_id is not None:
                SS[keys("open")] = run_id
        elif job.status == CANCELLED:
            kit.note(keys, f"Evaluation job {job.id} was cancelled: {escape_md(job.error)}", "warning")
        else:
            kit.note(keys, f"Evaluation job {job.id} {job.status}: {escape_md(job.error)}", "error")
    if still != mine:
        _save_jobs(still)


def running_jobs(services: Services) -> None:
    """A live progress bar per running evaluation job (anyone's: the state is in the database)."""
    active = [j for j in services.jobs.list(kind=EVAL_JOB, limit=20) if j.active]
    with st.container():  # one place whatever the number of jobs
        for job in reversed(active):
            job_progress(services.jobs, job.id, _job_text, "⏹️ Cancel", keys(f"cancel.{job.id}"))


# --- choosing runs -------------------------------------------------------------------------------------
def pickers(runs: list[dict]) -> tuple[dict | None, dict | None]:
    """'Open run' and 'compare with baseline'; returns the two run rows."""
    done = [r for r in runs if r["status"] == "done"]
    by_id = {r["id"]: r for r in done}
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
    left.selectbox("Open run", ids, key=keys("run"), format_func=lambda i: run_label(by_id[i]), on_change=_on_run)
    right.selectbox("Compare with baseline run", base_ids, index=None, key=keys("base"),
                    format_func=lambda i: run_label(by_id[i]), placeholder="choose a run to diff against",
                    on_change=kit.to_url, args=(keys("base"), "base"))
    run = by_id.get(SS.get(keys("run")))
    return run, by_id.get(SS.get(keys("base")))


def _on_run() -> None:
    if SS.get(keys("base")) == SS.get(keys("run")):
        SS[keys("base")] = None
    kit.to_url(keys("run"), "run")
    kit.to_url(keys("base"), "base")


# --- runs overview ---------------------------------------------------------------------------------
def _chart_touched() -> None:
    SS[keys("chart_touched")] = True



def runs_overview(runs: list[dict]) -> None:
    if not runs:
        st.info("No evaluation run yet: start one above.", icon="🧪")
        return
    names = sorted({r["golden_set"] for r in runs})
    kit.from_url(keys("filter_set"), "set", ["(all sets)", *names], "(all sets)")
    st.selectbox("Golden set", ["(all sets)", *names], key=keys("filter_set"), width=320,
                 on_change=kit.to_url, args=(keys("filter_set"), "set"))
    chosen = SS[keys("filter_set")]
    shown = [r for r in runs if chosen == "(all sets)" or r["golden_set"] == chosen]
    st.dataframe(runs_rows(shown), hide_index=True, width="stretch", key=keys("table"),
                 column_config={"run": st.column_config.NumberColumn(format="#%d", width="small"),
                                "error": st.column_config.TextColumn(width="small")})
    st.markdown("**📈 Metrics over time**")
    all_metrics = sorted({m for r in shown for m in r["metrics"]})
    if not SS.get(keys("chart_touched")):  # until the user picks, the headline pair (once runs have metrics)
        SS[keys("chart_metrics")] = [m for m in HEADLINE[:2] if m in all_metrics]
    metrics = st.multiselect("Metrics", all_metrics, key=keys("chart_metrics"), on_change=_chart_touched)
    for name in [n for n in names if chosen in ("(all sets)", n)]:
        if any(r["golden_set"] == name and r["status"] == "done" for r in runs):
            charts.show(metrics_figure(runs, name, metrics, f"{name}: metrics over time (95% CI)"), keys(f"chart.{name}"))


# --- one run ---------------------------------------------------------------------------------------
def run_detail(services: Services, run: dict | None) -> None:
    if run is None:
        st.caption("Open a finished run above.")
        return
    items = services.evals.items(run["id"])
    spec = run["policy_spec"]
    st.markdown(f"**Run #{run['id']}** · {escape_md(run['golden_set'])} v{run['golden_version']} · policy "
                f"**{escape_md(run['policy'])}** ({spec.get('retrieval_mode')}, top {spec.get('top_k')}) · index "
                f"`{run['index']}` → `{run['collection']}` · {run['created_at']:%Y-%m-%d %H:%M} by "
                f"{escape_md(run['created_by'])} · {run['n_items']} items in {run['seconds']:.1f} s"
                + (f" · judged by **{escape_md(run['judge'])}**" if run.get("judge") else ""))
    judge_failures = sum(bool(i.get("judge_errors")) for i in items)
    if judge_failures:
        st.warning(f"The judge gave no value for some metrics on {judge_failures} item(s); the drill-down says why.",
                   icon="⚖️")
    if run["unresolved"]:
        st.warning(f"{run['unresolved']} gold reference(s) could not be resolved on `{run['collection']}`: the document "
                   "is gone or its text changed. Filter the items by *unresolved references* to see which.", icon="⚠️")
    headline = [m for m in HEADLINE if m in run["metrics"]] + [m for m in ("context_recall", "string_similarity",
                                                                           "faithfulness", "answer_relevancy")
                                                                 if m in run["metrics"]]
    with st.container(horizontal=True, gap="small"):
        for m in headline:
            v = run["metrics"][m]
            with st.container(border=True):
                st.metric(m, f"{v['mean']:.3f}")
                st.caption(f"95% CI [{v['low']:.3f}, {v['high']:.3f}]")
    with st.expander(f"All {len(run['metrics'])} metrics · exports · policy"):
        left, right = st.columns([3, 2], gap="large")
        left.dataframe([{"metric": m, "mean": v["mean"], "95% CI": f"[{v['low']:.3f}, {v['high']:.3f}]", "n": v["n"]}
                        for m, v in sorted(run["metrics"].items(), key=lambda kv: (kv[0] not in HEADLINE, kv[0]))],
                       hide_index=True, width="stretch", key=keys("metrics"), height="content",
                       column_config={"mean": st.column_config.NumberColumn(format="%.4f")})
        with right:
            with st.container(horizontal=True, gap="small"):
                stem = f"eval-run-{run['id']}"
                st.download_button("⬇️ Run JSON", data=lambda: export_run_json(run, items), file_name=f"{stem}.json",
                                   mime="application/json", key=keys("export_json"), on_click="ignore",
                                   **need(Action.export))
                st.download_button("⬇️ Items CSV", data=lambda: export_run_csv(items), file_name=f"{stem}.csv",
                                   mime="text/csv", key=keys("export_csv"), on_click="ignore", **need(Action.export))
            st.json(spec, expanded=False)
    present = [m for m in ANSWER_METRICS if any(m in i["metrics"] for i in items)]
    with st.container(horizontal=True, vertical_alignment="bottom", gap="medium"):
        misses = st.toggle("Misses only (hit@10 = 0)", key=keys("misses"))
        unresolved = st.toggle("Unresolved references", key=keys("unresolved"))
        low = st.selectbox("Low score on", present, index=None, key=keys("low_metric"), placeholder="any answer metric",
                           disabled=not present, width=240,
                           help="Items whose metric is under the threshold (answer metrics need reference answers)")
        threshold = st.slider("Threshold", 0.0, 1.0, 0.5, 0.05, key=keys("low_threshold"), disabled=low is None, width=240)
    shown = filter_items(items, misses, unresolved, low, threshold)
    st.caption(f"{len(shown)} of {len(items)} items")
    st.dataframe(item_rows(shown), hide_index=True, width="stretch", key=keys("items"),
                 column_config={"question": st.column_config.TextColumn(width="large"),
                                **{m: st.column_config.NumberColumn(format="%.3f") for m in
                                   ("recall@10", "ndcg@10", "mrr@10", *ANSWER_METRICS)}})
    if shown:
        item_drilldown(shown)


def item_drilldown(items: list[dict]) -> None:
    by_idx = {i["idx"]: i for i in items}
    if SS.get(keys("item")) not in by_idx:
        SS[keys("item")] = next(iter(by_idx))
    st.selectbox("Item", list(by_idx), key=keys("item"),
                 format_func=lambda n: f"#{n + 1} · {'✅' if by_idx[n]['metrics'].get('hit@10') else '❌'} {by_idx[n]['question'][:110]}")
    item = by_idx[SS[keys("item")]]
    with st.container(border=True):
        st.markdown(f"**Question** — {escape_md(item['question'])}")
        gold_docs = {g["doc_id"] for g in item["gold"]}
        left, right = st.columns(2, gap="large")
        with left:
            st.markdown("**Gold references** (document rank in this run)")
            st.dataframe([{"doc": g["doc_id"], "span": g["key"], "rank": g["rank"] or "not found", "quote": g["quote"]}
                          for g in item["gold"]], hide_index=True, width="stretch", key=keys("gold"))
            st.markdown(f"**Answer** ({item['answer_kind'] or 'not generated'})")
            st.markdown(escape_md(item["answer"]) if item["answer"] else "_no answer: a retrieval-only run_")
            if item["reference_answer"]:
                st.markdown(f"**Reference answer** — {escape_md(item['reference_answer'])}")
            st.caption(f"⏱ retrieval {kit.duration(item['latency_ms'])} · {item['tokens']:,} tokens · "
                       f"{kit.money(item['cost_usd'], 6)}".replace("$", "\\$"))
        with right:
            st.markdown("**Retrieved chunks** (chunk rank and score)")
            st.dataframe([{"rank": r["rank"], "gold doc": "✅" if r["doc_id"] in gold_docs else "", "doc": r["doc_id"],
                           "chunk": r["chunk_id"], "title": r["title"], "score": r["score"]} for r in item["retrieved"]],
                         hide_index=True, width="stretch", key=keys("retrieved"), height=280,
                         column_config={"score": st.column_config.NumberColumn(format="%.4f")})
            st.markdown("**Per-item metrics**")
            st.dataframe([{"metric": k, "value": v} for k, v in sorted(item["metrics"].items())], hide_index=True,
                         width="stretch", key=keys("item_metrics"),
                         column_config={"value": st.column_config.NumberColumn(format="%.4f")})
            for metric, why in (item.get("judge_errors") or {}).items():
                st.caption(f"⚖️ no {metric}: {escape_md(why)}")


# --- diff ----------------------------------------------------------------------------------------------
def diff_view(services: Services, run: dict | None, base: dict | None) -> None:
    if run is None or base is None:
        st.caption("Open a run and choose a baseline run above to diff them: per-metric deltas with a paired bootstrap "
                   "test, improved / regressed / unchanged items, and the movement of every gold reference.")
        return
    common = [m for m in run["metrics"] if m in base["metrics"]]
    primary_options = [m for m in HEADLINE if m in common] + sorted(m for m in common if m not in HEADLINE)
    if SS.get(keys("primary")) not in primary_options:
        SS[keys("primary")] = "ndcg@10" if "ndcg@10" in primary_options else (primary_options or [None])[0]
    try:
        diff = services.evals.diff(base["id"], run["id"], primary=SS[keys("primary")] or "ndcg@10")
    except RagError as exc:
        st.error(describe(exc), icon="🛑")
        return
    st.markdown(f"**Run #{run['id']}** ({escape_md(run['policy'])}, `{run['collection']}`) against baseline "
                f"**#{base['id']}** ({escape_md(base['policy'])}, `{base['collection']}`) · {diff['n_items']} shared items")
    with st.container(horizontal=True, vertical_alignment="bottom", gap="large"):
        st.selectbox("Items judged by", primary_options, key=keys("primary"), width=220)
        for change, label in (("improved", "🟢 Improved"), ("regressed", "🔴 Regressed"), ("unchanged", "⚪ Unchanged")):
            st.metric(label, diff["counts"][change], width="content")
    st.dataframe(diff_metric_rows(diff, base, run), hide_index=True, width="stretch", key=keys("diff_metrics"), height="content",
                 column_config={"baseline": st.column_config.NumberColumn(format="%.4f"),
                                "this run": st.column_config.NumberColumn(format="%.4f"),
                                "delta": st.column_config.NumberColumn(format="%+.4f"),
                                "p-value": st.column_config.NumberColumn(format="%.4f")})
    st.caption("delta = this run − baseline over the shared items; 95% CI and p-value from a paired bootstrap "
               "(2,000 resamples of item pairs).")
    changed_only = st.toggle("Changed only", key=keys("changed_only"))
    rows = diff_item_rows(diff, changed_only)
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("diff_items"),
                 column_config={"delta": st.column_config.NumberColumn(format="%+.3f", width="small"),
                                "baseline": st.column_config.NumberColumn(format="%.3f", width="small",
                                                                          help=f"{diff['primary']} in the baseline run"),
                                "this run": st.column_config.NumberColumn(format="%.3f", width="small",
                                                                          help=f"{diff['primary']} in this run"),
                                "question": st.column_config.TextColumn(width="medium"),
                                "gold moves (baseline → this run)": st.column_config.TextColumn(width="large")})
    if rows.empty:
        st.caption(f"No item changed on {diff['primary']}.")
    stem = f"eval-diff-{base['id']}-{run['id']}"
    with st.container(horizontal=True, gap="small"):
        st.download_button("⬇️ Diff JSON", data=lambda: export_diff_json(diff), file_name=f"{stem}.json",
                           mime="application/json", key=keys("diff_json"), on_click="ignore", **need(Action.export))
        st.download_button("⬇️ Items CSV", data=lambda: export_diff_csv(diff), file_name=f"{stem}-items.csv",
                           mime="text/csv", key=keys("diff_csv"), on_click="ignore", **need(Action.export))
        st.download_button("⬇️ Metrics CSV", data=lambda: export_diff_csv(diff, "metrics"),
                           file_name=f"{stem}-metrics.csv", mime="text/csv", key=keys("diff_metrics_csv"),
                           on_click="ignore", **need(Action.export))


def started_from_url() -> str:
    """Which tab a link opens on (decided once per session, so clicking tabs later is never undone)."""
    if keys("tab") not in SS:
        SS[keys("tab")] = "diff" if st.query_params.get("base") else "run" if st.query_params.get("run") else "runs"
    return SS[keys("tab")]
