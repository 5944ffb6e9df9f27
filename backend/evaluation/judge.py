"""LLM-judged answer metrics from ragas (faithfulness, answer relevancy, context precision)
against any OpenAI-compatible endpoint that accepts `response_format={"type": "json_object"}`.

ragas' modern metrics do not report token usage, so the judge's HTTP client reads the usage of
every response itself: each judge request (retries included) becomes one ledger row of kind
`judge`, priced like any other call, and hard budgets can refuse the judging."""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Awaitable

import httpx

from backend.engine.embeddings import Embedder
from backend.engine.tokens import count_tokens
from backend.errors import BudgetExceeded
from backend.ledger.calls import Meter, ModelCall, RequestContext
from backend.settings import Settings

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
log = logging.getLogger(__name__)

JUDGED_METRICS = ("faithfulness", "answer_relevancy", "llm_context_precision")


@dataclass
class JudgeResult:
    metrics: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    calls: int = 0


def _ragas():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.embeddings.base import BaseRagasEmbedding
        from ragas.llms import llm_factory
        from ragas.metrics.collections import (AnswerRelevancy, ContextPrecisionWithoutReference,
                                               ContextPrecisionWithReference, Faithfulness)
    return BaseRagasEmbedding, llm_factory, AnswerRelevancy, ContextPrecisionWithReference, \
        ContextPrecisionWithoutReference, Faithfulness


class Judge:
    def __init__(self, settings: Settings, embedder: Embedder, meter: Meter):
        if not settings.judge_base_url:
            raise ValueError("Judge needs JUDGE_BASE_URL")
        self.settings, self.embedder, self.meter = settings, embedder, meter
        self.model = settings.judge_model
        self.base_url = settings.judge_base_url
        self._key = settings.judge_api_key.get_secret_value() if settings.judge_api_key else "no-key"

    def score(self, question: str, answer: str, contexts: list[str], reference: str = "", *, user: str,
              policy: str, index_version: str = "") -> JudgeResult:
        """Judge one answer. Never raises for a judge failure: a metric the judge could not produce is
        missing from `metrics` and its reason is in `errors` (a run goes on without it)."""
        ctx = RequestContext(request_id=uuid.uuid4().hex, user=user, policy=policy, index_version=index_version,
                             question=question)
        try:
            self.meter.authorize(ctx, [("judge", self.model)])
        except BudgetExceeded as exc:
            return JudgeResult(errors={m: str(exc) for m in JUDGED_METRICS})
        return asyncio.run(self._ascore(ctx, question, answer, contexts, reference))

    async def _ascore(self, ctx: RequestContext, question: str, answer: str, contexts: list[str],
                      reference: str) -> JudgeResult:
        base_emb, llm_factory, relevancy, precision_ref, precision_noref, faithfulness = _ragas()
        result = JudgeResult()
        embedder, meter, model = self.embedder, self.meter, self.model

        class LocalEmbeddings(base_emb):  # answer relevancy compares questions with our own model
            def embed_text(self, text: str, **_: Any) -> list[float]:
                return self.embed_texts([text])[0]

            def embed_texts(self, texts: list[str], **_: Any) -> list[list[float]]:
                call = ModelCall(kind="embedding", model=embedder.name)
                call.prompt_tokens, call.token_method = count_tokens("\n".join(texts))
                t = time.perf_counter()
                vectors = embedder.embed_queries(texts)
                call.latency_ms = (time.perf_counter() - t) * 1000
                meter.record(ctx, call)
                return [v.tolist() for v in vectors]

            async def aembed_text(self, text: str, **kw: Any) -> list[float]:
                return await asyncio.to_thread(self.embed_text, text)

            async def aembed_texts(self, texts: list[str], **kw: Any) -> list[list[float]]:
                return await asyncio.to_thread(self.embed_texts, texts)

        async def on_request(request: httpx.Request) -> None:
            request.extensions["t0"] = time.perf_counter()

        async def on_response(response: httpx.Response) -> None:
            try:
                await response.aread()
                self._record(ctx, response)
                result.calls += 1
            except Exception:  # bookkeeping must never break the judging
                log.exception("judge call could not be recorded")

        from openai import AsyncOpenAI

        async with httpx.AsyncClient(timeout=self.settings.judge_timeout_s,
                                     event_hooks={"request": [on_request], "response": [on_response]}) as http:
            client = AsyncOpenAI(base_url=self.base_url, api_key=self._key, http_client=http,
                                 max_retries=self.settings.llm_max_retries)
            try:
                llm = llm_factory(model, provider="openai", client=client, max_tokens=self.settings.judge_max_tokens)
            except Exception as exc:  # e.g. an incompatible instructor: the run goes on without judged metrics
                log.exception("the judge could not be set up")
                return JudgeResult(errors={m: f"judge setup failed: {type(exc).__name__}: {exc}" for m in JUDGED_METRICS})
            jobs: dict[str, Awaitable] = {}
            if answer and contexts:
                jobs["faithfulness"] = faithfulness(llm=llm).ascore(user_input=question, response=answer,
                                                                   retrieved_contexts=contexts)
            if answer:
                jobs["answer_relevancy"] = relevancy(llm=llm, embeddings=LocalEmbeddings()).ascore(
                    user_input=question, response=answer)
            if contexts and reference:
                jobs["llm_context_precision"] = precision_ref(llm=llm).ascore(
                    user_input=question, reference=reference, retrieved_contexts=contexts)
            elif contexts and answer:
                jobs["llm_context_precision"] = precision_noref(llm=llm).ascore(
                    user_input=question, response=answer, retrieved_contexts=contexts)
            outcomes = await asyncio.gather(*jobs.values(), return_exceptions=True)
        for name, out in zip(jobs, outcomes):
            if isinstance(out, BaseException):
                result.errors[name] = f"{type(out).__name__}: {str(out)[:300]}"
            elif out.value is None or out.value != out.value:  # NaN: the judge found nothing to judge
                result.errors[name] = "the judge returned no verdicts"
            else:
                result.metrics[name] = float(out.value)
        return result

    def _record(self, ctx: RequestContext, response: httpx.Response) -> None:
        call = ModelCall(kind="judge", model=self.model)
        t0 = response.request.extensions.get("t0")
        call.latency_ms = (time.perf_counter() - t0) * 1000 if t0 else 0.0
        usage = None
        if response.status_code >= 400:
            call.status, call.error_class = "error", f"HTTP {response.status_code}"
        else:
            body = response.json()
            usage = body.get("usage") if isinstance(body, dict) else None
        if usage:
            call.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            call.completion_tokens = int(usage.get("completion_tokens") or 0)
            call.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            call.token_method = "api"
        elif call.status == "ok":  # an endpoint without usage: count what went out and came back
            sent = response.request.content.decode("utf-8", "replace")
            reply = "".join((c.get("message") or {}).get("content") or "" for c in body.get("choices", []))
            call.prompt_tokens, call.token_method = count_tokens(sent)
            call.completion_tokens = count_tokens(reply)[0]
        self.meter.record(ctx, call)
