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
import logging
import math
import os
import re
import uuid
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterator

import httpx
import sqlalchemy as sa
from qdrant_client import models
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.db import metadata, utcnow
from backend.engine.vectorstore import LLAMAINDEX
from backend.engine.vectorstore import NATIVE as NATIVE_FORMAT
from backend.engine.vectorstore import VectorStore
from backend.errors import DependencyError, InputError, NotFoundError, RagError
from backend.index_admin.uploads import safe_filename
from backend.ingestion.versions import BUILDING, FAILED, READY, IndexRegistry, IndexVersion
from backend.settings import Settings

FORMAT, FORMAT_VERSION = "rag-ops-console/index-snapshot", 1
PORTABLE, NATIVE = "portable", "native"
SUFFIX = ".ragsnap.jsonl.gz"
RESTORE_SOURCE = "snapshot "  # how a restored version's `source` begins
BATCH = 256
log = logging.getLogger(__name__)

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


def _int(v: Any) -> int:
    """A count from a file: an int, else 0."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 else 0


def _jsonable(row: IndexVersion | None) -> dict:
    return json.loads(json.dumps(asdict(row) if row else {}, default=str))


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


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


MAX_LINE_BYTES = 4 * 1024**2
"""Longest line the reader accepts. A point of a 3072-dimension model with a long chunk is under
100 KiB; the cap bounds what one line can cost in memory (before it, a 398 KiB gzip holding one
line without a newline took ~800 MiB to read)."""
FLOAT32_MAX = 3.4028234663852886e38
MAX_DIM = 65_536  # Qdrant's own limit for a dense vector
DISTANCES = {d.value for d in models.Distance}
MODIFIERS = {m.value for m in models.Modifier}


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a gzip file, never holding more than MAX_LINE_BYTES of one line."""
    with gzip.open(path, "rb") as gz:
        n = 0
        while raw := gz.readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(raw) > MAX_LINE_BYTES:
                raise SnapshotError(f"{path.name} line {n} is longer than {MAX_LINE_BYTES // 1024**2} MiB; "
                                    "nothing was changed")
            if not raw.endswith(b"\n"):
                raise SnapshotError(f"{path.name} is truncated (line {n} is cut off); nothing was changed")
            yield n, raw


def _gzip_intact(path: Path) -> None:
    """Decompress the whole file once so gzip's own CRC is checked before any line is judged: a flipped
    byte can decode into plausible garbage that would otherwise be reported as a bad vector."""
    with gzip.open(path, "rb") as gz:
        while gz.read(1 << 20):
            pass


def _points(path: Path) -> Iterator[tuple[int, bytes, Any]]:
    """(line number, raw line, parsed object) of a portable file; decoding errors become SnapshotError."""
    try:
        _gzip_intact(path)
        for n, raw in _raw_lines(path):
            yield n, raw, json.loads(raw)
    except SnapshotError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        what = "truncated" if isinstance(exc, EOFError) else "corrupted"
        raise SnapshotError(f"{path.name} is {what} ({type(exc).__name__}: {str(exc)[:200]}); nothing was changed") from exc


