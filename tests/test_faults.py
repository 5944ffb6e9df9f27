"""Fault suite (issue 14 #7): `kill -9` a real `python -m backend` process in the middle of a rebuild,
a snapshot restore and an evaluation run, then start the next command. Each start must find the
records of the dead process and leave them consistent: the job and the run marked failed, the
killed rebuild's version failed, no trace of the killed restore (no registry row, no collection),
the live alias and the current release where they were.

The chain is kill -> next command (which is the restart that recovers the previous kill) -> kill ...
-> `eval list --json`, so every recovery runs in a real CLI start. Each kill waits only until the
record shows progress (a stored chunk count, a restore batch, an evaluated item), which keeps the
suite near a minute on two cores."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from actors import Role, user
from index_support import TOPICS, cli, cli_env, fresh_services, write_folder

from backend.engine.policy import Policy
from backend.services import Services
from backend.settings import PROJECT_ROOT

ANN = user("ann", Role.admin)
ALIAS = "rag_chunks"
KILLS: list[str] = []  # faults injected, for the report


def kill_when(data: Path, args: list[str], shows_progress: Callable[[sa.engine.Connection], bool],
              timeout: float = 90) -> None:
    """Start the command, poll the database until `shows_progress`, then SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-m", "backend", *args], cwd=PROJECT_ROOT, env=cli_env(data),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    engine = sa.create_engine(f"sqlite:///{data / 'console.db'}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, f"{args} ended before it could be killed: {proc.stdout.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"{args} showed no progress in {timeout}s"
            try:
                with engine.connect() as conn:
                    if shows_progress(conn):
                        break
            except sa.exc.OperationalError:  # the tables are not there yet (migrations run at start)
                pass
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        KILLS.append(" ".join(args[:2]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        engine.dispose()


def big_snapshot(svc: Services, collection: str, path: Path, extra: int) -> Path:
    """A real snapshot of `collection` plus `extra` random points (valid checksum), so that its restore
    takes long enough to be killed in the middle."""
    snap = svc.snapshots.create(ANN, collection)
    with gzip.open(snap.path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    rng = random.Random(14)
    points = rows[1:-1] + [{"id": str(uuid.UUID(int=rng.getrandbits(128))),
                            "vector": {"dense": [round(rng.uniform(-0.1, 0.1), 5) for _ in range(384)],
                                       "sparse": {"indices": [i], "values": [1.0]}},
                            "payload": {"doc_id": f"filler-{i}", "text": "filler", "start": 0, "end": 6}}
                           for i in range(extra)]
    lines = [(json.dumps(o, separators=(",", ":")) + "\n").encode() for o in [rows[0], *points]]
    end = {"end": True, "n_points": len(points), "sha256": hashlib.sha256(b"".join(lines)).hexdigest()}
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.writelines([*lines, (json.dumps(end) + "\n").encode()])
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A live version v1 behind the alias and the current release, a golden set of 120 items, a bigger
    folder to rebuild from and a big snapshot file, built in this process; then the services close
    (a local Qdrant folder admits one process)."""
    root = tmp_path_factory.mktemp("faults")
    data = root / "data"
    svc = fresh_services(data)
    try:
        v1 = svc.jobs.wait(svc.index_admin.start_rebuild(ANN, source=write_folder(root / "docs")), 120).result["collection"]
        svc.index_admin.promote(ANN, v1)
        policy = svc.policies.save(Policy(name="faults", top_k=3), actor=ANN)
        release = svc.releases.create(ANN, "faults", policy.version, index=v1)
        svc.releases.set_current(ANN, release.id, "first setup")
        golden = root / "golden.jsonl"
        golden.write_text("".join(json.dumps({"id": f"q{i}-{d}", "question": q, "gold_ids": [d]}) + "\n"
                                  for i in range(12) for d, (_, q) in TOPICS.items()), encoding="utf-8")
        more = write_folder(root / "more", extra={f"extra{i}.md": f"# extra {i}\n\n" + " ".join(
            f"Paragraph {i}.{j} about topic {j} with some words to embed." for j in range(12)) for i in range(30)})
        snapshot = big_snapshot(svc, v1, root / f"big{''.join(Path('x.ragsnap.jsonl.gz').suffixes)}", 6000)
        before = {"alias": svc.store.aliases()[ALIAS], "release": svc.releases.state().current.id,
                  "versions": {r.collection for r in svc.registry.list()}}
    finally:
        svc.close()
    imp = cli(data, "eval", "import", str(golden), "--set", "faults", "--freeze")
    assert imp.returncode == 0, imp.stderr
    yield {"data": data, "more": more, "snapshot": snapshot, "before": before, "v1": v1}


def test_kill_9_mid_rebuild_restore_and_evaluation_leaves_consistent_records(setup: dict) -> None:
    data, before = setup["data"], setup["before"]
    t0 = time.monotonic()

    def rebuild_embedding(conn: sa.engine.Connection) -> bool:
        row = conn.execute(sa.text("SELECT progress FROM jobs WHERE kind = 'index.rebuild' AND status = 'running'")).first()
        return row is not None and (json.loads(row[0]) or {}).get("chunks_done", 0) > 0

    kill_when(data, ["index", "rebuild", str(setup["more"]), "--family", ALIAS], rebuild_embedding)

    def restore_writing(conn: sa.engine.Connection) -> bool:
        return conn.execute(sa.text("SELECT count(*) FROM index_versions WHERE source LIKE 'snapshot %' "
                                    "AND status = 'building' AND heartbeat_at IS NOT NULL")).scalar() > 0

    kill_when(data, ["index", "snapshot", "restore", "--file", str(setup["snapshot"])], restore_writing)

    def items_scored(conn: sa.engine.Connection) -> bool:
        return conn.execute(sa.text("SELECT count(*) FROM eval_runs WHERE status = 'running' AND done_items >= 2")).scalar() > 0

    kill_when(data, ["eval", "run", "--set", "faults", "--policy", "faults", "--retrieval-only"], items_scored)

    listed = cli(data, "eval", "list", "--json")  # the restart after the last kill
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout.strip().splitlines()[-1])
    assert len(runs) == 1 and runs[0]["status"] == "failed" and "marked failed at startup" in runs[0]["error"]
    assert 0 < runs[0]["progress"] < 1 and runs[0]["done_items"] >= 2 and runs[0]["n_items"] == 120

    svc = fresh_services(data)
    try:
        rebuild = svc.jobs.list(kind="index.rebuild")[0]
        assert rebuild.status == "failed" and "no longer running" in rebuild.error
        new = {r.collection: r for r in svc.registry.list()} | {}
        added = {c: r for c, r in new.items() if c not in before["versions"]}
        # The killed rebuild's version is failed; the killed restore left no row and no collection.
        assert [(r.status, r.source) for r in added.values()] == [("failed", str(setup["more"]))]
        assert not any(r.source.startswith("snapshot ") for r in new.values())
        restored_names = {c for c in svc.store.collections() if c not in new}
        assert restored_names == set(), f"collections without a registry row: {restored_names}"
        assert svc.store.aliases()[ALIAS] == before["alias"] == setup["v1"]
        assert svc.releases.state().current.id == before["release"]
        assert svc.engine.retrieve("Which country is Kilimanjaro in?", Policy(top_k=3)).collection == setup["v1"]
        recovered = [a for a in svc.audit.recent(50) if a.actor == "system" and a.result == "error"]
        assert {a.action for a in recovered} >= {"index.rebuild", "index.build", "eval.run.finish"}
    finally:
        svc.close()
    print(f"\nfaults injected: {len(KILLS)} kill -9 ({', '.join(KILLS)}); suite {time.monotonic() - t0:.0f}s")
