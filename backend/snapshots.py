"""Snapshots of index versions, restored into a NEW collection (never over a live one).

Two kinds:
- portable (always available; the only kind in Qdrant local mode, which has no snapshot API):
  one gzip JSON-lines file: a header (format, the collection's vector config, the version's
  registry row, the aliases at the time), one line per point (id, dense + sparse vectors,
  payload), and an end line with the point count and the sha256 of every line before it.
  It restores into local mode or a server. A file is verified end to end before anything is
  created, so a corrupted or truncated file changes nothing.
- native (QDRANT_URL set): Qdrant's own collection snapshot (create_snapshot / list /
  download / upload-recover). Qdrant snapshots hold no aliases, so our row records them.
  Not exercised by the test suite: these machines have no Qdrant server."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterator

import httpx
import sqlalchemy as sa
from qdrant_client import models
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.audit import AuditLog
from backend.db import metadata, utcnow
from backend.errors import DependencyError, InputError, NotFoundError
from backend.settings import Settings
from backend.vectorstore import VectorStore
from backend.versions import BUILDING, FAILED, READY, IndexRegistry

FORMAT, FORMAT_VERSION = "rag-ops-console/index-snapshot", 1
PORTABLE, NATIVE = "portable", "native"
SUFFIX = ".ragsnap.jsonl.gz"
BATCH = 256

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(300), nullable=False, unique=True),
    sa.Column("collection", sa.String(200), nullable=False, index=True),
    sa.Column("family", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("path", sa.Text, nullable=False, server_default=""),  # portable: the file; native: server snapshot name
    sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("sha256", sa.String(64), nullable=False, server_default=""),  # of the whole file, for downloads
    sa.Column("n_points", sa.Integer, nullable=False, server_default="0"),
    sa.Column("aliases", sa.JSON, nullable=False),  # aliases that pointed at the collection when it was taken
    sa.Column("meta", sa.JSON, nullable=False),  # the version's registry row and vector config
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)


class SnapshotError(InputError):
    """A snapshot file that cannot be trusted (corrupted, truncated, wrong format)."""

    part = "snapshot"


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    name: str
    collection: str
    family: str
    kind: str
    path: str
    size: int
    sha256: str
    n_points: int
    aliases: list[str]
    meta: dict
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class RestoreResult:
    collection: str
    n_points: int
    source_collection: str
    snapshot: str


def _jsonable(row: dict | None) -> dict:
    return json.loads(json.dumps(row or {}, default=str))


def _line(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _vector_json(vector: Any) -> dict:
    if not isinstance(vector, dict):
        return {"": list(vector)}
    out: dict[str, Any] = {}
    for name, v in vector.items():
        out[name] = {"indices": list(v.indices), "values": list(v.values)} if isinstance(v, models.SparseVector) else list(v)
    return out


def _vector_struct(vec: dict) -> Any:
    if set(vec) == {""}:
        return vec[""]
    return {k: models.SparseVector(**v) if isinstance(v, dict) else v for k, v in vec.items()}


def _vector_config(store: VectorStore, collection: str) -> dict:
    params = store.client.get_collection(collection).config.params
    dense = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
    return {
        "vectors": {k: {"size": v.size, "distance": getattr(v.distance, "value", v.distance)} for k, v in dense.items() if v},
        "sparse_vectors": {k: {"modifier": getattr(v.modifier, "value", v.modifier)}
                           for k, v in (params.sparse_vectors or {}).items()},
    }


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _points(path: Path) -> Iterator[tuple[int, bytes, dict]]:
    """(line number, raw line, parsed object) of a portable file; decoding errors become SnapshotError."""
    try:
        with gzip.open(path, "rb") as gz:
            for n, raw in enumerate(gz, 1):
                if not raw.endswith(b"\n"):
                    raise SnapshotError(f"{path.name} is truncated (line {n} is cut off); nothing was changed")
                yield n, raw, json.loads(raw)
    except SnapshotError:
        raise
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        what = "truncated" if isinstance(exc, EOFError) else "corrupted"
        raise SnapshotError(f"{path.name} is {what} ({type(exc).__name__}: {exc}); nothing was changed") from exc


def verify_portable(path: Path) -> tuple[dict, dict]:
    """Read the whole file: header, every point and the end line; the count and the sha256 must
    match. Returns (header, end line)."""
    h, n, header, end = hashlib.sha256(), 0, None, None
    for lineno, raw, obj in _points(path):
        if end is not None:
            raise SnapshotError(f"{path.name} has data after its end line; nothing was changed")
        if lineno == 1:
            if not isinstance(obj, dict) or obj.get("format") != FORMAT:
                raise SnapshotError(f"{path.name} is not an index snapshot of this console (no '{FORMAT}' header)")
            if obj.get("format_version") != FORMAT_VERSION:
                raise SnapshotError(f"{path.name} has snapshot format version {obj.get('format_version')}; "
                                    f"this console reads version {FORMAT_VERSION}")
            header = obj
        elif isinstance(obj, dict) and obj.get("end") is True:
            end = obj
            continue
        elif not (isinstance(obj, dict) and "id" in obj and isinstance(obj.get("vector"), dict)):
            raise SnapshotError(f"{path.name} line {lineno} is not a point; nothing was changed")
        else:
            n += 1
        h.update(raw)
    if header is None:
        raise SnapshotError(f"{path.name} is empty")
    if end is None:
        raise SnapshotError(f"{path.name} is truncated (no end line after {n} points); nothing was changed")
    if end.get("n_points") != n:
        raise SnapshotError(f"{path.name} announces {end.get('n_points')} points but holds {n}; nothing was changed")
    if end.get("sha256") != h.hexdigest():
        raise SnapshotError(f"{path.name} fails its checksum (content changed after it was written); nothing was changed")
    return header, end


class SnapshotStore:
    def __init__(self, settings: Settings, db: Engine, store: VectorStore, registry: IndexRegistry, audit: AuditLog):
        self.settings, self.db, self.store, self.registry, self.audit = settings, db, store, registry, audit
        self.dir = settings.data_dir / "snapshots"

    @property
    def server(self) -> bool:
        return bool(self.settings.qdrant_url)

    # --- listing --------------------------------------------------------------------------------
    def list(self, collection: str | None = None) -> list[SnapshotInfo]:
        q = sa.select(snapshots).order_by(snapshots.c.id.desc())
        if collection:
            q = q.where(snapshots.c.collection == collection)
        with self.db.connect() as conn:
            return [SnapshotInfo(**r._mapping) for r in conn.execute(q)]

    def get(self, snapshot_id: int) -> SnapshotInfo:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(snapshots).where(snapshots.c.id == snapshot_id)).first()
        if row is None:
            raise NotFoundError(f"no snapshot {snapshot_id}")
        return SnapshotInfo(**row._mapping)

    # --- create ---------------------------------------------------------------------------------
    def create(self, actor: Actor, collection: str, kind: str = "auto") -> SnapshotInfo:
        """Snapshot a version: native on a Qdrant server, portable in local mode (or when asked)."""
        kind = (NATIVE if self.server else PORTABLE) if kind == "auto" else kind
        with self.audit.action(actor, "snapshot.create", collection, need=Action.snapshot_create, kind=kind) as extra:
            if collection not in self.store.collections():
                raise NotFoundError(f"unknown collection '{collection}'")
            row = self.registry.get(collection)
            if row and row["status"] == BUILDING:
                raise InputError(f"{collection} is still being built")
            aliases = sorted(a for a, c in self.store.aliases().items() if c == collection)
            meta = {"version": _jsonable(row), "config": _vector_config(self.store, collection)}
            family = row["family"] if row else re.sub(r"_v\d+$", "", collection)
            info = self._native(collection, aliases, meta) if kind == NATIVE else self._portable(collection, aliases, meta)
            values = dict(info, collection=collection, family=family, kind=kind, aliases=aliases, meta=meta,
                          created_at=utcnow(), created_by=actor.id)
            with self.db.begin() as conn:
                sid = int(conn.execute(snapshots.insert().values(**values)).inserted_primary_key[0])
            extra.update(snapshot=values["name"], points=values["n_points"])
        return self.get(sid)

    def _portable(self, collection: str, aliases: list[str], meta: dict) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        name = f"{collection}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}{SUFFIX}"
        path, tmp = self.dir / name, self.dir / (name + ".part")
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "collection": collection,
                  "created_at": now.isoformat(), "aliases": aliases, **meta}
        h, n = hashlib.sha256(), 0
        try:
            with gzip.open(tmp, "wb") as gz:
                def emit(obj: Any) -> None:
                    line = _line(obj)
                    h.update(line)
                    gz.write(line)

                emit(header)
                offset = None
                while True:
                    recs, offset = self.store.client.scroll(collection, limit=BATCH, offset=offset,
                                                            with_payload=True, with_vectors=True)
                    for r in recs:
                        emit({"id": r.id, "vector": _vector_json(r.vector), "payload": r.payload or {}})
                        n += 1
                    if offset is None:
                        break
                gz.write(_line({"end": True, "n_points": n, "sha256": h.hexdigest()}))
            os.replace(tmp, path)  # a crash mid-write leaves a .part file, never a half snapshot
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise DependencyError(f"writing snapshot of {collection} failed: {type(exc).__name__}: {exc}",
                                  part="snapshot") from exc
        return {"name": name, "path": str(path), "size": path.stat().st_size, "sha256": _file_sha256(path), "n_points": n}

    # --- native (Qdrant server) -----------------------------------------------------------------
    def _http(self) -> httpx.Client:
        key = self.settings.qdrant_api_key.get_secret_value() if self.settings.qdrant_api_key else None
        return httpx.Client(base_url=str(self.settings.qdrant_url).rstrip("/"), headers={"api-key": key} if key else {},
                            timeout=httpx.Timeout(self.settings.qdrant_timeout_s, read=600))

    def _native(self, collection: str, aliases: list[str], meta: dict) -> dict:
        if not self.server:
            raise InputError("native snapshots need a Qdrant server (QDRANT_URL); local mode writes portable snapshots")
        try:
            desc = self.store.client.create_snapshot(collection, wait=True)
        except Exception as exc:
            raise DependencyError(f"creating a snapshot of {collection} failed: {exc}", part="vector store") from exc
        assert desc is not None
        return {"name": f"{collection}/{desc.name}", "path": desc.name, "size": desc.size, "sha256": desc.checksum or "",
                "n_points": self.store.count(collection)}

    # --- download -------------------------------------------------------------------------------
    def open(self, snapshot_id: int) -> tuple[str, IO[bytes]]:
        """(file name, binary stream) of a snapshot, for downloads."""
        snap = self.get(snapshot_id)
        if snap.kind == PORTABLE:
            path = Path(snap.path)
            if not path.is_file():
                raise NotFoundError(f"the file of snapshot {snap.name} is gone ({path})")
            return snap.name, path.open("rb")
        tmp = self.dir / "downloads" / f"{uuid.uuid4().hex}.snapshot"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with self._http() as http, http.stream("GET", f"/collections/{snap.collection}/snapshots/{snap.path}") as r:
            r.raise_for_status()
            with tmp.open("wb") as fh:
                for block in r.iter_bytes():
                    fh.write(block)
        fh2 = tmp.open("rb")
        tmp.unlink()  # the open handle keeps the data until it is closed
        return PurePosixPath(snap.path).name, fh2

    def read_bytes(self, actor: Actor, snapshot_id: int) -> bytes:
        self.audit.require(actor, Action.snapshot_create, "snapshot.download", str(snapshot_id))
        _, fh = self.open(snapshot_id)
        with fh:
            return fh.read()

    # --- restore --------------------------------------------------------------------------------
    def _next_name(self, family: str) -> tuple[str, int]:
        _, n = self.store.next_version_name(family)
        n = max(n, self.registry.max_version(family) + 1)
        return f"{family}_v{n}", n

    def restore(self, actor: Actor, *, snapshot_id: int | None = None, path: str | Path | None = None,
                family: str | None = None) -> RestoreResult:
        """Restore a listed snapshot or a portable file into a new version <family>_vN+1 (ready,
        not live: promote it like any other version)."""
        if (snapshot_id is None) == (path is None):
            raise InputError("give either a snapshot id or a snapshot file")
        label = str(snapshot_id) if snapshot_id is not None else Path(path).name  # type: ignore[arg-type]
        with self.audit.action(actor, "snapshot.restore", label, need=Action.snapshot_restore) as extra:
            snap = self.get(snapshot_id) if snapshot_id is not None else None
            if snap is not None and snap.kind == NATIVE:
                result = self._restore_native(actor, snap, family)
            else:
                file = Path(snap.path) if snap else Path(path)  # type: ignore[arg-type]
                if not file.is_file():
                    raise NotFoundError(f"snapshot file not found: {file}")
                result = self._restore_portable(actor, file, verify_portable(file), family)
            extra.update(collection=result.collection, points=result.n_points, source=result.source_collection)
        return result

    def import_file(self, actor: Actor, filename: str, data: bytes, family: str | None = None) -> RestoreResult:
        """Restore an uploaded portable snapshot file; a valid one joins the snapshot list."""
        self.dir.mkdir(parents=True, exist_ok=True)
        safe = PurePosixPath(filename.replace("\\", "/")).name or "upload"
        if not safe.endswith(SUFFIX):
            safe = safe + SUFFIX
        path = self.dir / f"uploaded-{uuid.uuid4().hex[:6]}-{safe}"
        path.write_bytes(data)
        try:
            with self.audit.action(actor, "snapshot.restore", safe, need=Action.snapshot_restore, uploaded=True) as extra:
                header, end = verify_portable(path)
                result = self._restore_portable(actor, path, (header, end), family)
                extra.update(collection=result.collection, points=result.n_points, source=result.source_collection)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        with self.db.begin() as conn:
            conn.execute(snapshots.insert().values(
                name=path.name, collection=header["collection"], family=(header.get("version") or {}).get("family")
                or re.sub(r"_v\d+$", "", header["collection"]), kind=PORTABLE, path=str(path), size=path.stat().st_size,
                sha256=_file_sha256(path), n_points=end["n_points"], aliases=header.get("aliases", []),
                meta={"version": header.get("version"), "config": header.get("config")}, created_at=utcnow(),
                created_by=actor.id))
        return result

    def _register(self, actor: Actor, name: str, version: int, family: str, meta: dict, source: str) -> None:
        src = meta.get("version") or {}
        dense = next(iter((meta.get("config") or {}).get("vectors", {}).values()), {})
        self.registry.add(collection=name, family=family, version=version, status=BUILDING,
                          fingerprint=src.get("fingerprint", ""), embedding_model=src.get("embedding_model", "unknown"),
                          dim=int(src.get("dim") or dense.get("size") or 0), params=src.get("params") or {},
                          source=source, n_docs=int(src.get("n_docs") or 0), n_chunks=int(src.get("n_chunks") or 0),
                          created_by=actor.id)

    def _restore_portable(self, actor: Actor, file: Path, verified: tuple[dict, dict], family: str | None) -> RestoreResult:
        header, end = verified
        family = family or (header.get("version") or {}).get("family") or re.sub(r"_v\d+$", "", header["collection"])
        name, version = self._next_name(family)
        config = header["config"]
        self._register(actor, name, version, family, header, f"snapshot {file.name} of {header['collection']}")
        n = 0
        try:
            self.store.client.create_collection(
                name,
                vectors_config={k: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"]))
                                for k, v in config["vectors"].items()},
                sparse_vectors_config={k: models.SparseVectorParams(modifier=models.Modifier(v["modifier"]) if v["modifier"] else None)
                                       for k, v in config["sparse_vectors"].items()},
            )
            batch: list[models.PointStruct] = []
            h = hashlib.sha256()
            for lineno, raw, obj in _points(file):
                if obj.get("end") is True:
                    continue
                h.update(raw)
                if lineno == 1:
                    continue
                batch.append(models.PointStruct(id=obj["id"], vector=_vector_struct(obj["vector"]), payload=obj["payload"]))
                if len(batch) >= BATCH:
                    self.store.upsert(name, batch)
                    n, batch = n + len(batch), []
            if batch:
                self.store.upsert(name, batch)
                n += len(batch)
            if h.hexdigest() != end["sha256"]:  # the file changed between the check and the import
                raise SnapshotError(f"{file.name} changed while it was being restored")
        except Exception as exc:  # leave no half-restored collection behind
            self._abandon(name, exc)
            raise
        self.registry.update(name, status=READY)
        return RestoreResult(name, n, header["collection"], file.name)

    def _restore_native(self, actor: Actor, snap: SnapshotInfo, family: str | None) -> RestoreResult:
        if not self.server:
            raise InputError(f"{snap.name} is a Qdrant server snapshot: it restores only into a Qdrant server")
        family = family or snap.family
        name, version = self._next_name(family)
        self._register(actor, name, version, family, snap.meta, f"snapshot {snap.name}")
        try:
            _, fh = self.open(snap.id)
            with fh, self._http() as http:
                r = http.post(f"/collections/{name}/snapshots/upload", params={"wait": "true", "priority": "snapshot",
                              **({"checksum": snap.sha256} if snap.sha256 else {})}, files={"snapshot": (snap.path, fh)})
                r.raise_for_status()
        except Exception as exc:
            self._abandon(name, exc)
            raise DependencyError(f"recovering {snap.name} into {name} failed: {exc}", part="vector store") from exc
        self.registry.update(name, status=READY)
        return RestoreResult(name, self.store.count(name), snap.collection, snap.name)

    def _abandon(self, name: str, exc: BaseException) -> None:
        try:
            if name in self.store.collections():
                self.store.delete_collection(name)
        finally:
            self.registry.update(name, status=FAILED, error=f"restore failed: {exc}"[:2000])

    # --- delete ---------------------------------------------------------------------------------
    def delete(self, actor: Actor, snapshot_id: int) -> None:
        with self.audit.action(actor, "snapshot.delete", str(snapshot_id), need=Action.snapshot_delete) as extra:
            snap = self.get(snapshot_id)
            extra.update(snapshot=snap.name, collection=snap.collection)
            if snap.kind == PORTABLE:
                Path(snap.path).unlink(missing_ok=True)
            elif self.server:
                self.store.client.delete_snapshot(snap.collection, snap.path, wait=True)
            with self.db.begin() as conn:
                conn.execute(snapshots.delete().where(snapshots.c.id == snapshot_id))
