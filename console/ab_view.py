"""Sections of the A/B page: the two policies being compared (A and B, mirrored to ?a= and ?b=),
what changed between them, one question answered by both side by side (blind: order randomized,
names hidden until the vote), the offline comparison over a golden set (both evaluation runs as
one background job), the online comparison of the live variants, and the release controls
(create, candidate and share, guardrails, promote, roll back, history, a live-path probe).

Widget keys are namespaced `ab.*` (console.kit.PageKeys); the experiment shown in the online tab is
in the URL too (?ab.experiment=, bound by Streamlit). The row builders at the top are pure functions
of backend data (no Streamlit calls), so tests can check what the page shows without a browser."""
from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from typing import Any

import streamlit as st

from backend.ab_online import (OFFLINE_JOB, OnlineReport, offline_diff, online_report, start_offline, variant_rows,
                               verdict)
from backend.ab_stats import compare_win_rate
from backend.access import Action
from backend.engine import Answer
from backend.errors import RagError
from backend.eval_runs import HEADLINE
from backend.jobs import DONE, Job
from backend.live import answer_live, guardrail_status
from backend.policy import Policy
from backend.releases import Guardrails, policy_diff
from backend.services import Services
from console import answer_view, kit
from console.access_view import need
from console.auth import current_actor
from console.job_progress import job_progress
from console.markup import escape_md, latency_bar
from console.state import describe

log = logging.getLogger(__name__)

keys = kit.PageKeys("ab")
SS = st.session_state
BUILTIN = "default:"  # option value of the built-in default policy
POLICY_INDEX = "__policy__"
VOTE_LABELS = {"a": "A better", "b": "B better", "tie": "tie", "both_bad": "both bad"}
CHANGE_ICONS = {"improved": "🟢 improved", "regressed": "🔴 regressed", "unchanged": "⚪ unchanged"}
# Source cards in half-width columns: each score's "what it measures" goes under its name.
NARROW_CARDS = "<style>table.rag-scores th span { display: block; margin-left: 0 !important; }</style>"
# Whose live requests the online comparison counts (backend.ab_online.online_report's `source`).
ONLINE_SOURCES = {"all": "all traffic", "api": "API keys", "console": "console users"}
EVENT_ICONS = {"set_current": "📌", "set_candidate": "🧪", "set_share": "🎚️", "clear_candidate": "⏹️", "promote": "🚀",
               "rollback": "↩️", "guardrail_trip": "🚨"}


# --- pure builders ----------------------------------------------------------------------------------
def option_label(option: str) -> str:
    name, _, version = option.rpartition(":")
    return f"{name} (built-in)" if option == BUILTIN else f"{name} v{version}"


def parse_option(option: str) -> tuple[str, int | None]:
    name, _, version = option.rpartition(":")
    return name, int(version) if version else None


UNSET = {"version": "— (built-in)", "model": "(the LLM_MODEL setting)", "index": "(the live alias)"}


def _show(field: str, value: Any) -> str:
    return UNSET.get(field, "(unset)") if value is None else str(value)


def diff_rows(a: Policy, b: Policy, changed_only: bool = False) -> list[dict]:
    """field, A, B and a marker; name and version are listed but are not 'changes' of behaviour."""
    rows = []
    for r in policy_diff(a, b):
        if changed_only and (not r["changed"] or r["field"] in ("name", "version")):
            continue
        mark = "" if not r["changed"] else ("≠" if r["field"] in ("name", "version") else "✏️ changed")
        rows.append({"field": r["field"], "A": _show(r["field"], r["A"]), "B": _show(r["field"], r["B"]), "change": mark})
    return rows


def changed_fields(a: Policy, b: Policy) -> list[str]:
    return [r["field"] for r in policy_diff(a, b) if r["changed"] and r["field"] not in ("name", "version")]


def offline_metric_rows(diff: dict, run_a: dict, run_b: dict) -> list[dict]:
    """Per metric: A's and B's means, the paired delta (B − A) with its 95% CI, p-value and verdict."""
    rows = []
    for m, d in diff["metrics"].items():
        significant = kit.significant(d["p_value"], d["low"], d["high"])
        rows.append({"metric": m, "A": (run_a["metrics"].get(m) or {}).get("mean"),
                     "B": (run_b["metrics"].get(m) or {}).get("mean"), "delta (B − A)": d["delta"],
                     "95% CI": f"[{d['low']:+.3f}, {d['high']:+.3f}]", "p-value": d["p_value"],
                     "verdict": ("▲ B better" if d["delta"] > 0 else "▼ B worse") if significant else "≈ no significant change"})
    return sorted(rows, key=lambda r: (r["metric"] not in HEADLINE, r["metric"]))


def offline_cost_rows(diff: dict) -> list[dict]:
    return [{"per item": name, "A": d["a"], "B": d["b"], "delta (B − A)": d["delta"],
             "95% CI": f"[{d['low']:+.4g}, {d['high']:+.4g}]", "p-value": d["p_value"],
             "verdict": (("▲ B higher" if d["delta"] > 0 else "▼ B lower")
                         if kit.significant(d["p_value"], d["low"], d["high"]) else "≈ no significant change")}
            for name, d in diff["costs"].items()]