def _finite(v: Any) -> bool:
    """A number Qdrant can store: it keeps vectors as float32, so larger values would become inf."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= FLOAT32_MAX


def _one_of(v: Any, names: set[str]) -> bool:
    """`v in names` for any JSON value (a list or an object is unhashable)."""
    return isinstance(v, str) and v in names


def _check_header(obj: Any, where: str) -> dict:
    """The header's format and every part a restore reads, or a SnapshotError naming the missing part."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise SnapshotError(f"{where} is not an index snapshot of this console (no '{FORMAT}' header)")
    if obj.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(f"{where} has snapshot format version {str(obj.get('format_version'))[:20]}; "
                            f"this console reads version {FORMAT_VERSION}")
    if not isinstance(obj.get("collection"), str) or not obj["collection"].strip():
        raise SnapshotError(f"{where}: the header names no source collection ('collection')")
    config = obj.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("vectors"), dict) \
            or not isinstance(config.get("sparse_vectors", {}), dict):
        raise SnapshotError(f"{where}: the header has no vector configuration ('config' with 'vectors')")
    for name, v in config["vectors"].items():
        if not (isinstance(v, dict) and isinstance(v.get("size"), int) and not isinstance(v["size"], bool)
                and 0 < v["size"] <= MAX_DIM and _one_of(v.get("distance"), DISTANCES)):
            raise SnapshotError(f"{where}: dense vector '{name[:50]}' needs a size (1-{MAX_DIM}) and a distance "
                                f"({', '.join(sorted(DISTANCES))})")
    for name, v in config.get("sparse_vectors", {}).items():
        if not (isinstance(v, dict) and (v.get("modifier") is None or _one_of(v.get("modifier"), MODIFIERS))):
            raise SnapshotError(f"{where}: sparse vector '{name[:50]}' has an unknown modifier")
    if not config["vectors"] and not config.get("sparse_vectors"):
        raise SnapshotError(f"{where}: the header's vector configuration holds no vector")
    if not isinstance(obj.get("aliases", []), list) or not isinstance(obj.get("version") or {}, dict):
        raise SnapshotError(f"{where}: the header's 'aliases' must be a list and 'version' an object")
    return obj


def _sparse_ok(v: Any) -> bool:
    """Unique unsigned 32-bit indices and as many finite values (what Qdrant accepts)."""
    if not (isinstance(v, dict) and isinstance(v.get("indices"), list) and isinstance(v.get("values"), list)):
        return False
    idx, values = v["indices"], v["values"]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**32 for i in idx):
        return False
    return len(idx) == len(values) == len(set(idx)) and all(map(_finite, values))


def _check_point(obj: Any, config: dict, where: str) -> None:
    """A point must restore as it is: an id Qdrant accepts, vectors the header configures, a payload."""
    if not isinstance(obj, dict) or "id" not in obj or not isinstance(obj.get("vector"), dict):
        raise SnapshotError(f"{where} is not a point (needs 'id' and 'vector'); nothing was changed")
    pid = obj["id"]
    if isinstance(pid, bool) or not (isinstance(pid, int) and 0 <= pid < 2**64 or isinstance(pid, str)):
        raise SnapshotError(f"{where}: point id must be an unsigned integer or a UUID")
    if isinstance(pid, str):
        try:
            uuid.UUID(pid)
        except ValueError:
            raise SnapshotError(f"{where}: point id '{pid[:40]}' is not a UUID") from None
    if not isinstance(obj.get("payload", {}), dict):
        raise SnapshotError(f"{where}: the point's payload must be an object")
    dense, sparse = config["vectors"], config.get("sparse_vectors", {})
    for name, v in obj["vector"].items():
        if name in dense:
            if not (isinstance(v, list) and len(v) == dense[name]["size"] and all(map(_finite, v))):
                raise SnapshotError(f"{where}: vector '{name[:50]}' must be {dense[name]['size']} finite numbers")
        elif name in sparse:
            if not _sparse_ok(v):
                raise SnapshotError(f"{where}: sparse vector '{name[:50]}' needs unique 'indices' and as many 'values'")
        else:
            raise SnapshotError(f"{where}: vector '{name[:50]}' is not in the header's configuration")


def verify_portable(path: Path) -> tuple[dict, dict]:
    """Read the whole file, one bounded line at a time: header, every point and the end line; each
    must hold what a restore reads, and the count and the sha256 must match. Returns (header, end)."""
    h, n, header, end = hashlib.sha256(), 0, None, None
    for lineno, raw, obj in _points(path):
        if end is not None:
            raise SnapshotError(f"{path.name} has data after its end line; nothing was changed")
        if lineno == 1:
            header = _check_header(obj, path.name)
        elif isinstance(obj, dict) and obj.get("end") is True:
            end = obj
            continue
        else:
            _check_point(obj, header["config"], f"{path.name} line {lineno}")
            n += 1
        h.update(raw)
    if header is None:
        raise SnapshotError(f"{path.name} is empty")
    if end is None:
        raise SnapshotError(f"{path.name} is truncated (no end line after {n} points); nothing was changed")
    if end.get("n_points") != n:
        raise SnapshotError(f"{path.name} announces {str(end.get('n_points'))[:20]} points but holds {n}; "
                            "nothing was changed")
    if end.get("sha256") != h.hexdigest():
        raise SnapshotError(f"{path.name} fails its checksum (content changed after it was written); nothing was changed")
    return header, end


