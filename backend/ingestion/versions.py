"""Index version registry: what each collection of an index family holds and how it was
built, kept in the console database so it survives restarts (Qdrant stores only points)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import index_versions, utcnow

BUILDING, READY, FAILED, CANCELLED = "building", "ready", "failed", "cancelled"


@dataclass(frozen=True)
class IndexVersion:
    """One registered collection of an index family: how it was built and where it stands."""
    collection: str
    family: str
    version: int
    status: str
    fingerprint: str
    embedding_model: str
    dim: int
    params: dict
    source: str
    n_docs: int
    n_chunks: int
    error: str
    created_at: datetime
    created_by: str
    owner: str  # host:pid building it while 'building' (backend.background.jobs fails dead owners' rows)
    heartbeat_at: datetime | None
    format: str  # payload format of its points: native | llamaindex


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

    def get(self, collection: str) -> IndexVersion | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(index_versions).where(index_versions.c.collection == collection)).first()
        return IndexVersion(**row._mapping) if row else None

    def list(self, family: str | None = None) -> list[IndexVersion]:
        q = sa.select(index_versions).order_by(index_versions.c.family, index_versions.c.version)
        if family:
            q = q.where(index_versions.c.family == family)
        with self._engine.connect() as conn:
            return [IndexVersion(**r._mapping) for r in conn.execute(q)]

    def max_version(self, family: str) -> int:
        """Highest version number ever registered for the family (deleted ones included), so a
        version name is never reused."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(index_versions.c.version))
                                    .where(index_versions.c.family == family)).scalar() or 0)

    def find_ready(self, family: str, fingerprint: str) -> IndexVersion | None:
        q = (
            sa.select(index_versions)
            .where(index_versions.c.family == family, index_versions.c.fingerprint == fingerprint, index_versions.c.status == READY)
            .order_by(index_versions.c.version.desc())
        )
        with self._engine.connect() as conn:
            row = conn.execute(q).first()
        return IndexVersion(**row._mapping) if row else None

    def delete(self, collection: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(index_versions.delete().where(index_versions.c.collection == collection))
