"""Rebuilds that cost what changed (issue 15): the per-chunk embedding cache on the real embedding
model, a real local Qdrant store, SQLite and PostgreSQL, and the command line's JSON counts."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from actors import system_actor
from alembic import command
from alembic.config import Config
from index_support import TOPICS, cli, fresh_services, write_folder

from backend.db import aware, make_engine, migrate, utcnow
from backend.engine.policy import Policy
from backend.ingestion.chunking import chunk_document
from backend.ingestion.embedding_cache import EmbeddingCache, embedding_cache, text_key
from backend.ingestion.sources import load_source

TESTER = system_actor("test")
CHANGED = ("# bread\n\nRye bread is leavened with a sour starter and baked in a heavy tin for a dense crumb.\n",
           "How is rye bread baked?")
ADDED = ("# tea\n\nGreen tea leaves are steamed or pan-fired right after picking to stop oxidation.\n",
         "Why are green tea leaves steamed after picking?")


def change_one_add_one(docs: Path) -> None:
    (docs / "bread.md").write_text(CHANGED[0], encoding="utf-8")
    (docs / "tea.md").write_text(ADDED[0], encoding="utf-8")


def test_a_rebuild_embeds_only_the_chunks_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = write_folder(tmp_path / "docs")
    svc = fresh_services(tmp_path / "data")
    try:
        real = svc.embedder.embed_passages
        seen: list[str] = []

        def counting(texts: list[str]) -> np.ndarray:
            seen.extend(texts)
            return real(texts)

        monkeypatch.setattr(svc.embedder, "embed_passages", counting)
        first = svc.ingestor.ingest(load_source(docs).documents, actor=TESTER, family="fam", source="t")
        assert (first.n_chunks, first.embedded, first.reused, len(seen)) == (10, 10, 0, 10)

        change_one_add_one(docs)
        seen.clear()
        documents = load_source(docs).documents
        second = svc.ingestor.ingest(documents, actor=TESTER, family="fam", source="t")
        assert not second.unchanged and second.collection != first.collection
        assert (second.n_chunks, second.embedded, second.reused, second.written) == (11, 2, 9, 11)
        new_texts = {c.match_text for d in documents if d.id in ("bread.md", "tea.md") for c in chunk_document(d)}
        assert sorted(seen) == sorted(new_texts)  # only the changed and the added document went through the model
        assert svc.store.count(second.collection) == 11 and svc.store.count(first.collection) == 10

        # A reused vector is the model's vector for that text, and both versions answer from their own corpus.
        [kept] = [c for d in documents if d.id == "qdrant.md" for c in chunk_document(d)]
        [point] = svc.store.client.retrieve(second.collection, ids=[kept.point_id], with_vectors=True)
        assert np.allclose(point.vector["dense"], real([kept.match_text])[0], atol=1e-5)
        for question, doc_id in ((CHANGED[1], "bread.md"), (ADDED[1], "tea.md"), (TOPICS["violin"][1], "violin.md")):
            assert svc.engine.retrieve(question, Policy(index="fam", top_k=3)).sources[0].doc_id == doc_id
        old = svc.engine.retrieve(CHANGED[1], Policy(index=first.collection, top_k=10))
        assert "tea.md" not in {s.doc_id for s in old.sources}  # the old version keeps its own corpus
        assert svc.ingestor.vectors.count(svc.embedder.cache_key) == 12  # 10 first texts + 2 new ones
    finally:
        svc.close()


def test_command_line_rebuild_reports_embedded_and_reused_counts(tmp_path: Path) -> None:
    data, docs = tmp_path / "data", write_folder(tmp_path / "docs")
    first = cli(data, "index", "rebuild", str(docs), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    counts = json.loads(first.stdout.strip().splitlines()[-1])
    assert (counts["embedded"], counts["reused"], counts["unchanged"]) == (10, 0, False)

    change_one_add_one(docs)
    second = cli(data, "index", "rebuild", str(docs), "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "(2 embedded, 9 reused)" in second.stdout
    counts = json.loads(second.stdout.strip().splitlines()[-1])
    assert type(counts["embedded"]) is int and type(counts["reused"]) is int
    assert (counts["embedded"], counts["reused"], counts["n_chunks"], counts["unchanged"]) == (2, 9, 11, False)

    shown = cli(data, "index", "cache", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    (row,) = json.loads(shown.stdout.strip().splitlines()[-1])
    assert (row["vectors"], row["bytes"], row["unused"]) == (12, 12 * 384 * 4, 0)  # e5-small: 384 float32
    assert "12 vectors" in shown.stdout and "0 unused for 90 days" in shown.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cache_rows_on_each_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate(engine)
    cache = EmbeddingCache(engine)
    model = f"test-model-{tmp_path.name}"  # the PostgreSQL database is shared by the session
    a, b = text_key("alpha"), text_key("beta")
    va, vb = np.array([0.6, 0.8, 0.0], dtype=np.float32), np.array([0.0, 0.6, 0.8], dtype=np.float32)
    cache.store(model, {a: va, b: vb})
    cache.store(model, {a: vb})  # a key stored twice keeps its first vector (two concurrent builds)
    found = cache.lookup(model, 3, [a, b, text_key("gamma")])
    assert set(found) == {a, b} and np.array_equal(found[a], va) and np.array_equal(found[b], vb)
    assert cache.lookup(model, 4, [a]) == {}  # another dimension is another model
    assert cache.lookup("other-model", 3, [a]) == {}
    many = {text_key(str(i)): np.full(3, i, dtype=np.float32) for i in range(1200)}  # more than one IN batch
    cache.store(model, many)
    assert len(cache.lookup(model, 3, many)) == 1200 and cache.count(model) == 1202
    assert cache.clear(model) == 1202 and cache.count(model) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM embedding_cache WHERE model = :m"), {"m": model}).scalar() == 0
    engine.dispose()


def _used_at(engine, model: str) -> dict[str, datetime]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(embedding_cache.c.text_sha256, embedding_cache.c.used_at)
                            .where(embedding_cache.c.model == model))
        return {k: aware(v) for k, v in rows}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_housekeeping_forgets_vectors_no_build_used(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    """A hit marks its row used (at most once a day); prune forgets rows unused for keep_days."""
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate(engine)
    model = f"prune-model-{tmp_path.name}"
    old, reused, recent = text_key("old"), text_key("reused"), text_key("recent")
    cache = EmbeddingCache(engine, keep_days=90)
    cache.store(model, {k: np.ones(3, dtype=np.float32) for k in (old, reused, recent)})
    now = utcnow()
    ages = {old: timedelta(days=100), reused: timedelta(days=100), recent: timedelta(hours=2)}
    with engine.begin() as conn:
        for key, age in ages.items():
            conn.execute(sa.update(embedding_cache).where(embedding_cache.c.model == model,
                                                          embedding_cache.c.text_sha256 == key)
                         .values(used_at=now - age))
    assert set(cache.lookup(model, 3, [reused, recent])) == {reused, recent}
    used = _used_at(engine, model)
    assert abs((used[reused] - now).total_seconds()) < 60  # a hit on an old row marks it used
    assert abs((used[recent] - (now - timedelta(hours=2))).total_seconds()) < 1  # used today: not rewritten
    (mine,) = [m for m in cache.stats() if m.model == model]
    assert (mine.vectors, mine.bytes, mine.unused) == (3, 3 * 3 * 4, 1)
    assert mine.last_used is not None and abs((mine.last_used - now).total_seconds()) < 60
    assert EmbeddingCache(engine, keep_days=0).prune() == 0  # 0 keeps everything
    assert cache.prune() == 1 and set(_used_at(engine, model)) == {reused, recent}
    assert cache.prune() == 0
    cache.clear(model)
    engine.dispose()


def test_migration_counts_existing_vectors_used_when_stored(tmp_path: Path) -> None:
    import backend.db

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(backend.db.__file__).parent / "migrations"))
    stored = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
    with engine.begin() as conn:  # the schema before 0017_embedding_cache_used_at, with a row
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012_embedding_cache")
        conn.execute(sa.text("INSERT INTO embedding_cache (model, text_sha256, dim, vector, created_at) "
                             "VALUES ('m', 'k', 3, :v, :t)"), {"v": np.ones(3, dtype="<f4").tobytes(), "t": stored})
    migrate(engine)
    assert _used_at(engine, "m") == {"k": stored}
    assert EmbeddingCache(engine, keep_days=90).prune() == 1  # stored long ago, never used since
    engine.dispose()
