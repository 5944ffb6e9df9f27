"""Index admin on a real local Qdrant store with the real embedding model (tiny corpus):
versions, shadow rebuilds from folders, corpus.jsonl and archives, cancel and failure
midway, a process killed midway, the gate, promote / rollback with history, and bad input."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from actors import Role, user
from index_support import TOPICS, ControlledEmbedder, fresh_services, write_dataset, write_folder

from backend.background.jobs import CANCELLED, DONE, FAILED, Job, jobs
from backend.db import make_engine
from backend.engine.policy import Policy
from backend.errors import InputError, NotFoundError
from backend.ingestion.chunking import ChunkingParams
from backend.services import Services
from backend.settings import PROJECT_ROOT

ALIAS = "rag_chunks"
ANN = user("ann", Role.admin)  # rebuilds, promotes, rolls back and deletes versions
CI = user("ci", Role.admin)  # gates and promotes
BOB = user("bob", Role.operator)  # may rebuild
MALLORY = user("mallory", Role.operator)  # may rebuild: her uploads are refused for what they hold


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    s = fresh_services(tmp_path_factory.mktemp("index-admin"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("docs") / "docs")


@pytest.fixture(scope="module")
def live(svc: Services, docs: Path) -> str:
    """The first version, built by a rebuild job and promoted."""
    job = rebuild(svc, source=docs)
    svc.index_admin.promote(ANN, job.result["collection"], reason="first version")
    return job.result["collection"]


def rebuild(svc: Services, **kwargs) -> Job:  # noqa: ANN003
    return svc.jobs.wait(svc.index_admin.start_rebuild(ANN, **kwargs), timeout=120)


def ask(svc: Services, question: str = "Is a Qdrant alias swap atomic?") -> str:
    """A query through the alias; returns the collection that answered."""
    return svc.engine.query(question, Policy(), user("t"), retrieval_only=True).collection


def test_versions_list_every_collection_with_its_metadata(svc: Services, live: str, docs: Path) -> None:
    [v] = [v for v in svc.index_admin.versions() if v.collection == live]
    assert v.live and v.aliases == [ALIAS] and v.status == "ready" and v.points == len(TOPICS) == v.n_chunks
    assert v.vectors == "dense 384 Cosine + sparse (idf)" and v.dim == 384
    assert v.embedding_model == svc.embedder.name and v.source == str(docs) and v.created_by == "ann"
    assert v.chunking == "target 1000 / max 1500 / overlap 0.15" and v.created_at is not None
    assert svc.index_admin.history(ALIAS)[0].reason == "first version"


def test_shadow_rebuilds_from_jsonl_and_archives_leave_the_alias_alone(svc: Services, live: str, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "set", ids=["qdrant", "redis", "bm25"])
    job = rebuild(svc, source=data / "corpus.jsonl")
    assert job.status == DONE, job.error
    new = job.result["collection"]
    assert new != live and svc.index_admin.live() == live and ask(svc) == live
    assert job.progress["phase"] == "done" and job.progress["chunks_done"] == job.progress["chunks_total"] == 3

    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("docs/a/violin.md", "# violin\n\n" + TOPICS["violin"][0])
        zf.writestr("docs/saturn.txt", TOPICS["saturn"][0])
    job = rebuild(svc, upload=("docs.zip", zbuf.getvalue()))
    assert job.status == DONE and job.result["n_docs"] == 2, job.error
    assert svc.registry.get(job.result["collection"]).source.startswith("upload docs.zip (sha256 ")

    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        body = TOPICS["bread"][0].encode()
        info = tarfile.TarInfo("bread.md")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    job = rebuild(svc, upload=("bread.tar.gz", tbuf.getvalue()))
    assert job.status == DONE and job.result["n_docs"] == 1, job.error
    assert list((svc.settings.data_dir / "uploads").iterdir()) == []  # staging folders are removed

    again = rebuild(svc, source=data / "corpus.jsonl")  # same corpus, model and chunking: nothing is written
    assert again.result["unchanged"] and again.result["collection"] == new
    assert svc.index_admin.live() == live


def _zip(name: str, body: str = "text") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), body)
    return buf.getvalue()


def _tar_link() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("passwd.md")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return buf.getvalue()


def _tar_dotdot() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("../../escape.md")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    return buf.getvalue()


@pytest.mark.parametrize("name,data,message", [
    ("evil.zip", _zip("../../evil.md"), "points outside the archive folder"),
    ("abs.zip", _zip("/etc/cron.d/evil.md"), "points outside the archive folder"),
    ("escape.tar", _tar_dotdot(), "points outside the archive folder"),
    ("link.tar.gz", _tar_link(), "is a link"),
    ("fake.zip", b"this is not a zip", "not a readable .zip or .tar.gz archive"),
    ("tool.exe", b"MZ...", "unsupported upload"),
    ("empty.jsonl", b"", "is empty"),
])
def test_unsafe_or_bad_uploads_are_refused(svc: Services, live: str, name: str, data: bytes, message: str) -> None:
    before = len(svc.jobs.list(limit=1000))
    with pytest.raises(InputError, match=message):
        svc.index_admin.start_rebuild(MALLORY, upload=(name, data))
    assert len(svc.jobs.list(limit=1000)) == before  # refused before any job
    assert not any((svc.settings.data_dir / "uploads").glob("*"))
    assert not (svc.settings.data_dir.parent / "evil.md").exists()


def test_cancel_midway_one_rebuild_at_a_time_and_rebuild_again(svc: Services, live: str, docs: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    svc.ingestor.vectors.clear()  # these chunk texts were embedded before: without this nothing would be embedded
    ctl = ControlledEmbedder(svc.embedder.embed_passages, pause_after=1)
    monkeypatch.setattr(svc.embedder, "embed_passages", ctl)
    params = ChunkingParams(overlap=0.2)
    job_id = svc.index_admin.start_rebuild(ANN, source=docs, params=params)
    assert ctl.started.wait(60)
    with pytest.raises(InputError, match=rf"a rebuild of {ALIAS} is already running \(job {job_id}"):
        svc.index_admin.start_rebuild(BOB, source=docs)
    assert ask(svc) == live  # the live alias keeps serving during the build
    running = svc.jobs.get(job_id)
    partial = running.progress["collection"]
    assert running.status == "running" and running.progress["chunks_done"] == 2 and running.progress["chunks_total"] == 10
    svc.jobs.cancel(job_id, ANN)
    ctl.release.set()
    job = svc.jobs.wait(job_id, timeout=60)
    assert job.status == CANCELLED and "cancelled after" in job.error
    assert svc.index_admin.live() == live and ask(svc) == live
    row = svc.registry.get(partial)
    assert row.status == CANCELLED and svc.store.count(partial) < 10
    [v] = [v for v in svc.index_admin.versions() if v.collection == partial]
    assert v.status == CANCELLED and not v.live
    svc.index_admin.delete(ANN, partial)  # a partial collection is removable
    assert partial not in svc.store.collections() and svc.registry.get(partial).status == "deleted"
    monkeypatch.undo()
    again = rebuild(svc, source=docs, params=params)
    assert again.status == DONE and again.result["collection"] != partial  # names are never reused
    assert svc.registry.get(again.result["collection"]).status == "ready"
    audit = [(a.action, a.result) for a in svc.audit.recent(50)]
    assert ("index.rebuild", "refused") in audit and ("index.rebuild", "cancelled") in audit and ("job.cancel", "ok") in audit


def test_a_crash_inside_the_build_fails_it_and_leaves_live_alone(svc: Services, live: str, docs: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    svc.ingestor.vectors.clear()  # these chunk texts were embedded before: without this nothing would be embedded
    monkeypatch.setattr(svc.embedder, "embed_passages", ControlledEmbedder(svc.embedder.embed_passages, fail_after=2))
    job = rebuild(svc, source=docs, params=ChunkingParams(overlap=0.25))
    assert job.status == FAILED and "embedding model crashed" in job.error
    partial = job.progress["collection"]
    row = svc.registry.get(partial)
    assert row.status == FAILED and "embedding model crashed" in row.error
    assert svc.index_admin.live() == live and ask(svc) == live
    with pytest.raises(InputError, match=rf"{partial} is failed: .*only a ready version can be promoted"):
        svc.index_admin.promote(ANN, partial)
    monkeypatch.undo()
    svc.index_admin.delete(ANN, partial)
    assert rebuild(svc, source=docs, params=ChunkingParams(overlap=0.25)).status == DONE


def test_bad_input(svc: Services, live: str, tmp_path: Path) -> None:
    admin = svc.index_admin
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .txt/.md/.html/.pdf files or corpus.jsonl found"):
        admin.start_rebuild(ANN, source=tmp_path / "empty")
    with pytest.raises(InputError, match="source not found"):
        admin.start_rebuild(ANN, source=tmp_path / "nowhere")
    with pytest.raises(InputError, match="max chars"):
        admin.start_rebuild(ANN, source=tmp_path, params=ChunkingParams(target_chars=2000, max_chars=1500))

    bad = tmp_path / "unreadable"
    bad.mkdir()
    (bad / "latin1.txt").write_bytes(b"caf\xe9 \xff\xfe broken")
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    n_versions = len(svc.registry.list())
    job = rebuild(svc, source=bad)
    assert job.status == FAILED and "no documents with text found" in job.error and "latin1.txt" in job.error
    assert len(svc.registry.list()) == n_versions and admin.live() == live  # nothing was created

    mixed = write_folder(tmp_path / "mixed", ids=["penguin"], extra={"latin1.txt": "placeholder"})
    (mixed / "latin1.txt").write_bytes(b"\xff\xfe\x00bad")
    job = rebuild(svc, source=mixed)
    assert job.status == DONE and job.result["n_docs"] == 1
    assert any(s.startswith("latin1.txt: UnicodeDecodeError") for s in job.result["skipped"])

    for call in (lambda: admin.promote(ANN, "rag_chunks_v999"), lambda: admin.delete(ANN, "rag_chunks_v999"),
                 lambda: admin.start_gate(ANN, "rag_chunks_v999", tmp_path), lambda: svc.jobs.cancel(99999, ANN)):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(InputError, match=rf"{live} is live behind {ALIAS}: promote another version first"):
        admin.delete(ANN, live)
    assert live in svc.store.collections() and ask(svc) == live
    with pytest.raises(InputError, match="already points at"):
        admin.promote(ANN, live)
    refused = [a for a in svc.audit.recent(30) if a.result == "error"]
    assert {"index.delete", "index.promote"} <= {a.action for a in refused}


def test_gate_promote_rollback_and_history(svc: Services, live: str, tmp_path: Path) -> None:
    admin = svc.index_admin
    full = write_dataset(tmp_path / "full")
    half = write_dataset(tmp_path / "half", ids=list(TOPICS)[:5])
    good = rebuild(svc, source=full).result["collection"]
    poor = rebuild(svc, source=half).result["collection"]
    admin.promote(ANN, good, reason="full corpus")
    assert admin.default_gate_dataset(poor) == str(half)  # its own source folder holds queries.jsonl

    gate = svc.jobs.wait(admin.start_gate(ANN, poor, full), timeout=120)
    assert gate.status == DONE, gate.error
    stored = admin.latest_gate(poor)
    assert stored is not None and not stored.result.passed and not stored.stale
    assert stored.result.baseline == good and stored.result.n_queries == len(TOPICS)
    assert stored.result.metrics["baseline"]["recall@10"] == 1.0
    assert stored.result.metrics["candidate"]["recall@10"] == 0.5
    assert "recall@10 drops 0.500" in " ".join(stored.result.reasons)
    with pytest.raises(InputError, match="has a failed gate"):
        admin.promote(CI, poor, require_gate=True)
    assert admin.live() == good

    better = rebuild(svc, source=full, params=ChunkingParams(overlap=0.3)).result["collection"]
    assert svc.jobs.wait(admin.start_gate(CI, better, full), timeout=120).status == DONE
    assert admin.latest_gate(better).result.passed
    admin.promote(CI, better, require_gate=True, reason="gate passed")
    assert admin.live() == better and ask(svc) == better
    assert admin.latest_gate(poor).stale  # its baseline is no longer live

    admin.promote(ANN, poor, reason="try the small one")
    assert [c.current for c in (admin.rollback(ANN, reason="worse"), admin.rollback(ANN))] == [better, good]
    assert admin.rollback(ANN).current == live  # the version before `good` was promoted
    with pytest.raises(InputError, match="no earlier ready version"):
        admin.rollback(ANN)
    hist = admin.history(ALIAS)
    assert [(h.action, h.from_collection, h.to_collection) for h in hist[:4]] == [
        ("rollback", good, live), ("rollback", better, good), ("rollback", poor, better), ("promote", better, poor)]
    assert hist[2].reason == "worse" and hist[2].actor == "ann"
    actions = {a.action for a in admin.audit_log(ANN, 200)}
    assert {"index.rebuild", "index.gate", "index.promote", "index.rollback", "index.delete"} <= actions

    with pytest.raises(InputError, match="already live"):
        admin.start_gate(ANN, live, full)
    with pytest.raises(InputError, match="no queries.jsonl"):
        admin.start_gate(ANN, good, tmp_path)
    other = write_dataset(tmp_path / "other", ids=["qdrant"], query_ids=["qdrant"])
    (other / "queries.jsonl").write_text(json.dumps({"id": "x", "question": "?", "gold_ids": ["nope"]}) + "\n")
    nothing = svc.jobs.wait(admin.start_gate(ANN, good, other), timeout=60)
    assert nothing.status == FAILED and "has a gold document" in nothing.error

    svc.registry.update(poor, embedding_model="text-embedding-3-large")
    with pytest.raises(InputError, match="embedded with text-embedding-3-large"):
        admin.promote(ANN, poor)
    svc.registry.update(poor, embedding_model=svc.embedder.name)


def test_a_rebuild_killed_with_its_process_is_marked_failed_at_the_next_start(tmp_path: Path) -> None:
    """A real `python -m backend index rebuild` subprocess, SIGKILLed while it embeds."""
    data = tmp_path / "data"
    corpus = tmp_path / "big"
    corpus.mkdir()
    with (corpus / "corpus.jsonl").open("w") as fh:
        for i in range(40):
            doc_id = list(TOPICS)[i % len(TOPICS)]
            fh.write(json.dumps({"id": f"{doc_id}-{i}", "text": f"{TOPICS[doc_id][0]} Copy {i}."}) + "\n")
    svc = fresh_services(data)
    first = rebuild(svc, source=write_folder(tmp_path / "docs", ids=["qdrant", "redis"]))
    svc.index_admin.promote(ANN, first.result["collection"])
    svc.close()

    env = {**os.environ, "DATA_DIR": str(data), "EMBEDDING_BATCH_SIZE": "1", "OPENBLAS_NUM_THREADS": "1"}
    for key in ("OPENAI_BASE_URL", "REDIS_URL", "DATABASE_URL", "QDRANT_URL", "EMBEDDING_BASE_URL", "INDEX_ALIAS"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "backend", "--user", "ci", "index", "rebuild", str(corpus)],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = make_engine(f"sqlite:///{data / 'console.db'}")
    try:
        deadline = time.monotonic() + 120
        while True:
            with engine.connect() as conn:
                row = conn.execute(sa.select(jobs).order_by(jobs.c.id.desc()).limit(1)).first()
            if row is not None and row.status == "running" and (row.progress or {}).get("chunks_done", 0) >= 2:
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the rebuild ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()

    svc = fresh_services(data)  # the next start
    try:
        job = svc.jobs.get(row.id)
        assert job.status == FAILED and f"process {proc.pid}" in job.error and "marked failed at startup" in job.error
        partial = row.progress["collection"]
        assert svc.registry.get(partial).status == FAILED
        assert "interrupted" in svc.registry.get(partial).error
        assert svc.index_admin.live() == first.result["collection"]
        svc.index_admin.delete(ANN, partial)
        again = rebuild(svc, source=corpus / "corpus.jsonl", limit=5)
        assert again.status == DONE and again.result["collection"] != partial
    finally:
        svc.close()


def test_index_admin_and_releases_keep_one_live_configuration(svc: Services, live: str, docs: Path) -> None:
    """Issue 14: a promote here used to move the alias alone; release traffic stayed on the old version, which
    could then be deleted (every live request failed). The current release now moves with the alias, an
    experiment blocks the move, and a version a release uses cannot be deleted. Last in the file: it leaves
    releases configured on this module's services."""
    admin, releases = svc.index_admin, svc.releases
    before = admin.live()
    other = rebuild(svc, source=docs, params=ChunkingParams(target_chars=600)).result["collection"]
    r1 = releases.create(ANN, "default", index=before)
    releases.set_current(ANN, r1.id, "first release")

    admin.promote(ANN, other, reason="new chunking")
    current = releases.state().current
    assert admin.live() == other and current.collection == other and current.policy == r1.policy
    assert releases.policy_for("anyone")[0].index == ALIAS and ask(svc) == other
    assert releases.events(1)[0].action == "index_promote" and releases.events(1)[0].actor == "ann"
    assert svc.audit.recent(1, action="index.promote")[0].detail["release"] == current.id

    with pytest.raises(InputError, match=rf"{before} is used by the rollback target release #{r1.id} "):
        admin.delete(ANN, before)
    cand = releases.create(ANN, "default", index=before)
    releases.set_candidate(ANN, cand.id, 0.2, "old chunking again?")
    with pytest.raises(InputError, match=rf"{before} is used by the candidate release #{cand.id} .* and the "
                                         rf"rollback target release #{r1.id} "):
        admin.delete(ANN, before)
    with pytest.raises(InputError, match=rf"candidate release #{cand.id} .* is running at 20%: promote or clear"):
        admin.rollback(ANN)
    assert admin.live() == other and releases.state().current.id == current.id
    releases.clear_candidate(ANN, "done")

    admin.rollback(ANN, reason="worse")
    assert admin.live() == before and releases.state().current.id == cand.id  # the identical release reused
    assert releases.rollback_target().collection == other
    releases.rollback(ANN, "undo the index rollback")  # and the releases' own rollback moves the alias back
    assert admin.live() == other and releases.state().current.collection == other
    assert [h.action for h in admin.history(ALIAS, limit=3)] == ["promote", "rollback", "promote"]
