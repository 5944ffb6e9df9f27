"""The API's routes: query, OpenAI-compatible chat completions and models, feedback, health.

Each request runs through the same code as the console: `live.stream_live` (release routing,
guardrails) or `engine.stream` for a named policy, with budgets, cache, ledger and metrics inside
the engine. Blocking work runs in the threadpool (sync endpoints and sync generators)."""
from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Callable, Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.access import Action, Actor, require
from backend.api.errors import ApiError, install_error_handlers
from backend.api.models import (ChatCompletion, ChatRequest, ErrorResponse, FeedbackRequest, ModelCard, ModelList,
                                QueryRequest, QueryResponse)
from backend.api.ratelimit import RateLimiter
from backend.engine.policy import Policy
from backend.engine.query_engine import Answer, Retrieved
from backend.errors import InputError
from backend.live import route, stream_live

if TYPE_CHECKING:
    from backend.services import Services

LIVE_MODEL = "rag"
READY_TTL_S = 5.0
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
END_USER_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
ERRORS = {s: {"model": ErrorResponse} for s in (401, 402, 403, 404, 413, 422, 429, 500, 502, 503)}


def _streamed(events: dict) -> dict:
    """The 200 response's server-sent events (`stream: true`); on OpenAPI 3.1 a text/event-stream
    schema describes one event, with `data` as its text."""
    event = {"type": "object", "required": ["data"],
             "properties": {"event": events, "data": {"type": "string"}, "id": {"type": "string"}}}
    return {200: {"description": "The answer; with `stream: true`, server-sent events",
                  "content": {"text/event-stream": {"schema": event}}}}


QUERY_STREAM = _streamed({"type": "string", "enum": ["sources", "delta", "done", "error"],
                          "description": "sources, then deltas, then done (the answer object); error mid-stream"})
CHAT_STREAM = _streamed({"type": "string", "description": "message: data is a chat.completion.chunk, "
                                                           "then [DONE]"})