def offline_item_rows(diff: dict, changed_only: bool) -> list[dict]:
    p = diff["primary"]
    return [{"change": CHANGE_ICONS[r["change"]], "question": r["question"], f"{p} A": r[f"{p} A"],
             f"{p} B": r[f"{p} B"], "delta": r["delta"], "gold moves (A → B)": r["gold moves"]}
            for r in diff["items"] if not changed_only or r["change"] != "unchanged"]


def variant_display_rows(report: OnlineReport) -> list[dict]:
    """The per-variant figures, each value with its 95% interval in one cell."""
    out = []
    for r in variant_rows(report):
        def ms(q: str) -> str:  # "p50" / "p95"
            return "—" if r[f"{q} ms"] is None else f"{r[f'{q} ms']:,.0f} {r[f'{q} 95% CI']}"

        rated = int(r["thumbs up"].split("/")[1])
        votes = int(r["votes won"].split("/")[1])
        out.append({
            "variant": r["variant"], "requests": r["requests"], "errors": r["errors"],
            "error rate [95% CI]": f"{kit.pct(r['error rate'])} {r['error rate 95% CI']}".strip(),
            "p50 ms [95% CI]": ms("p50"), "p95 ms [95% CI]": ms("p95"),
            "cost / request": kit.money(r["cost / request"], 6),
            "thumbs up [95% CI]": f"{kit.pct(r['thumbs-up rate'])} of {rated} {r['thumbs-up 95% CI']}".strip() if rated
            else "— (none rated)",
            "pairwise wins [95% CI]": f"{kit.pct(r['win rate'])} of {votes} {r['win rate 95% CI']}".strip() if votes
            else "— (no votes)",
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
        rows.append({"figure": c.metric, "current": fmt(c.a), "candidate": fmt(c.b), "delta": fmt(c.delta), "95% CI": ci,
                     "p-value": c.p_value, "significant yet?": verdict(c, unit)})
    return rows


def event_rows(events: list[dict]) -> list[dict]:
    return [{"when": f"{e['ts']:%Y-%m-%d %H:%M:%S}", "event": f"{EVENT_ICONS.get(e['action'], '')} {e['action']}",
             "from": f"#{e['from_id']}" if e["from_id"] else "", "to": f"#{e['to_id']}" if e["to_id"] else "",
             "who": e["actor"], "why": e["reason"],
             "detail": ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items() if k not in ("experiment",))}
            for e in events]


def release_rows(releases: list[dict], current_id: int | None, candidate_id: int | None, share: float) -> list[dict]:
    def role(r: dict) -> str:
        if r["id"] == current_id:
            return "📌 current"
        if r["id"] == candidate_id:
            return f"🧪 candidate {share:.0%}"
        return ""

    return [{"release": f"#{r['id']}", "live": role(r), "policy": r["policy"], "index": r["collection"], "note": r["note"],
             "created": f"{r['created_at']:%Y-%m-%d %H:%M}", "by": r["created_by"]} for r in releases]


def experiment_label(e: dict) -> str:
    trips = f" · 🚨 {len(e['trips'])} trip" if e["trips"] else ""
    share = f"{e['share']:.0%}" if e.get("share") is not None else "?"
    return (f"{e['started_at']:%Y-%m-%d %H:%M} · #{e['current_id']} vs #{e['candidate_id']} at {share} · "
            f"{e['outcome']}{trips}")


# --- the two policies ------------------------------------------------------------------------------------
def policy_options(services: Services) -> list[str]:
    options = [BUILTIN]
    for p in services.policies.list():
        options += [f"{v.name}:{v.version}" for v in reversed(services.policies.versions(p["name"]))]
    return options


def load_policy(services: Services, option: str) -> Policy:
    name, version = parse_option(option)
    return services.policies.get(name, version)


def pickers(services: Services) -> tuple[Policy, Policy]:
    """A and B: any two saved policy versions (or the built-in default)."""
    try:
        options = policy_options(services)
    except RagError as exc:
        st.error(f"Policies unavailable — {describe(exc)}", icon="🛑")
        st.stop()
    saved = [o for o in options if o != BUILTIN]
    kit.from_url(keys("a"), "a", options, BUILTIN)
    kit.from_url(keys("b"), "b", options, saved[0] if saved else BUILTIN)
    left, right = st.columns(2)
    left.selectbox("Policy A (baseline)", options, key=keys("a"), format_func=option_label,
                   on_change=kit.to_url, args=(keys("a"), "a"))
    right.selectbox("Policy B (challenger)", options, key=keys("b"), format_func=option_label,
                    on_change=kit.to_url, args=(keys("b"), "b"))
    for name in ("a", "b"):  # a link without them gets them: the page as shown is shareable
        if st.query_params.get(name) != SS[keys(name)]:
            kit.to_url(keys(name), name)
    a, b = load_policy(services, SS[keys("a")]), load_policy(services, SS[keys("b")])
    if not saved:
        st.caption("Only the built-in policy exists: save variants from the chat tester's sidebar (💾 Save as policy).")
    return a, b


# --- policy diff ---------------------------------------------------------------------------------------
def policy_diff_view(a: Policy, b: Policy) -> None:
    changed = changed_fields(a, b)
    if a.label() == b.label():
        st.markdown(f"A and B are the same policy version (**{escape_md(a.label())}**): pick another one above.")
    elif changed:
        st.markdown(f"**{escape_md(b.label())}** differs from **{escape_md(a.label())}** in "
                    f"**{len(changed)}** field{'s' if len(changed) > 1 else ''}: " + ", ".join(f"`{f}`" for f in changed))
    else:
        st.markdown(f"**{escape_md(a.label())}** and **{escape_md(b.label())}** answer the same way (no field differs "
                    "but the name).")
    only = st.toggle("Changed fields only", key=keys("diff_changed_only"))
    st.dataframe(diff_rows(a, b, only), hide_index=True, width="stretch", key=keys("diff_table"),
                 column_config={"field": st.column_config.TextColumn(width="small"),
                                "change": st.column_config.TextColumn(width="small")})
    st.caption("Policy versions are never rewritten: saving a policy again creates its next version.")


# --- side by side --------------------------------------------------------------------------------------
def _ask(services: Services, a: Policy, b: Policy, question: str, blind: bool) -> None:
    pair: dict[str, Any] = {"id": uuid.uuid4().hex[:8], "question": question, "blind": blind,
                            "order": ["b", "a"] if blind and random.random() < 0.5 else ["a", "b"],
                            "labels": {"a": a.label(), "b": b.label()}, "answers": {}, "errors": {}, "vote": None,
                            "fusion": {"a": a.fusion, "b": b.fusion}}
    for side, policy in (("a", a), ("b", b)):
        try:
            pair["answers"][side] = services.engine.query(question, policy, current_actor())
        except RagError as exc:
            pair["errors"][side] = str(exc)
        except Exception as exc:  # a bug: logged, shown as a message in its column
            log.exception("side-by-side question failed")
            pair["errors"][side] = f"console: unexpected error ({type(exc).__name__}); see the server log"
    SS[keys("pair")] = pair


def _vote(services: Services, shown: str) -> None:
    """A click on a vote button; `shown` is left / right / tie / both_bad as displayed."""
    pair = SS.get(keys("pair"))
    if not pair or pair["vote"]:
        return
    true = {"left": pair["order"][0], "right": pair["order"][1]}.get(shown, shown)
    a, b = pair["answers"]["a"], pair["answers"]["b"]
    done = kit.run(keys, lambda: services.releases.vote(current_actor(), pair["question"], pair["labels"]["a"],
                                                        pair["labels"]["b"], a.request_id, b.request_id, pair["order"][0],
                                                        pair["blind"], true) or True, failed="Vote not saved")
    if done:
        pair["vote"] = true


def _blind_summary(ans: Answer) -> str:
    """The summary line without anything that names the policy or the model."""
    tokens = "no model tokens" if ans.usage.method == "none" else \
        f"{ans.usage.prompt_tokens:,} + {ans.usage.completion_tokens:,} tokens"
    cost = f"\\${ans.cost_usd:.6f}" if ans.price_known else "cost unknown"
    return " · ".join([f"⏱ {kit.duration(ans.latency_ms.get('total', 0.0))}", tokens, cost,
                       "cache hit" if ans.cache_hit else "cache miss"])


def _column(services: Services, pair: dict, side: str, position: str) -> None:
    blind, voted = pair["blind"], pair["vote"] is not None
    letter = side.upper()
    if blind and not voted:
        st.markdown(f"#### {'⬅️' if position == 'left' else '➡️'} {position.capitalize()} answer")
    elif blind:
        st.markdown(f"#### {position.capitalize()} was {letter} · {escape_md(pair['labels'][side])}")
    else:
        st.markdown(f"#### {letter} · {escape_md(pair['labels'][side])}")
    ans: Answer | None = pair["answers"].get(side)
    if ans is None:
        st.error(pair["errors"].get(side, "no answer"), icon="⚠️")
        return
    icon, label, color = answer_view.KINDS[ans.answer_kind]
    with st.container(horizontal=True, gap="small"):
        st.badge(label, icon=icon, color=color)
        if ans.answer_kind == "llm" and not (blind and not voted):
            st.badge(ans.model, color="gray")
    answer_view.answer_text(ans)
    st.caption(_blind_summary(ans) if blind and not voted else answer_view.summary(ans))
    st.html(latency_bar(ans.latency_ms))
    with st.expander(f"📚 Sources ({len(ans.sources)}) with their scores", expanded=True):
        answer_view.sources(ans.sources, ans.question, pair["fusion"][side], services.engine.reranker.name, ans.citations)


def side_by_side(services: Services, a: Policy, b: Policy) -> None:
    with st.form(keys("ask_form"), border=False):
        c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
        question = c1.text_input("Question", key=keys("question"), placeholder="One question, answered by A and by B")
        asked = c2.form_submit_button("🆚 Ask both", type="primary", key=keys("ask"), width="stretch")
    st.toggle("🙈 Blind — hide which answer is which and randomize the order until you vote", key=keys("blind"))
    if asked:
        if not (question or "").strip():
            st.warning("Type a question first.", icon="✍️")
        else:
            with st.spinner("Asking A and B…"):
                _ask(services, a, b, question.strip(), bool(SS.get(keys("blind"))))
    pair = SS.get(keys("pair"))
    if not pair:
        st.caption("Each answer shows its sources with their dense, BM25, fused and rerank scores, its latency per "
                   "stage, tokens and cost. Votes are stored per pair of policies (pairwise, not thumbs).")
        return
    if pair["labels"] != {"a": a.label(), "b": b.label()}:
        st.info("These answers are from another pair of policies; ask again to compare "
                f"{escape_md(a.label())} with {escape_md(b.label())}.", icon="ℹ️")
    st.markdown(f"**Question** — {escape_md(pair['question'])}" + (" · 🙈 blind" if pair["blind"] else ""))
    both = all(pair["answers"].get(s) is not None for s in ("a", "b"))
    names = ({"left": "⬅️ Left better", "right": "➡️ Right better"} if pair["blind"]
             else {"left": "⬅️ A better", "right": "➡️ B better"})
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("**Which answer is better?**", width="content")
        for shown, label in (*names.items(), ("tie", "🤝 Tie"), ("both_bad", "👎 Both bad")):
            st.button(label, key=keys(f"vote_{shown}"), disabled=not both or pair["vote"] is not None,
                      on_click=_vote, args=(services, shown))
    if pair["vote"]:
        winner = {"a": f"A ({pair['labels']['a']})", "b": f"B ({pair['labels']['b']})"}.get(pair["vote"])
        st.success(f"Vote saved: {escape_md(winner + ' better') if winner else VOTE_LABELS[pair['vote']]}"
                   + (" — the names are revealed below" if pair["blind"] else ""), icon="🗳️")
    _vote_tally(services, pair["labels"]["a"], pair["labels"]["b"])
    st.html(NARROW_CARDS)
    left, right = st.columns(2, gap="medium")
    for col, side, position in ((left, pair["order"][0], "left"), (right, pair["order"][1], "right")):
        with col, st.container(border=True):
            _column(services, pair, side, position)


def _vote_tally(services: Services, label_a: str, label_b: str) -> None:
    votes = services.releases.pair_votes(label_a, label_b)
    c = compare_win_rate("win rate", votes["x"], votes["y"])
    total = sum(votes.values())
    if not total:
        return
    line = (f"**Votes so far** for {escape_md(label_a)} (A) vs {escape_md(label_b)} (B): A won **{votes['x']}**, "
            f"B won **{votes['y']}**, tie {votes['tie']}, both bad {votes['both_bad']}")
    if votes["x"] + votes["y"]:
        line += f" · B's win rate {c.b:.0%} (95% CI {(c.low + 1) / 2:.0%}–{(c.high + 1) / 2:.0%}) · {verdict(c, 'decided votes')}"
    st.markdown(line)


# --- offline comparison --------------------------------------------------------------------------------
def _on_start_offline(services: Services, a: Policy, b: Policy) -> None:
    job_id = kit.run(keys, lambda: start_offline(services.jobs, services.evals, services.golden, SS[keys("set")], a, b,
                                                 current_actor(), version=SS.get(keys("set_version")),
                                                 generate=bool(SS.get(keys("generate"), True))), failed="Not started")
    if job_id is not None:
        SS[keys("offline_job")] = job_id
        kit.note(keys, f"Started offline comparison job {job_id}: {a.label()} then {b.label()} over the golden set.",
                 "info")


def _offline_text(job: Job) -> tuple[float, str]:
    d, p = job.detail, job.progress
    total, done = p.get("total") or 0, p.get("done") or 0
    what = (f"**{escape_md(d.get('golden_set', '?'))} v{d.get('version', '?')}** · A {escape_md(d.get('policy_a', '?'))} "
            f"then B {escape_md(d.get('policy_b', '?'))}")
    if not total:
        return 0.0, f"Job {job.id} · {what} · loading the set… {job.seconds:.0f} s"
    return done / total, f"Job {job.id} · {what} · running {p.get('phase', 'A')}: item **{done} / {total}** · {job.seconds:.0f} s"


def _job_label(j: Job) -> str:
    d = j.detail
    return (f"Job {j.id} · {d.get('golden_set')} v{d.get('version')} · A {d.get('policy_a')} vs B {d.get('policy_b')} · "
            f"{j.created_at:%Y-%m-%d %H:%M}")


def offline(services: Services, a: Policy, b: Policy) -> None:
    sets = [s for s in services.golden.list_sets() if s["latest_version"]]
    if not sets:
        st.info("No frozen golden set yet: import or annotate one on the Golden sets page and freeze it.", icon="🏷️")
    else:
        names = [s["name"] for s in sets]
        latest = {s["name"]: s["latest_version"] for s in sets}
        with st.container(horizontal=True, vertical_alignment="bottom"):
            name = kit.select("Golden set", names, keys("set"), width=280)
            kit.select("Version", list(range(latest[name], 0, -1)), keys("set_version"), format_func=lambda v: f"v{v}",
                       width=110)
            st.toggle("Answers and answer metrics", value=True, key=keys("generate"),
                      help="Also generate an answer per item and score it against the reference answer; off: retrieval "
                           "metrics only (faster).")
            st.button("▶️ Run A and B", type="primary", key=keys("offline_start"), on_click=_on_start_offline,
                      args=(services, a, b), **need(Action.run_evaluation))
        st.caption(f"Runs {escape_md(a.label())} then {escape_md(b.label())} over every item (each policy on its own "
                   "index, else the live alias) as one background job; leave the page and come back, it keeps going.")
    jobs = services.jobs.list(kind=OFFLINE_JOB, limit=50)
    for job in [j for j in jobs if j.active]:
        job_progress(services.jobs, job.id, _offline_text, "⏹️ Cancel", keys(f"cancel.{job.id}"))
    finished = [j for j in jobs if j.status == DONE and (j.result or {}).get("run_b")]
    for j in jobs:
        if not j.active and j.status != DONE and j.id == SS.get(keys("offline_job")):
            st.error(f"Offline comparison job {j.id} {j.status}: {escape_md(j.error)}", icon="🛑")
    if not finished:
        return
    ids = [j.id for j in finished]
    if SS.get(keys("offline_job")) in ids and SS.get(keys("offline_pick")) != SS[keys("offline_job")]:
        SS[keys("offline_pick")] = SS.pop(keys("offline_job"))  # the job this browser just ran
    by_id = {j.id: j for j in finished}
    job = by_id[kit.select("Comparison", ids, keys("offline_pick"), format_func=lambda i: _job_label(by_id[i]))]
    offline_result(services, job)


def offline_result(services: Services, job: Job) -> None:
    run_a, run_b = services.evals.get(job.result["run_a"]), services.evals.get(job.result["run_b"])
    common = [m for m in run_b["metrics"] if m in run_a["metrics"]]
    primaries = [m for m in HEADLINE if m in common] or sorted(common)
    if SS.get(keys("primary")) not in primaries:
        SS[keys("primary")] = "ndcg@10" if "ndcg@10" in primaries else primaries[0]
    try:
        diff = offline_diff(services.evals, run_a["id"], run_b["id"], primary=SS[keys("primary")])
    except RagError as exc:
        st.error(describe(exc), icon="🛑")
        return
    st.markdown(f"**A** {escape_md(run_a['policy'])} (run #{run_a['id']}, `{run_a['collection']}`) vs **B** "
                f"{escape_md(run_b['policy'])} (run #{run_b['id']}, `{run_b['collection']}`) · {diff['n_items']} items of "
                f"{escape_md(run_a['golden_set'])} v{run_a['golden_version']}")
    with st.container(horizontal=True, vertical_alignment="bottom", gap="large"):
        st.selectbox("Items judged by", primaries, key=keys("primary"), width=200)
        for change, label in (("improved", "🟢 Improved"), ("regressed", "🔴 Regressed"), ("unchanged", "⚪ Unchanged")):
            st.metric(label, diff["counts"][change], width="content")
    st.dataframe(offline_metric_rows(diff, run_a, run_b), hide_index=True, width="stretch", key=keys("offline_metrics"),
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("A", "B", "p-value")} |
                 {"delta (B − A)": st.column_config.NumberColumn(format="%+.4f")})
    st.dataframe(offline_cost_rows(diff), hide_index=True, width="stretch", key=keys("offline_costs"),
                 column_config={"A": st.column_config.NumberColumn(format="%.4g"),
                                "B": st.column_config.NumberColumn(format="%.4g"),
                                "delta (B − A)": st.column_config.NumberColumn(format="%+.4g"),
                                "p-value": st.column_config.NumberColumn(format="%.4f")})
    st.caption("delta = B − A over the shared items; 95% CI and p-value from a paired bootstrap (2,000 resamples of item "
               "pairs). Latency is the retrieval stage of each item; tokens and cost are the answer's.")
    changed_only = st.toggle("Changed items only", key=keys("offline_changed_only"))
    rows = offline_item_rows(diff, changed_only)
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("offline_items"),
                 column_config={"delta": st.column_config.NumberColumn(format="%+.3f"),
                                "question": st.column_config.TextColumn(width="medium"),
                                "gold moves (A → B)": st.column_config.TextColumn(width="large")})
    if not rows:
        st.caption("No item changed on this metric.")