def restore_family(header: dict) -> str:
    """The family a restored file goes to: from the file, so reduced to a safe collection name
    (letters, digits, '_' and '-'); an upload named '../../../escaped' restores as 'escaped'."""
    raw = (header.get("version") or {}).get("family") or re.sub(r"_v\d+$", "", header["collection"])
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", str(raw)).strip("_-")[:150]
    return safe or "restored"


def check_family(family: str) -> str:
    """A family the user typed: refused (not rewritten) when it is not a plain collection name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,149}", family):
        raise InputError(f"'{family[:60]}' is not a valid index family: use letters, digits, '_' and '-'")
    return family


class SnapshotStore:
    def __init__(self, settings: Settings, db: Engine, store: VectorStore, registry: IndexRegistry, audit: AuditLog):
        self.settings, self.db, self.store, self.registry, self.audit = settings, db, store, registry, audit
        self.dir = settings.data_dir / "snapshots"
        self.dropped = self.drop_interrupted()

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
            if row and row.status == BUILDING:
                raise InputError(f"{collection} is still being built")
            aliases = sorted(a for a, c in self.store.aliases().items() if c == collection)
            meta = {"version": _jsonable(row), "config": self.store.describe(collection).config}
            family = row.family if row else re.sub(r"_v\d+$", "", collection)
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
                for r in self.store.records(collection, BATCH):
                    emit({"id": r.id, "vector": _vector_json(r.vector), "payload": r.payload or {}})
                    n += 1
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
        desc = self.store.create_snapshot(collection)
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
            family = check_family(family) if family else None
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
        safe = safe_filename(filename, "upload")
        if not safe.endswith(SUFFIX):
            safe = safe + SUFFIX
        path = self.dir / f"uploaded-{uuid.uuid4().hex[:6]}-{safe}"
        path.write_bytes(data)
        try:
            with self.audit.action(actor, "snapshot.restore", safe, need=Action.snapshot_restore, uploaded=True) as extra:
                family = check_family(family) if family else None
                header, end = verify_portable(path)
                result = self._restore_portable(actor, path, (header, end), family)
                extra.update(collection=result.collection, points=result.n_points, source=result.source_collection)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        with self.db.begin() as conn:
            conn.execute(snapshots.insert().values(
                name=path.name, collection=header["collection"][:200], family=restore_family(header), kind=PORTABLE,
                path=str(path), size=path.stat().st_size, sha256=_file_sha256(path), n_points=end["n_points"],
                aliases=header.get("aliases", []), meta={"version": header.get("version"), "config": header.get("config")},
                created_at=utcnow(), created_by=actor.id))
        return result

    def _register(self, actor: Actor, name: str, version: int, family: str, meta: dict, source: str) -> None:
        """Register the new version as building; what comes from the file is coerced to the column
        types, so a strange but checksummed header cannot fail the insert."""
        src = meta.get("version") if isinstance(meta.get("version"), dict) else {}
        dense = next(iter((meta.get("config") or {}).get("vectors", {}).values()), {})
        params = src.get("params") if isinstance(src.get("params"), dict) else {}
        self.registry.add(collection=name, family=family, version=version, status=BUILDING,
                          fingerprint=str(src.get("fingerprint") or "")[:64],
                          embedding_model=str(src.get("embedding_model") or "unknown")[:200],
                          dim=_int(src.get("dim")) or _int(dense.get("size")), params=params, source=source[:2000],
                          n_docs=_int(src.get("n_docs")), n_chunks=_int(src.get("n_chunks")), created_by=actor.id,
                          format=LLAMAINDEX if src.get("format") == LLAMAINDEX else NATIVE_FORMAT)

    def _restore_portable(self, actor: Actor, file: Path, verified: tuple[dict, dict], family: str | None) -> RestoreResult:
        header, end = verified
        family = family or restore_family(header)
        name, version = self._next_name(family)
        config = header["config"]
        self._register(actor, name, version, family, header, f"{RESTORE_SOURCE}{file.name} of {header['collection']}")
        n = 0
        try:
            self.store.create_configured(name, config)
            batch: list[models.PointStruct] = []
            h = hashlib.sha256()
            for lineno, raw, obj in _points(file):
                if obj.get("end") is True:
                    continue
                h.update(raw)
                if lineno == 1:
                    continue
                batch.append(models.PointStruct(id=obj["id"], vector=_vector_struct(obj["vector"]),
                                                payload=obj.get("payload", {})))
                if len(batch) >= BATCH:
                    n = self._upsert(name, batch, n)
                    batch = []
            if batch:
                n = self._upsert(name, batch, n)
            if h.hexdigest() != end["sha256"]:  # the file changed between the check and the import
                raise SnapshotError(f"{file.name} changed while it was being restored")
        except BaseException as exc:  # leave no half-restored collection behind
            self._abandon(name)
            if isinstance(exc, RagError) or not isinstance(exc, Exception):
                raise
            raise DependencyError(f"restoring {file.name} into {name} failed: {type(exc).__name__}: {exc}",
                                  part="vector store") from exc
        self.registry.update(name, status=READY)
        return RestoreResult(name, n, header["collection"], file.name)

    def _upsert(self, name: str, batch: list[models.PointStruct], done: int) -> int:
        """Write a batch and beat the version's heartbeat: the row shows the restore is alive."""
        self.store.upsert(name, batch)
        self.registry.update(name, heartbeat_at=utcnow())
        return done + len(batch)

    def _restore_native(self, actor: Actor, snap: SnapshotInfo, family: str | None) -> RestoreResult:
        if not self.server:
            raise InputError(f"{snap.name} is a Qdrant server snapshot: it restores only into a Qdrant server")
        family = family or snap.family
        name, version = self._next_name(family)
        self._register(actor, name, version, family, snap.meta, f"{RESTORE_SOURCE}{snap.name}")
        try:
            _, fh = self.open(snap.id)
            with fh, self._http() as http:
                r = http.post(f"/collections/{name}/snapshots/upload", params={"wait": "true", "priority": "snapshot",
                              **({"checksum": snap.sha256} if snap.sha256 else {})}, files={"snapshot": (snap.path, fh)})
                r.raise_for_status()
        except Exception as exc:
            self._abandon(name)
            raise DependencyError(f"recovering {snap.name} into {name} failed: {exc}", part="vector store") from exc
        self.registry.update(name, status=READY)
        return RestoreResult(name, self.store.count(name), snap.collection, snap.name)

    def _abandon(self, name: str) -> None:
        """A failed restore leaves nothing: no collection and no registry row (the audit log keeps
        the failure). The row goes even when the collection cannot be deleted."""
        try:
            if name in self.store.collections():
                self.store.delete_collection(name)
        finally:
            self.registry.delete(name)

    def drop_interrupted(self) -> list[str]:
        """Restores whose process died are marked failed by the owner check at startup (jobs.py);
        remove what they left, like a restore that failed in the open. Runs at every start."""
        dropped = []
        for row in self.registry.list():
            if row.status == FAILED and row.source.startswith(RESTORE_SOURCE):
                try:
                    self._abandon(row.collection)
                except Exception:  # the vector store is down: the next start retries
                    log.warning("could not remove the interrupted restore %s", row.collection, exc_info=True)
                    continue
                dropped.append(row.collection)
        return dropped

    # --- delete ---------------------------------------------------------------------------------
    def delete(self, actor: Actor, snapshot_id: int) -> None:
        with self.audit.action(actor, "snapshot.delete", str(snapshot_id), need=Action.snapshot_delete) as extra:
            snap = self.get(snapshot_id)
            extra.update(snapshot=snap.name, collection=snap.collection)
            if snap.kind == PORTABLE:
                Path(snap.path).unlink(missing_ok=True)
            elif self.server:
                self.store.delete_snapshot(snap.collection, snap.path)
            with self.db.begin() as conn:
                conn.execute(snapshots.delete().where(snapshots.c.id == snapshot_id))