class RequestIds:
    """ASGI middleware: every response carries X-Request-Id (the caller's, when sane), and bodies
    over the limit are refused before they are read."""

    def __init__(self, app: ASGIApp, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            body = json.dumps({"error": {"type": "payload_too_large", "message": f"the body is over {self.max_body:,} bytes",
                                         "part": "input", "request_id": rid}}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                hdrs = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": hdrs + [(b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_api(services: Callable[[], Services]) -> FastAPI:
    """The API app; `services` returns the process's one Services (built on first use)."""
    from backend.settings import get_settings

    settings = get_settings()
    api = FastAPI(title="RAG Ops Console API", version="1.0",
                  description="Ask the RAG that the console tests, evaluates and promotes. Authenticate with an API "
                              "key (`Authorization: Bearer rok_...`); `X-End-User` names the person behind a request.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    api.add_middleware(RequestIds, max_body=settings.api_max_body_bytes)
    install_error_handlers(api)
    limiter = RateLimiter(settings.api_rate_limit, settings.redis_url,
                          on_fail_open=lambda: services().costs.metrics.ratelimit_fail_open.inc())
    api.state.limiter = limiter
    ready_cache: dict = {}

    def actor(request: Request) -> Actor:
        """The API key's actor (401 without a valid key, 403 when its role may not ask, 429 over the rate)."""
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        end_user = request.headers.get("x-end-user")
        if end_user is not None and not END_USER_RE.fullmatch(end_user):
            raise ApiError(422, "invalid_request", "X-End-User is 1-200 characters without control characters", "input")
        found = services().access.key_actor(token.strip(), end_user) if scheme.lower() == "bearer" else None
        if found is None:
            raise ApiError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>", "auth",
                           {"WWW-Authenticate": "Bearer"})
        require(found, Action.ask)
        allowed, retry = limiter.hit(found.id)
        if not allowed:
            raise ApiError(429, "rate_limited", f"rate limit {settings.api_rate_limit} reached for this key", "api",
                           {"Retry-After": str(int(retry + 0.999))})
        # BudgetExceeded (402) once the key's monthly budget is spent; its paid calls are held against the
        # budget later (the meter's authorize). Database down: a key whose budget passed within KEY_STALE_S
        # goes on (its rows wait in the ledger journal); the service remembers when, for both.
        services().costs.budgets.check_key(found)
        return found

    def policy_of(name: str | None, top_k: int | None = None) -> Policy | None:
        """None = the live release; else a saved policy `name` or `name@version`."""
        if not name or name == LIVE_MODEL:
            if top_k is not None:
                raise InputError("top_k needs a named policy: the live release decides its own")
            return None
        policy = services().policies.by_ref(name)
        return policy.model_copy(update={"top_k": top_k}) if top_k is not None else policy

    def events(question: str, policy: Policy | None, who: Actor, filters: dict | None,
               retrieval_only: bool) -> Iterator[tuple[Retrieved | str | Answer, str | None, str | None]]:
        """Engine events with the release label and variant that served them."""
        svc = services()
        if policy is None:
            if retrieval_only:
                raise InputError("retrieval_only needs a named policy")
            routed = route(svc, who)
            label, variant = routed[2].label if routed[2] else None, routed[1]
            for e in stream_live(svc, question, who, filters, routed=routed):
                yield e, label, variant
            return
        for e in svc.engine.stream(question, policy, who, filters, retrieval_only):
            yield e, None, None

    @api.post("/query", response_model=QueryResponse, responses={**ERRORS, **QUERY_STREAM}, summary="Ask a question")
    def query(body: QueryRequest, who: Actor = Depends(actor)):  # noqa: ANN202 - JSON or SSE
        policy = policy_of(body.policy, body.top_k)
        stream = events(body.question, policy, who, body.filters, body.retrieval_only)
        if body.stream:
            first = next(stream)  # errors before the first event still get a JSON error and status
            return StreamingResponse(_sse_query(first, stream), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})
        answer, release, variant = _final(stream)
        return _answer_json(answer, release, variant)

    @api.post("/chat/completions", response_model=ChatCompletion, responses={**ERRORS, **CHAT_STREAM},
              summary="OpenAI-compatible chat completions")
    def chat(body: ChatRequest, who: Actor = Depends(actor)):  # noqa: ANN202
        try:
            question = body.question()
        except ValueError as exc:
            raise InputError(str(exc)) from None
        stream = events(question, policy_of(body.model), who, None, False)
        if body.stream:
            first = next(stream)
            return StreamingResponse(_sse_chat(body.model, first, stream), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})
        answer, release, variant = _final(stream)
        return JSONResponse(_completion(body.model, answer, release, variant))

    @api.get("/models", response_model=ModelList, responses=ERRORS, summary="The live release and the saved policies")
    def models(who: Actor = Depends(actor)) -> ModelList:
        now = int(time.time())
        names = [LIVE_MODEL] + [p.name for p in services().policies.list()]
        return ModelList(data=[ModelCard(id=n, created=now) for n in dict.fromkeys(names)])

    @api.post("/feedback", responses=ERRORS, summary="Thumbs up or down on an answer")
    def feedback(body: FeedbackRequest, who: Actor = Depends(actor)) -> dict:
        score = 1 if body.score in ("up", 1) else -1
        services().traces.feedback(body.request_id, score, who, body.comment)
        return {"ok": True, "request_id": body.request_id, "score": score}

    @api.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/readyz", summary="Readiness: embedding, vector store through the live alias, LLM")
    def readyz(request: Request) -> JSONResponse:
        from backend.api.ready import self_test

        if time.monotonic() - ready_cache.get("at", -1e9) > READY_TTL_S:  # a probe every second stays cheap
            ready_cache.update(result=self_test(services()), at=time.monotonic())
        checks, failing = ready_cache["result"]
        journal = services().costs.journal.status()
        body = {"status": "ok" if failing is None else "fail", "failing": failing, "checks": checks,
                "rate_limiter": {"backend": limiter.backend, "failing_open": limiter.degraded},
                # rows not yet in the database (it is down): answers go on, the rows wait on disk
                "ledger_journal": {"pending": journal.pending, "rejected": journal.rejected,
                                   "database_failing": journal.failing_since is not None}}
        return JSONResponse(body, status_code=200 if failing is None else 503)

    return api