# --- online comparison ---------------------------------------------------------------------------------
def online(services: Services) -> None:
    releases = services.releases
    experiments = releases.experiments()
    if not experiments:
        st.info("No experiment yet: in **🚀 Releases**, make a release current, then set a candidate with a traffic "
                "share. Live requests (`backend.live.answer_live`) record their variant on every ledger row.", icon="📈")
        return
    by_id = {e["experiment"]: e for e in experiments}
    chosen = kit.select("Experiment", list(by_id), keys("experiment"), format_func=lambda x: experiment_label(by_id[x]),
                        bind="query-params")
    exp = by_id[chosen]
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    source = left.segmented_control(
        "Traffic", list(ONLINE_SOURCES), default="all", format_func=ONLINE_SOURCES.get, key=keys("online_source"),
        help="Whose requests to count: those sent with an API key (production), those of console users, or all "
             "(system requests too). Pairwise votes are the console's own, whatever the traffic.") or "all"
    right.button("🔄 Refresh", key=keys("online_refresh"), help="Read the ledger, traces and votes again")
    report = online_report(services.db, releases, exp, source=source)
    cur, cand = releases.get(exp["current_id"]), releases.get(exp["candidate_id"])
    until = f"{exp['ended_at']:%Y-%m-%d %H:%M} ({exp['outcome']})" if exp["ended_at"] else "now (running)"
    st.markdown(f"**current** {escape_md(cur['label'])} vs **candidate** {escape_md(cand['label'])} · from "
                f"{exp['started_at']:%Y-%m-%d %H:%M} to {until} · {ONLINE_SOURCES[source]}")
    for t in exp["trips"]:
        st.warning(f"{t['ts']:%Y-%m-%d %H:%M:%S} · {t['reason']}", icon="🚨")
    st.dataframe(variant_display_rows(report), hide_index=True, width="stretch", key=keys("online_variants"))
    st.dataframe(comparison_rows(report), hide_index=True, width="stretch", key=keys("online_tests"),
                 column_config={"p-value": st.column_config.NumberColumn(format="%.4f"),
                                "significant yet?": st.column_config.TextColumn(width="large")})
    st.caption("Requests, errors and cost from the ledger (one request = its model calls), latency = end to end "
               "(histogram estimate; order-statistic 95% CI), thumbs from the traces, win rate from the pairwise votes "
               "between the two releases' policies (ties and 'both bad' left out; exact sign test). Tests: "
               "two-proportion z, Welch on means; 'more needed' is per variant for 80% power at the observed difference.")


