"""The Meter the services hand to the engine: prices each call from the dated price table,
writes its ledger row (through the journal: never lost), feeds Prometheus, enforces hard budgets and API key budgets
and fires budget thresholds. Alert rules run in backend.background.housekeeping, not after requests."""
from __future__ import annotations

import logging

from backend.db import utcnow
from backend.ledger.calls import ModelCall, Planned, RequestContext, as_planned
from backend.ledger.journal import WriteJournal
from backend.ledger.store import row_values

log = logging.getLogger(__name__)


class LedgerMeter:
    def __init__(self, journal: WriteJournal, prices, budgets=None, metrics=None):
        self.journal, self.prices, self.budgets, self.metrics = journal, prices, budgets, metrics

    def authorize(self, ctx: RequestContext, planned: list[Planned] | list[tuple[str, str]]) -> None:
        """Hard budgets, and an API key's own monthly budget, hold the planned paid calls' estimated
        cost (an unpriced model: $0, still refused once its budget is spent) until `request_done`."""
        if self.budgets is None:
            return
        estimates: dict[str, float] = {}
        for p in map(as_planned, planned):
            if self.prices.is_paid(p.model):
                usd = self.prices.cost(p.model, p.prompt_tokens, p.completion_tokens).usd
                estimates[p.model] = estimates.get(p.model, 0.0) + usd
        if estimates:
            ctx.reserved = self.budgets.reserve(ctx.request_id, ctx.user, ctx.policy, estimates,
                                                api_key=ctx.api_key) or ctx.reserved

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

    def release(self, ctx: RequestContext) -> None:
        """The request's rows are written: its real cost replaces what the hard budgets held."""
        if ctx.reserved and self.budgets is not None:
            try:
                flush_s = self.journal.flush_ms / 1000  # rows written in the background: hold their cost a while
                self.budgets.settle(ctx.request_id, ctx.cost_usd, keep_s=2 * flush_s + 5 if flush_s > 0 else 0.0)
                ctx.reserved = False
            except Exception:  # the hold lapses on its own (budgets.RESERVATION_TTL_S)
                log.exception("budget reservation of request %s could not be released", ctx.request_id)

    def request_done(self, ctx: RequestContext, status: str, latency_ms: dict[str, float]) -> None:
        self.release(ctx)
        if self.metrics is not None:
            self.metrics.request(ctx, status, latency_ms)
