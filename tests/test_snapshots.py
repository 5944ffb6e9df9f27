"""Portable snapshots on a real local Qdrant store: snapshot → delete → restore gives the same
points, ids, payloads and search results in a new version; corrupted, truncated or tampered
files are refused with a clear message and change nothing."""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Iterator

import pytest
from actors import Role, user
from index_support import TOPICS, fresh_services, write_dataset, write_folder

from backend.background.jobs import JobRunner
from backend.engine.policy import Policy
from backend.errors import DependencyError, InputError, NotFoundError
from backend.index_admin.snapshots import MAX_LINE_BYTES, SUFFIX, SnapshotError, SnapshotStore, verify_portable
from backend.services import Services

ALIAS = "rag_chunks"
ANN = user("ann", Role.admin)  # builds, promotes, snapshots and deletes versions
BOB = user("bob", Role.admin)  # restores
CAROL = user("carol", Role.admin)  # uploads a snapshot and deletes it
MALLORY = user("mallory", Role.admin)  # may restore: her files are refused for what they hold


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("snapshots")
    s = fresh_services(root / "data")
    live = s.jobs.wait(s.index_admin.start_rebuild(ANN, source=write_folder(root / "docs")), 120).result["collection"]
    s.index_admin.promote(ANN, live)
    shadow = s.jobs.wait(s.index_admin.start_rebuild(ANN, source=write_dataset(root / "set")), 120)
    assert shadow.status == "done", shadow.error
    yield s
    s.close()


def live_and_shadow(svc: Services) -> tuple[str, str]:
    live = svc.index_admin.live()
    shadow = next(v.collection for v in svc.index_admin.versions() if not v.live and v.status == "ready")
    return live, shadow


def points(svc: Services, collection: str) -> dict:
    recs, _ = svc.store.client.scroll(collection, limit=1000, with_payload=True, with_vectors=True)
    return {str(r.id): r for r in recs}


def search(svc: Services, collection: str) -> list[list[tuple[str, float | None, float | None]]]:
    out = []
    for _, question in list(TOPICS.values())[:4]:
        r = svc.engine.retrieve(question, Policy(index=collection, top_k=5))
        out.append([(s.point_id, s.scores["dense"], s.scores["sparse"]) for s in r.sources])
    return out


def state(svc: Services) -> tuple:
    """Everything a refused restore must leave as it was."""
    return (svc.store.collections(), svc.store.aliases(), [(r.collection, r.status) for r in svc.registry.list()],
            [s.id for s in svc.snapshots.list()], sorted(p.name for p in svc.snapshots.dir.iterdir()))


def test_round_trip_snapshot_delete_restore(svc: Services) -> None:
    live, shadow = live_and_shadow(svc)
    before_points, before_search = points(svc, shadow), search(svc, shadow)
    row = svc.registry.get(shadow)
    snap = svc.snapshots.create(ANN, shadow)
    assert snap.kind == "portable" and snap.n_points == len(before_points) == len(TOPICS) and Path(snap.path).is_file()
    assert snap.aliases == [] and snap.meta["version"]["fingerprint"] == row.fingerprint
    assert svc.snapshots.read_bytes(ANN, snap.id) == Path(snap.path).read_bytes()  # the download

    svc.index_admin.delete(ANN, shadow)
    assert shadow not in svc.store.collections()
    restored = svc.snapshots.restore(BOB, snapshot_id=snap.id)
    new = restored.collection
    assert new != shadow and new.startswith(f"{ALIAS}_v") and restored.n_points == len(TOPICS)
    after = points(svc, new)
    assert set(after) == set(before_points)
    for pid, rec in after.items():
        old = before_points[pid]
        assert rec.payload == old.payload
        assert rec.vector["sparse"] == old.vector["sparse"]
        assert rec.vector["dense"] == pytest.approx(old.vector["dense"], abs=1e-6)
    after_search = search(svc, new)
    assert [[p for p, _, _ in q] for q in after_search] == [[p for p, _, _ in q] for q in before_search]
    for q_after, q_before in zip(after_search, before_search):
        for (_, d1, s1), (_, d2, s2) in zip(q_after, q_before):
            assert d1 == pytest.approx(d2, abs=1e-5) and s1 == pytest.approx(s2, abs=1e-5)

    new_row = svc.registry.get(new)
    assert new_row.status == "ready" and new_row.fingerprint == row.fingerprint and new_row.params == row.params
    assert new_row.source.startswith(f"snapshot {snap.name}") and new_row.created_by == "bob"
    assert svc.index_admin.live() == live  # a restore never touches the live alias
    svc.index_admin.promote(BOB, new, reason="restored")  # a restored version promotes like any other
    assert svc.engine.retrieve("Is a Qdrant alias swap atomic?", Policy()).collection == new
    svc.index_admin.rollback(BOB)
    actions = [(a.action, a.result) for a in svc.audit.recent(20)]
    assert ("snapshot.create", "ok") in actions and ("snapshot.restore", "ok") in actions


