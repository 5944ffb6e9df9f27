"""Row builders of the A/B page: pure functions of backend data (no Streamlit calls), so tests can
check what the page shows without a browser (in English outside a Streamlit run). Column names are
marked with N_ and stay English in the data; the page shows them translated (common.headers)."""
from __future__ import annotations

from typing import Any

from backend.engine.policy import Policy
from backend.evaluation.runs import HEADLINE, EvalRun, describe_moves
from backend.releases.ab_stats import Comparison
from backend.live import GuardrailStatus
from backend.releases.manager import Experiment, Release, ReleaseEvent, policy_diff
from backend.releases.online import Estimate, OfflineDiff, OnlineReport, variant_figures
from console import kit
from console.i18n import N_, t

CHANGE_ICONS = {"improved": N_("🟢 improved"), "regressed": N_("🔴 regressed"), "unchanged": N_("⚪ unchanged")}
EVENT_ICONS = {"set_current": "📌", "set_candidate": "🧪", "set_share": "🎚️", "clear_candidate": "⏹️", "promote": "🚀",
               "rollback": "↩️", "guardrail_trip": "🚨"}
# Names the backend gives its figures (offline costs, online comparisons) and the live variants: shown with t(name).
SHOWN_NAMES = (N_("retrieval latency (ms)"), N_("tokens per item"), N_("cost per item (USD)"), N_("error rate"),
               N_("mean latency (ms)"), N_("cost per request (USD)"), N_("thumbs-up rate"), N_("pairwise win rate"),
               N_("current"), N_("candidate"))
UNITS = {"decided votes": N_("decided votes"), "rated answers": N_("rated answers"), "requests": N_("requests")}


UNSET = {"version": N_("— (built-in)"), "model": N_("(the LLM_MODEL setting)"), "index": N_("(the live alias)")}


def _show(field: str, value: Any) -> str:
    return t(UNSET.get(field, N_("(unset)"))) if value is None else str(value)


def verdict(c: Comparison, unit: str = "requests") -> str:
    """In the session's language: 'significant' / 'not yet: ~N more <unit>
    per variant' / 'not enough data yet'. Votes are one sample, so their count is not per variant."""
    votes, what = "vote" in unit, t(UNITS.get(unit, unit))
    if c.significant:
        return t("✅ significant")
    if c.p_value is None:
        if not c.more_needed:
            return t("⏳ no data yet")
        n = f"{c.more_needed or 0:,}"
        return t("⏳ not enough data: {n} more {unit}", n=n, unit=what) if votes else \
            t("⏳ not enough data: {n} more {unit} per variant", n=n, unit=what)
    if c.more_needed:
        n = f"{c.more_needed:,}"
        return t("⏳ not yet: roughly {n} more {unit}", n=n, unit=what) if votes else \
            t("⏳ not yet: roughly {n} more {unit} per variant", n=n, unit=what)
    return t("≈ no difference seen")


def diff_rows(a: Policy, b: Policy, changed_only: bool = False) -> list[dict]:
    """field, A, B and a marker; name and version are listed but are not 'changes' of behaviour."""
    rows = []
    for r in policy_diff(a, b):
        if changed_only and (not r.changed or r.field in ("name", "version")):
            continue
        mark = "" if not r.changed else ("≠" if r.field in ("name", "version") else t("✏️ changed"))
        rows.append({N_("field"): r.field, "A": _show(r.field, r.a), "B": _show(r.field, r.b), N_("change"): mark})
    return rows


def changed_fields(a: Policy, b: Policy) -> list[str]:
    return [r.field for r in policy_diff(a, b) if r.changed and r.field not in ("name", "version")]


def offline_metric_rows(diff: OfflineDiff, run_a: EvalRun, run_b: EvalRun) -> list[dict]:
    """Per metric: A's and B's means, the paired delta (B − A) with its 95% CI, p-value and verdict."""
    rows = []
    for m, d in diff.quality.metrics.items():
        significant = kit.significant(d.p_value, d.low, d.high)
        rows.append({N_("metric"): m, "A": (run_a.metrics.get(m) or {}).get("mean"),
                     "B": (run_b.metrics.get(m) or {}).get("mean"), N_("delta (B − A)"): d.delta,
                     N_("95% CI"): f"[{d.low:+.3f}, {d.high:+.3f}]", N_("p-value"): d.p_value,
                     N_("verdict"): (t("▲ B better") if d.delta > 0 else t("▼ B worse")) if significant
                     else t("≈ no significant change")})
    return sorted(rows, key=lambda r: (r["metric"] not in HEADLINE, r["metric"]))


def offline_cost_rows(diff: OfflineDiff) -> list[dict]:
    return [{N_("per item"): t(c.name), "A": c.a, "B": c.b, "delta (B − A)": c.delta,
             "95% CI": f"[{c.low:+.4g}, {c.high:+.4g}]", "p-value": c.p_value,
             "verdict": ((t("▲ B higher") if c.delta > 0 else t("▼ B lower"))
                         if kit.significant(c.p_value, c.low, c.high) else t("≈ no significant change"))}
            for c in diff.costs]


