"""The Meter the services hand to the engine: prices each call from the dated price table,
writes its ledger row (through the journal: never lost), feeds Prometheus, enforces hard budgets and fires budget thresholds;
after each request it lets the alert rules run (at most every 30 s, in the background)."""
from __future__ import annotations

import logging

from backend.db import utcnow
from backend.ledger.calls import ModelCall, RequestContext
from backend.ledger.journal import WriteJournal
from backend.ledger.store import row_values

log = logging.getLogger(__name__)


class LedgerMeter:
    def __init__(self, journal: WriteJournal, prices, budgets=None, alerts=None, metrics=None):
        self.journal, self.prices, self.budgets, self.alerts, self.metrics = journal, prices, budgets, alerts, metrics

    def authorize(self, ctx: RequestContext, planned: list[tuple[str, str]]) -> None:
        if self.budgets is None:
            return
        paid = [model for _, model in planned if self.prices.is_paid(model)]
        if paid:
            self.budgets.check(ctx.user, ctx.policy, paid)

    def record(self, ctx: RequestContext, call: ModelCall) -> ModelCall:
        call.ts = utcnow()
        if call.cache_hit:
            saved = self.prices.cost(call.model, call.saved_prompt_tokens, call.saved_completion_tokens, at=call.ts)
            call.cost_usd, call.saved_usd, call.price_known, call.price_id = 0.0, saved.usd, True, saved.price_id
        elif call.status == "refused":
            call.cost_usd, call.price_known = 0.0, True
        else:
            cost = self.prices.cost(call.model, call.prompt_tokens, call.completion_tokens, call.cached_tokens, at=call.ts)
            call.cost_usd, call.price_known, call.price_id = cost.usd, cost.known, cost.price_id
        self.journal.submit("ledger", row_values(ctx, call))  # kept on disk until the database has it
        if self.metrics is not None:
            self.metrics.model_call(ctx, call)
        if call.cost_usd > 0 and self.budgets is not None:
            try:
                self.budgets.on_spend(ctx.user, ctx.policy, call.model, call.cost_usd, call.ts)
            except Exception:
                log.exception("budget thresholds could not be evaluated")
        return call

    def request_done(self, ctx: RequestContext, status: str, latency_ms: dict[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.request(ctx, status, latency_ms)
        if self.alerts is not None:
            self.alerts.maybe_evaluate_async()
