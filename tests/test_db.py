"""The SQL layer with its migrations on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from actors import Role, user

from backend.access.audit import AuditLog
from backend.db import make_engine, migrate
from backend.engine.policy import Policy, PolicyStore
from backend.errors import InputError, NotFoundError
from backend.ingestion.versions import IndexRegistry

ANN, BOB = user("ann", Role.operator), user("bob", Role.operator)  # policy authors


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> sa.engine.Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'console.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"t_{abs(hash(request.node.name)) % 10**8}")
    engine = make_engine(url)
    migrate(engine)
    migrate(engine)  # idempotent: a second start changes nothing
    yield engine
    engine.dispose()


def test_migrations_create_every_table(db: sa.engine.Engine) -> None:
    names = set(sa.inspect(db).get_table_names())
    assert {"audit_log", "policies", "index_versions", "traces", "alembic_version"} <= names


def test_policy_versions_never_rewrite_and_are_audited(db: sa.engine.Engine) -> None:
    audit = AuditLog(db)
    store = PolicyStore(db, audit)
    v1 = store.save(Policy(name="fast", top_k=3), actor=ANN)
    v2 = store.save(Policy(name="fast", top_k=5, retrieval_mode="sparse"), actor=BOB, note="sparse only")
    assert (v1.version, v2.version) == (1, 2)
    assert store.get("fast").top_k == 5 and store.get("fast", 1).top_k == 3
    assert [p.top_k for p in store.versions("fast")] == [3, 5]
    assert store.list()[0].versions == 2
    assert store.get("default") == Policy()  # built-in default without a saved row
    with pytest.raises(NotFoundError):
        store.get("fast", 7)
    with pytest.raises(InputError):
        store.save(Policy(name=" "), actor=ANN)
    log = audit.recent(action="policy.save")
    assert [(r.actor, r.detail["version"]) for r in log] == [("bob", 2), ("ann", 1)]


def test_audit_records_failures_too(db: sa.engine.Engine) -> None:
    audit = AuditLog(db)
    with pytest.raises(RuntimeError):
        with audit.action(ANN, "index.delete", "rag_chunks_v1"):
            raise RuntimeError("boom")
    row = audit.recent(1)[0]
    assert (row.actor, row.action, row.result, row.detail["error"]) == ("ann", "index.delete", "error", "boom")


def test_index_registry_round_trip(db: sa.engine.Engine) -> None:
    reg = IndexRegistry(db)
    reg.add(collection="f_v1", family="f", version=1, status="building", fingerprint="abc", embedding_model="m",
            dim=384, params={"avgdl": 12.5}, source="s", created_by="ann")
    assert reg.find_ready("f", "abc") is None
    reg.update("f_v1", status="ready", n_chunks=10)
    row = reg.find_ready("f", "abc")
    assert row.collection == "f_v1" and row.params["avgdl"] == 12.5 and row.n_chunks == 10
    assert [r.collection for r in reg.list("f")] == ["f_v1"]
