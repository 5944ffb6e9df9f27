"""The one query engine: validate -> cache -> embed -> retrieve -> fuse -> rerank -> prompt ->
generate. The console, the CLI and any HTTP service call this module; nothing else answers.
Retrieval and rerank are LlamaIndex components (backend/engine/stages.py) and an LLM answers through
a LlamaIndex `LLM` (backend/engine/llm.py); the engine composes them and keeps what it adds around
them: validation, cache, budgets and release routing. Their timings and model calls (the ledger's
rows) come from LlamaIndex's instrumentation (backend/engine/instrumentation.py). They are imported on
the first retrieval, so commands that never retrieve do not load llama-index."""
from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Literal

import numpy as np
from pydantic import BaseModel

from backend.access import SYSTEM, Action, Actor, require
from backend.db import utcnow
from backend.engine.answer_cache import Cache, cache_key
from backend.engine.embeddings import Embedder
from backend.engine.generation import Generator
from backend.engine.policy import PROMPT_TEMPLATES, Policy, check_factories
from backend.engine.rerank import Reranker
from backend.engine.tokens import count_tokens
from backend.engine.vectorstore import VectorStore, payload_filter
from backend.errors import BudgetExceeded, InputError, NotFoundError, root_cause_name
from backend.ledger.calls import SOURCE_OF_ACTOR_KIND, Meter, ModelCall, NullMeter, Planned, RequestContext
from backend.settings import Settings
from backend.text import control_chars

if TYPE_CHECKING:
    from llama_index.core.schema import NodeWithScore

    from backend.engine.pipelines import Pipelines
    from backend.engine.stages import LlamaEmbedding

log = logging.getLogger(__name__)

STAGES = ("cache", "embed", "retrieve", "rerank", "generate", "total")
SOURCE_TOKENS_EST = 400  # a source in the prompt, for the budget hold (1,500 characters, title and rank)
POSTPROCESSOR_PROMPT_EST, POSTPROCESSOR_VERDICT_EST = 300, 16  # an LLM postprocessor's instructions; its answer per node


class SourceChunk(BaseModel):
    rank: int
    point_id: str
    chunk_id: str
    doc_id: str
    title: str = ""
    section: str = ""
    source: str = ""
    start: int = 0
    end: int = 0
    text: str
    scores: dict[str, float | None]  # dense (cosine), sparse (BM25), fused (RRF or DBSF), rerank
    dense_rank: int | None = None
    sparse_rank: int | None = None


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    method: Literal["api", "tiktoken", "estimate", "none"] = "none"


class Answer(BaseModel):
    """Everything a user or an auditor needs to understand one answer."""

    request_id: str
    ts: str
    user: str
    question: str
    answer: str
    answer_kind: Literal["llm", "extractive", "retrieval_only"]
    citations: list[int]
    sources: list[SourceChunk]
    latency_ms: dict[str, float]
    usage: TokenUsage
    cost_usd: float
    price_known: bool
    cache_hit: bool
    policy: str
    policy_hash: str
    policy_spec: dict
    index: str
    collection: str
    model: str
    prompt: list[dict]
    fusion: str


@dataclass
class Retrieval:
    collection: str
    sources: list[SourceChunk]
    latency_ms: dict[str, float] = field(default_factory=dict)
    query_vec: np.ndarray | None = None


@dataclass
class Retrieved:
    """Stream event: the sources are known, generation starts next."""

    retrieval: Retrieval
    prompt: list[dict]