# --- releases -------------------------------------------------------------------------------------------
def _promote_body(services: Services) -> None:
    state = services.releases.state()
    if state.candidate is None:
        kit.close(keys)
        st.rerun()
    cand, cur = state.candidate, state.current
    alias = services.releases.alias
    live = services.store.aliases().get(alias)
    st.markdown(f"**{escape_md(cand['label'])}** becomes the current release" +
                (f" instead of {escape_md(cur['label'])}" if cur else "") + "; every user gets it.")
    if cand["collection"] != live:
        st.markdown(f"`{alias}` will point at **`{cand['collection']}`** instead of `{live}` in the same step (one atomic "
                    "alias update, recorded in the alias history).")
    st.text_input("Why (recorded with the release event)", key=keys("promote_reason"))


def _rollback_body(services: Services) -> None:
    target = services.releases.rollback_target()
    state = services.releases.state()
    if target is None or state.current is None:
        kit.close(keys)
        st.rerun()
    st.markdown(f"Back to **{escape_md(target['label'])}** instead of {escape_md(state.current['label'])}"
                + (" (the candidate is cleared)" if state.candidate else "") + ".")
    if target["collection"] != state.current["collection"]:
        st.markdown(f"`{services.releases.alias}` will point back at **`{target['collection']}`** in the same step.")
    st.text_input("Why (recorded with the release event)", key=keys("rollback_reason"))


