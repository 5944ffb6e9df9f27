"""Index admin: the versions of an index family, shadow rebuilds as background jobs, the
evaluation gate, atomic promote / rollback with an alias history, and delete.

Every state-changing call takes the acting user and is audited (refusals included), so the
console page, the CLI and CI go through the same checks."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

import backend.index_admin.gate as gating
from backend.access import Action, Actor
from backend.access.audit import AuditLog, AuditRecord
from backend.access.roots import check_ingest_root
from backend.background.jobs import JobContext, JobRunner
from backend.db import audit_log, index_versions, utcnow
from backend.engine.policy import PolicyStore
from backend.engine.query_engine import QueryEngine
from backend.engine.vectorstore import DENSE, CollectionShape, VectorStore
from backend.errors import InputError, NotFoundError
from backend.index_admin.tables import alias_history, index_gates
from backend.index_admin.uploads import precheck_source, stage_upload
from backend.ingestion.chunking import ChunkingParams
from backend.ingestion.ingestor import Ingestor, IngestProgress
from backend.ingestion.sources import load_source
from backend.ingestion.versions import BUILDING, FAILED, READY, IndexRegistry, IndexVersion
from backend.releases.manager import ReleaseManager, check_reason
from backend.settings import Settings
from backend.text import check_text, column_length

DELETED = "deleted"
REBUILD, GATE = "index.rebuild", "index.gate"
ADMIN_ACTIONS = ("index.", "job.", "snapshot.")
MAX_PATH_CHARS = 4_096  # a source folder or gate dataset path (PATH_MAX on Linux)
MAX_UPLOAD_NAME_CHARS = 255  # a file name (NAME_MAX): it names the staged file and the version's source


@dataclass
class VersionInfo:
    """One collection of the family as the registry and Qdrant see it."""

    collection: str
    family: str
    version: int | None
    status: str  # building | ready | failed | cancelled | unregistered (in Qdrant only) | missing (registry only)
    points: int | None
    vectors: str
    embedding_model: str
    dim: int | None
    params: dict
    source: str
    n_docs: int
    n_chunks: int
    created_at: datetime | None
    created_by: str
    error: str
    aliases: list[str] = field(default_factory=list)
    live: bool = False

    @property
    def chunking(self) -> str:
        p = self.params
        if not p:
            return ""
        return f"target {p.get('target_chars')} / max {p.get('max_chars')} / overlap {p.get('overlap')}"


@dataclass(frozen=True)
class AliasChange:
    alias: str
    previous: str | None
    current: str
    action: str


@dataclass(frozen=True)
class AliasHistoryEntry:
    """One recorded alias change (promote or rollback), as the history lists it."""
    id: int
    ts: datetime
    actor: str
    alias: str
    from_collection: str | None
    to_collection: str
    action: str
    reason: str


@dataclass
class StoredGate:
    result: gating.GateResult
    ts: datetime
    actor: Actor
    live_now: str | None  # the live version when read: a gate against an older live version is stale

    @property
    def stale(self) -> bool:
        return self.result.baseline != self.live_now


def _collection(name: object, field: str = "the index version") -> str:
    """A collection or alias name the user picked or typed, checked before it reaches a query:
    PostgreSQL refuses a NUL in a WHERE as it does in a write."""
    return check_text(name, field, max_chars=column_length(index_versions.c.collection))


def _vectors(shape: CollectionShape) -> tuple[str, int | None]:
    """'dense 384 Cosine + sparse (idf)' and the dense size, from a collection's shape."""
    dense = shape.vectors.get(DENSE) or shape.vectors.get("")
    parts = [f"{DENSE} {dense['size']} {dense['distance']}"] if dense else []
    parts += [name + (f" ({v['modifier']})" if v["modifier"] and v["modifier"] != "none" else "")
              for name, v in shape.sparse_vectors.items()]
    return " + ".join(parts), dense["size"] if dense else None


