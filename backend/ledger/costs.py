"""The cost services as one bundle (Services.costs): price table, ledger store and queries,
budgets, alerts, the Prometheus exporter and, when PROMETHEUS_URL is set, the Prometheus source.
`meter` is what the engine is built with."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from backend.access.audit import AuditLog
from backend.ledger.alerts import AlertService
from backend.ledger.budgets import BudgetService
from backend.ledger.journal import Sink, WriteJournal
from backend.ledger.meter import LedgerMeter
from backend.ledger.metrics import Metrics, PrometheusSource
from backend.ledger.pricing import PriceTable
from backend.ledger.queries import LedgerQueries
from backend.ledger.store import LedgerStore
from backend.settings import Settings


@dataclass
class Costs:
    prices: PriceTable
    ledger: LedgerStore
    journal: WriteJournal  # every ledger row (and chat trace) passes through it on its way to the database
    queries: LedgerQueries
    budgets: BudgetService
    alerts: AlertService
    metrics: Metrics
    meter: LedgerMeter
    prometheus: PrometheusSource | None
    max_price_age_days: int

    def housekeeping_tasks(self) -> list[Callable[[], object]]:
        """What falls due with time, not with a request (backend.background.housekeeping runs it every
        HOUSEKEEPING_S under a lease): budget alerts of ended periods resolve, alert rules fire or
        resolve as their windows move on."""
        return [self.budgets.close_old_periods, self.alerts.evaluate]

    def close(self) -> None:
        self.metrics.stop()
        self.alerts.flush(2.0)
        self.journal.close()


def build_costs(settings: Settings, db: Engine, audit: AuditLog, serve_metrics: bool = True,
                more_sinks: dict[str, Sink] | None = None) -> Costs:
    """`more_sinks`: other kinds of rows that go through the ledger's journal (the chat traces)."""
    prices = PriceTable(db, audit)
    store = LedgerStore(db)
    journal = WriteJournal(db, settings.data_dir / "journal", {"ledger": store, **(more_sinks or {})},
                           settings.ledger_flush_ms)
    queries = LedgerQueries(db)
    metrics = Metrics()
    alerts = AlertService(db, audit, queries, settings.alert_webhook_url)
    budgets = BudgetService(db, audit, queries, alerts, gauge=metrics.set_budget)
    if serve_metrics and settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    return Costs(prices=prices, ledger=store, journal=journal, queries=queries, budgets=budgets, alerts=alerts, metrics=metrics,
                 meter=LedgerMeter(journal, prices, budgets, metrics),
                 prometheus=PrometheusSource(settings.prometheus_url) if settings.prometheus_url else None,
                 max_price_age_days=settings.price_table_max_age_days)