def offline_item_rows(diff: OfflineDiff, changed_only: bool) -> list[dict]:
    p = diff.quality.primary
    return [{"change": t(CHANGE_ICONS[r.change]), N_("question"): r.question, f"{p} A": r.a, f"{p} B": r.b,
             N_("delta"): r.delta, N_("gold moves (A → B)"): describe_moves(r.moves)}
            for r in diff.quality.items if not changed_only or r.change != "unchanged"]


def _ci(e: Estimate, pct: bool = False) -> str:
    if e.low is None or e.high is None:
        return ""
    return f"[{kit.pct(e.low)}, {kit.pct(e.high)}]" if pct else f"[{e.low:,.0f}, {e.high:,.0f}]"


def variant_display_rows(report: OnlineReport) -> list[dict]:
    """The per-variant figures, each value with its 95% interval in one cell."""
    out = []
    for f in variant_figures(report):
        def ms(e: Estimate) -> str:
            return "—" if e.value is None else f"{e.value:,.0f} {_ci(e)}"

        out.append({
            N_("variant"): t(f.variant), N_("requests"): f.requests, N_("errors"): f.errors,
            N_("error rate [95% CI]"): f"{kit.pct(f.error_rate.value)} {_ci(f.error_rate, pct=True)}".strip(),
            N_("p50 ms [95% CI]"): ms(f.p50_ms), N_("p95 ms [95% CI]"): ms(f.p95_ms),
            N_("cost / request"): kit.money(f.cost_per_request, 6),
            N_("thumbs up [95% CI]"): t("{pct} of {n} {ci}", pct=kit.pct(f.thumbs_up_rate.value), n=f.rated,
                                        ci=_ci(f.thumbs_up_rate, pct=True)).strip() if f.rated else t("— (none rated)"),
            N_("pairwise wins [95% CI]"): t("{pct} of {n} {ci}", pct=kit.pct(f.win_rate.value), n=f.votes_decided,
                                            ci=_ci(f.win_rate, pct=True)).strip() if f.votes_decided else t("— (no votes)"),
        })
    return out


def comparison_rows(report: OnlineReport) -> list[dict]:
    """Per tested figure: current, candidate, delta (candidate − current), 95% CI, p, verdict."""
    rows = []
    for c in report.comparisons:
        unit = "decided votes" if "win" in c.metric else "rated answers" if "thumbs" in c.metric else "requests"
        pct = c.metric in ("error rate", "thumbs-up rate", "pairwise win rate")

        def fmt(x: float) -> str:
            if pct or kit.missing(x):
                return kit.pct(x)
            return f"{x:,.6f}" if "USD" in c.metric else f"{x:,.1f}"

        ci = "—" if c.low != c.low else f"[{fmt(c.low)}, {fmt(c.high)}]"
        rows.append({N_("figure"): t(c.metric), "current": fmt(c.a), "candidate": fmt(c.b), "delta": fmt(c.delta),
                     "95% CI": ci, "p-value": "—" if c.p_value is None else f"{c.p_value:.4f}",
                     N_("significant yet?"): verdict(c, unit)})
    return rows


def event_rows(events: list[ReleaseEvent]) -> list[dict]:
    return [{N_("when"): kit.when(e.ts, seconds=True), N_("event"): f"{EVENT_ICONS.get(e.action, '')} {e.action}",
             "from": f"#{e.from_id}" if e.from_id else "", "to": f"#{e.to_id}" if e.to_id else "",
             N_("who"): e.actor, N_("why"): e.reason,
             N_("detail"): ", ".join(f"{k}={v}" for k, v in e.detail.items() if k not in ("experiment",))}
            for e in events]


def release_rows(releases: list[Release], current_id: int | None, candidate_id: int | None,
                 share: float) -> list[dict]:
    def role(r: Release) -> str:
        if r.id == current_id:
            return t("📌 current")
        if r.id == candidate_id:
            return t("🧪 candidate {share}", share=f"{share:.0%}")
        return ""

    return [{N_("release"): f"#{r.id}", N_("live"): role(r), N_("policy"): r.policy, N_("index"): r.collection,
             N_("note"): r.note, N_("created"): kit.when(r.created_at), N_("by"): r.created_by}
            for r in releases]


def experiment_label(e: Experiment) -> str:
    trips = t(" · 🚨 {n} trip", n=len(e.trips)) if e.trips else ""
    share = f"{e.share:.0%}" if e.share is not None else "?"
    return t("{started} · #{current} vs #{candidate} at {share} · {outcome}{trips}", started=kit.when(e.started_at),
             current=e.current_id, candidate=e.candidate_id, share=share, outcome=e.outcome, trips=trips)


def guardrail_state(g: GuardrailStatus) -> str:
    """The guardrail's state in the session's language."""
    if g.state == "waiting":
        return t("armed — waiting for {min} candidate requests in the window ({n} so far)",
                 min=g.guardrails.min_requests, n=g.requests)
    if g.state == "over":
        return t("over a threshold — trips at the next check")
    if g.state == "armed":
        return t("armed — within thresholds")
    return t("paused (0% share)") if g.state == "paused" else t("no candidate")