def dialogs(services: Services) -> None:
    """Draw the confirmation dialog that is open (one per run)."""
    d, releases = kit.asked(keys), services.releases
    if d and d["kind"] == "promote":
        kit.confirm(keys, "Promote the candidate?", "🚀 Promote now", "promote",
                    lambda: releases.promote(current_actor(), SS.get(keys("promote_reason"), "")),
                    ok=lambda done: f"Promoted {done['label']}: it is now the current release.", failed="Not promoted",
                    body=lambda: _promote_body(services))
    elif d and d["kind"] == "rollback":
        kit.confirm(keys, "Roll back?", "↩️ Roll back now", "rollback",
                    lambda: releases.rollback(current_actor(), SS.get(keys("rollback_reason"), "")),
                    ok=lambda done: f"Rolled back to {done['label']}.", failed="Not rolled back",
                    body=lambda: _rollback_body(services))


def _on_create(services: Services) -> None:
    name, version = parse_option(SS[keys("new_policy")])
    index = SS.get(keys("new_index"))
    r = kit.run(keys, lambda: services.releases.create(current_actor(), name, version,
                                                       index=None if index == POLICY_INDEX else index,
                                                       note=SS.get(keys("new_note"), "")),
                failed="Release not created", ok=lambda r: f"Created release {r['label']}.")
    if r is not None:
        SS[keys("pick")] = r["id"]


