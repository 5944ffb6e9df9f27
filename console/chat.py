"""The chat tester's conversation: history in session state (keyed by page), streaming a
question through QueryEngine.stream, feedback on answers and the JSON export. Errors become
readable messages in the chat, never tracebacks, and the page stays usable."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import streamlit as st

from backend.engine.policy import Policy
from backend.engine.query_engine import Answer, Retrieved, SourceChunk
from backend.errors import RagError
from backend.ingestion.demo import demo_questions
from backend.services import Services
from console import answer_view as view
from console import state
from console.auth import current_actor
from console.i18n import N_, t
from console.markup import answer_md, source_urls

log = logging.getLogger(__name__)

GENERIC_ERROR = N_("console: something unexpected went wrong ({error}); the details are in the server log. Try again.")


@dataclass
class _Slots:
    """Placeholders of a live answer, in display order: badges, progress line, text, the rest."""

    head: Any
    status: Any
    body: Any
    rest: Any


@dataclass
class Turn:
    question: str
    retrieval_only: bool = False
    fusion: str = "rrf"
    answer: Answer | None = None
    error: str | None = None
    error_part: str | None = None
    sources: list[SourceChunk] = field(default_factory=list)  # kept when generation fails


class Conversation:
    def __init__(self, services: Services, ns: str = "chat"):
        self.services, self.ns = services, ns
        self.rerank_metric = services.engine.reranker.name

    @property
    def history(self) -> list[Turn]:
        return st.session_state.setdefault(f"{self.ns}.history", [])

    # --- readiness -------------------------------------------------------------------------
    def blocked_reason(self, policy: Policy) -> str | None:
        """Why questions cannot be asked yet (None when they can)."""
        if policy.index:  # a pinned collection: the engine reports it if it is gone
            return None
        info = state.index_info(self.services)
        if info.ready:
            return None
        if info.error:
            return t("Index unavailable — {error}", error=info.error)
        build = state.demo_build().status()
        if build.state == "running":
            return t("Building the demo index… chat opens when it is ready")
        return t("No index yet: the alias '{alias}' does not exist", alias=info.alias)

    # --- input -----------------------------------------------------------------------------
    def examples(self, disabled: bool) -> None:
        corpus = self.services.settings.demo_corpus
        questions = demo_questions(Path(corpus)) if corpus else []
        if not questions:
            return
        st.caption(t("Try a question the demo index can answer (English: SciFact · Chinese: CMRC 2018):"))
        with st.container(horizontal=True, gap="small"):
            for i, q in enumerate(questions):
                st.button(q, key=f"{self.ns}.example.{i}", disabled=disabled, on_click=self._pick, args=(q,))

    def _pick(self, question: str) -> None:
        st.session_state[f"{self.ns}.pending"] = question

    def question(self, blocked: str | None, retrieval_only: bool) -> str | None:
        placeholder = blocked or (t("Ask a question — retrieval only, no model call") if retrieval_only
                                  else t("Ask a question about the indexed documents"))
        typed = st.chat_input(placeholder, key=f"{self.ns}.input", disabled=blocked is not None)
        pending = st.session_state.pop(f"{self.ns}.pending", None)
        return typed if typed is not None else pending

    # --- asking ----------------------------------------------------------------------------
    def ask(self, question: str, policy: Policy, retrieval_only: bool) -> None:
        """Stream one answer into the page, then keep it in the history."""
        turn = Turn(question, retrieval_only, policy.fusion)
        with st.chat_message("user", avatar=view.AVATARS["user"]):
            view.question(question)
        with st.chat_message("assistant", avatar=view.AVATARS["assistant"]):
            slots = _Slots(st.empty(), st.empty(), st.empty(), st.empty())
            slots.status.caption(t("🔎 Retrieving…"))
            try:
                deltas = self._deltas(turn, policy, slots)
                if retrieval_only:
                    for _ in deltas:
                        pass
                else:
                    self._stream_into(slots.body, deltas, turn)
            except RagError as exc:
                turn.error, turn.error_part = str(exc), exc.part
            except Exception as exc:  # a bug or an unexpected failure: logged, shown briefly
                log.exception("chat question failed")
                turn.error = t(GENERIC_ERROR, error=type(exc).__name__)
            slots.status.empty()
            if turn.answer is not None:
                with slots.head.container():
                    view.badges(turn.answer)
                with slots.body.container():  # the streamed text again, now with [n] badges
                    view.answer_text(turn.answer)
                with slots.rest.container():
                    view.details(turn.answer, self.ns, self.rerank_metric, self.send_feedback)
            else:
                with slots.rest.container():
                    self._error(turn)
        self.history.append(turn)

    def _deltas(self, turn: Turn, policy: Policy, slots: _Slots) -> Iterator[str]:
        for event in self.services.engine.stream(turn.question, policy, current_actor(), None, turn.retrieval_only):
            if isinstance(event, Retrieved):
                turn.sources = event.retrieval.sources
                if turn.retrieval_only:
                    continue
                slots.status.caption(t("📚 {n} sources from {collection} · the model is writing the answer…",
                                       n=len(turn.sources), collection=event.retrieval.collection))
                with slots.rest.container():  # read the sources while a slow model writes
                    view.sources(turn.sources, turn.question, policy.fusion, self.rerank_metric, [])
            elif isinstance(event, Answer):
                turn.answer = event
            else:
                yield event

    def _stream_into(self, slot, deltas: Iterator[str], turn: Turn) -> None:  # noqa: ANN001 - st.empty
        """The answer as it is written, rendered whole at each delta (not delta by delta, as
        st.write_stream does: an image's Markdown split over deltas escaped each piece's check and
        rendered, and fetched, once joined)."""
        kind = self.services.engine.generator.kind
        text = ""
        for piece in deltas:
            text += piece
            slot.markdown(answer_md(text, kind, source_urls(turn.sources)))

    def _error(self, turn: Turn) -> None:
        view.error(turn.error or "", turn.error_part, turn.sources, turn.question, turn.fusion, self.rerank_metric)

    # --- history ---------------------------------------------------------------------------
    def render_history(self) -> None:
        for turn in self.history:
            with st.chat_message("user", avatar=view.AVATARS["user"]):
                view.question(turn.question)
            with st.chat_message("assistant", avatar=view.AVATARS["assistant"]):
                if turn.answer is None:
                    self._error(turn)
                    continue
                view.badges(turn.answer)
                view.answer_text(turn.answer)
                view.details(turn.answer, self.ns, self.rerank_metric, self.send_feedback)

    def clear(self) -> None:
        st.session_state[f"{self.ns}.history"] = []

    # --- feedback and export -----------------------------------------------------------------
    def send_feedback(self, request_id: str) -> None:
        """Widget callback: thumbs (0 down, 1 up) plus the optional comment, saved on every change."""
        ss = st.session_state
        value = ss.get(f"{self.ns}.fb.{request_id}")
        if value is None:
            ss[f"{self.ns}.fbmsg.{request_id}"] = ""
            return
        comment = (ss.get(f"{self.ns}.fbc.{request_id}") or "").strip()
        try:
            self.services.traces.feedback(request_id, 1 if value == 1 else -1, current_actor(), comment)
        except Exception as exc:
            ss[f"{self.ns}.fbmsg.{request_id}"] = t("⚠️ Feedback not saved — {error}", error=state.describe(exc))
            return
        ss[f"{self.ns}.fb.saved.{request_id}"], ss[f"{self.ns}.fbc.saved.{request_id}"] = value, comment
        ss[f"{self.ns}.fbmsg.{request_id}"] = t("✅ Feedback saved with your comment") if comment else t("✅ Feedback saved")

    def export_json(self) -> str:
        answers = [t.answer.model_dump(mode="json") for t in self.history if t.answer is not None]
        return json.dumps(answers, ensure_ascii=False, indent=2)

    def toolbar(self) -> None:
        """New chat and export, right of the title."""
        has_answers = any(t.answer for t in self.history)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        with st.container(horizontal=True, horizontal_alignment="right", gap="small"):
            st.button(t("🧹 New chat"), key=f"{self.ns}.clear", on_click=self.clear, disabled=not self.history)
            st.download_button(t("⬇️ Export JSON"), data=self.export_json() if has_answers else "[]",
                               file_name=f"rag-chat-{stamp}.json", mime="application/json",
                               key=f"{self.ns}.export", on_click="ignore", disabled=not has_answers,
                               help=t("Every answer with its full trace: sources, scores, prompt, latency, policy"))