def test_snapshot_records_the_aliases_of_the_live_version(svc: Services) -> None:
    live, _ = live_and_shadow(svc)
    snap = svc.snapshots.create(ANN, live)
    assert snap.aliases == [ALIAS]
    with gzip.open(snap.path, "rt") as fh:
        header = json.loads(fh.readline())
    assert header["aliases"] == [ALIAS] and header["collection"] == live and header["config"]["vectors"]["dense"]["size"] == 384


def _rewrite(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001 - edit(lines) -> lines
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines(keepends=True)
    with gzip.open(dst, "wt", encoding="utf-8") as fh:
        fh.writelines(edit(lines))
    return dst


def _tamper(lines: list[str]) -> list[str]:
    point = json.loads(lines[2])
    point["payload"]["text"] = "Injected text."
    return [lines[0], lines[1], json.dumps(point) + "\n", *lines[3:]]


def _flip(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))


def _rename_a_vector_stored(src: Path, dst: Path) -> None:
    """Store the file uncompressed (gzip level 0) and change one byte of a point's vector name: the line
    still parses, and only gzip's CRC tells the file was damaged (as when a flipped byte in CI decoded
    into a line with a wrong vector)."""
    with gzip.open(src, "rb") as fh:
        data = fh.read()
    packed = bytearray(gzip.compress(data, compresslevel=0))
    at = packed.index(b'"dense"', len(packed) // 2)
    packed[at + 2] = ord("x")
    dst.write_bytes(bytes(packed))


CASES = {
    "flipped byte": ("corrupted", _flip),
    "vector renamed inside the gzip": ("corrupted", _rename_a_vector_stored),
    "cut in half": ("truncated|corrupted", lambda src, dst: dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])),
    "tampered payload": ("fails its checksum", lambda src, dst: _rewrite(src, dst, _tamper)),
    "end line missing": (r"truncated \(no end line", lambda src, dst: _rewrite(src, dst, lambda ls: ls[:-1])),
    "a point missing": ("announces 10 points but holds 9", lambda src, dst: _rewrite(src, dst, lambda ls: ls[:3] + ls[4:])),
    "not a snapshot": ("not an index snapshot", lambda src, dst: _rewrite(src, dst, lambda ls: ['{"hello": 1}\n'])),
    "plain text": ("corrupted", lambda src, dst: dst.write_text("just text, not gzip")),
    "empty": ("is empty", lambda src, dst: dst.write_bytes(gzip.compress(b""))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_snapshot_is_refused_and_nothing_changes(svc: Services, tmp_path: Path, case: str) -> None:
    _, shadow = live_and_shadow(svc)
    good = svc.snapshots.list(shadow)[0] if svc.snapshots.list(shadow) else svc.snapshots.create(ANN, shadow)
    message, damage = CASES[case]
    bad = tmp_path / f"damaged{''.join(Path(good.path).suffixes)}"
    damage(Path(good.path), bad)
    before = state(svc)
    with pytest.raises(SnapshotError, match=message) as err:
        svc.snapshots.restore(MALLORY, path=bad)
    assert "snapshot:" in str(err.value)
    with pytest.raises(SnapshotError, match=message):
        svc.snapshots.import_file(MALLORY, bad.name, bad.read_bytes())  # the same file uploaded in the console
    assert state(svc) == before
    assert svc.audit.recent(1)[0].action == "snapshot.restore" and svc.audit.recent(1)[0].result == "error"


def test_uploaded_snapshot_restores_and_joins_the_list(svc: Services) -> None:
    _, shadow = live_and_shadow(svc)
    snap = svc.snapshots.create(ANN, shadow)
    result = svc.snapshots.import_file(CAROL, "from-prod.ragsnap.jsonl.gz", Path(snap.path).read_bytes())
    assert result.n_points == len(TOPICS) and result.source_collection == shadow
    assert svc.registry.get(result.collection).status == "ready"
    listed = svc.snapshots.list()[0]
    assert listed.name.endswith("from-prod.ragsnap.jsonl.gz") and listed.created_by == "carol" and listed.n_points == len(TOPICS)
    svc.snapshots.delete(CAROL, listed.id)
    assert not Path(listed.path).exists() and listed.id not in [s.id for s in svc.snapshots.list()]


def test_snapshot_bad_input(svc: Services) -> None:
    _, shadow = live_and_shadow(svc)
    with pytest.raises(NotFoundError):
        svc.snapshots.create(ANN, "rag_chunks_v404")
    with pytest.raises(NotFoundError):
        svc.snapshots.restore(ANN, snapshot_id=404)
    with pytest.raises(InputError, match="need a Qdrant server"):
        svc.snapshots.create(ANN, shadow, kind="native")
    with pytest.raises(InputError, match="either a snapshot id or a snapshot file"):
        svc.snapshots.restore(ANN)


# --- issue 14 #6: bounded reading, structure checks, safe names, nothing left by a failed restore ---
def write_portable(path: Path, header: dict, points: list) -> Path:
    """A portable file with a valid count and checksum around whatever header and points it is given."""
    lines = [(json.dumps(o) + "\n").encode() for o in [header, *points]]
    end = {"end": True, "n_points": len(points), "sha256": hashlib.sha256(b"".join(lines)).hexdigest()}
    with gzip.open(path, "wb") as fh:
        fh.writelines([*lines, (json.dumps(end) + "\n").encode()])
    return path


def _parts(svc: Services) -> tuple[dict, list[dict]]:
    """Header and points of a real snapshot of the shadow version, to be edited by the cases."""
    _, shadow = live_and_shadow(svc)
    snap = svc.snapshots.list(shadow)[0] if svc.snapshots.list(shadow) else svc.snapshots.create(ANN, shadow)
    with gzip.open(snap.path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return rows[0], rows[1:-1]


def _without(d: dict, *path: str) -> dict:
    out = copy.deepcopy(d)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


MISSING = {  # what is taken out of a checksummed file -> what the message names
    "header config": (lambda h, ps: (_without(h, "config"), ps), "no vector configuration"),
    "header collection": (lambda h, ps: (_without(h, "collection"), ps), "names no source collection"),
    "vector size": (lambda h, ps: (_without(h, "config", "vectors", "dense", "size"), ps), "'dense' needs a size"),
    "point vector": (lambda h, ps: (h, [_without(ps[0], "vector"), *ps[1:]]), "is not a point"),
    "point id": (lambda h, ps: (h, [_without(ps[0], "id"), *ps[1:]]), "is not a point"),
    "dense values": (lambda h, ps: (h, [dict(ps[0], vector=dict(ps[0]["vector"], dense=[0.1])), *ps[1:]]),
                     "'dense' must be 384 finite numbers"),
    "sparse indices": (lambda h, ps: (h, [dict(ps[0], vector=dict(ps[0]["vector"], sparse={"values": [1.0]})), *ps[1:]]),
                       "sparse vector 'sparse' needs unique 'indices'"),
}


@pytest.mark.parametrize("case", list(MISSING))
def test_a_checksummed_file_missing_parts_is_refused_by_name(svc: Services, tmp_path: Path, case: str) -> None:
    """Before: a valid checksum over a header without 'config' raised KeyError from inside the restore."""
    edit, message = MISSING[case]
    header, pts = edit(*_parts(svc))
    bad = write_portable(tmp_path / f"missing{SUFFIX}", header, pts)
    before = state(svc)
    with pytest.raises(SnapshotError, match=message):
        svc.snapshots.restore(MALLORY, path=bad)
    with pytest.raises(SnapshotError, match=message):
        svc.snapshots.import_file(MALLORY, bad.name, bad.read_bytes())
    assert state(svc) == before


def test_one_endless_line_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """Before: the reader held whole lines, so 64 MiB without a newline (a 64 KiB gzip) cost > 64 MiB."""
    bomb = tmp_path / f"bomb{SUFFIX}"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        for _ in range(64):
            fh.write(b"a" * 1024**2)
    assert bomb.stat().st_size < 200 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError, match="line 1 is longer than 4 MiB"):
            verify_portable(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_BYTES, f"peak {peak / 1024**2:.0f} MiB"


def _break_upserts(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Qdrant fails in the middle of a restore (after the version is registered and created)."""
    def upsert(*_a: object, **_k: object) -> None:
        raise ConnectionError("vector store went away")
    monkeypatch.setattr(svc.store, "upsert", upsert)


def test_a_failed_restore_leaves_nothing_and_names_come_from_a_safe_base(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the failed upload left a registry row '../../../escaped_v1' (status failed)."""
    header, pts = _parts(svc)
    header = dict(header, collection="../../../escaped", version=None)
    upload = write_portable(tmp_path / f"x{SUFFIX}", header, pts)
    before = state(svc)
    with monkeypatch.context() as m:
        _break_upserts(svc, m)
        with pytest.raises(DependencyError, match="vector store went away"):
            svc.snapshots.import_file(CAROL, f"../../../escaped{SUFFIX}", upload.read_bytes())
    assert state(svc) == before  # no registry row, no collection, no snapshot row or file
    assert svc.audit.recent(1)[0].action == "snapshot.restore" and svc.audit.recent(1)[0].result == "error"

    result = svc.snapshots.import_file(CAROL, f"../../../escaped{SUFFIX}", upload.read_bytes())
    assert result.collection == "escaped_v1" and svc.registry.get("escaped_v1").family == "escaped"
    listed = svc.snapshots.list()[0]
    assert Path(listed.path).parent == svc.snapshots.dir and listed.family == "escaped"
    with pytest.raises(InputError, match="not a valid index family"):
        svc.snapshots.restore(CAROL, snapshot_id=listed.id, family="../up")
    svc.snapshots.delete(CAROL, listed.id)
    svc.index_admin.delete(CAROL, result.collection)


def test_a_restore_whose_process_died_is_removed_at_the_next_start(svc: Services) -> None:
    """A restore killed mid-way (tests/test_faults.py does it to a real process) leaves a 'building'
    row owned by a dead pid and a half collection: the next start fails the row, then removes both."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = "killed_v1"
    svc.registry.add(collection=name, family="killed", version=1, status="building", fingerprint="", embedding_model="m",
                     dim=384, params={}, source=f"snapshot x{SUFFIX} of killed_v0", created_by="bob",
                     owner=f"{socket.gethostname()}:{int(dead.stdout)}")
    svc.store.create_collection(name, 384)
    runner = JobRunner(svc.db, svc.audit)
    try:
        assert [(r.table, r.id) for r in runner.recovered_records] == [("index_versions", name)]
        assert svc.registry.get(name).status == "failed"
        store = SnapshotStore(svc.settings, svc.db, svc.store, svc.registry, svc.audit)
        assert store.dropped == [name]
        assert svc.registry.get(name) is None and name not in svc.store.collections()
    finally:
        runner.shutdown()
