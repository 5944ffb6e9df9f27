"""The 🆚 Side by side tab: one question answered by A and by B, each with its sources, scores,
latency, tokens and cost; blind on request (order randomized, names hidden until the vote). Votes
are pairwise, stored per pair of policies, and tallied under the question."""
from __future__ import annotations

import logging
import random
import uuid
from typing import Any

import streamlit as st

from backend.engine.policy import Policy
from backend.engine.query_engine import Answer
from backend.errors import RagError
from backend.releases.ab_stats import compare_win_rate
from backend.services import Services
from console import answer_view, kit
from console.ab_view.common import SS, keys
from console.ab_view.rows import verdict
from console.auth import current_actor
from console.i18n import N_, t
from console.markup import escape_md, latency_bar

log = logging.getLogger(__name__)
VOTE_LABELS = {"a": N_("A better"), "b": N_("B better"), "tie": N_("tie"), "both_bad": N_("both bad")}
# Source cards in half-width columns: each score's "what it measures" goes under its name.
NARROW_CARDS = "<style>table.rag-scores th span { display: block; margin-left: 0 !important; }</style>"


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
            pair["errors"][side] = t("console: unexpected error ({error}); see the server log", error=type(exc).__name__)
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
                                                        pair["blind"], true) or True, failed=t("Vote not saved"))
    if done:
        pair["vote"] = true


def _blind_summary(ans: Answer) -> str:
    """The summary line without anything that names the policy or the model."""
    tokens = t("no model tokens") if ans.usage.method == "none" else \
        t("{prompt} + {completion} tokens", prompt=f"{ans.usage.prompt_tokens:,}",
          completion=f"{ans.usage.completion_tokens:,}")
    cost = f"\\${ans.cost_usd:.6f}" if ans.price_known else t("cost unknown")
    return " · ".join([f"⏱ {kit.duration(ans.latency_ms.get('total', 0.0))}", tokens, cost,
                       t("cache hit") if ans.cache_hit else t("cache miss")])


def _column(services: Services, pair: dict, side: str, position: str) -> None:
    blind, voted = pair["blind"], pair["vote"] is not None
    letter = side.upper()
    if blind and not voted:
        st.markdown(t("#### ⬅️ Left answer") if position == "left" else t("#### ➡️ Right answer"))
    elif blind:
        label = escape_md(pair["labels"][side])
        st.markdown(t("#### Left was {letter} · {policy}", letter=letter, policy=label) if position == "left"
                    else t("#### Right was {letter} · {policy}", letter=letter, policy=label))
    else:
        st.markdown(f"#### {letter} · {escape_md(pair['labels'][side])}")
    ans: Answer | None = pair["answers"].get(side)
    if ans is None:
        st.error(pair["errors"].get(side, t("no answer")), icon="⚠️")
        return
    icon, label, color = answer_view.KINDS[ans.answer_kind]
    with st.container(horizontal=True, gap="small"):
        st.badge(t(label), icon=icon, color=color)
        if ans.answer_kind == "llm" and not (blind and not voted):
            st.badge(ans.model, color="gray")
    answer_view.answer_text(ans)
    st.caption(_blind_summary(ans) if blind and not voted else answer_view.summary(ans))
    st.html(latency_bar(ans.latency_ms))
    with st.expander(t("📚 Sources ({n}) with their scores", n=len(ans.sources)), expanded=True):
        answer_view.sources(ans.sources, ans.question, pair["fusion"][side], services.engine.reranker.name, ans.citations)


def side_by_side(services: Services, a: Policy, b: Policy) -> None:
    with st.form(keys("ask_form"), border=False):
        c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
        question = c1.text_input(t("Question"), key=keys("question"),
                                 placeholder=t("One question, answered by A and by B"))
        asked = c2.form_submit_button(t("🆚 Ask both"), type="primary", key=keys("ask"), width="stretch")
    st.toggle(t("🙈 Blind — hide which answer is which and randomize the order until you vote"), key=keys("blind"))
    if asked:
        if not (question or "").strip():
            st.warning(t("Type a question first."), icon="✍️")
        else:
            with st.spinner(t("Asking A and B…")):
                _ask(services, a, b, question.strip(), bool(SS.get(keys("blind"))))
    pair = SS.get(keys("pair"))
    if not pair:
        st.caption(t("Each answer shows its sources with their dense, BM25, fused and rerank scores, its latency per "
                     "stage, tokens and cost. Votes are stored per pair of policies (pairwise, not thumbs)."))
        return
    if pair["labels"] != {"a": a.label(), "b": b.label()}:
        st.info(t("These answers are from another pair of policies; ask again to compare {a} with {b}.",
                  a=escape_md(a.label()), b=escape_md(b.label())), icon="ℹ️")
    st.markdown(t("**Question** — {question}", question=escape_md(pair["question"]))
                + (t(" · 🙈 blind") if pair["blind"] else ""))
    both = all(pair["answers"].get(s) is not None for s in ("a", "b"))
    names = ({"left": t("⬅️ Left better"), "right": t("➡️ Right better")} if pair["blind"]
             else {"left": t("⬅️ A better"), "right": t("➡️ B better")})
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(t("**Which answer is better?**"), width="content")
        for shown, label in (*names.items(), ("tie", t("🤝 Tie")), ("both_bad", t("👎 Both bad"))):
            st.button(label, key=keys(f"vote_{shown}"), disabled=not both or pair["vote"] is not None,
                      on_click=_vote, args=(services, shown))
    if pair["vote"]:
        winner = {"a": f"A ({pair['labels']['a']})", "b": f"B ({pair['labels']['b']})"}.get(pair["vote"])
        choice = escape_md(t("{winner} better", winner=winner)) if winner else t(VOTE_LABELS[pair["vote"]])
        st.success(t("Vote saved: {choice} — the names are revealed below", choice=choice) if pair["blind"]
                   else t("Vote saved: {choice}", choice=choice), icon="🗳️")
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
    line = t("**Votes so far** for {a} (A) vs {b} (B): A won **{x}**, B won **{y}**, tie {tie}, both bad {both_bad}",
             a=escape_md(label_a), b=escape_md(label_b), x=votes["x"], y=votes["y"], tie=votes["tie"],
             both_bad=votes["both_bad"])
    if votes["x"] + votes["y"]:
        line += t(" · B's win rate {rate} (95% CI {low}–{high}) · {verdict}", rate=f"{c.b:.0%}",
                  low=f"{(c.low + 1) / 2:.0%}", high=f"{(c.high + 1) / 2:.0%}", verdict=verdict(c, "decided votes"))
    st.markdown(line)
