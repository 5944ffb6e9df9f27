"""Releases: a policy version bound to an index version, and the live configuration — the
current release plus optionally a candidate with a traffic share, sticky per user.

Promote and rollback are one action each, recorded with who and why; when the index version
changes, the alias is swapped through the index admin (one atomic Qdrant call, alias history).
Guardrails send traffic back to the current release when the candidate's error rate or p95
latency crosses its threshold."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from backend.access import Action, Actor, require, system_actor
from backend.access.audit import AuditLog
from backend.db import metadata, utcnow
from backend.engine.policy import Policy, PolicyStore, policy_label
from backend.engine.vectorstore import VectorStore
from backend.errors import InputError, NotFoundError
from backend.text import check_text, column_length

log = logging.getLogger(__name__)

TS = sa.DateTime(timezone=True)
Variant = Literal["current", "candidate"]
VOTES = ("a", "b", "tie", "both_bad")

releases = sa.Table(
    "releases", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("policy_name", sa.String(200), nullable=False),
    sa.Column("policy_version", sa.Integer, nullable=True),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)
release_state = sa.Table(
    "release_state", metadata,
    sa.Column("id", sa.String(50), primary_key=True),  # one row per live configuration ("live")
    sa.Column("current_id", sa.Integer, nullable=True),
    sa.Column("candidate_id", sa.Integer, nullable=True),
    sa.Column("share", sa.Float, nullable=False, server_default="0"),
    sa.Column("experiment_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("guardrails", sa.JSON, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)
release_events = sa.Table(
    "release_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", TS, nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("from_id", sa.Integer, nullable=True),
    sa.Column("to_id", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", sa.JSON, nullable=False),
)
pairwise_votes = sa.Table(
    "pairwise_votes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", TS, nullable=False, index=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("policy_a", sa.String(200), nullable=False),
    sa.Column("policy_b", sa.String(200), nullable=False),
    sa.Column("request_a", sa.String(64), nullable=False),
    sa.Column("request_b", sa.String(64), nullable=False),
    sa.Column("shown_first", sa.String(1), nullable=False),  # which answer was shown on the left
    sa.Column("blind", sa.Boolean, nullable=False),
    sa.Column("vote", sa.String(10), nullable=False),
)

LIVE = "live"
GUARDRAIL = system_actor("guardrail")  # who trips a release back to the current one
ROUTE_STALE_S = 300.0  # while the database is unreachable, routing keeps a configuration this old
ROUTE_TTL_S = 1.0  # how stale a process's view of the live configuration may be for routing
# Events that make a release current (a rollback pops one); the index admin's promote / rollback
# move the current release to the new index version and are recorded as index_promote / index_rollback.
CURRENT_MOVES = ("set_current", "promote", "index_promote", "index_rollback")
# Notes and reasons are Text columns: this is a sane size for one (a reason, not a document);
# newlines and tabs are kept, other control characters refused (PostgreSQL stores no NUL).
MAX_REASON_CHARS = 4_000


def check_reason(reason: object, field: str = "the reason") -> str:
    """A release note or a reason for a live change, refused (never stripped) before any write."""
    return check_text(reason, field, max_chars=MAX_REASON_CHARS, multiline=True)


class Guardrails(BaseModel):
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_p95_ms: float = Field(10_000, gt=0)
    window_minutes: int = Field(15, ge=1, le=24 * 60)
    min_requests: int = Field(20, ge=1)


@dataclass(frozen=True)
class Release:
    """One release: a policy version bound to an index version (a collection). Rows are never
    rewritten, so a release read once stays true."""
    id: int
    policy_name: str
    policy_version: int | None  # None: the built-in default policy
    collection: str
    note: str
    created_at: datetime
    created_by: str

    @property
    def policy(self) -> str:
        """The policy's label ('bm25 v2'), as the ledger and the pairwise votes name it."""
        return policy_label(self.policy_name, self.policy_version)

    @property
    def label(self) -> str:
        """How people name a release: '#3 bm25 v2 @ rag_chunks_v2'."""
        return f"#{self.id} {self.policy} @ {self.collection}"


