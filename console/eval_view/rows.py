"""Table and figure builders of the evaluation page: pure functions of backend rows (no Streamlit
calls), so tests can check what the page shows without a browser. Column names stay English (tests
and code read them); the page shows them translated through `kit.columns()`, cell texts are translated here
(English outside a Streamlit run)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from backend.evaluation.judge import JUDGED_METRICS
from backend.evaluation.runs import HEADLINE, EvalRun, RunDiff, RunItem, describe_moves
from console import charts, kit
from console.i18n import N_, t

STATUS_ICONS = {"done": "✅", "running": "⏳", "failed": "🔴", "cancelled": "⏹️"}
STATUS_NAMES = {"done": N_("done"), "running": N_("running"), "failed": N_("failed"), "cancelled": N_("cancelled")}
CHANGE_ICONS = {"improved": N_("🟢 improved"), "regressed": N_("🔴 regressed"), "unchanged": N_("⚪ unchanged")}
ANSWER_METRICS = ("string_similarity", "rouge_l", "exact_match", "string_presence", "context_recall",
                  "context_precision", *JUDGED_METRICS)
# The tables' column names, as shown (metric ids such as ndcg@10 stay as they are).
RUNS_COLUMNS = (N_("run"), N_("status"), N_("set"), N_("policy"), N_("index"), N_("date"), N_("items"),
                N_("unresolved refs"), N_("judge"), N_("seconds"), N_("by"), N_("error"))
ITEM_COLUMNS = (N_("question"), N_("gold ranks"), N_("unresolved"), N_("latency ms"))
DIFF_METRIC_COLUMNS = (N_("metric"), N_("baseline"), N_("this run"), N_("delta"), N_("95% CI"), N_("p-value"),
                       N_("verdict"))
DIFF_ITEM_COLUMNS = (N_("change"), N_("question"), N_("baseline"), N_("this run"), N_("delta"),
                     N_("gold moves (baseline → this run)"))
HOVER = ((N_("metric"), "%{fullData.name}"), (N_("mean"), "%{y:.3f}"), (N_("low"), "%{customdata[0]:.3f}"),
         (N_("high"), "%{customdata[1]:.3f}"), (N_("run"), "%{customdata[2]}"), (N_("policy"), "%{customdata[3]}"),
         (N_("index"), "%{customdata[4]}"))


def ci(m: dict | None, digits: int = 3) -> str:
    """'0.833 [0.667, 1.000]': a mean with its 95% bootstrap interval."""
    if not m:
        return ""
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def run_label(r: EvalRun) -> str:
    return f"#{r.id} · {r.golden_set} v{r.golden_version} · {r.policy} · {r.collection} · {r.created_at:%Y-%m-%d %H:%M}"


def runs_rows(runs: list[EvalRun]) -> list[dict]:
    """The runs table: one row per run, headline metrics as 'mean [95% CI]'."""
    rows = []
    for r in runs:
        index = r.collection if r.index == r.collection else f"{r.index} → {r.collection}"
        status = t(STATUS_NAMES[r.status]) if r.status in STATUS_NAMES else r.status
        rows.append({"run": r.id, "status": f"{STATUS_ICONS.get(r.status, '')} {status}",
                     "set": f"{r.golden_set} v{r.golden_version}", "policy": r.policy, "index": index,
                     "date": f"{r.created_at:%Y-%m-%d %H:%M:%S}", "items": f"{r.done_items}/{r.n_items}",
                     **{m: ci(r.metrics.get(m)) for m in HEADLINE},
                     "unresolved refs": r.unresolved, "judge": r.judge, "seconds": round(r.seconds, 1),
                     "by": r.created_by, "error": r.error})
    return rows


def metrics_frame(runs: list[EvalRun], set_name: str, metrics: list[str]) -> pd.DataFrame:
    """Each metric's mean and 95% interval over the finished runs of one set, oldest run first."""
    done = sorted((r for r in runs if r.golden_set == set_name and r.status == "done"), key=lambda r: r.created_at)
    return pd.DataFrame([{"time": r.created_at, "metric": m, "mean": r.metrics[m]["mean"], "low": r.metrics[m]["low"],
                          "high": r.metrics[m]["high"], "run": f"#{r.id} · v{r.golden_version}",
                          "policy": r.policy, "index": r.collection}
                         for r in done for m in metrics if m in r.metrics],
                        columns=["time", "metric", "mean", "low", "high", "run", "policy", "index"])