def _on_make_current(services: Services) -> None:
    rid = SS.get(keys("pick"))
    if kit.run(keys, lambda: services.releases.set_current(current_actor(), rid, SS.get(keys("reason"), "")) or True,
               failed="Not made current", ok=f"Release #{rid} is now current."):
        SS[keys("reason")] = ""


def _on_set_candidate(services: Services) -> None:
    rid, share = SS.get(keys("pick")), SS[keys("share")] / 100
    if kit.run(keys, lambda: services.releases.set_candidate(current_actor(), rid, share, SS.get(keys("reason"), "")),
               failed="Candidate not set",
               ok=lambda exp: f"Release #{rid} is the candidate for {share:.0%} of users (experiment {exp})."):
        SS[keys("reason")] = ""


def _on_share(services: Services) -> None:
    share = SS[keys("new_share")] / 100
    if kit.run(keys, lambda: services.releases.set_share(current_actor(), share, SS.get(keys("reason"), "")) or True,
               failed="Share not changed", ok=f"Candidate share set to {share:.0%}."):
        SS[keys("reason")] = ""


def _on_clear(services: Services) -> None:
    if kit.run(keys, lambda: services.releases.clear_candidate(current_actor(), SS.get(keys("reason"), "")) or True,
               failed="Candidate not cleared", ok="Experiment stopped: every user gets the current release."):
        SS[keys("reason")] = ""


