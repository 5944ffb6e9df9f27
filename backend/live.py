"""The production request path: which release answers this user, the answer, then the guardrail.

    policy, variant, release = releases.policy_for(user)   # sticky: hash(user, experiment)
    engine.stream(question, policy, user, variant=variant)  # every ledger row carries the variant
    guardrail check over the ledger window                   # at most once every few seconds

A request that fails is never dropped silently: it leaves a ledger error row with its variant
(that is what the guardrail counts; the engine writes one whatever stage failed) and the caller
gets a LiveRequestError naming the variant and the release. Only the asker's own mistakes (an
empty question, a spent budget) pass through as they are: a NotFoundError is the release's
failure, since the user did not choose the index version or policy that is gone.
When the candidate's error rate or p95 crosses its threshold, the check sets its share to 0, so
every later request is answered by the current release; the trip is a release event, an audit
record and an alert."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from backend.access import Actor
from backend.engine.query_engine import Answer, Retrieved, is_askers_mistake
from backend.errors import BudgetExceeded, RagError
from backend.releases.online import variant_stats

if TYPE_CHECKING:
    from backend.services import Services

log = logging.getLogger(__name__)

GUARDRAIL_EVERY_S = 5.0  # the ledger window is read at most this often per process


class LiveRequestError(RagError):
    """A live request failed; says which variant and release it was routed to."""

    part = "release"

    def __init__(self, message: str, variant: str | None, release: dict | None, cause: RagError):
        super().__init__(message)
        self.variant, self.release, self.cause = variant, release, cause
        self.part = cause.part  # what failed (the LLM, the vector store...): the message names the release
        self.tripped: str | None = None  # set when the guardrail check after this request tripped


@dataclass
class LiveAnswer:
    answer: Answer
    variant: str | None  # None when no release is configured (the default policy on the alias)
    release: dict | None
    tripped: str | None = None  # the guardrail's reason when the check after this request tripped it


def route(services: "Services", actor: Actor):  # noqa: ANN201 - (Policy, variant, release)
    """The policy, variant and release a live request of `actor` runs with (sticky per end user)."""
    return services.releases.policy_for(actor.ledger_user)


def check_guardrails(services: "Services", every_s: float = GUARDRAIL_EVERY_S) -> str | None:
    """The guardrail over the ledger window (throttled); returns the reason when it tripped now."""
    releases = services.releases

    def stats(minutes: int) -> dict[str, dict[str, float]]:
        return variant_stats(services.db, minutes, since=releases.state().started_at)

    try:
        return releases.maybe_check_guardrails(stats, every_s)
    except Exception:  # a failed check must not fail the request it follows; the next one retries
        log.exception("guardrail check failed")
        return None


def _askers(exc: RagError) -> bool:
    """The question or the budget, not the release."""
    return isinstance(exc, BudgetExceeded) or is_askers_mistake(exc)


def _failure(exc: RagError, variant: str | None, release: dict | None) -> LiveRequestError:
    where = f"the {variant} release {release['label']}" if release else "the default policy (no release configured)"
    return LiveRequestError(f"{where} could not answer — {exc}", variant, release, exc)


def stream_live(services: "Services", question: str, actor: Actor, filters: dict | None = None, *,
                guardrail_every_s: float = GUARDRAIL_EVERY_S, routed=None) -> Iterator[Retrieved | str | Answer]:  # noqa: ANN001
    """engine.stream for the release `user` is assigned to (same events); the guardrail check runs
    when the stream ends, whatever the outcome. `routed` is a `route()` the caller already made."""
    policy, variant, release = routed or route(services, actor)
    try:
        yield from services.engine.stream(question, policy, actor, filters, variant=variant)
    except RagError as exc:
        if _askers(exc):
            raise
        raise _failure(exc, variant, release) from exc
    finally:
        check_guardrails(services, guardrail_every_s)


def answer_live(services: "Services", question: str, actor: Actor, filters: dict | None = None, *,
                guardrail_every_s: float = GUARDRAIL_EVERY_S) -> LiveAnswer:
    """Answer `question` for `user` on the live configuration; raises LiveRequestError (with the
    variant, the release and whether the guardrail tripped) when the routed release fails."""
    policy, variant, release = route(services, actor)
    error: LiveRequestError | None = None
    answer = None
    try:
        answer = services.engine.query(question, policy, actor, filters, variant=variant)
    except RagError as exc:
        if _askers(exc):
            check_guardrails(services, guardrail_every_s)
            raise
        error = _failure(exc, variant, release)
    tripped = check_guardrails(services, guardrail_every_s)
    if error is not None:
        error.tripped = tripped
        raise error from error.cause
    assert answer is not None
    return LiveAnswer(answer, variant, release, tripped)


def guardrail_status(services: "Services") -> dict:
    """What the guardrail sees now (no throttle, nothing changes): state, thresholds and the
    candidate's figures over the window."""
    st = services.releases.state()
    g = st.guardrails
    if st.candidate is None:
        return {"state": "no candidate", "guardrails": g, "figures": {}}
    figures = variant_stats(services.db, g.window_minutes, since=st.started_at)
    cand = figures.get("candidate", {"requests": 0, "errors": 0, "p95_ms": 0.0})
    n = int(cand["requests"])
    error_rate = cand["errors"] / n if n else None
    if st.share == 0:
        state = "paused (0% share)"
    elif n < g.min_requests:
        state = f"armed — waiting for {g.min_requests} candidate requests in the window ({n} so far)"
    elif (error_rate or 0) > g.max_error_rate or cand["p95_ms"] > g.max_p95_ms:
        state = "over a threshold — trips at the next check"
    else:
        state = "armed — within thresholds"
    return {"state": state, "guardrails": g, "figures": figures, "requests": n, "error_rate": error_rate,
            "p95_ms": cand["p95_ms"] if n else None}