@dataclass(frozen=True)
class ReleaseEvent:
    """One change of the live configuration, who made it and why."""
    id: int
    ts: datetime
    actor: str
    action: str  # set_current, set_candidate, set_share, clear_candidate, promote, rollback, guardrail_trip, index_*
    from_id: int | None
    to_id: int | None
    reason: str
    detail: dict[str, Any]  # the action's own values (share, experiment, figures of a trip): free-form JSON


@dataclass(frozen=True)
class Trip:
    """A guardrail trip during an experiment."""
    ts: datetime
    reason: str


@dataclass(frozen=True)
class Experiment:
    """One candidate experiment, replayed from the release events."""
    id: str
    current_id: int
    candidate_id: int
    share: float | None  # the latest share set while it ran
    started_at: datetime
    started_by: str
    ended_at: datetime | None = None  # None while running
    outcome: str = "running"  # running, promoted, rolled back, cleared, replaced by a new candidate
    trips: tuple[Trip, ...] = ()


@dataclass(frozen=True)
class FieldDiff:
    """One field of two policy versions (values as the policies hold them)."""
    field: str
    a: Any
    b: Any
    changed: bool


@dataclass(frozen=True)
class WindowStats:
    """One variant's figures over the guardrail window: what a trip is decided on."""
    requests: int = 0
    errors: int = 0  # failed requests
    p95_ms: float = 0.0  # end-to-end latency of its chat requests


@dataclass
class LiveConfig:
    current: Release | None
    candidate: Release | None
    share: float
    experiment_id: str
    guardrails: Guardrails
    started_at: datetime | None = None  # when the running experiment (the candidate) was set


def policy_diff(a: Policy, b: Policy) -> list[FieldDiff]:
    """Every field of two policy versions in declaration order: field, A, B and whether it changed."""
    da, db_ = a.model_dump(), b.model_dump()
    return [FieldDiff(k, da[k], db_[k], da[k] != db_[k]) for k in da]


