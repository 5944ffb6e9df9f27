"""The console driven through Streamlit's AppTest over a small real index (20 demo documents,
built by the console's own first-start path), with the embedded stack: local Qdrant,
in-process embeddings, SQLite. Services are cached per process, so every configuration
(extractive, unreachable LLM, real LLM) resets the console state and reuses the same index."""
from __future__ import annotations

from pathlib import Path

import pytest
from apptest_kit import (APP, CHAT, ask, chat_page, console_config, data_dir, extractive,  # noqa: F401 - fixtures
                         wait_ready)
from streamlit.testing.v1 import AppTest

from backend.access.audit import AuditLog
from backend.db import make_engine
from backend.engine.policy import PolicyStore
from backend.evaluation.traces import TraceRows, TraceStore
from backend.ledger.journal import WriteJournal
from console import state

ENGLISH_Q = "5% of perinatal mortality is due to low birth weight."
CHINESE_Q = "尚恩·菲南在校时为什么会有“矮冬瓜”这个绰号？"


def markdown(at: AppTest) -> str:
    return "\n".join(e.value for e in at.markdown)


def cards(at: AppTest) -> list[str]:
    return [e.value for e in at.html if e.value.startswith('<div class="rag-card')]


def db(data_dir: Path):  # noqa: ANN201
    engine = make_engine(f"sqlite:///{data_dir / 'console.db'}")
    journal = WriteJournal(engine, data_dir / "journal-of-the-test", {"trace": TraceRows()})  # this test only reads
    return PolicyStore(engine, AuditLog(engine)), TraceStore(engine, AuditLog(engine), journal)


