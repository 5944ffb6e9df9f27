"""Chat traces: every answer the engine gives, with thumbs up/down and a comment attached
later, so a bad answer can be turned into a golden-set item with its full context."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.db import traces, utcnow
from backend.engine.query_engine import Answer
from backend.errors import NotFoundError
from backend.ledger.journal import WriteJournal
from backend.text import check_text, column_length

MAX_COMMENT_CHARS = 4_000  # a feedback comment is a remark on one answer, not a document


@dataclass(frozen=True)
class Trace:
    """An answer as recorded, with the feedback given on it. `trace`: the Answer as JSON, kept as
    stored (an old trace need not match today's Answer model)."""
    id: int
    request_id: str
    ts: datetime
    user: str
    question: str
    policy: str
    collection: str
    trace: dict
    feedback: int | None  # +1 thumbs up, -1 thumbs down, None: none given
    comment: str
    feedback_by: str | None
    feedback_at: datetime | None


class TraceRows:
    """The journal's sink for traces (they are written like ledger rows: never lost)."""

    def write_rows(self, conn: sa.Connection, rows: list[dict]) -> None:
        conn.execute(traces.insert(), rows)

    def exists(self, conn: sa.Connection, row: dict) -> bool:
        return conn.execute(sa.select(traces.c.id).where(traces.c.request_id == row["request_id"])).first() is not None


class TraceStore:
    def __init__(self, engine: Engine, audit: AuditLog, journal: WriteJournal):
        """`journal` must have a TraceRows sink under "trace"."""
        self._engine, self._audit, self._journal = engine, audit, journal

    def record(self, answer: Answer) -> None:
        self._journal.submit("trace", dict(
            request_id=answer.request_id, ts=utcnow(), user=answer.user, question=answer.question,
            policy=answer.policy, collection=answer.collection, trace=answer.model_dump(mode="json")))

    def feedback(self, request_id: str, score: int, actor: Actor, comment: str = "") -> None:
        """score +1 (thumbs up) or -1 (thumbs down). The comment keeps newlines and tabs; other
        control characters are refused (PostgreSQL stores no NUL), as is a comment over
        MAX_COMMENT_CHARS, before anything is written (the refusal is audited)."""
        if score not in (1, -1):
            raise ValueError("feedback score must be +1 or -1")
        with self._audit.action(actor, "trace.feedback", request_id, need=Action.ask, score=score, comment=comment):
            check_text(request_id, "the request id", max_chars=column_length(traces.c.request_id))
            check_text(comment, "the feedback comment", max_chars=MAX_COMMENT_CHARS, multiline=True)
            self._journal.flush()  # the answer's trace may still be on its way (LEDGER_FLUSH_MS > 0)
            with self._engine.begin() as conn:
                res = conn.execute(
                    traces.update().where(traces.c.request_id == request_id)
                    .values(feedback=score, comment=comment, feedback_by=actor.id, feedback_at=utcnow())
                )
            if res.rowcount == 0:
                raise NotFoundError(f"no answer with request id {request_id}")

    def get(self, request_id: str) -> Trace | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(traces).where(traces.c.request_id == request_id)).first()
        return Trace(**row._mapping) if row else None

    def recent(self, limit: int = 50, feedback: int | None = None) -> list[Trace]:
        q = sa.select(traces).order_by(traces.c.id.desc()).limit(limit)
        if feedback is not None:
            q = q.where(traces.c.feedback == feedback)
        with self._engine.connect() as conn:
            return [Trace(**r._mapping) for r in conn.execute(q)]