def bucket(user: str, experiment_id: str) -> float:
    """A stable number in [0, 1) for the user within this experiment: sticky and deterministic."""
    digest = hashlib.sha256(f"{experiment_id}:{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# Reads the candidate's and the current release's numbers over a window (minutes) from the ledger:
# variant -> its WindowStats.
VariantStats = Callable[[int], dict[str, WindowStats]]


class ReleaseManager:
    def __init__(self, db: Engine, audit: AuditLog, policies: PolicyStore, store: VectorStore, alias: str,
                 promote_index: Callable[..., Any] | None = None, alerts: Any = None):
        """`promote_index(actor, collection, alias=..., reason=...)` swaps the alias with history
        (the index admin's promote); without it the store's atomic swap is used directly.
        `alerts` (an AlertService) gets a critical alert when a guardrail trips; the alert resolves
        when someone changes the live configuration."""
        self._db, self._audit, self._policies, self._store, self.alias = db, audit, policies, store, alias
        self._promote_index = promote_index
        self._alerts = alerts
        self._check_lock = threading.Lock()
        self._last_check = float("-inf")
        # Routing reads the live configuration on every request: kept for ROUTE_TTL_S per process
        # (dropped at once on this process's own changes; other processes follow within the TTL).
        self._route_lock = threading.Lock()
        self._route: tuple[float, LiveConfig, dict[tuple[str, int | None], Policy], str | None] | None = None
        self._route_generation = 0

    # --- releases ---------------------------------------------------------------------------------
    def create(self, actor: Actor, policy_name: str, policy_version: int | None = None, index: str | None = None,
               note: str = "") -> Release:
        check_text(policy_name, "the policy name", max_chars=column_length(releases.c.policy_name))
        if index is not None:
            check_text(index, "the index", max_chars=column_length(releases.c.collection))
        policy = self._policies.get(policy_name, policy_version)  # raises NotFoundError for unknown ones
        collection = self._store.resolve(index or policy.index or self.alias)
        with self._audit.action(actor, "release.create", policy.label(), need=Action.experiment, collection=collection,
                                note=note) as extra:
            check_reason(note, "the release note")
            with self._db.begin() as conn:
                rid = conn.execute(releases.insert().values(
                    policy_name=policy.name, policy_version=policy.version, collection=collection, note=note,
                    created_at=utcnow(), created_by=actor.id)).inserted_primary_key[0]
            extra["release"] = rid
        return self.get(rid)

    def get(self, release_id: int) -> Release:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(releases).where(releases.c.id == release_id)).first()
        if row is None:
            raise NotFoundError(f"unknown release {release_id}")
        return Release(**row._mapping)

    def list(self) -> list[Release]:
        with self._db.connect() as conn:
            ids = [r.id for r in conn.execute(sa.select(releases.c.id).order_by(releases.c.id.desc()))]
        return [self.get(i) for i in ids]

    # --- live configuration -------------------------------------------------------------------------
    def state(self) -> LiveConfig:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(release_state).where(release_state.c.id == LIVE)).first()
            started = None
            if row is not None and row.candidate_id:
                started = conn.execute(sa.select(release_events.c.ts).where(release_events.c.action == "set_candidate")
                                       .order_by(release_events.c.id.desc()).limit(1)).scalar()
        if row is None:
            return LiveConfig(None, None, 0.0, "", Guardrails())
        return LiveConfig(self.get(row.current_id) if row.current_id else None,
                          self.get(row.candidate_id) if row.candidate_id else None,
                          row.share, row.experiment_id, Guardrails.model_validate(row.guardrails), started)

    @contextmanager
    def _changing(self) -> Iterator[sa.Connection]:
        """A transaction on the live configuration; routing forgets its copy once it has committed
        (forgetting before the commit let a concurrent request cache the old state again)."""
        try:
            with self._db.begin() as conn:
                yield conn
        finally:
            self.forget_routing()

    def _servable(self, release: Release) -> Release:
        """A release whose index version was deleted would fail every request it is sent."""
        if release.collection not in self._store.collections():
            raise NotFoundError(f"release {release.label} reads {release.collection}, which is no longer in the "
                                "vector store: create a release on an existing index version")
        return release

    def _save(self, conn: sa.Connection, actor: Actor, **values: Any) -> None:
        exists = conn.execute(sa.select(release_state.c.id).where(release_state.c.id == LIVE)).first()
        values.update(updated_at=utcnow(), updated_by=actor.id)
        if exists:
            conn.execute(release_state.update().where(release_state.c.id == LIVE).values(**values))
        else:
            values.setdefault("guardrails", Guardrails().model_dump())
            conn.execute(release_state.insert().values(id=LIVE, **values))

    def _event(self, conn: sa.Connection, actor: Actor, action: str, from_id: int | None, to_id: int | None,
               reason: str, **detail: Any) -> None:
        conn.execute(release_events.insert().values(ts=utcnow(), actor=actor.id, action=action, from_id=from_id,
                                                    to_id=to_id, reason=reason, detail=detail))

    def set_current(self, actor: Actor, release_id: int, reason: str = "") -> None:
        """Make a release current directly (first setup); swaps the alias if its index differs."""
        release = self._servable(self.get(release_id))
        with self._audit.action(actor, "release.set_current", str(release_id), need=Action.promote, reason=reason):
            check_reason(reason)
            before = self.state().current
            self._point_alias(actor, release, reason or f"release #{release_id} made current")
            with self._changing() as conn:
                self._save(conn, actor, current_id=release_id)
                self._event(conn, actor, "set_current", before.id if before else None, release_id, reason)

    def set_candidate(self, actor: Actor, release_id: int, share: float, reason: str = "") -> str:
        """Start an experiment: `share` of users (sticky) get the candidate. Returns the experiment id."""
        if not 0 < share <= 1:
            raise InputError("the candidate's traffic share must be in (0, 1]")
        state = self.state()
        if state.current is None:
            raise InputError("set a current release first")
        if state.current.id == release_id:
            raise InputError("the candidate must differ from the current release")
        self._servable(self.get(release_id))
        experiment = uuid.uuid4().hex[:12]
        with self._audit.action(actor, "release.set_candidate", str(release_id), need=Action.set_traffic_share, share=share,
                                reason=reason):
            check_reason(reason)
            with self._changing() as conn:
                self._save(conn, actor, candidate_id=release_id, share=share, experiment_id=experiment)
                self._event(conn, actor, "set_candidate", state.current.id, release_id, reason, share=share,
                            experiment=experiment)
        self._resolve_alerts()
        return experiment

    def set_share(self, actor: Actor, share: float, reason: str = "") -> None:
        if not 0 <= share <= 1:
            raise InputError("the traffic share must be in [0, 1]")
        state = self.state()
        if state.candidate is None:
            raise InputError("there is no candidate release")
        with self._audit.action(actor, "release.set_share", str(state.candidate.id), need=Action.set_traffic_share,
                                share=share, reason=reason):
            check_reason(reason)
            with self._changing() as conn:
                self._save(conn, actor, share=share)
                self._event(conn, actor, "set_share", None, state.candidate.id, reason, share=share, was=state.share)
        self._resolve_alerts()

    def clear_candidate(self, actor: Actor, reason: str = "") -> None:
        state = self.state()
        if state.candidate is None:
            raise InputError("there is no candidate release")
        with self._audit.action(actor, "release.clear_candidate", str(state.candidate.id), need=Action.set_traffic_share,
                                reason=reason):
            check_reason(reason)
            with self._changing() as conn:
                self._save(conn, actor, candidate_id=None, share=0.0)
                self._event(conn, actor, "clear_candidate", state.candidate.id, None, reason)
        self._resolve_alerts()

    def set_guardrails(self, actor: Actor, guardrails: Guardrails) -> None:
        with self._audit.action(actor, "release.guardrails", LIVE, need=Action.experiment, **guardrails.model_dump()):
            with self._changing() as conn:
                self._save(conn, actor, guardrails=guardrails.model_dump())

    def promote(self, actor: Actor, reason: str = "") -> Release:
        """The candidate becomes current (alias swapped in the same step when its index differs)."""
        state = self.state()
        if state.candidate is None:
            raise InputError("there is no candidate release to promote")
        cand = state.candidate
        with self._audit.action(actor, "release.promote", str(cand.id), need=Action.promote, reason=reason,
                                previous=state.current.id if state.current else None):
            check_reason(reason)
            self._point_alias(actor, cand, reason or f"release #{cand.id} promoted")
            with self._changing() as conn:
                self._save(conn, actor, current_id=cand.id, candidate_id=None, share=0.0)
                self._event(conn, actor, "promote", state.current.id if state.current else None, cand.id, reason)
        self._resolve_alerts()
        return cand

    def rollback(self, actor: Actor, reason: str = "") -> Release:
        """Back to the release that was current before this one (alias swapped back if needed)."""
        state = self.state()
        if state.current is None:
            raise InputError("there is no current release")
        previous = self._previous_current(state.current.id)
        if previous is None:
            raise InputError("there is no earlier release to roll back to")
        target = self.get(previous)
        with self._audit.action(actor, "release.rollback", str(previous), need=Action.rollback, reason=reason,
                                from_release=state.current.id):
            check_reason(reason)
            self._point_alias(actor, target, reason or f"rolled back to release #{previous}")
            with self._changing() as conn:
                self._save(conn, actor, current_id=previous, candidate_id=None, share=0.0)
                self._event(conn, actor, "rollback", state.current.id, previous, reason)
        self._resolve_alerts()
        return target

    def _previous_current(self, current_id: int) -> int | None:
        """Replay the current-release changes as a stack (a rollback pops), like the alias history."""
        stack: list[int] = []
        for e in reversed(self.events(10_000)):
            if e.action in CURRENT_MOVES and e.to_id is not None:
                stack.append(e.to_id)
            elif e.action == "rollback" and stack:
                stack.pop()
        while stack and stack[-1] == current_id:
            stack.pop()
        return stack[-1] if stack else None

    def rollback_target(self) -> Release | None:
        """The release a rollback would make current (None when there is none)."""
        state = self.state()
        previous = self._previous_current(state.current.id) if state.current else None
        return self.get(previous) if previous else None

    def _resolve_alerts(self) -> None:
        """Someone changed the live configuration: the guardrail alert of the old state is over."""
        if self._alerts is not None:
            try:
                self._alerts.resolve_prefix("guardrail:")
            except Exception:  # an alert is a notice; it never blocks a release action
                log.exception("resolving guardrail alerts failed")

    def _point_alias(self, actor: Actor, release: Release, reason: str) -> None:
        if self._store.aliases().get(self.alias) == release.collection:
            return
        if self._promote_index is not None:  # from_release: the index admin must not move the release again
            self._promote_index(actor, release.collection, alias=self.alias, reason=reason, from_release=True)
        else:
            self._store.point_alias(self.alias, release.collection)

    # --- one live configuration with the index admin ----------------------------------------------
    def uses(self, collection: str) -> list[str]:
        """How the live configuration uses `collection`: 'current release #3 bm25 v2', the candidate,
        and the release a rollback would return to (deleting that one would make the rollback fail)."""
        state = self.state()
        roles = [("current", state.current), ("candidate", state.candidate), ("rollback target", self.rollback_target())]
        return [f"{role} release {r.label}" for role, r in roles if r is not None and r.collection == collection]

    def serves(self, collection: str | None) -> bool:
        """Whether the current release serves `collection` (an alias's target): the index admin's
        promote and rollback of that alias then move the current release with it."""
        current = self.state().current
        return current is not None and collection is not None and current.collection == collection

    def check_index_change(self, serving: str | None, target: str) -> None:
        """Refuse an index admin promote / rollback away from the collection the releases serve while
        an experiment runs: the new version would become the baseline mid-experiment, and the
        candidate's comparison would mix two configurations."""
        state = self.state()
        if self.serves(serving) and state.candidate is not None:
            raise InputError(f"the releases serve {serving} and candidate release {state.candidate.label} is running "
                             f"at {state.share:.0%}: promote or clear the candidate on the A/B page before moving the "
                             f"index to {target}")

    def follow_index(self, actor: Actor, collection: str, action: Literal["promote", "rollback"],
                     reason: str) -> Release:
        """The index admin moved the alias the current release serves to `collection`: the current
        release's policy on that version becomes current (an existing identical release is reused),
        so the alias and the current release never disagree. Returns the new current release."""
        state = self.state()
        assert state.current is not None
        cur = state.current
        target = self._find(cur.policy_name, cur.policy_version, collection)
        with self._changing() as conn:
            if target is None:
                target = conn.execute(releases.insert().values(
                    policy_name=cur.policy_name, policy_version=cur.policy_version, collection=collection,
                    note=f"index {action} from the index admin", created_at=utcnow(),
                    created_by=actor.id)).inserted_primary_key[0]
            self._save(conn, actor, current_id=target)
            self._event(conn, actor, f"index_{action}", cur.id, target, reason, collection=collection)
        self._resolve_alerts()
        return self.get(target)

    def _find(self, policy_name: str, policy_version: int | None, collection: str) -> int | None:
        r = releases.c
        version = r.policy_version.is_(None) if policy_version is None else r.policy_version == policy_version
        with self._db.connect() as conn:
            return conn.execute(sa.select(r.id).where(r.policy_name == policy_name, version, r.collection == collection)
                                .order_by(r.id.desc()).limit(1)).scalar()

    def events(self, limit: int = 200) -> list[ReleaseEvent]:
        """The latest changes of the live configuration, newest first."""
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(release_events).order_by(release_events.c.id.desc()).limit(limit))
            return [ReleaseEvent(**{**r._mapping, "detail": dict(r.detail or {})}) for r in rows]

    # --- traffic ------------------------------------------------------------------------------------
    def _routing(self) -> tuple[LiveConfig, dict[tuple[str, int | None], Policy], str | None]:
        """The live configuration, its policies and the alias's collection, at most ROUTE_TTL_S old."""
        with self._route_lock:
            cached, generation = self._route, self._route_generation
        if cached is not None and time.monotonic() - cached[0] < ROUTE_TTL_S:
            return cached[1], cached[2], cached[3]
        try:
            state = self.state()
        except sa.exc.OperationalError:
            if cached is None or time.monotonic() - cached[0] > ROUTE_STALE_S:
                raise
            log.warning("database unreachable: routing on the live configuration read %.0f s ago",
                        time.monotonic() - cached[0])
            return cached[1], cached[2], cached[3]  # the database is down: nobody can change it meanwhile
        policies: dict[tuple[str, int | None], Policy] = {("default", None): self._policies.get("default")}
        for r in (state.current, state.candidate):
            if r is not None:
                policies[(r.policy_name, r.policy_version)] = self._policies.get(r.policy_name, r.policy_version)
        live = self._store.aliases().get(self.alias) if (state.current or state.candidate) else None
        with self._route_lock:
            if generation == self._route_generation:  # not forgotten while we read: safe to keep
                self._route = (time.monotonic(), state, policies, live)
        return state, policies, live

    def forget_routing(self) -> None:
        with self._route_lock:
            self._route = None
            self._route_generation += 1

    def assign(self, user: str) -> tuple[Variant, Release | None]:
        state = self._routing()[0]
        if state.candidate is not None and state.share > 0 and bucket(user, state.experiment_id) < state.share:
            return "candidate", state.candidate
        return "current", state.current

    def policy_for(self, user: str) -> tuple[Policy, Variant | None, Release | None]:
        """The policy a live request of `user` runs with, and its variant; the built-in default
        policy on the alias when no release is configured."""
        variant, release = self.assign(user)
        _, policies, live = self._routing()
        if release is None:
            return policies[("default", None)], None, None
        policy = policies[(release.policy_name, release.policy_version)]
        index = self.alias if release.collection == live else release.collection
        return policy.model_copy(update={"index": index}), variant, release

    def check_guardrails(self, stats: VariantStats, actor: Actor = GUARDRAIL) -> str | None:
        """Trip the candidate back to 0% when its error rate or p95 crosses a threshold over the
        window; returns the reason when tripped. Cheap enough to call on every request batch."""
        state = self.state()
        if state.candidate is None or state.share == 0:
            return None
        g = state.guardrails
        cand = stats(g.window_minutes).get("candidate", WindowStats())
        n = cand.requests
        if n < g.min_requests:
            return None
        error_rate = cand.errors / n
        reasons = []
        if error_rate > g.max_error_rate:
            reasons.append(f"error rate {error_rate:.1%} > {g.max_error_rate:.1%}")
        if cand.p95_ms > g.max_p95_ms:
            reasons.append(f"p95 {cand.p95_ms:.0f} ms > {g.max_p95_ms:.0f} ms")
        if not reasons:
            return None
        reason = f"guardrail: candidate {', '.join(reasons)} over {n} requests in {g.window_minutes} min"
        with self._changing() as conn:
            self._save(conn, actor, share=0.0)
            self._event(conn, actor, "guardrail_trip", state.candidate.id, state.current.id if state.current else None,
                        reason, share_was=state.share, requests=n, error_rate=error_rate, p95_ms=cand.p95_ms,
                        experiment=state.experiment_id)
        self._audit.record(actor, "release.guardrail_trip", str(state.candidate.id), result="tripped", reason=reason)
        log.warning("release #%s: %s; traffic back to the current release", state.candidate.id, reason)
        if self._alerts is not None:
            try:
                self._alerts.fire(key=f"guardrail:{state.experiment_id}", source="guardrail", severity="critical",
                                  title=f"Guardrail tripped: candidate release #{state.candidate.id} "
                                        f"({state.candidate.policy}) sent back to 0%",
                                  detail=reason, value=error_rate, threshold=g.max_error_rate, actor=actor)
            except Exception:
                log.exception("the guardrail alert could not be stored")
        return reason

    def maybe_check_guardrails(self, stats: VariantStats, every_s: float = 5.0, actor: Actor = GUARDRAIL) -> str | None:
        """`check_guardrails` at most once every `every_s` seconds in this process (the live path
        calls it after each request); one check at a time, so a trip is recorded once."""
        now = time.monotonic()
        if now - self._last_check < every_s or not self._check_lock.acquire(blocking=False):
            return None
        try:
            if time.monotonic() - self._last_check < every_s:
                return None
            self._last_check = time.monotonic()
            return self.check_guardrails(stats, actor)
        finally:
            self._check_lock.release()

    def experiments(self, limit: int = 50) -> list[Experiment]:
        """Each candidate experiment, newest first: id, current and candidate release ids, share,
        started / ended (None while running), how it ended, and its guardrail trips."""
        out: list[Experiment] = []
        running: int | None = None  # where the experiment still running is in `out`
        endings = {"promote": "promoted", "rollback": "rolled back", "clear_candidate": "cleared"}
        for e in reversed(self.events(10_000)):
            if e.action == "set_candidate":
                if running is not None:
                    out[running] = replace(out[running], ended_at=e.ts, outcome="replaced by a new candidate")
                out.append(Experiment(e.detail.get("experiment", ""), e.from_id, e.to_id, e.detail.get("share"), e.ts,
                                      e.actor))
                running = len(out) - 1
            elif running is None:
                continue
            elif e.action in endings:
                out[running] = replace(out[running], ended_at=e.ts, outcome=endings[e.action])
                running = None
            elif e.action == "guardrail_trip":
                out[running] = replace(out[running], trips=(*out[running].trips, Trip(e.ts, e.reason)))
            elif e.action == "set_share":
                out[running] = replace(out[running], share=e.detail.get("share"))
        return list(reversed(out))[:limit]

    # --- pairwise votes -----------------------------------------------------------------------------
    def vote(self, actor: Actor, question: str, policy_a: str, policy_b: str, request_a: str, request_b: str,
             shown_first: Literal["a", "b"], blind: bool, vote: str) -> None:
        require(actor, Action.ask)
        if vote not in VOTES:
            raise InputError(f"a vote is one of {VOTES}")
        if shown_first not in ("a", "b"):
            raise InputError("the answer shown first is 'a' or 'b'")
        v = pairwise_votes.c
        check_text(question, "the question", multiline=True)
        for value, field, column in ((policy_a, "policy A", v.policy_a), (policy_b, "policy B", v.policy_b),
                                     (request_a, "request A", v.request_a), (request_b, "request B", v.request_b)):
            check_text(value, field, max_chars=column_length(column))
        with self._db.begin() as conn:
            conn.execute(pairwise_votes.insert().values(
                ts=utcnow(), user=actor.id, question=question, policy_a=policy_a, policy_b=policy_b, request_a=request_a,
                request_b=request_b, shown_first=shown_first, blind=blind, vote=vote))
        self._audit.record(actor, "ab.vote", f"{policy_a} vs {policy_b}", vote=vote, blind=blind)

    def pair_votes(self, policy_x: str, policy_y: str, since: datetime | None = None,
                   until: datetime | None = None) -> dict[str, int]:
        """Votes between two policy labels in either orientation, seen from x and y: {"x": x won,
        "y": y won, "tie", "both_bad"}."""
        v = pairwise_votes.c
        q = sa.select(v.policy_a, v.vote, sa.func.count().label("n")).where(
            sa.or_(sa.and_(v.policy_a == policy_x, v.policy_b == policy_y),
                   sa.and_(v.policy_a == policy_y, v.policy_b == policy_x))).group_by(v.policy_a, v.vote)
        if since is not None:
            q = q.where(v.ts >= since)
        if until is not None:
            q = q.where(v.ts < until)
        out = {"x": 0, "y": 0, "tie": 0, "both_bad": 0}
        with self._db.connect() as conn:
            for a, vote, n in conn.execute(q):
                if vote in ("a", "b"):
                    x_is_a = a == policy_x
                    out["x" if (vote == "a") == x_is_a else "y"] += n
                else:
                    out[vote] += n
        return out

    def vote_counts(self, policy_a: str | None = None, policy_b: str | None = None) -> dict[str, int]:
        q = sa.select(pairwise_votes.c.vote, sa.func.count().label("n")).group_by(pairwise_votes.c.vote)
        if policy_a and policy_b:
            q = q.where(pairwise_votes.c.policy_a == policy_a, pairwise_votes.c.policy_b == policy_b)
        with self._db.connect() as conn:
            got = {r.vote: r.n for r in conn.execute(q)}
        return {v: got.get(v, 0) for v in VOTES}