class IndexAdmin:
    def __init__(self, settings: Settings, db: Engine, store: VectorStore, registry: IndexRegistry,
                 ingestor: Ingestor, engine: QueryEngine, policies: PolicyStore, audit: AuditLog, jobs: JobRunner):
        self.settings, self.db, self.store, self.registry = settings, db, store, registry
        self.ingestor, self.engine, self.policies, self.audit, self.jobs = ingestor, engine, policies, audit, jobs
        self.uploads_dir = settings.data_dir / "uploads"
        # The live configuration's releases (set by build_services: they are built after the index
        # admin, whose promote they call): promote / rollback move the current release with the
        # alias, and delete refuses a version a release uses.
        self.releases: ReleaseManager | None = None
        self.recover_orphans()

    @property
    def family(self) -> str:
        return self.settings.index_alias

    # --- versions -------------------------------------------------------------------------------
    def versions(self, family: str | None = None, include_deleted: bool = False) -> list[VersionInfo]:
        """Every collection of the family, newest first, with points, vector config and aliases."""
        family = family or self.family
        pattern = re.compile(rf"^{re.escape(family)}_v(\d+)$")
        rows = {r.collection: r for r in self.registry.list(family)}
        in_store = set(self.store.collections())
        by_target: dict[str, list[str]] = {}
        for a, c in self.store.aliases().items():
            by_target.setdefault(c, []).append(a)
        names = {c for c in in_store if pattern.match(c)} | set(rows)
        out = []
        for name in names:
            row = rows.get(name)
            if row and row.status == DELETED and not include_deleted:
                continue
            points, vectors, dim = None, "", row.dim if row else None
            if name in in_store:
                shape = self.store.describe(name)
                points = shape.points
                vectors, dim = _vectors(shape)
            status = (row.status if row else "unregistered") if name in in_store or (row and row.status == DELETED) \
                else "missing"
            m = pattern.match(name)
            out.append(VersionInfo(
                collection=name, family=family, version=row.version if row else (int(m.group(1)) if m else None),
                status=status, points=points, vectors=vectors, embedding_model=row.embedding_model if row else "",
                dim=dim, params=dict(row.params) if row else {}, source=row.source if row else "",
                n_docs=row.n_docs if row else 0, n_chunks=row.n_chunks if row else 0,
                created_at=row.created_at if row else None, created_by=row.created_by if row else "",
                error=row.error if row else "", aliases=sorted(by_target.get(name, [])),
                live=family in by_target.get(name, []),
            ))
        return sorted(out, key=lambda v: -(v.version or 0))

    def version(self, collection: str) -> IndexVersion:
        row = self.registry.get(collection)
        if row is None or row.status == DELETED:
            raise NotFoundError(f"unknown index version '{collection}'")
        return row

    def live(self, alias: str | None = None) -> str | None:
        return self.store.aliases().get(alias or self.family)

    def recover_orphans(self) -> list[str]:
        """Versions left 'building' by a process that died have no job running them: mark them failed.
        Only rows written before owners were recorded: an owned row may be a live CLI ingest or
        restore of another process, and the job runner's owner check fails it when its owner dies."""
        fixed = []
        for row in self.registry.list():
            if row.status == BUILDING and not row.owner and self.jobs.active(REBUILD, row.family) is None:
                self.registry.update(row.collection, status=FAILED,
                                     error="interrupted: the build stopped with its process (marked failed at startup)")
                fixed.append(row.collection)
        return fixed

    # --- rebuild ----------------------------------------------------------------------------------
    def start_rebuild(self, actor: Actor, *, source: str | Path | None = None, upload: tuple[str, bytes] | None = None,
                      family: str | None = None, params: ChunkingParams | None = None, limit: int | None = None) -> int:
        """Start a shadow rebuild job into <family>_vN+1; the live alias keeps serving. Returns the job id."""
        self.audit.require(actor, Action.rebuild, REBUILD, family or self.family)
        if family is not None and family != self.family:  # typed: it names the new collections (<family>_vN)
            from backend.index_admin.snapshots import check_family  # snapshots imports this package

            check_family(check_text(family, "the index family"))
        family = family or self.family
        params = params or ChunkingParams()
        if (source is None) == (upload is None):
            raise InputError("give either a source path or an uploaded file")
        if source is not None:
            check_text(str(source), "the source path", max_chars=MAX_PATH_CHARS)
        if upload is not None:
            check_text(upload[0], "the upload's file name", max_chars=MAX_UPLOAD_NAME_CHARS)
        if params.max_chars < params.target_chars:
            raise InputError(f"max chars ({params.max_chars}) must be at least the target ({params.target_chars})")
        active = self.jobs.active(REBUILD, family)
        if active is not None:  # refuse before staging an upload; the job lock refuses races
            self.audit.record(actor, REBUILD, family, result="refused", reason="already running", job=active.id)
            raise InputError(f"a rebuild of {family} is already running (job {active.id}, started by {active.actor}); "
                             "wait for it or cancel it first")
        staging: Path | None = None
        if upload is not None:
            path, staging, described = stage_upload(self.uploads_dir, *upload)
        else:
            path = Path(source).expanduser()  # type: ignore[arg-type]
            if actor.kind != "system":  # the shell may index what it can read; the console and API only the roots
                check_ingest_root(path, self.settings)
            precheck_source(path)
            described = str(path)
        detail = {"source": described, "params": params.model_dump(), "limit": limit}

        def work(ctx: JobContext) -> dict:
            try:
                return self._rebuild(ctx, actor, family, path, described, params, limit)
            finally:
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)

        try:
            return self.jobs.submit(REBUILD, actor, work, target=family, detail=detail, what=f"a rebuild of {family}")
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise

    def _rebuild(self, ctx: JobContext, actor: Actor, family: str, path: Path, described: str,
                 params: ChunkingParams, limit: int | None) -> dict:
        ctx.progress(phase="reading", docs=0, chunks_total=0, chunks_done=0, final=True)
        loaded = load_source(path, limit=limit)
        ctx.progress(phase="chunking", docs=len(loaded.documents), skipped=loaded.skipped[:50], final=True)
        ctx.check_cancelled()

        def on_progress(p: IngestProgress) -> None:  # once per embedding batch: coarse enough to store every one
            ctx.progress(collection=p.collection, phase=p.phase, docs=p.docs, chunks_total=p.chunks_total,
                         chunks_done=p.chunks_done, reused=p.reused, embedded=p.embedded, rate=round(p.rate, 2),
                         eta_s=round(p.eta_s, 1) if p.eta_s is not None else None, final=True)

        result = self.ingestor.ingest(loaded.documents, actor=actor, family=family, source=described, params=params,
                                      promote=False, progress=on_progress, cancel=ctx.cancel)
        ctx.progress(phase="done", collection=result.collection, chunks_total=result.n_chunks,
                     chunks_done=result.n_chunks, final=True)
        return {"collection": result.collection, "version": result.version, "unchanged": result.unchanged,
                "n_docs": result.n_docs, "n_chunks": result.n_chunks, "written": result.written,
                "reused": result.reused, "embedded": result.embedded,
                "seconds": round(result.seconds, 2), "skipped": loaded.skipped[:50],
                "summary": {"collection": result.collection, "chunks": result.n_chunks, "unchanged": result.unchanged,
                            "reused": result.reused, "embedded": result.embedded}}

    def rebuild_job(self, family: str | None = None):  # noqa: ANN201 - Job | None
        """The running rebuild of the family, else the last one (for the progress panel)."""
        family = family or self.family
        return self.jobs.active(REBUILD, family) or self.jobs.latest(REBUILD, family)

    # --- gate -------------------------------------------------------------------------------------
    def default_gate_dataset(self, collection: str) -> str:
        """The version's own source folder when it holds queries.jsonl, else the demo's SciFact set."""
        row = self.registry.get(collection)
        src = Path(row.source) if row and row.source and not row.source.startswith(("upload ", "demo ")) else None
        for cand in ([src, src.parent] if src else []):
            if cand is not None and (cand / "queries.jsonl").is_file():
                return str(cand)
        demo = Path(self.settings.demo_corpus) / "scifact" if self.settings.demo_corpus else None
        return str(demo) if demo and (demo / "queries.jsonl").is_file() else ""

    def start_gate(self, actor: Actor, candidate: str, dataset: str | Path, *, limit: int | None = 50,
                   max_drop: float = gating.MAX_DROP, policy: str = "default") -> int:
        """Score `candidate` against the live version of its family in a background job."""
        self.audit.require(actor, Action.run_evaluation, GATE, candidate)
        _collection(candidate)
        check_text(str(dataset), "the gate dataset", max_chars=MAX_PATH_CHARS)
        row = self.version(candidate)
        if row.status != READY:
            raise InputError(f"{candidate} is {row.status}: only a ready version can be gated")
        baseline = self.live(row.family)
        if baseline == candidate:
            raise InputError(f"{candidate} is already live: gate a new version against it")
        queries = gating.load_gate_queries(Path(dataset), limit)
        pol = self.policies.get(policy)

        def work(ctx: JobContext) -> dict:
            res = self._gate(ctx, actor, row.family, candidate, baseline, str(dataset), queries, pol, max_drop)
            return {**res.as_json(), "summary": {"passed": res.passed, "baseline": baseline,
                                                  "ndcg@10": res.metrics["candidate"]["ndcg@10"]}}

        return self.jobs.submit(GATE, actor, work, target=candidate, what=f"a gate of {candidate}",
                                detail={"dataset": str(dataset), "baseline": baseline, "limit": limit})

    def _gate(self, ctx: JobContext, actor: Actor, family: str, candidate: str, baseline: str | None, dataset: str,
              queries: list[gating.GoldQuery], pol, max_drop: float) -> gating.GateResult:  # noqa: ANN001 - Policy
        collections = [candidate] + ([baseline] if baseline else [])
        ctx.progress(phase="checking gold documents", done=0, total=len(queries) * len(collections), final=True)
        usable = gating.answerable(self.store, collections, queries)
        if not usable:
            raise InputError(f"none of the {len(queries)} queries in {dataset} has a gold document in {', '.join(collections)}")
        total = len(usable) * len(collections)
        metrics: dict[str, dict[str, float] | None] = {"candidate": None, "baseline": None}
        for i, (role, coll) in enumerate(zip(("candidate", "baseline"), collections)):
            ctx.check_cancelled()
            metrics[role] = gating.evaluate_collection(
                self.engine, coll, usable, pol,
                progress=lambda n, i=i, coll=coll: ctx.progress(phase=f"querying {coll}", done=i * len(usable) + n, total=total))
        passed, reasons = gating.verdict(metrics["candidate"], metrics["baseline"], max_drop)  # type: ignore[arg-type]
        result = gating.GateResult(candidate, baseline, dataset, len(usable), len(queries) - len(usable), metrics,
                                   passed, reasons, max_drop)
        with self.db.begin() as conn:
            conn.execute(index_gates.insert().values(
                ts=utcnow(), actor=actor.id, family=family, candidate=candidate, baseline=baseline, dataset=dataset,
                n_queries=result.n_queries, metrics=metrics, passed=passed, reasons=reasons))
        ctx.progress(phase="done", done=total, total=total, final=True)
        return result

    def latest_gate(self, candidate: str) -> StoredGate | None:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(index_gates).where(index_gates.c.candidate == candidate)
                               .order_by(index_gates.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        r = row._mapping
        res = gating.GateResult(r["candidate"], r["baseline"], r["dataset"], r["n_queries"], 0, r["metrics"],
                                bool(r["passed"]), list(r["reasons"]))
        family = v.family if (v := self.registry.get(candidate)) else self.family
        return StoredGate(res, r["ts"], r["actor"], self.live(family))

    def gate_job(self, candidate: str):  # noqa: ANN201 - Job | None
        return self.jobs.active(GATE, candidate) or self.jobs.latest(GATE, candidate)

    # --- promote / rollback -----------------------------------------------------------------------
    def _promotable(self, collection: str) -> dict:
        row = self.version(collection)
        if row.status != READY:
            why = f": {row.error}" if row.error else ""
            raise InputError(f"{collection} is {row.status}{why}; only a ready version can be promoted")
        if collection not in self.store.collections():
            raise NotFoundError(f"{collection} is in the registry but not in the vector store")
        model = self.engine.embedder.name
        if row.embedding_model != model:
            raise InputError(f"{collection} was embedded with {row.embedding_model}, but queries are embedded with "
                             f"{model}: rebuild it with the current model")
        return row

    def promote(self, actor: Actor, collection: str, *, alias: str | None = None, reason: str = "",
                require_gate: bool = False, from_release: bool = False) -> AliasChange:
        """Point the alias at `collection` in one atomic update_collection_aliases call. When the
        current release serves the alias, it moves too (see `_swap`); `from_release`: the releases
        call this for their own promote and move themselves."""
        with self.audit.action(actor, "index.promote", collection, need=Action.promote, reason=reason) as extra:
            _collection(collection)
            if alias is not None:
                _collection(alias, "the alias")
            check_reason(reason)
            row = self._promotable(collection)
            alias = alias or row.family
            extra["alias"] = alias
            if self.live(alias) == collection:
                raise InputError(f"{alias} already points at {collection}")
            if require_gate:
                stored = self.latest_gate(collection)
                if stored is None or not stored.result.passed or stored.stale:
                    state = "no gate run" if stored is None else ("a stale gate (the live version changed)" if stored.stale
                                                                  else "a failed gate")
                    raise InputError(f"{collection} has {state}; run the gate first or promote without --require-gate")
            return self._swap(actor, alias, collection, "promote", reason, extra, follow=not from_release)

    def _swap(self, actor: Actor, alias: str, collection: str, action: str, reason: str, extra: dict,
              follow: bool = True) -> AliasChange:
        """Swap the alias and, when the current release serves it, make the release follow: releases
        read their own collection, so an alias moved alone left release traffic on the old version
        (which could then be deleted under it). We move rather than refuse because an operator who
        promotes a version on this page expects it to answer; while an experiment runs we refuse."""
        following = follow and self.releases is not None and self.releases.serves(self.live(alias))
        if following:
            self.releases.check_index_change(self.live(alias), collection)  # type: ignore[union-attr]
        previous = self.store.point_alias(alias, collection)
        extra["from"] = previous
        with self.db.begin() as conn:
            conn.execute(alias_history.insert().values(ts=utcnow(), actor=actor.id, alias=alias, from_collection=previous,
                                                       to_collection=collection, action=action, reason=reason))
        if following:
            extra["release"] = self.releases.follow_index(actor, collection, action, reason).id  # type: ignore[union-attr]
        return AliasChange(alias, previous, collection, action)

    def history(self, alias: str | None = None, limit: int = 200) -> list[AliasHistoryEntry]:
        """Alias changes, newest first."""
        q = sa.select(alias_history).order_by(alias_history.c.id.desc()).limit(limit)
        if alias:
            q = q.where(alias_history.c.alias == alias)
        with self.db.connect() as conn:
            return [AliasHistoryEntry(**r._mapping) for r in conn.execute(q)]

    def rollback_target(self, alias: str | None = None) -> str | None:
        """The version the alias pointed at before the current one (replaying promotes and
        rollbacks as a stack), else the newest ready version older than the live one."""
        alias = alias or self.family
        live = self.live(alias)
        if live is None:
            return None
        ready = {r.collection: r for r in self.registry.list() if r.status == READY}
        in_store = set(self.store.collections())
        ok = lambda c: c != live and c in ready and c in in_store  # noqa: E731
        hist = list(reversed(self.history(alias, limit=10_000)))
        if hist and hist[-1].to_collection == live:
            stack: list[str] = []
            for e in hist:
                if e.action == "rollback":
                    if stack:
                        stack.pop()
                elif e.from_collection:
                    stack.append(e.from_collection)
            for c in reversed(stack):
                if ok(c):
                    return c
            return None
        live_row = ready.get(live) or self.registry.get(live)
        older = [r for r in ready.values() if live_row and r.family == live_row.family
                 and r.version < live_row.version and ok(r.collection)]
        return max(older, key=lambda r: r.version).collection if older else None

    def rollback(self, actor: Actor, *, alias: str | None = None, reason: str = "") -> AliasChange:
        """Point the alias back at the previous version in one atomic call."""
        alias = alias or self.family
        with self.audit.action(actor, "index.rollback", alias, need=Action.rollback, reason=reason) as extra:
            _collection(alias, "the alias")
            check_reason(reason)
            target = self.rollback_target(alias)
            if target is None:
                raise InputError(f"{alias} has no earlier ready version to roll back to")
            self._promotable(target)
            extra["to"] = target
            return self._swap(actor, alias, target, "rollback", reason, extra)

    # --- delete -----------------------------------------------------------------------------------
    def delete(self, actor: Actor, collection: str) -> None:
        """Drop a version's collection (never one an alias points at or a release uses); its registry row stays as
        'deleted' so its name is never reused and the history stays readable."""
        with self.audit.action(actor, "index.delete", collection, need=Action.delete_version) as extra:
            _collection(collection)
            row = self.registry.get(collection)
            exists = collection in self.store.collections()
            if (row is None or row.status == DELETED) and not exists:
                raise NotFoundError(f"unknown index version '{collection}'")
            pointing = sorted(a for a, c in self.store.aliases().items() if c == collection)
            if pointing:
                raise InputError(f"{collection} is live behind {', '.join(pointing)}: promote another version first")
            used = self.releases.uses(collection) if self.releases is not None else []
            if used:
                raise InputError(f"{collection} is used by the {' and the '.join(used)}: move the releases to another "
                                 "version first")
            if row and row.status == BUILDING and self.jobs.active(REBUILD, row.family) is not None:
                raise InputError(f"{collection} is being built: cancel the rebuild job first")
            extra.update(status=row.status if row else "unregistered", points=self.store.count(collection) if exists else 0)
            if exists:
                self.store.delete_collection(collection)
            if row:
                self.registry.update(collection, status=DELETED, error=f"deleted by {actor} at {utcnow():%Y-%m-%d %H:%M} UTC")

    # --- audit ------------------------------------------------------------------------------------
    def audit_log(self, actor: Actor, limit: int = 100) -> list[AuditRecord]:
        """Recent admin actions (index, job and snapshot), newest first."""
        self.audit.require(actor, Action.read_audit, "audit.read")
        cond = sa.or_(*[audit_log.c.action.startswith(p) for p in ADMIN_ACTIONS])
        q = sa.select(audit_log).where(cond).order_by(audit_log.c.id.desc()).limit(limit)
        with self.db.connect() as conn:
            return [AuditRecord(**r._mapping) for r in conn.execute(q)]
