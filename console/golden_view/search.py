"""✍️ Annotate, the question and the search: a question typed or picked from chat traces (thumbs-down
answers first), searched with the retrieval mode, filters and index chosen; the result cards are
kept in session state for console.golden_view.results."""
from __future__ import annotations

from typing import Any

import streamlit as st

from backend.engine.policy import Policy
from backend.errors import RagError
from backend.evaluation.traces import Trace
from backend.services import Services
from console import kit
from console.auth import current_actor
from console.golden_view.common import SS, keys
from console.i18n import t
from console.policy_panel import LIVE


def _trace_options(services: Services) -> dict[str, Trace]:
    """Thumbs-down answers first, then the other recent chat traces (request id -> trace)."""
    try:
        rows = services.traces.recent(limit=30, feedback=-1) + services.traces.recent(limit=30)
    except Exception:  # the trace table is unavailable: typing a question still works
        return {}
    return {r.request_id: r for r in rows}


def _trace_label(row: Trace) -> str:
    thumb = "👎 " if row.feedback == -1 else "👍 " if row.feedback == 1 else "💬 "
    comment = f" — “{row.comment}”" if row.comment else ""
    return f"{thumb}{row.question[:90]}{comment} · {kit.when(row.ts)}"


def _on_pick(services: Services, options: dict[str, Trace]) -> None:
    rid = SS.get(keys("pick"))
    if not rid or rid not in options:
        return
    SS[keys("question")] = options[rid].question
    SS[keys("source_trace")] = rid  # the item remembers the answer it came from
    SS[keys("trace_q")] = options[rid].question
    _on_search(services)


def _on_search(services: Services) -> None:
    question = (SS.get(keys("question")) or "").strip()
    index = SS.get(keys("index"), LIVE)
    policy = Policy(top_k=int(SS.get(keys("top_k"), 10)), retrieval_mode=SS.get(keys("mode"), "hybrid"),
                    index=None if index == LIVE else index)
    filters: dict[str, Any] = {}
    doc_ids = [d.strip() for d in (SS.get(keys("doc_ids")) or "").split(",") if d.strip()]
    if doc_ids:
        filters["doc_id"] = doc_ids
    if (SS.get(keys("source_filter")) or "").strip():
        filters["source"] = SS[keys("source_filter")].strip()
    retrieval = kit.run(keys, lambda: services.engine.retrieve(question, policy, filters=filters or None,
                                                               actor=current_actor()))
    if retrieval is None:
        return
    SS[keys("results")] = [{**s.model_dump(), "kind": "hit", "parent": s.rank} for s in retrieval.sources]
    SS[keys("results_q")] = question
    SS[keys("collection")] = retrieval.collection
    SS[keys("fusion")] = policy.fusion if policy.retrieval_mode == "hybrid" else policy.retrieval_mode
    if not (SS.get(keys("item_question")) or "").strip() or SS.get(keys("item_question")) == SS.get(keys("last_q")):
        SS[keys("item_question")] = question  # the item's question follows the search until edited
    SS[keys("last_q")] = question
    if SS.get(keys("trace_q")) != question:  # typed another question: no longer the picked trace's
        SS[keys("source_trace")] = None


def search_form(services: Services) -> None:
    options = _trace_options(services)
    if options:
        st.selectbox(t("Pick a question from chat: thumbs-down answers first, then recent traces"), list(options),
                     index=None, key=keys("pick"), format_func=lambda rid: _trace_label(options[rid]),
                     placeholder=t("…or type one below"), on_change=_on_pick, args=(services, options))
    try:
        collections = services.store.collections()
    except RagError:
        collections = []
    with st.form(keys("search_form"), border=True):
        st.text_input(t("Question"), key=keys("question"), max_chars=services.settings.max_question_chars,
                      placeholder=t("Type the question an annotated item should answer — Enter searches"))
        c1, c2 = st.columns(2)
        c1.text_input(t("Filter: doc ids"), key=keys("doc_ids"), placeholder=t("comma separated"),
                      help=t("Only chunks of these documents"))
        c2.text_input(t("Filter: source"), key=keys("source_filter"), placeholder=t("exact source, e.g. scifact"),
                      help=t("Only chunks with this source"))
        c1, c2, c3 = st.columns([3, 2, 4], vertical_alignment="bottom")
        c1.selectbox(t("Retrieval"), ["hybrid", "dense", "sparse"], key=keys("mode"),
                     help=t("hybrid: dense + BM25, fused (RRF) · dense: embeddings · sparse: BM25"))
        c2.number_input(t("Results"), 1, 50, 10, key=keys("top_k"))
        live = t("{alias} (live)", alias=services.settings.index_alias)
        c3.selectbox(t("Index"), list(dict.fromkeys([LIVE, *collections])), key=keys("index"),
                     format_func=lambda o: live if o == LIVE else o)
        st.form_submit_button(t("🔍 Search"), type="primary", key=keys("search"), on_click=_on_search, args=(services,))
