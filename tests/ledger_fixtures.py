"""Helpers for the ledger, budget, alert and Prometheus tests: a cost stack (price table,
ledger, budgets, alerts, exporter) on its own fresh database, an engine metered by it over the
session's small real index, and a tiny webhook receiver."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from actors import system_actor
from services import HOST, free_port

from backend.access.audit import AuditLog
from backend.db import make_engine, migrate
from backend.engine.answer_cache import MemoryCache
from backend.engine.generation import Generator
from backend.engine.query_engine import QueryEngine
from backend.ledger.costs import Costs, build_costs
from backend.ledger.store import ledger
from backend.services import Services


def cost_stack(tmp_path: Path, url: str | None = None, **settings: Any) -> Costs:
    """Costs on a fresh SQLite file (or the given database URL), migrated, no metrics endpoint."""
    from backend.settings import Settings

    db = make_engine(url or f"sqlite:///{tmp_path / 'costs.db'}")
    migrate(db)
    s = Settings(_env_file=None, data_dir=tmp_path, **settings)
    costs = build_costs(s, db, AuditLog(db), serve_metrics=False)
    costs.db = db  # type: ignore[attr-defined]  (for the tests' own queries)
    costs.budgets._ttl = 0.0  # always read fresh spend: the tests assert exact figures
    return costs


def metered_engine(services: Services, costs: Costs, generator: Generator, **settings: Any) -> QueryEngine:
    s = services.settings.model_copy(update=settings)
    return QueryEngine(s, services.store, services.embedder, generator, services.engine.reranker,
                       MemoryCache(3600, 100), costs.meter)


def ledger_rows(costs: Costs, **where: Any) -> list[dict]:
    q = sa.select(ledger).order_by(ledger.c.id)
    for k, v in where.items():
        q = q.where(ledger.c[k] == v)
    with costs.db.connect() as conn:  # type: ignore[attr-defined]
        return [dict(r._mapping) for r in conn.execute(q)]


@dataclass
class Webhook:
    url: str = ""
    received: list[dict] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def close(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def start_webhook() -> Webhook:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            hook.received.append(json.loads(self.rfile.read(n)))
            self.send_response(204)
            self.end_headers()

    hook.server = ThreadingHTTPServer((HOST, free_port()), Handler)
    hook.url = f"http://{HOST}:{hook.server.server_address[1]}/hook"
    threading.Thread(target=hook.server.serve_forever, daemon=True).start()
    return hook


# --- a console data folder with a seeded ledger (page tests) ------------------------------------

def seed_console(data_dir: Path, rows: int = 8000, days: int = 40) -> dict[str, Any]:
    """A tiny live index (so the console skips its demo build) and a synthetic ledger of `rows`
    rows over `days` days, a model without a price, two budgets and a firing alert."""
    from datetime import datetime, timezone

    from backend.ingestion.chunking import Document
    from backend.ledger.calls import ModelCall, RequestContext
    from backend.services import build_services
    from backend.settings import Settings
    from bench.ledger_queries import load, synthetic

    settings = Settings(_env_file=None, data_dir=data_dir, openai_base_url=None, redis_url=None, database_url=None,
                        qdrant_url=None, embedding_base_url=None, rerank_url=None)
    svc = build_services(settings)
    try:
        docs = [Document("d1", "Aspirin lowers the risk of a second heart attack in most adults.", "Aspirin"),
                Document("d2", "大莱龙铁路是山东省的一条铁路，总投资约二十亿元。", "大莱龙铁路")]
        svc.ingestor.ingest(docs, actor=system_actor("test"), family=settings.index_alias, source="tests")
        end = datetime.now(timezone.utc)
        n = load(svc.db, synthetic(rows, days, end, seed=11, users=30, n_questions=300))
        ctx = RequestContext("unpriced-1", "user001", "default", 1, None, "rag_chunks_v4", "a question for a new model")
        for _ in range(3):
            svc.costs.meter.record(ctx, ModelCall("chat", "mystery-llm-9b", prompt_tokens=900, completion_tokens=90,
                                                  latency_ms=700, retrieve_ms=30, total_ms=800))
        svc.costs.budgets.create(system_actor("seed"), "monthly total", 50.0, period="month", thresholds=[50, 80, 100])
        svc.costs.budgets.create(system_actor("seed"), "user001 daily", 0.5, scope="user", scope_value="user001", period="day",
                                 hard=True)
        svc.costs.budgets.evaluate()
        svc.costs.alerts.fire("rule:seed", "rule", "errors: 7.5% > 5.0%", "share of requests that failed, last 15 min",
                              0.075, 0.05)
    finally:
        svc.close()
    return {"rows": n + 3, "end": end}
