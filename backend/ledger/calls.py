"""What the engine tells its meter: who asks (RequestContext) and each model call (ModelCall).

The engine holds one Meter. Before a request's paid calls it asks `authorize` with the calls it
plans and their estimated tokens (a hard budget holds their estimated cost, or raises
BudgetExceeded there), after each call it hands the call to `record` (which prices it and writes
the ledger row in the same code path), and at the end `request_done` (which lets the hold go: the
real cost is in the ledger by then). No SQL here."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

Kind = Literal["chat", "embedding", "rerank", "judge"]
Source = Literal["api", "console", "system"]
SOURCES: tuple[str, ...] = ("api", "console", "system")
# Where a request came from, by the kind of its Actor (backend.access.actor.ActorKind).
SOURCE_OF_ACTOR_KIND = {"api_key": "api", "user": "console", "system": "system"}
Status = Literal["ok", "error", "refused", "aborted"]
KINDS: tuple[str, ...] = ("chat", "embedding", "rerank", "judge")
# The latency stage a call's own duration belongs to.
STAGE_OF_KIND = {"chat": "generate", "embedding": "embed", "rerank": "rerank", "judge": "judge"}


class Planned(NamedTuple):
    """A model call a request will make, with an estimate of its tokens (0: unknown): a hard budget
    holds the estimated cost, so the estimate errs high (the answer at its max_tokens)."""

    kind: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def as_planned(call: Planned | tuple) -> Planned:
    """Callers may still plan a bare (kind, model)."""
    return call if isinstance(call, Planned) else Planned(*call)


@dataclass
class RequestContext:
    request_id: str
    user: str
    policy: str  # policy name (the version is separate)
    policy_version: int | None = None
    variant: str | None = None  # A/B variant, when the request belongs to an experiment
    index_version: str = ""  # the physical collection the alias resolved to
    question: str = ""
    retrieval_only: bool = False
    cache: str | None = None  # "hit" or "miss" once the answer cache was asked
    source: str = "system"  # api (an API key), console (a console user), system (CLI, background, evaluation)
    api_key: str | None = None  # the API key's name when source is "api"
    calls: list["ModelCall"] = field(default_factory=list)  # recorded so far, priced
    reserved: bool = False  # a hard budget holds this request's estimated cost until request_done
    t0: float = field(default_factory=time.perf_counter)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def price_known(self) -> bool:
        return all(c.price_known for c in self.calls)


@dataclass
class ModelCall:
    kind: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    token_method: str = "none"  # api | tiktoken | estimate | none
    latency_ms: float = 0.0
    retrieve_ms: float | None = None  # chat rows: the request's retrieval stage
    total_ms: float | None = None  # chat rows: the request end to end
    cache_hit: bool = False
    # cache hits: what the answer cost to make (priced again now, to say what the hit saved)
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    status: str = "ok"
    error_class: str | None = None
    # filled by the meter when the row is written
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    price_known: bool = True
    price_id: int | None = None
    ts: datetime | None = None

    @property
    def stage(self) -> str:
        return "cache" if self.cache_hit else STAGE_OF_KIND.get(self.kind, self.kind)


class Meter(Protocol):
    def authorize(self, ctx: RequestContext, planned: list[Planned] | list[tuple[str, str]]) -> None:
        """Raise BudgetExceeded if a hard budget refuses any of the planned paid calls; else hold
        their estimated cost until `request_done`."""

    def record(self, ctx: RequestContext, call: ModelCall) -> ModelCall:
        """Price the call, write its ledger row; returns it with cost fields filled."""

    def release(self, ctx: RequestContext) -> None:
        """The request's calls are recorded (or it failed): let go of what its budgets hold."""

    def request_done(self, ctx: RequestContext, status: str, latency_ms: dict[str, float]) -> None:
        """The request ended (ok, error, refused, aborted) with these stage latencies."""


class NullMeter:
    """No ledger (engines built without services): prices from the seed table, records nothing."""

    def authorize(self, ctx: RequestContext, planned: list[Planned] | list[tuple[str, str]]) -> None:
        return None

    def record(self, ctx: RequestContext, call: ModelCall) -> ModelCall:
        from backend.ledger.pricing import cost_usd

        call.cost_usd, call.price_known = cost_usd(call.model, call.prompt_tokens, call.completion_tokens,
                                                   call.cached_tokens)
        if call.cache_hit:
            call.cost_usd = 0.0
            call.saved_usd, _ = cost_usd(call.model, call.saved_prompt_tokens, call.saved_completion_tokens)
        return call

    def release(self, ctx: RequestContext) -> None:
        return None

    def request_done(self, ctx: RequestContext, status: str, latency_ms: dict[str, float]) -> None:
        return None