def _on_guardrails(services: Services) -> None:
    g = Guardrails(max_error_rate=SS[keys("g_error")] / 100, max_p95_ms=SS[keys("g_p95")],
                   window_minutes=SS[keys("g_window")], min_requests=SS[keys("g_min")])
    kit.run(keys, lambda: services.releases.set_guardrails(current_actor(), g), failed="Guardrails not saved",
            ok="Guardrails saved.")


def live_status(services: Services) -> None:
    state = services.releases.state()
    left, right = st.columns(2)
    with left, st.container(border=True):
        st.markdown("**📌 Current release**")
        if state.current:
            st.markdown(f"**{escape_md(state.current['label'])}**")
            st.caption(f"{100 - state.share * 100:.0f}% of users · policy {escape_md(state.current['policy'])} · index "
                       f"`{state.current['collection']}`")
        else:
            st.caption("None yet: live requests use the built-in default policy on the live alias. Create a release "
                       "below and make it current.")
    with right, st.container(border=True):
        st.markdown("**🧪 Candidate release**")
        if state.candidate:
            st.markdown(f"**{escape_md(state.candidate['label'])}** · **{state.share:.0%}** of users")
            started = f"{state.started_at:%Y-%m-%d %H:%M}" if state.started_at else "?"
            st.caption(f"experiment `{state.experiment_id}` since {started} · sticky per user")
        else:
            st.caption("No experiment running.")
    g = guardrail_status(services)
    gr: Guardrails = g["guardrails"]
    icon = "🚨" if "over" in g["state"] else "⏸️" if "paused" in g["state"] else "🛡️"
    figures = ""
    if g.get("requests"):
        figures = f" · candidate: {g['requests']} requests, error rate {g['error_rate']:.1%}, p95 {kit.duration(g['p95_ms'])}"
    st.markdown(f"{icon} **Guardrail:** {escape_md(g['state'])}{figures} · limits: error rate ≤ {gr.max_error_rate:.0%}, "
                f"p95 ≤ {kit.duration(gr.max_p95_ms)} over {gr.window_minutes} min, from {gr.min_requests} requests")


def controls(services: Services) -> None:
    releases = services.releases
    state = releases.state()
    rows = releases.list()
    by_id = {r["id"]: r for r in rows}
    st.markdown("**🎛️ Traffic**")
    if rows:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            pick = kit.select("Release", list(by_id), keys("pick"), format_func=lambda i: by_id[i]["label"], width=380)
            st.number_input("Candidate share (%)", 1, 100, 10, step=5, key=keys("share"), width=170,
                            help="Share of users (sticky per user) who get the candidate")
            st.text_input("Why", key=keys("reason"), placeholder="recorded with the event", width=260)
        with st.container(horizontal=True):
            is_current = state.current is not None and pick == state.current["id"]
            st.button("🧪 Set as candidate", type="primary", key=keys("set_candidate"), on_click=_on_set_candidate,
                      args=(services,), **need(Action.set_traffic_share, disabled=state.current is None or is_current,
                                               help="Needs a current release" if state.current is None else None))
            st.button("📌 Make current", key=keys("make_current"), on_click=_on_make_current, args=(services,),
                      **need(Action.promote, disabled=is_current,
                             help="First setup, or a direct switch (prefer candidate → promote)"))
    else:
        st.caption("No release yet: create one below.")
    if state.candidate:
        share = int(round(state.share * 100))
        if SS.get(keys("share_seen")) != (state.experiment_id, share):  # follow changes made elsewhere (a trip, the CLI)
            SS[keys("new_share")], SS[keys("share_seen")] = share, (state.experiment_id, share)
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.number_input("Candidate share now (%)", 0, 100, step=5, key=keys("new_share"), width=190,
                            help="0 pauses the experiment (the guardrail does this when it trips)")
            st.button("🎚️ Apply share", key=keys("apply_share"), on_click=_on_share, args=(services,),
                      **need(Action.set_traffic_share))
            st.button("⏹️ Stop experiment", key=keys("clear"), on_click=_on_clear, args=(services,),
                      **need(Action.set_traffic_share))
            st.button("🚀 Promote candidate", type="primary", key=keys("promote"), on_click=kit.ask, args=(keys, "promote"),
                      **need(Action.promote))
    target = releases.rollback_target()
    if target is not None:
        st.button(f"↩️ Roll back to {target['label']}", key=keys("rollback"), on_click=kit.ask, args=(keys, "rollback"),
                  **need(Action.rollback))


