"""Builds every service once from the settings: the one place that wires the stack.

Parts that can be down (Redis, an LLM endpoint) never stop the others from being built;
their health is checked separately (backend.health)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from backend.access.audit import AuditLog
from backend.access.service import AccessStore
from backend.background.housekeeping import Housekeeping
from backend.background.jobs import JobRunner
from backend.db import make_engine, migrate
from backend.engine.answer_cache import MemoryCache, RedisCache
from backend.engine.embeddings import Embedder, make_embedder
from backend.engine.generation import make_generator
from backend.engine.policy import PolicyStore
from backend.engine.query_engine import QueryEngine
from backend.engine.rerank import make_reranker
from backend.engine.vectorstore import VectorStore, open_client
from backend.evaluation.golden import GoldenSets
from backend.evaluation.judge import Judge
from backend.evaluation.runs import EvalRuns
from backend.evaluation.traces import TraceRows, TraceStore
from backend.index_admin.service import IndexAdmin
from backend.index_admin.snapshots import SnapshotStore
from backend.ingestion.embedding_cache import EmbeddingCache
from backend.ingestion.ingestor import Ingestor
from backend.ingestion.versions import IndexRegistry
from backend.ledger.costs import Costs, build_costs
from backend.releases.manager import ReleaseManager
from backend.settings import Settings, get_settings


@dataclass
class Services:
    settings: Settings
    db: Engine
    audit: AuditLog
    access: AccessStore  # accounts, API keys, login sessions
    store: VectorStore
    embedder: Embedder
    registry: IndexRegistry
    ingestor: Ingestor
    engine: QueryEngine
    policies: PolicyStore
    traces: TraceStore
    golden: GoldenSets
    evals: EvalRuns
    jobs: JobRunner
    index_admin: IndexAdmin
    snapshots: SnapshotStore
    costs: Costs  # price table, ledger, budgets, alerts, Prometheus (the engine's meter)
    releases: ReleaseManager  # live configuration: current + candidate release, guardrails, votes
    housekeeping: Housekeeping | None = None  # serving processes only (start_housekeeping)

    def start_housekeeping(self) -> None:
        """Run the periodic housekeeping in this process (the console, an API worker); one-shot
        CLI commands don't: they build Services too but would only compete for the lease."""
        if self.housekeeping is None:
            tasks = [*self.costs.housekeeping_tasks(), self.ingestor.vectors.prune]
            self.housekeeping = Housekeeping(self.db, tasks, self.settings.housekeeping_s)
            self.housekeeping.start()

    def close(self) -> None:
        if self.housekeeping is not None:
            self.housekeeping.stop()
        self.costs.close()
        self.jobs.shutdown()
        self.store.close()
        self.db.dispose()


def build_services(settings: Settings | None = None, record_traces: bool = True) -> Services:
    s = settings or get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_engine(s.sql_url)
    migrate(db)
    audit = AuditLog(db)
    store = VectorStore(open_client(s), local=not s.qdrant_url)
    embedder = make_embedder(s)
    registry = IndexRegistry(db)
    cache = RedisCache(s.redis_url, s.cache_ttl_s) if s.redis_url else MemoryCache(s.cache_ttl_s, s.cache_max_items)
    costs = build_costs(s, db, audit, more_sinks={"trace": TraceRows()})
    engine = QueryEngine(s, store, embedder, make_generator(s), make_reranker(s, store), cache, costs.meter)
    trace_store = TraceStore(db, audit, costs.journal)
    golden = GoldenSets(db, audit, max_question_chars=s.max_question_chars)
    if record_traces:
        engine.recorders.append(trace_store.record)
    ingestor = Ingestor(store, embedder, registry, audit, EmbeddingCache(db, s.embedding_cache_days), s.embedding_batch_size)
    policy_store = PolicyStore(db, audit, s.pipeline_factory_list)
    jobs = JobRunner(db, audit)  # marks the jobs of a process that died as failed
    index_admin = IndexAdmin(s, db, store, registry, ingestor, engine, policy_store, audit, jobs)
    # Releases swap the live alias through the index admin's promote (atomic, with alias history).
    releases = ReleaseManager(db, audit, policy_store, store, s.index_alias, promote_index=index_admin.promote,
                              alerts=costs.alerts)
    index_admin.releases = releases  # one live configuration: the index admin moves or protects releases
    return Services(
        settings=s, db=db, audit=audit, access=AccessStore(db, audit, s.signing_secret(), s.auth_session_hours),
        store=store, embedder=embedder, registry=registry,
        ingestor=ingestor, engine=engine, policies=policy_store, traces=trace_store, golden=golden,
        evals=EvalRuns(db, audit, engine, store, golden, Judge(s, embedder, costs.meter) if s.judge_base_url else None),
        jobs=jobs, index_admin=index_admin, snapshots=SnapshotStore(s, db, store, registry, audit), costs=costs,
        releases=releases,
    )


_shared: Services | None = None
_shared_lock = threading.Lock()


def shared_services() -> Services:
    """The process's one Services, built on first use: the console's pages and the API mounted in
    the same server share it (Qdrant local mode allows one client per folder). A serving process:
    it runs the housekeeping."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = build_services()
            _shared.start_housekeeping()
        return _shared


def close_shared_services() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
        _shared = None
