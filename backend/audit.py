"""Audit trail: every state-changing service call records who did what, to what, and how it ended."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import audit_log, utcnow


class AuditLog:
    def __init__(self, engine: Engine):
        self._engine = engine

    def record(self, actor: str, action: str, target: str = "", result: str = "ok", **detail: Any) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(ts=utcnow(), actor=actor, action=action, target=target, detail=detail, result=result)
            )

    @contextmanager
    def action(self, actor: str, action: str, target: str = "", **detail: Any) -> Iterator[dict]:
        """Record the action with result ok, or error plus the error text when the block raises.
        The block may add detail through the yielded dict."""
        extra: dict = {}
        try:
            yield extra
        except Exception as exc:
            self.record(actor, action, target, result="error", error=str(exc), **detail, **extra)
            raise
        self.record(actor, action, target, **detail, **extra)

    def recent(self, limit: int = 100, action: str | None = None) -> list[dict]:
        q = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if action:
            q = q.where(audit_log.c.action == action)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