@contextmanager
def _timed(latency: dict[str, float], stage: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        latency[stage] = latency.get(stage, 0.0) + (time.perf_counter() - t) * 1000


def is_askers_mistake(exc: BaseException) -> bool:
    """Bad input (an empty question, a bad filter) is the asker's; a NotFoundError names a policy,
    alias or index version the configuration points at, so it is a failure of what serves."""
    return isinstance(exc, InputError) and not isinstance(exc, NotFoundError)


def citations_in(text: str, n_sources: int) -> list[int]:
    found = {int(m) for m in re.findall(r"\[(\d{1,3})\]", text)}
    return sorted(n for n in found if 1 <= n <= n_sources)


def sources_of(nodes: list[NodeWithScore], top_k: int) -> list[SourceChunk]:
    """Nodes as the engine's sources, in their order: ours (`stages.HybridRetriever`) carry every
    score and rank in metadata; a team pipeline's carry `doc_id` (else their source document), which
    the metrics need, and the score that ranked them, kept as the `fused` score (the final ranking
    score in every view)."""
    out = []
    for rank, n in enumerate(nodes[:top_k], 1):
        meta = n.node.metadata or {}
        ours = "score_fused" in meta
        out.append(SourceChunk(
            rank=rank, point_id=n.node.node_id, chunk_id=str(meta.get("chunk_id") or n.node.node_id),
            doc_id=str(meta.get("doc_id") or n.node.ref_doc_id or ""),
            title=str(meta.get("title", "")), section=str(meta.get("section", "")), source=str(meta.get("source", "")),
            start=int(meta.get("start") or getattr(n.node, "start_char_idx", None) or 0),
            end=int(meta.get("end") or getattr(n.node, "end_char_idx", None) or 0), text=n.node.get_content(),
            scores={"dense": meta.get("score_dense"), "sparse": meta.get("score_sparse"),
                    "fused": meta.get("score_fused") if ours else n.score, "rerank": meta.get("score_rerank")},
            dense_rank=meta.get("dense_rank"), sparse_rank=meta.get("sparse_rank"),
        ))
    return out


class QueryEngine:
    def __init__(self, settings: Settings, store: VectorStore, embedder: Embedder, generator: Generator,
                 reranker: Reranker, cache: Cache, meter: Meter | None = None):
        self.settings, self.store, self.embedder = settings, store, embedder
        self.generator, self.reranker, self.cache = generator, reranker, cache
        self.meter: Meter = meter or NullMeter()  # ledger row per model call, budgets, Prometheus
        self.recorders: list[Callable[[Answer], None]] = []  # called with every finished answer
        self._pipelines: Pipelines | None = None  # teams' own LlamaIndex pipelines, built on first use
        self._embed_model: LlamaEmbedding | None = None  # the embedder as a LlamaIndex BaseEmbedding, on first use

    # --- steps -----------------------------------------------------------------------------
    def validate(self, question: str, policy: Policy) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty")
        q = question.strip()
        bad = control_chars(q)
        if bad:
            raise InputError(f"the question holds a control character ({bad}); remove it")
        if len(q) > self.settings.max_question_chars:
            raise InputError(f"the question has {len(q):,} characters; the limit is {self.settings.max_question_chars:,}")
        if policy.prompt_template not in PROMPT_TEMPLATES:
            raise InputError(f"unknown prompt template '{policy.prompt_template}'")
        check_factories(policy, self.settings.pipeline_factory_list)
        return q

    def index_of(self, policy: Policy) -> str:
        return policy.index or self.settings.index_alias

    def retrieve(self, question: str, policy: Policy, filters: dict | None = None, actor: Actor = SYSTEM) -> Retrieval:
        """Dense and/or BM25 search, fusion and optional rerank; every score kept per chunk. Evaluation
        and the gate call it as the system inside their own guarded actions."""
        require(actor, Action.ask)
        q = self.validate(question, policy)
        collection = self.store.resolve(self.index_of(policy))
        ctx = self._context(q, policy, actor, collection, None, retrieval_only=True)
        self._authorize(ctx, policy, generate=False)
        try:
            return self._retrieve(ctx, q, policy, collection, filters, {})
        finally:
            self.meter.release(ctx)  # no request_done here: the budget hold goes now

    # --- metering: the ledger row of each model call is written here, around the call ------------
    def _context(self, q: str, policy: Policy, actor: Actor, collection: str, variant: str | None,
                 retrieval_only: bool = False) -> RequestContext:
        """The ledger records `actor.ledger_user`, where the request came from (api, console or
        system, by the actor's kind) and, for an API key, the key's name."""
        return RequestContext(request_id=uuid.uuid4().hex, user=actor.ledger_user, policy=policy.name,
                              policy_version=policy.version, variant=variant, index_version=collection, question=q,
                              retrieval_only=retrieval_only, source=SOURCE_OF_ACTOR_KIND.get(actor.kind, "system"),
                              api_key=actor.name if actor.kind == "api_key" else None)

    def _planned(self, policy: Policy, generate: bool, question: str) -> list[Planned]:
        """The model calls this request will make, with estimated tokens: hard budgets hold their
        cost until the request ends. The prompt is not built yet, so each source counts
        SOURCE_TOKENS_EST (a 1,500-character chunk, the chunker's default maximum) and the answer
        its max_tokens: the estimate errs high, so concurrent requests cannot overrun a cap."""
        q_tokens = count_tokens(question)[0]
        calls = []
        if policy.retrieval_mode in ("dense", "hybrid") or policy.rerank:
            calls.append(Planned("embedding", self.embedder.name, q_tokens))
        if policy.rerank and self.reranker.model:
            calls.append(Planned("rerank", self.reranker.model,
                                 q_tokens + policy.rerank_candidates * SOURCE_TOKENS_EST))
        if policy.postprocessor and self.generator.kind == "llm":
            # a team's postprocessor gets our LLM (LLMRerank calls it): held as one chat call that reads
            # every candidate and writes a short verdict on each; its rows carry the real cost
            calls.append(Planned("chat", policy.model or self.settings.llm_model,
                                 q_tokens + POSTPROCESSOR_PROMPT_EST + policy.rerank_candidates * SOURCE_TOKENS_EST,
                                 policy.rerank_candidates * POSTPROCESSOR_VERDICT_EST))
        if generate and self.generator.kind == "llm":
            prompt = count_tokens(PROMPT_TEMPLATES[policy.prompt_template])[0] + q_tokens + 16
            calls.append(Planned("chat", policy.model or self.settings.llm_model,
                                 prompt + policy.top_k * SOURCE_TOKENS_EST, policy.max_tokens))
        return calls

    def _authorize(self, ctx: RequestContext, policy: Policy, generate: bool) -> None:
        """Budgets are checked once, before the request's first paid call; a refusal is a ledger row too."""
        planned = self._planned(policy, generate, ctx.question)
        try:
            self.meter.authorize(ctx, planned)
        except BudgetExceeded as exc:
            kind, model = planned[-1][:2] if planned else ("chat", policy.model or self.settings.llm_model)
            self._record(ctx, ModelCall(kind=kind, model=model, status="refused", error_class=type(exc).__name__,
                                        total_ms=ctx.elapsed_ms() if kind == "chat" else None))
            raise

    def _record(self, ctx: RequestContext, call: ModelCall) -> ModelCall:
        call = self.meter.record(ctx, call)
        ctx.calls.append(call)
        return call

    def embed_model(self) -> LlamaEmbedding:
        """The embedder as a LlamaIndex `BaseEmbedding` (questions, teams' pipelines), made on first use."""
        if self._embed_model is None:
            from backend.engine.stages import LlamaEmbedding

            self._embed_model = LlamaEmbedding(self.embedder)
        return self._embed_model

    def pipelines(self) -> Pipelines:
        """The teams' pipelines, built on first use (most processes serve none)."""
        if self._pipelines is None:
            from backend.engine.pipelines import Pipelines

            self._pipelines = Pipelines(self.settings, self.store.client, self.embed_model(), self.generator)
        return self._pipelines

    def _run_pipeline(self, ctx: RequestContext, q: str, policy: Policy, collection: str, filters: dict | None,
                      latency: dict[str, float], answer: bool) -> tuple[Retrieval, str | None]:
        """The policy's own LlamaIndex pipeline instead of our stages: its nodes as sources and, for a
        query engine asked to answer, its answer text. Its model calls reach the ledger through the
        instrumentation, each as it ends."""
        if filters:
            raise InputError(f"policy '{policy.name}' runs the pipeline {policy.pipeline}, which takes no filters")
        pipelines = self.pipelines()
        pipeline = pipelines.get(policy, self.index_of(policy))

        def on_call(call: ModelCall) -> None:
            if call.kind == "chat":
                call.retrieve_ms, call.total_ms = latency.get("retrieve"), ctx.elapsed_ms()
            self._record(ctx, call)

        run = pipelines.run(pipeline, q, answer, latency, on_call)
        sources = sources_of(run.nodes, policy.top_k if run.text is None else len(run.nodes))
        return Retrieval(collection, sources, latency), run.text

    def _retrieve(self, ctx: RequestContext, q: str, policy: Policy, collection: str, filters: dict | None,
                  latency: dict[str, float]) -> Retrieval:
        if policy.pipeline:
            return self._run_pipeline(ctx, q, policy, collection, filters, latency, answer=False)[0]
        # llama-index loads on the first retrieval: commands that never retrieve start ~2 s sooner
        from llama_index.core.schema import QueryBundle

        from backend.engine.instrumentation import collecting
        from backend.engine.stages import HybridRetriever, Rerank

        mode = policy.retrieval_mode
        reranked = policy.rerank or policy.postprocessor is not None
        keep = max(policy.top_k, policy.rerank_candidates if reranked else 0)
        retriever = HybridRetriever(self.store, collection, mode, policy.fusion,
                                    max(policy.candidates, keep), keep, payload_filter(filters))
        qvec = embedding = None
        with collecting(latency, lambda call: self._record(ctx, call)):  # stage times and model calls
            if mode in ("dense", "hybrid") or policy.rerank:  # a BaseEmbedding: timed and metered by its events
                embedding = self.embed_model().get_query_embedding(q)
                qvec = np.asarray(embedding, dtype=np.float32)
            query = QueryBundle(q, embedding=embedding)
            nodes = retriever.retrieve(query)
            if policy.postprocessor and nodes:
                nodes = self.pipelines().postprocess(policy, self.index_of(policy), nodes, query, latency)
            elif policy.rerank and nodes:
                nodes = Rerank(reranker=self.reranker, collection=collection, query_vec=qvec,
                               top_n=policy.rerank_candidates).postprocess_nodes(nodes, query)
        return Retrieval(collection, sources_of(nodes, policy.top_k), latency, qvec)

    def build_prompt(self, question: str, sources: list[SourceChunk], policy: Policy) -> list[dict]:
        blocks = [f"[{s.rank}] {s.title}\n{s.text}" if s.title else f"[{s.rank}] {s.text}" for s in sources]
        user = "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
        return [{"role": "system", "content": PROMPT_TEMPLATES[policy.prompt_template]}, {"role": "user", "content": user}]

    # --- the whole query ---------------------------------------------------------------------
    def stream(self, question: str, policy: Policy, actor: Actor, filters: dict | None = None,
               retrieval_only: bool = False, *, variant: str | None = None) -> Iterator[Retrieved | str | Answer]:
        """Yields one Retrieved event, then answer text deltas, then the final Answer. The ledger
        and traces record `actor.ledger_user` (the end user an API key names, else the actor)."""
        require(actor, Action.ask)
        q = self.validate(question, policy)
        ctx = self._context(q, policy, actor, "", variant, retrieval_only)
        latency: dict[str, float] = {}
        status = "error"
        try:
            collection = ctx.index_version = self.store.resolve(self.index_of(policy))
            yield from self._answer(ctx, q, policy, collection, filters, retrieval_only, latency)
            status = "cache_hit" if ctx.cache == "hit" else "ok"
        except BudgetExceeded:
            status = "refused"
            raise
        except GeneratorExit:
            status = "aborted"
            raise
        except Exception as exc:
            self._record_failure(ctx, policy, exc)
            raise
        finally:
            latency.setdefault("total", ctx.elapsed_ms())
            self.meter.request_done(ctx, status, latency)

    def _record_failure(self, ctx: RequestContext, policy: Policy, exc: Exception) -> None:
        """A failed request leaves an error row, whatever stage failed: the guardrail and the error
        rate count requests by their ledger rows, and a failure outside a model call (a deleted
        collection, a store error after the embedding's ok row) used to leave none, so a candidate
        on a deleted version failed every request while its error rate read 0. A bad question or
        filter is the asker's mistake (no row); a NotFoundError is not: the policy or the index
        version behind it is gone."""
        if is_askers_mistake(exc) or any(c.status == "error" for c in ctx.calls):
            return
        model = (policy.model or self.settings.llm_model) if self.generator.kind == "llm" else "extractive"
        try:
            self._record(ctx, ModelCall(kind="chat", model=model, status="error", error_class=root_cause_name(exc),
                                        total_ms=ctx.elapsed_ms()))
        except Exception:  # the ledger being down must not hide the request's own error
            log.exception("the error row of request %s could not be written", ctx.request_id)

    def _answer(self, ctx: RequestContext, q: str, policy: Policy, collection: str, filters: dict | None,
                retrieval_only: bool, latency: dict[str, float]) -> Iterator[Retrieved | str | Answer]:
        model = policy.model or self.settings.llm_model
        key = cache_key(q, policy.content(), collection, self.embedder.name)
        common = dict(request_id=ctx.request_id, ts=utcnow().isoformat(), user=ctx.user, question=q,
                      policy=policy.label(), policy_hash=policy.content_hash(), policy_spec=policy.content(),
                      index=self.index_of(policy), collection=collection,
                      fusion="pipeline" if policy.pipeline else policy.fusion)
        if not retrieval_only and not filters:
            with _timed(latency, "cache"):
                cached = self.cache.get(key)
            ctx.cache = "hit" if cached else "miss"
            if cached:  # served before any budget check: a spent budget never blocks a cached answer
                hit = Answer.model_validate_json(cached)
                latency["total"] = ctx.elapsed_ms()
                self._record(ctx, ModelCall(kind="chat", model=hit.model, cache_hit=True, latency_ms=latency["cache"],
                                            total_ms=latency["total"], saved_prompt_tokens=hit.usage.prompt_tokens,
                                            saved_completion_tokens=hit.usage.completion_tokens))
                answer = hit.model_copy(update={**common, "cache_hit": True, "latency_ms": latency, "cost_usd": 0.0})
                yield Retrieved(Retrieval(collection, hit.sources, latency), hit.prompt)
                yield answer.answer
                yield self._finish(answer)
                return
        self._authorize(ctx, policy, generate=not retrieval_only)
        if policy.pipeline and not retrieval_only:
            retrieval, text = self._run_pipeline(ctx, q, policy, collection, filters, latency, answer=True)
        else:
            retrieval, text = self._retrieve(ctx, q, policy, collection, filters, latency), None
        messages = self.build_prompt(q, retrieval.sources, policy)
        yield Retrieved(retrieval, messages)
        if retrieval_only:
            latency["total"] = ctx.elapsed_ms()
            yield self._finish(Answer(**common, answer="", answer_kind="retrieval_only", citations=[], sources=retrieval.sources,
                                      latency_ms=latency, usage=TokenUsage(), cost_usd=ctx.cost_usd, price_known=ctx.price_known,
                                      cache_hit=False, model=model, prompt=messages))
            return
        if text is not None:  # a pipeline's query engine answered: its LLM calls are ledger rows already
            yield text
            calls, kind, prompt = [c for c in ctx.calls if c.kind == "chat"], "llm", []  # LlamaIndex's own prompt
        else:
            calls, parts, kind, prompt = [], [], self.generator.kind, messages
            for piece in self._generate(ctx, q, messages, retrieval.sources, policy, model, latency, calls):
                parts.append(piece)
                yield piece
            text = "".join(parts)
        tokens = TokenUsage(prompt_tokens=sum(c.prompt_tokens for c in calls),
                            completion_tokens=sum(c.completion_tokens for c in calls),
                            method=calls[-1].token_method if calls else "none")
        latency["total"] = calls[-1].total_ms if calls and calls[-1].total_ms else ctx.elapsed_ms()
        answer = Answer(**common, answer=text, answer_kind=kind, citations=citations_in(text, len(retrieval.sources)),
                        sources=retrieval.sources, latency_ms=latency, usage=tokens, cost_usd=ctx.cost_usd,
                        price_known=ctx.price_known, cache_hit=False, model=calls[-1].model if calls else model,
                        prompt=prompt)
        if not filters:
            self.cache.set(key, answer.model_dump_json())
        yield self._finish(answer)

    def _generate(self, ctx: RequestContext, q: str, messages: list[dict], sources: list[SourceChunk], policy: Policy,
                  model: str, latency: dict[str, float], calls: list[ModelCall]) -> Iterator[str]:
        """The answer's text deltas. An LLM answers through LlamaIndex (`GeneratorLLM.stream_chat`), and its
        instrumentation times and meters the call as it does any team's LLM: tokens as the endpoint
        reports them (cached ones included) or counted, the model that answered, an "aborted" row
        with the text so far when the reader stops. The extractive answer is a ledger row too."""

        def on_call(call: ModelCall) -> None:
            call.retrieve_ms, call.total_ms = latency.get("retrieve"), ctx.elapsed_ms()
            latency["generate"] = latency.get("generate", 0.0) + call.latency_ms
            calls.append(self._record(ctx, call))

        if self.generator.kind != "llm":
            t = time.perf_counter()
            text = "".join(p for p in self.generator.stream(messages, [s.text for s in sources], q, model,
                                                            policy.temperature, policy.max_tokens) if isinstance(p, str))
            on_call(ModelCall(kind="chat", model="extractive", latency_ms=(time.perf_counter() - t) * 1000))
            yield text
            return
        from llama_index.core.base.llms.types import ChatMessage

        from backend.engine.instrumentation import StageCollector
        from backend.engine.llm import GeneratorLLM

        llm = GeneratorLLM(self.generator, model, policy.temperature, policy.max_tokens)
        collector = StageCollector(latency, on_call)
        responses = None
        try:
            # the reader iterates this stream, so the collector is routed each step, not once around it
            with collector.active():
                responses = llm.stream_chat([ChatMessage(role=m["role"], content=m["content"]) for m in messages])
            while True:
                with collector.active():
                    response = next(responses, None)
                if response is None:
                    return
                if response.delta:
                    yield response.delta
        except BaseException as exc:
            collector.failed(exc)
            raise
        finally:
            if responses is not None:
                responses.close()

    def query(self, question: str, policy: Policy, actor: Actor, filters: dict | None = None,
              retrieval_only: bool = False, *, variant: str | None = None) -> Answer:
        answer = None
        for event in self.stream(question, policy, actor, filters, retrieval_only, variant=variant):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def _finish(self, answer: Answer) -> Answer:
        for record in self.recorders:
            record(answer)
        return answer