def create_form(services: Services) -> None:
    # Open on a first visit without releases, and stays as it was: a changing `expanded` would redraw it closed.
    open_ = SS.setdefault(keys("create_open"), not services.releases.list())
    with st.expander("➕ Create a release (policy version × index version)", expanded=open_):
        try:
            options = policy_options(services)
            collections = services.store.collections()
        except RagError as exc:
            st.error(describe(exc), icon="🛑")
            return
        alias = services.releases.alias
        with st.form(keys("create_form"), border=False):
            c1, c2, c3 = st.columns([2, 2, 2])
            c1.selectbox("Policy version", options, key=keys("new_policy"), format_func=option_label)
            c2.selectbox("Index version", [POLICY_INDEX, alias, *collections], key=keys("new_index"),
                         format_func=lambda o: "the policy's index (else the live alias)" if o == POLICY_INDEX
                         else f"{o} (live alias, resolved now)" if o == alias else o)
            c3.text_input("Note", key=keys("new_note"), placeholder="what this release changes")
            st.form_submit_button("➕ Create release", key=keys("create"), on_click=_on_create, args=(services,),
                                  **need(Action.experiment))


def guardrail_form(services: Services) -> None:
    g = services.releases.state().guardrails
    with st.expander("🛡️ Guardrail settings"):
        with st.form(keys("guardrail_form"), border=False):
            c1, c2, c3, c4 = st.columns(4)
            c1.number_input("Max error rate (%)", 0.0, 100.0, g.max_error_rate * 100, step=1.0, key=keys("g_error"))
            c2.number_input("Max p95 (ms)", 1.0, 600_000.0, float(g.max_p95_ms), step=500.0, key=keys("g_p95"))
            c3.number_input("Window (minutes)", 1, 1440, g.window_minutes, key=keys("g_window"))
            c4.number_input("Min requests", 1, 100_000, g.min_requests, key=keys("g_min"))
            st.form_submit_button("💾 Save guardrails", key=keys("save_guardrails"), on_click=_on_guardrails,
                                  args=(services,), **need(Action.experiment))
        st.caption("Checked on the live path at most every few seconds, over the candidate's ledger rows in the window "
                   "(not before the experiment started). Crossing a limit sets the share to 0%, records the event and "
                   "fires an alert.")


def live_probe(services: Services) -> None:
    with st.expander("🎯 Try the live path as a user"):
        with st.form(keys("probe_form"), border=False):
            c1, c2, c3 = st.columns([1, 3, 1], vertical_alignment="bottom")
            c1.text_input("User id", key=keys("probe_user"), value="user-1")
            c2.text_input("Question for the live path", key=keys("probe_question"))
            asked = c3.form_submit_button("Send", key=keys("probe"), width="stretch")
        if asked and not (SS.get(keys("probe_question")) or "").strip():
            st.warning("Type a question first: nothing was sent.", icon="✍️")
        elif asked:
            probe_actor = dataclasses.replace(current_actor(), end_user=SS[keys("probe_user")].strip() or "user")
            got = kit.run(keys, lambda: answer_live(services, SS[keys("probe_question")].strip(), probe_actor), inline=True)
            if got is None:
                return
            where = f"the **{got.variant}** release {escape_md(got.release['label'])}" if got.release else \
                "the built-in default policy (no release configured)"
            st.markdown(f"**{escape_md(SS[keys('probe_user')])}** is served by {where}")
            answer_view.answer_text(got.answer)
            st.caption(answer_view.summary(got.answer))
            if got.tripped:
                st.warning(got.tripped, icon="🚨")


def releases_tab(services: Services) -> None:
    live_status(services)
    controls(services)
    tables(services)
    create_form(services)
    guardrail_form(services)
    live_probe(services)


def tables(services: Services) -> None:
    state = services.releases.state()
    rows = services.releases.list()
    if rows:
        st.markdown("**📦 Releases**")
        st.dataframe(release_rows(rows, state.current["id"] if state.current else None,
                                  state.candidate["id"] if state.candidate else None, state.share),
                     hide_index=True, width="stretch", key=keys("releases"))
    events = services.releases.events(100)
    if events:
        st.markdown("**🕘 History**")
        st.dataframe(event_rows(events), hide_index=True, width="stretch", key=keys("history"),
                     **({"height": 250} if len(events) > 6 else {}),
                     column_config={"why": st.column_config.TextColumn(width="large")})

