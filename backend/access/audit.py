"""Audit trail: every state-changing service call records who did what, to what, and how it ended."""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.access.actor import Actor
from backend.access.permissions import Action, PermissionDenied
from backend.access.permissions import require as require_role
from backend.db import audit_log, utcnow
from backend.exports import csv_text
from backend.text import control_chars

MAX_DETAIL_CHARS = 1_000  # one text value inside a record's detail JSON


@dataclass(frozen=True)
class AuditRecord:
    """One audit record as stored; `detail` is the free-form JSON the recording call added."""
    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    detail: dict
    result: str
    actor_kind: str
    actor_role: str


def _escaped(text: str) -> str:
    """Control characters and lone surrogates written out as '\\u0000': PostgreSQL stores neither
    (NUL, no UTF-8 for a surrogate), and the record of a refused value must still be written."""
    if not control_chars(text):
        return text
    return "".join(f"\\u{ord(c):04x}" if control_chars(c) else c for c in text)


def _recordable(value: Any) -> Any:
    """The detail as the audit can always store it, on SQLite and PostgreSQL alike. The audit
    records what was refused, so here (and only here: services refuse such input, never strip
    it) odd text is escaped, long text truncated with its length noted, and inf / NaN (which
    PostgreSQL's JSON refuses) written as text."""
    if isinstance(value, str):
        text = _escaped(value)
        return text if len(text) <= MAX_DETAIL_CHARS else f"{text[:MAX_DETAIL_CHARS]}... ({len(value):,} characters)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_recordable(str(k)): _recordable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recordable(v) for v in value]
    return value


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit viewer; empty ones match everything."""

    who: str = ""
    action: str = ""  # prefix: "index." matches every index action
    target: str = ""  # substring
    since: datetime | None = None
    until: datetime | None = None
    result: str = ""
    limit: int = 500


class AuditLog:
    def __init__(self, engine: Engine):
        self._engine = engine

    def record(self, actor: Actor, action: str, target: str = "", result: str = "ok", **detail: Any) -> None:
        """Never fails on the values it records: a refused name, reason or comment (NUL, a lone
        surrogate, 10,000 characters) is what the record is about (see `_recordable`)."""
        if not isinstance(actor, Actor):  # every record names a real actor, never a bare string
            raise TypeError(f"audit records need an Actor, got {type(actor).__name__}")
        with self._engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(ts=utcnow(), actor=_escaped(actor.id)[:200], actor_kind=actor.kind,
                                          actor_role=actor.role.name, action=action, target=_escaped(str(target))[:500],
                                          detail=_recordable(detail), result=result)
            )

    def require(self, actor: Actor, need: Action, action: str, target: str = "", **detail: Any) -> None:
        """`require(actor, need)` that records a refusal as 'denied' under `action`: for calls that
        check the role before they start (jobs, reads, item edits) rather than inside `action`."""
        try:
            require_role(actor, need)
        except PermissionDenied as exc:
            self.record(actor, action, target, result="denied", error=str(exc), **detail)
            raise

    @contextmanager
    def action(self, actor: Actor, action: str, target: str = "", *, need: Action | None = None,
               **detail: Any) -> Iterator[dict]:
        """Record the action with result ok, or error plus the error text when the block raises.
        With `need`, the actor's role is checked first and a refusal is recorded as 'denied'.
        The block may add detail through the yielded dict."""
        extra: dict = {}
        if need is not None:
            self.require(actor, need, action, target, **detail)
        try:
            yield extra
        except Exception as exc:
            self.record(actor, action, target, result="error", error=str(exc), **detail, **extra)
            raise
        self.record(actor, action, target, **detail, **extra)

    def recent(self, limit: int = 100, action: str | None = None) -> list[AuditRecord]:
        """Newest records, for the backend's own checks and tests; people read through `search`."""
        q = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if action:
            q = q.where(audit_log.c.action == action)
        with self._engine.connect() as conn:
            return [AuditRecord(**r._mapping) for r in conn.execute(q)]

    def search(self, actor: Actor, f: AuditQuery = AuditQuery()) -> list[AuditRecord]:
        """The audit viewer: newest first, filtered by who, what, when, target and result."""
        self.require(actor, Action.read_audit, "audit.search")
        c = audit_log.c
        q = sa.select(audit_log).order_by(c.id.desc()).limit(max(1, min(f.limit, 10_000)))
        if f.who:
            q = q.where(c.actor == f.who)
        if f.action:
            q = q.where(c.action.startswith(f.action, autoescape=True))
        if f.target:
            q = q.where(c.target.contains(f.target, autoescape=True))
        if f.result:
            q = q.where(c.result == f.result)
        if f.since:
            q = q.where(c.ts >= f.since)
        if f.until:
            q = q.where(c.ts < f.until)
        with self._engine.connect() as conn:
            return [AuditRecord(**r._mapping) for r in conn.execute(q)]

    def actions(self) -> list[str]:
        """Every action name recorded so far (the viewer's filter choices)."""
        with self._engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(audit_log.c.action).distinct()))


def audit_csv(rows: list[AuditRecord]) -> str:
    """CSV of audit rows (formula-like cells quoted with ', see backend.exports)."""
    cols = ["ts", "actor", "actor_kind", "actor_role", "action", "target", "result", "detail"]
    return csv_text(cols, ([getattr(r, k) for k in cols] for r in rows))
