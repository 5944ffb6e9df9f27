"""Index version registry: what each collection of an index family holds and how it was
built, kept in the console database so it survives restarts (Qdrant stores only points)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import index_versions, utcnow

BUILDING, READY, FAILED, CANCELLED = "building", "ready", "failed", "cancelled"


class IndexRegistry:
    def __init__(self, engine: Engine):
        self._engine = engine

    def add(self, **row: Any) -> None:
        row.setdefault("created_at", utcnow())
        with self._engine.begin() as conn:
            conn.execute(index_versions.insert().values(**row))

    def update(self, collection: str, **values: Any) -> None:
        with self._engine.begin() as conn:
            conn.execute(index_versions.update().where(index_versions.c.collection == collection).values(**values))

    def get(self, collection: str) -> dict | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(index_versions).where(index_versions.c.collection == collection)).first()
        return dict(row._mapping) if row else None

    def list(self, family: str | None = None) -> list[dict]:
        q = sa.select(index_versions).order_by(index_versions.c.family, index_versions.c.version)
        if family:
            q = q.where(index_versions.c.family == family)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def max_version(self, family: str) -> int:
        """Highest version number ever registered for the family (deleted ones included), so a
        version name is never reused."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(index_versions.c.version))
                                    .where(index_versions.c.family == family)).scalar() or 0)

    def find_ready(self, family: str, fingerprint: str) -> dict | None:
        q = (
            sa.select(index_versions)
            .where(index_versions.c.family == family, index_versions.c.fingerprint == fingerprint, index_versions.c.status == READY)
            .order_by(index_versions.c.version.desc())
        )
        with self._engine.connect() as conn:
            row = conn.execute(q).first()
        return dict(row._mapping) if row else None

    def delete(self, collection: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(index_versions.delete().where(index_versions.c.collection == collection))
