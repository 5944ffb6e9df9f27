"""LLM-judged ragas metrics: the HTTP path, JSON mode and token accounting against llama.cpp's real
OpenAI-compatible server, and the metric arithmetic from scripted verdicts.

Why a stand-in for the arithmetic: the only chat model that runs on these machines (SmolLM2-135M)
cannot follow ragas' JSON schemas (it echoes the schema back), so whether a verdict turns into the
right score is tested with the fault-injection server answering scripted, schema-valid verdicts."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from actors import Role, user
from judge_script import ANSWER, CONTEXTS, QUESTION, RELEVANCY, scripted

from backend.engine.policy import Policy
from backend.evaluation.golden import parse_items
from backend.evaluation.judge import JUDGED_METRICS, Judge
from backend.ledger.store import ledger
from backend.services import Services
from backend.settings import Settings

ANN = user("ann", Role.operator)  # writes the golden set and runs the evaluation


def judge_rows(services: Services) -> list[dict]:
    with services.db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(ledger).where(ledger.c.kind == "judge").order_by(ledger.c.id))]


def judge_for(services: Services, base_url: str, model: str, **kw) -> Judge:
    return Judge(Settings(_env_file=None, judge_base_url=base_url, judge_model=model, **kw), services.embedder,
                 services.costs.meter)


def test_scores_follow_the_verdicts_and_every_call_is_a_judge_row(services: Services, fault_llm) -> None:
    fault_llm.replies.extend(scripted())
    before = len(judge_rows(services))
    result = judge_for(services, fault_llm.base_url, "judge-scripted").score(
        QUESTION, ANSWER, CONTEXTS, "Paris", user="ann", policy="default", index_version="rag_chunks_v1")

    assert result.errors == {}
    assert result.metrics["faithfulness"] == pytest.approx(0.5)  # 1 of 2 statements supported
    assert result.metrics["llm_context_precision"] == pytest.approx(0.5)  # useful context at rank 2 only
    assert result.metrics["answer_relevancy"] == pytest.approx(1.0, abs=1e-4)  # same question regenerated
    # One ledger row per request the server saw, with exactly the usage it reported.
    chats = [r["body"] for r in fault_llm.requests if r["path"] == "/v1/chat/completions"]
    assert all(b.get("response_format") == {"type": "json_object"} for b in chats)  # ragas' JSON mode
    rows = judge_rows(services)[before:]
    assert len(rows) == len(chats) == result.calls == 2 + 3 + 2  # faithfulness 2, relevancy 3, precision 1 per context
    sent = sum(len(str(m.get("content", "")).split()) for b in chats for m in b["messages"])
    got = sum(len(fault_llm.reply_to(b).split()) for b in chats)
    assert sum(r["prompt_tokens"] for r in rows) == sent and sum(r["completion_tokens"] for r in rows) == got
    assert {(r["model"], r["user"], r["policy"], r["token_method"], r["status"]) for r in rows} == {
        ("judge-scripted", "ann", "default", "api", "ok")}


def test_a_failing_judge_leaves_a_reason_not_a_crash(services: Services, fault_llm) -> None:
    fault_llm.replies.extend(r for r in scripted() if r[0] != (RELEVANCY,))  # relevancy gets prose, not JSON
    fault_llm.fail_models.add("judge-down")
    judge = judge_for(services, fault_llm.base_url, "judge-scripted")
    partial = judge.score(QUESTION, ANSWER, CONTEXTS, "Paris", user="ann", policy="default")
    assert set(partial.metrics) == {"faithfulness", "llm_context_precision"}
    assert list(partial.errors) == ["answer_relevancy"] and partial.errors["answer_relevancy"]

    down = judge_for(services, fault_llm.base_url, "judge-down", llm_max_retries=0)
    out = down.score(QUESTION, ANSWER, CONTEXTS, "Paris", user="ann", policy="default")
    assert out.metrics == {} and set(out.errors) == set(JUDGED_METRICS)
    assert all("500" in e or "Error" in e for e in out.errors.values())
    failed = [r for r in judge_rows(services) if r["model"] == "judge-down"]
    assert failed and all(r["status"] == "error" and r["error_class"] == "HTTP 500" for r in failed)


def test_against_llama_cpp_server(services: Services, llm_server) -> None:
    """The real server: JSON mode accepted, usage read from every reply; whatever the tiny model
    says, each metric ends as a score in [0, 1] or a stated reason."""
    before = len(judge_rows(services))
    judge = judge_for(services, llm_server.base_url, llm_server.model, judge_max_tokens=48)
    result = judge.score(QUESTION, "Paris.", ["Paris is the capital of France."], "Paris", user="ann", policy="default")
    for metric in JUDGED_METRICS:
        assert (0.0 <= result.metrics[metric] <= 1.0) if metric in result.metrics else result.errors[metric], metric
    rows = judge_rows(services)[before:]
    assert len(rows) == result.calls >= len(JUDGED_METRICS)
    for r in rows:
        assert r["model"] == llm_server.model and r["token_method"] == "api" and r["status"] == "ok"
        assert r["prompt_tokens"] > 100 and 0 < r["completion_tokens"] <= 48  # ragas' prompts, capped replies


def test_eval_run_stores_judged_metrics_and_reasons(services: Services, small_datasets, fault_llm) -> None:
    items = parse_items((small_datasets["scifact"] / "queries.jsonl").read_bytes(), "queries.jsonl")[:3]
    services.golden.create("judged", actor=ANN)
    services.golden.import_items("judged", items, actor=ANN)
    services.golden.freeze("judged", actor=ANN)
    # Extractive answers: the statements and regenerated questions come from the script, whatever the item.
    fault_llm.replies.extend(r for r in scripted() if r[0] != (RELEVANCY,))
    services.evals.judge = judge_for(services, fault_llm.base_url, "judge-scripted")
    try:
        run_id = services.evals.run("judged", Policy(), actor=ANN)
    finally:
        services.evals.judge = None
    run = services.evals.get(run_id)
    assert run.status == "done" and run.judge == "judge-scripted"
    assert run.metrics["faithfulness"]["mean"] == pytest.approx(0.5)
    assert run.metrics["faithfulness"]["low"] <= 0.5 <= run.metrics["faithfulness"]["high"]
    assert "answer_relevancy" not in run.metrics
    for item in services.evals.items(run_id):
        assert item.metrics["faithfulness"] == pytest.approx(0.5)
        assert set(item.judge_errors) == {"answer_relevancy"}
