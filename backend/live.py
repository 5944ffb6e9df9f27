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
from typing import TYPE_CHECKING, Iterator, Literal

from backend.access import Actor
from backend.engine.policy import Policy
from backend.engine.query_engine import Answer, Retrieved, is_askers_mistake
from backend.errors import BudgetExceeded, RagError
from backend.releases.manager import Guardrails, Release, Variant, WindowStats
from backend.releases.online import variant_stats

if TYPE_CHECKING:
    from backend.services import Services

log = logging.getLogger(__name__)

GUARDRAIL_EVERY_S = 5.0  # the ledger window is read at most this often per process
Routed = tuple[Policy, Variant | None, Release | None]  # a live request's policy, variant and release


class LiveRequestError(RagError):
    """A live request failed; says which variant and release it was routed to."""

    part = "release"

    def __init__(self, message: str, variant: str | None, release: Release | None, cause: RagError):
        super().__init__(message)
        self.variant, self.release, self.cause = variant, release, cause
        self.part = cause.part  # what failed (the LLM, the vector store...): the message names the release
        self.tripped: str | None = None  # set when the guardrail check after this request tripped


@dataclass
class LiveAnswer:
    answer: Answer
    variant: str | None  # None when no release is configured (the default policy on the alias)
    release: Release | None
    tripped: str | None = None  # the guardrail's reason when the check after this request tripped it


def route(services: "Services", actor: Actor) -> Routed:
    """The policy, variant and release a live request of `actor` runs with (sticky per end user)."""
    return services.releases.policy_for(actor.ledger_user)


def check_guardrails(services: "Services", every_s: float = GUARDRAIL_EVERY_S) -> str | None:
    """The guardrail over the ledger window (throttled); returns the reason when it tripped now."""
    releases = services.releases

    def stats(minutes: int) -> dict[str, WindowStats]:
        return variant_stats(services.db, minutes, since=releases.state().started_at)

    try:
        return releases.maybe_check_guardrails(stats, every_s)
    except Exception:  # a failed check must not fail the request it follows; the next one retries
        log.exception("guardrail check failed")
        return None


def _askers(exc: RagError) -> bool:
    """The question or the budget, not the release."""
    return isinstance(exc, BudgetExceeded) or is_askers_mistake(exc)


def _failure(exc: RagError, variant: str | None, release: Release | None) -> LiveRequestError:
    where = f"the {variant} release {release.label}" if release else "the default policy (no release configured)"
    return LiveRequestError(f"{where} could not answer — {exc}", variant, release, exc)


def stream_live(services: "Services", question: str, actor: Actor, filters: dict | None = None, *,
                guardrail_every_s: float = GUARDRAIL_EVERY_S, routed: Routed | None = None,
                ) -> Iterator[Retrieved | str | Answer]:
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


# no candidate; paused (its share is 0); waiting for the minimum of requests in the window; over a
# threshold (trips at the next check); armed (within the thresholds).
GuardrailState = Literal["no candidate", "paused", "waiting", "over", "armed"]


@dataclass(frozen=True)
class GuardrailStatus:
    """What the guardrail sees now: a state and the figures it is decided on (the console and the
    CLI word them)."""
    state: GuardrailState
    guardrails: Guardrails
    figures: dict[str, WindowStats]  # variant -> its figures over the window
    requests: int = 0  # the candidate's, over the window
    error_rate: float | None = None  # the candidate's; None without requests
    p95_ms: float | None = None


def guardrail_status(services: "Services") -> GuardrailStatus:
    """What the guardrail sees now (no throttle, nothing changes): state, thresholds and the
    candidate's figures over the window."""
    st = services.releases.state()
    g = st.guardrails
    if st.candidate is None:
        return GuardrailStatus("no candidate", g, {})
    figures = variant_stats(services.db, g.window_minutes, since=st.started_at)
    cand = figures.get("candidate", WindowStats())
    n = cand.requests
    error_rate = cand.errors / n if n else None
    state: GuardrailState
    if st.share == 0:
        state = "paused"
    elif n < g.min_requests:
        state = "waiting"
    elif (error_rate or 0) > g.max_error_rate or cand.p95_ms > g.max_p95_ms:
        state = "over"
    else:
        state = "armed"
    return GuardrailStatus(state, g, figures, n, error_rate, cand.p95_ms if n else None)