# --- frame ---------------------------------------------------------------------------------
def test_frame_builds_demo_index_and_shows_status(extractive: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    # First start: the demo build runs in the background while the page renders.
    assert any("First start" in e.value for e in at.info)  # a fresh data folder: the build has just begun
    assert not state.index_info(state.get_services()).ready
    wait_ready(at)

    sidebar = "\n".join(e.value for e in at.sidebar.markdown) + "\n".join(e.value for e in at.sidebar.caption)
    assert "`rag_chunks` → `rag_chunks_v1`" in sidebar and "points" in sidebar
    for part in ("vector store", "embedding model", "LLM endpoint", "cache", "database"):
        assert f"**{part}**" in sidebar
    assert "🟢 **vector store** · up" in sidebar
    assert "⚪ **LLM endpoint** · not configured" in sidebar
    assert "Qdrant local mode" in sidebar  # the stack in use
    assert at.title[0].value == "🩺 Status"

    at.switch_page(CHAT).run()
    assert not at.exception
    assert at.title[0].value == "💬 Chat tester"
    assert not at.chat_input[0].disabled
    examples = [b.label for b in at.button if b.key and b.key.startswith("chat.example.")]
    assert ENGLISH_Q in examples and CHINESE_Q in examples


# --- chat --------------------------------------------------------------------------------------
def test_question_shows_answer_sources_and_trace(extractive: Path) -> None:
    at = chat_page()
    turn = ask(at, ENGLISH_Q)
    assert turn.error is None and turn.answer is not None
    answer = turn.answer
    assert answer.answer_kind == "extractive"
    assert "Extractive answer — no LLM configured" in markdown(at)
    assert len(cards(at)) == 1 and cards(at)[0].count('id="src-') == 8  # top_k sources, one card each
    assert "<mark>" in cards(at)[0] and "cosine similarity" in cards(at)[0] and "BM25" in cards(at)[0]
    assert any(":blue-badge[" in e.value for e in at.markdown)  # [n] markers matching the cards
    summary = next(e.value for e in at.caption if e.value.startswith("⏱"))
    assert "policy **default**" in summary and "rag\\_chunks\\_v1" in summary and "cache miss" in summary
    assert any("rag-lat-bar" in e.value for e in at.html)  # the latency bar
    _, traces = db(extractive)
    assert traces.get(answer.request_id).question == ENGLISH_Q

    at.feedback[0].set_value(0).run()  # thumbs down, then a comment
    at.text_input(key=f"chat.fbc.{answer.request_id}").set_value("wrong passage").run()
    trace = traces.get(answer.request_id)
    assert (trace.feedback, trace.comment, trace.feedback_by) == (-1, "wrong passage", "local-admin")
    assert any("Feedback saved" in e.value for e in at.caption)

    assert not at.download_button[0].disabled  # the conversation can be exported


def test_chinese_question_end_to_end(extractive: Path) -> None:
    at = chat_page()
    turn = ask(at, CHINESE_Q)
    assert turn.answer is not None
    assert turn.answer.sources[0].title == "尚恩·菲南"
    assert "矮冬瓜" in turn.answer.answer
    assert "<mark>矮冬瓜</mark>" in cards(at)[0]


def test_example_question_button_asks_it(extractive: Path) -> None:
    at = chat_page()
    at.button(key="chat.example.3").click().run()
    history = at.session_state["chat.history"]
    assert len(history) == 1 and history[0].question == "大莱龙铁路一共投资多少亿元？" and history[0].answer


def test_knobs_change_the_policy_used(extractive: Path) -> None:
    at = chat_page()
    at.number_input(key="chat.top_k").set_value(3)
    at.radio(key="chat.retrieval_mode").set_value("sparse").run()
    turn = ask(at, ENGLISH_Q)
    answer = turn.answer
    assert answer.policy == "default (edited)"
    assert answer.policy_spec["top_k"] == 3 and answer.policy_spec["retrieval_mode"] == "sparse"
    assert len(answer.sources) == 3 and cards(at)[0].count('id="src-') == 3
    assert all(s.scores["dense"] is None for s in answer.sources)  # shown as "—"
    assert "rag-none" in cards(at)[0]

    collection = state.get_services().store.resolve("rag_chunks")
    at.selectbox(key="chat.index").set_value(collection).run()
    assert ask(at, "vCJD carriers").answer.index == collection
    at.feedback[0].set_value(1).run()

    # Another page and back: Streamlit drops undrawn widgets' state; the page restores it.
    at.switch_page("../pages/status.py").run()
    at.switch_page(CHAT).run()
    assert not at.exception, at.exception
    assert at.number_input(key="chat.top_k").value == 3
    assert at.radio(key="chat.retrieval_mode").value == "sparse"
    assert at.selectbox(key="chat.index").value == collection
    assert len(at.session_state["chat.history"]) == 2 and at.feedback[0].value == 1


def test_save_policy_and_link_to_it(extractive: Path) -> None:
    at = chat_page()
    at.number_input(key="chat.top_k").set_value(4).run()
    at.text_input(key="chat.save_name").set_value("tight")
    at.text_input(key="chat.save_note").set_value("fewer sources")
    at.button(key="chat.save").click().run()
    assert not at.exception
    assert any("Saved as **tight v1**" in e.value for e in at.success)
    assert at.query_params.get("policy") in ("tight", ["tight"])

    policies, _ = db(extractive)
    saved = policies.get("tight")
    assert (saved.version, saved.top_k) == (1, 4)
    assert next(p for p in policies.list() if p.name == "tight").created_by == "local-admin"
    assert ask(at, ENGLISH_Q).answer.policy == "tight v1"

    linked = chat_page({"policy": "tight"})  # a link to ?policy=tight opens with that policy
    assert linked.number_input(key="chat.top_k").value == 4
    assert linked.selectbox(key="chat.load").value == "tight"

    missing = chat_page({"policy": "no-such-policy"})
    assert any("unknown policy 'no-such-policy'" in e.value for e in missing.warning)
    assert missing.number_input(key="chat.top_k").value == 8


def test_retrieval_only_shows_the_prompt(extractive: Path) -> None:
    at = chat_page()
    at.toggle(key="chat.retrieval_only").set_value(True).run()
    turn = ask(at, ENGLISH_Q)
    assert turn.answer.answer_kind == "retrieval_only" and turn.answer.answer == ""
    assert "Retrieval only — no model called" in markdown(at)
    codes = [c.value for c in at.code]
    assert any(c.startswith("Sources:\n\n[1] ") and c.endswith(f"Question: {ENGLISH_Q}") for c in codes)
    assert any("You answer questions using only the numbered sources" in c for c in codes)
    assert at.tabs[0].label == "🧾 Prompt"


@pytest.mark.parametrize(("question", "message"), [
    ("   ", "input: the question is empty"),
    ("x" * 4001, "input: the question has 4,001 characters; the limit is 4,000"),
])
def test_bad_input_is_a_readable_message(extractive: Path, question: str, message: str) -> None:
    at = chat_page()
    turn = ask(at, question)
    assert turn.error == message
    assert [e.value for e in at.error] == [message]
    assert ask(at, ENGLISH_Q).answer is not None  # the page stays usable


# --- other stacks ----------------------------------------------------------------------------
def test_a_listed_postprocessor_replaces_the_rerank_stage(extractive: Path) -> None:
    """The policy panel offers PIPELINE_FACTORIES as postprocessors; the chosen one reranks the answer's
    sources (its scores shown as the rerank score) and is off while a pipeline is chosen."""
    ref = "team_factories:fused_score_cutoff"
    with console_config(extractive, PIPELINE_FACTORIES=ref):
        at = chat_page()
        box = at.selectbox(key="chat.postprocessor")
        assert box.options == ["our rerank stage", ref] and not box.disabled
        box.set_value(ref).run()
        answer = ask(at, ENGLISH_Q).answer
        assert answer.policy_spec["postprocessor"] == ref and answer.sources
        assert all(s.scores["rerank"] == s.scores["fused"] >= 0.025 for s in answer.sources)
        assert "rerank" in answer.latency_ms
        at.selectbox(key="chat.pipeline").set_value(ref).run()
        assert at.selectbox(key="chat.postprocessor").disabled


def test_unreachable_llm_names_the_part(extractive: Path) -> None:
    with console_config(extractive, OPENAI_BASE_URL="http://127.0.0.1:9/v1", LLM_TIMEOUT_S="1", LLM_MAX_RETRIES="0"):
        at = chat_page()
        sidebar = "\n".join(e.value for e in at.sidebar.markdown)
        assert "🔴 **LLM endpoint** · down" in sidebar
        turn = ask(at, ENGLISH_Q)
        assert turn.answer is None and turn.error.startswith("LLM: ")
        errors = [e.value for e in at.error]
        assert errors == [turn.error] and "unreachable at http://127.0.0.1:9/v1" in errors[0]
        assert len(turn.sources) == 8  # retrieval worked: the sources are still shown
        assert any("Sources retrieved before the error (8)" in e.label for e in at.expander)
        assert not any("Traceback" in e.value for e in at.markdown)


def test_llm_timeout_names_the_part(extractive: Path, fault_llm) -> None:  # noqa: ANN001 - FaultLLM
    fault_llm.delay_s = 3  # every request waits longer than the 1 s timeout
    with console_config(extractive, OPENAI_BASE_URL=fault_llm.base_url, LLM_MODEL=fault_llm.model,
                        LLM_TIMEOUT_S="1", LLM_MAX_RETRIES="0"):
        at = chat_page()
        turn = ask(at, CHINESE_Q)
        assert turn.error == "LLM: timed out after 1 s (1 attempt)"
        assert [e.value for e in at.error] == [turn.error]
        fault_llm.delay_s = 0
        turn = ask(at, ENGLISH_Q)  # the endpoint is back: the same page answers
        assert turn.error is None and turn.answer.answer_kind == "llm"
        assert turn.answer.answer == fault_llm.reply


def test_redis_down_degrades_only_the_cache(extractive: Path, redis_server) -> None:  # noqa: ANN001
    with console_config(extractive, REDIS_URL=redis_server.url):
        at = chat_page()
        assert "🟢 **cache** · up" in "\n".join(e.value for e in at.sidebar.markdown)
        with redis_server.down():
            state.health_monitor().refresh()
            turn = ask(at, ENGLISH_Q)
            assert turn.error is None and turn.answer.sources  # answers go on, uncached
            assert "🔴 **cache** · down" in "\n".join(e.value for e in at.sidebar.markdown)
            assert any(e.label == "🔴 Down: cache" for e in at.sidebar.expander)


def test_vector_store_failure_is_a_message(extractive: Path) -> None:
    at = chat_page()
    collection = state.get_services().store.resolve("rag_chunks")
    at.selectbox(key="chat.index").set_value(collection).run()  # pinned: no alias check before asking
    state.get_services().store.client.close()  # the store goes away under a running console
    try:
        at.run()
        assert not at.exception
        assert any(e.value.startswith("vector store: listing aliases failed") for e in at.sidebar.error)
        turn = ask(at, ENGLISH_Q)
        assert turn.answer is None and turn.error.startswith("vector store: ")
        assert turn.error in [e.value for e in at.error]
        # On the live alias the chat input is off and says why, instead of failing per question.
        at.selectbox(key="chat.index").set_value("__live__").run()
        assert at.chat_input[0].disabled
        assert at.chat_input[0].placeholder.startswith("Index unavailable — vector store:")
    finally:
        state.reset()


@pytest.mark.slow
def test_streams_a_real_llm_answer(extractive: Path, llm_server) -> None:  # noqa: ANN001 - LlmServer
    with console_config(extractive, OPENAI_BASE_URL=llm_server.base_url, LLM_MODEL=llm_server.model,
                        LLM_TIMEOUT_S="120"):
        at = chat_page()
        at.number_input(key="chat.top_k").set_value(2)  # SmolLM2 runs with a 2,048-token context
        at.number_input(key="chat.max_tokens").set_value(48).run()
        turn = ask(at, ENGLISH_Q)
        assert turn.error is None, turn.error
        answer = turn.answer
        assert answer.answer_kind == "llm" and answer.answer.strip()
        # llama.cpp's server sends no usage in streams: the engine counts with tiktoken instead.
        assert answer.usage.method in ("api", "tiktoken") and answer.usage.prompt_tokens > 0
        assert "LLM answer" in markdown(at)
        summary = next(e.value for e in at.caption if e.value.startswith("⏱"))
        assert f"tokens ({answer.usage.method})" in summary and "\\$0.000000" in summary
        assert "🟢 **LLM endpoint** · up" in "\n".join(e.value for e in at.sidebar.markdown)