def metrics_figure(runs: list[EvalRun], set_name: str, metrics: list[str], title: str | None = None) -> go.Figure:
    """Each metric's mean over the finished runs of one set (a line per metric, colored in the order
    asked), with its 95% interval as error bars."""
    df = metrics_frame(runs, set_name, metrics)
    span = (df["time"].max() - df["time"].min()).total_seconds() if len(df) else 0
    fig = charts.new(title, height=340)
    hover = "<br>".join(f"{t(label)}: {value}" for label, value in HOVER) + "<extra></extra>"
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
                      yaxis=dict(title=t("mean"), range=[0, 1.05]))
    return fig


def gold_ranks(item: RunItem) -> str:
    return "; ".join(f"{g.doc_id}: {t('rank {rank}', rank=g.rank) if g.rank else t('not found')}" for g in item.gold)


def filter_items(items: list[RunItem], misses: bool = False, unresolved: bool = False, low_metric: str | None = None,
                 threshold: float = 0.5) -> list[RunItem]:
    """Misses: hit@10 == 0. Unresolved: a gold reference that no chunk of the run's index covers.
    Low metric: the item has the metric and it is under the threshold."""
    out = items
    if misses:
        out = [i for i in out if i.metrics.get("hit@10", 0) == 0]
    if unresolved:
        out = [i for i in out if i.metrics.get("unresolved_refs", 0) > 0]
    if low_metric:
        out = [i for i in out if low_metric in i.metrics and i.metrics[low_metric] < threshold]
    return out


def item_rows(items: list[RunItem]) -> list[dict]:
    extra = [m for m in ANSWER_METRICS if any(m in i.metrics for i in items)]
    return [{"#": i.idx + 1, "question": i.question, "hit@10": "✅" if i.metrics.get("hit@10") else "❌",
             **{m: i.metrics.get(m) for m in ("recall@10", "ndcg@10", "mrr@10")},
             **{m: i.metrics.get(m) for m in extra},
             "gold ranks": gold_ranks(i), "unresolved": i.metrics.get("unresolved_refs", 0),
             "latency ms": round(i.latency_ms, 1)} for i in items]


def diff_metric_rows(diff: RunDiff, base: EvalRun, run: EvalRun) -> list[dict]:
    """Per metric: baseline and this run's means, the paired delta with its 95% CI and p-value."""
    rows = []
    for m, d in diff.metrics.items():
        verdict = ((t("▲ better") if d.delta > 0 else t("▼ worse")) if kit.significant(d.p_value, d.low, d.high)
                   else t("≈ no significant change"))
        rows.append({"metric": m, "baseline": (base.metrics.get(m) or {}).get("mean"),
                     "this run": (run.metrics.get(m) or {}).get("mean"), "delta": d.delta,
                     "95% CI": f"[{d.low:+.3f}, {d.high:+.3f}]", "p-value": d.p_value, "verdict": verdict})
    return sorted(rows, key=lambda r: (r["metric"] not in HEADLINE, r["metric"]))


def diff_item_rows(diff: RunDiff, changed_only: bool) -> pd.DataFrame:
    """One row per shared item (or per changed item): its change, the primary metric in the baseline
    and in this run, and every gold reference's movement. Keeps its columns when no row is left."""
    columns = ["change", "question", "baseline", "this run", "delta", "gold moves (baseline → this run)"]
    rows = [[t(CHANGE_ICONS[r.change]), r.question, r.a, r.b, r.delta, describe_moves(r.moves)]
            for r in diff.items if not changed_only or r.change != "unchanged"]
    return pd.DataFrame(rows, columns=columns)