def _answer_json(answer: Answer, release: str | None, variant: str | None) -> Response:
    """The QueryResponse body, serialised once by pydantic's own encoder (the answer is already
    validated: going through FastAPI's response model would validate and encode it twice)."""
    body = answer.model_dump_json()
    tail = json.dumps({"release": release, "variant": variant}, ensure_ascii=False)[1:]
    return Response(body[:-1] + "," + tail, media_type="application/json")


def _final(stream: Iterator) -> tuple[Answer, str | None, str | None]:
    """The answer, after the stream ended: read to the end, so the engine records the request as
    finished (not aborted) and the guardrail check after it runs now."""
    final = None
    for event, release, variant in stream:
        if isinstance(event, Answer):
            final = (event, release, variant)
    if final is None:
        raise RuntimeError("the engine ended without an answer")
    return final


def _sse(event: str, data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def _sources_payload(e: Retrieved) -> dict:
    return {"collection": e.retrieval.collection, "sources": [s.model_dump() for s in e.retrieval.sources],
            "latency_ms": e.retrieval.latency_ms}


def _sse_query(first: tuple, rest: Iterator) -> Iterator[bytes]:
    """sources, then delta events, then done (the whole answer with usage and cost)."""
    for event, release, variant in _chain(first, rest):
        if isinstance(event, Retrieved):
            yield _sse("sources", _sources_payload(event))
        elif isinstance(event, str):
            yield _sse("delta", {"text": event})
        elif isinstance(event, Answer):
            yield _sse("done", {**event.model_dump(mode="json"), "release": release, "variant": variant})
        elif isinstance(event, dict):
            yield _sse("error", event)


def _chain(first: tuple, rest: Iterator) -> Iterator[tuple]:
    yield first
    try:
        yield from rest
    except Exception as exc:  # a failure mid-stream: the client gets an error event, not a cut connection
        from backend.errors import RagError

        msg = str(exc.args[0]) if isinstance(exc, RagError) and exc.args else "internal error"
        part = exc.part if isinstance(exc, RagError) else "api"
        yield {"error": {"type": "stream_error", "message": msg, "part": part}}, None, None


def _completion(model: str, a: Answer, release: str | None, variant: str | None) -> dict:
    return {"id": f"chatcmpl-{a.request_id}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": a.answer}, "finish_reason": "stop"}],
            "usage": _usage(a), "sources": [s.model_dump() for s in a.sources], "rag": _rag(a, release, variant)}


def _usage(a: Answer) -> dict:
    return {"prompt_tokens": a.usage.prompt_tokens, "completion_tokens": a.usage.completion_tokens,
            "total_tokens": a.usage.prompt_tokens + a.usage.completion_tokens}


def _rag(a: Answer, release: str | None, variant: str | None) -> dict:
    return {"request_id": a.request_id, "answer_kind": a.answer_kind, "policy": a.policy, "collection": a.collection,
            "cost_usd": a.cost_usd, "cache_hit": a.cache_hit, "latency_ms": a.latency_ms, "release": release,
            "variant": variant, "citations": a.citations}


def _sse_chat(model: str, first: tuple, rest: Iterator) -> Iterator[bytes]:
    """OpenAI chunks: the first carries the sources, the last `usage`, then [DONE]."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra: object) -> bytes:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    for event, release, variant in _chain(first, rest):
        if isinstance(event, Retrieved):
            yield chunk({"role": "assistant", "content": ""}, sources=_sources_payload(event)["sources"])
        elif isinstance(event, str):
            yield chunk({"content": event})
        elif isinstance(event, Answer):
            yield chunk({}, "stop", usage=_usage(event), rag=_rag(event, release, variant))
        elif isinstance(event, dict):
            yield f"data: {json.dumps(event)}\n\n".encode()
    yield b"data: [DONE]\n\n"

