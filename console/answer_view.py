"""How one answer looks: kind badge, text with [n] markers, a one-line summary (latency,
tokens, cost, cache, policy, index), the per-stage latency bar, feedback, and tabs with the
numbered source cards and the exact prompt. Used for live answers and history alike."""
from __future__ import annotations

from typing import Callable

import streamlit as st

from backend.engine.query_engine import Answer, SourceChunk
from backend.engine.tokens import count_tokens
from console import kit
from console.i18n import N_, t
from console.markup import answer_md, escape_md, latency_bar, source_card, source_urls, with_citation_badges

AVATARS = {"user": "🧑‍💻", "assistant": "🔎"}
KINDS = {
    "llm": ("🤖", N_("LLM answer"), "blue"),
    "extractive": ("📝", N_("Extractive answer — no LLM configured"), "orange"),
    "retrieval_only": ("🔍", N_("Retrieval only — no model called"), "gray"),
}
HINTS = {
    "LLM": N_("The sources were retrieved; switch on **Retrieval only** in the sidebar to keep working without the "
              "model."),
    "vector store": N_("See the vector store's status in the sidebar."),
    "embedding model": N_("See the embedding model's status in the sidebar; **sparse** retrieval works without it."),
}


QUESTION_PREVIEW = 600
SOURCES_HEIGHT = 460  # px


def question(text: str) -> None:
    """The user's bubble; a huge paste is cut to a preview so the conversation stays readable."""
    if len(text) <= QUESTION_PREVIEW:
        st.markdown(escape_md(text))
        return
    st.markdown(escape_md(text[:QUESTION_PREVIEW]) + "…")
    st.caption(t("{n} characters; the first {shown} are shown", n=f"{len(text):,}", shown=QUESTION_PREVIEW))


def badges(answer: Answer) -> None:
    icon, label, color = KINDS[answer.answer_kind]
    with st.container(horizontal=True, gap="small"):
        st.badge(t(label), icon=icon, color=color)
        if answer.answer_kind == "llm":
            st.badge(answer.model, color="gray")
        if answer.cache_hit:
            st.badge(t("cache hit"), icon="⚡", color="green")


def answer_text(answer: Answer) -> None:
    if answer.answer_kind == "retrieval_only":
        st.markdown(t("Retrieved **{n}** sources. The **Prompt** tab shows exactly what the model would receive; "
                      "no model was called.", n=len(answer.sources)))
    else:
        st.markdown(answer_markdown(answer))


def answer_markdown(answer: Answer) -> str:
    text = answer_md(answer.answer, answer.answer_kind, source_urls(answer.sources))
    return with_citation_badges(text, len(answer.sources)) if text.strip() else t("_(the model returned an empty answer)_")


def summary(a: Answer) -> str:
    """One caption line with everything an operator checks first."""
    if a.usage.method == "none":
        tokens = t("no model tokens")
    else:
        tokens = t("{prompt} + {completion} tokens ({method})", prompt=f"{a.usage.prompt_tokens:,}",
                   completion=f"{a.usage.completion_tokens:,}", method=a.usage.method)
    cost = f"\\${a.cost_usd:.6f}" if a.price_known else t("cost unknown (no price for {model})", model=escape_md(a.model))
    cache = t("cache not used") if a.answer_kind == "retrieval_only" else (t("cache hit") if a.cache_hit
                                                                         else t("cache miss"))
    return " · ".join([
        f"⏱ {kit.duration(a.latency_ms.get('total', 0.0))}", tokens, cost, cache,
        t("policy **{policy}**", policy=escape_md(a.policy)),
        t("index {index} → **{collection}**", index=escape_md(a.index), collection=escape_md(a.collection)),
    ])


def feedback(answer: Answer, ns: str, send: Callable[[str], None]) -> None:
    """Thumbs, then an optional comment once a thumb is picked; both save at once."""
    rid = answer.request_id
    ss = st.session_state
    for widget in ("fb", "fbc"):  # given on another visit: Streamlit dropped the widget's state since
        if f"{ns}.{widget}.{rid}" not in ss and f"{ns}.{widget}.saved.{rid}" in ss:
            ss[f"{ns}.{widget}.{rid}"] = ss[f"{ns}.{widget}.saved.{rid}"]
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.feedback("thumbs", key=f"{ns}.fb.{rid}", on_change=send, args=(rid,))
        if st.session_state.get(f"{ns}.fb.{rid}") is not None:
            st.text_input(t("Comment"), key=f"{ns}.fbc.{rid}", label_visibility="collapsed", width=420,
                          placeholder=t("Optional comment — Enter saves it"), on_change=send, args=(rid,))
        note = st.session_state.get(f"{ns}.fbmsg.{rid}")
        if note:
            st.caption(note)


def sources(items: list[SourceChunk], question: str, fusion: str, rerank_metric: str, cited: list[int]) -> None:
    if not items:
        st.info(t("No chunk matched. Try another retrieval mode, more candidates, or another index."))
        return
    cards = "".join(source_card(s, question, fusion, rerank_metric, s.rank in cited) for s in items)
    # A bounded, scrollable list: the chat sticks to the bottom of the page, so an answer must not be
    # taller than a screen or its text scrolls out of sight behind its own sources.
    with st.container(height=SOURCES_HEIGHT if len(items) > 2 else "content", border=False):
        st.html(cards)


def prompt(answer: Answer) -> None:
    n, method = count_tokens("\n".join(m["content"] for m in answer.prompt))
    st.caption(t("Exactly what the model receives: {messages} messages, {tokens} tokens ({method}) · request `{request}`",
                 messages=len(answer.prompt), tokens=f"{n:,}", method=method, request=answer.request_id))
    for m in answer.prompt:
        st.markdown(f"**{m['role']}**")
        st.code(m["content"], language=None, wrap_lines=True, height=320 if len(m["content"]) > 1200 else "content")


def details(answer: Answer, ns: str, rerank_metric: str, send_feedback: Callable[[str], None]) -> None:
    st.caption(summary(answer))
    st.html(latency_bar(answer.latency_ms))
    if answer.answer_kind != "retrieval_only":
        feedback(answer, ns, send_feedback)
    names = {"sources": t("📚 Sources ({n})", n=len(answer.sources)), "prompt": t("🧾 Prompt")}
    order = ["prompt", "sources"] if answer.answer_kind == "retrieval_only" else ["sources", "prompt"]
    tabs = dict(zip(order, st.tabs([names[o] for o in order])))
    with tabs["sources"]:
        sources(answer.sources, answer.question, answer.fusion, rerank_metric, answer.citations)
    with tabs["prompt"]:
        prompt(answer)


def error(message: str, part: str | None, items: list[SourceChunk], question: str, fusion: str, rerank_metric: str) -> None:
    st.error(message, icon="⚠️")
    if part in HINTS:
        st.caption(t(HINTS[part]))
    if items:
        with st.expander(t("📚 Sources retrieved before the error ({n})", n=len(items))):
            sources(items, question, fusion, rerank_metric, [])
