"""Budgets: a spend limit per scope (global, policy, user or model) and period (UTC day, week
from Monday, calendar month, or the last N days including today).

Soft thresholds (e.g. 80 / 95 / 100 % of the limit) raise an alert once each per period. A hard
budget also refuses new paid calls of its scope once its spend reaches the limit; cached answers
are served before any budget check, so they still go out. Spend comes from the ledger's daily
roll-up, cached for a few seconds and increased at once by each call this process writes.

An API key may carry its own monthly budget (`api_keys.budget_usd`): `check_key` refuses the key's
requests once its spend this calendar month (UTC) reaches it. That spend is read fresh on every
request from the ledger's per-key daily roll-up (at most 31 rows). Its paid calls are held like a
hard budget's (below): `reserve` given the key's name holds the request's estimate on the key too,
in the same transaction (a row with budget_id KEY_BUDGET_ID and the key's name), so ten concurrent
requests of one key cannot all pass a check made before any of them spent.

Hard budgets hold a reservation per request (`reserve`, before its first paid call; `settle`,
once its ledger rows are written): checking the spend before a call and adding it after let ten
concurrent $0.03 calls through a $0.05 cap. A reservation is a row, inserted only when the
period's spend (from the ledger's roll-up) plus every live reservation plus this one stays within
the limit; the check and the insert are one statement, and the budget's row is locked first
(PostgreSQL) or the write lock taken first (SQLite), so it holds across processes. A row left by
a crashed process lapses after RESERVATION_TTL_S.

With the database unreachable, a key whose budget passed within KEY_STALE_S goes on (its ledger rows
wait in the journal), both at `check_key` and at `reserve` when no hard budget covers the request."""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.access.service import KEY_STALE_S, KEY_TTL_S
from backend.access.tables import api_keys
from backend.db import dialect_insert, metadata, utcnow
from backend.errors import BudgetExceeded, InputError, NotFoundError
from backend.ledger.queries import LedgerQueries, spend_select
from backend.ledger.store import DAY_S, ledger_key_daily
from backend.text import control_chars, finite_number

SCOPES = ("global", "policy", "user", "model")
PERIODS = ("day", "week", "month", "rolling")
DEFAULT_THRESHOLDS = [80, 95, 100]
MAX_LIMIT_USD = 10_000_000.0  # above: a typo (and `inf` would make the budget meaningless)
NAME_MAX = 200  # budgets.name and scope_value are VARCHAR(200)
RESERVATION_TTL_S = 10 * 60  # longer than any request; a crashed process blocks a budget no longer
SLACK_USD = 1e-9  # float sums of cents: 0.03 + 0.02 must fit a $0.05 limit
KEY_BUDGET_ID = 0  # budget_id of an API key's reservation (no budgets row has id 0); api_key names the key

log = logging.getLogger(__name__)

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("scope", sa.String(20), nullable=False),
    sa.Column("scope_value", sa.String(200), nullable=True),
    sa.Column("period", sa.String(20), nullable=False),
    sa.Column("rolling_days", sa.Integer, nullable=True),
    sa.Column("limit_usd", sa.Float, nullable=False),
    sa.Column("hard", sa.Boolean, nullable=False),
    sa.Column("thresholds", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

budget_events = sa.Table(
    "budget_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("budget_id", sa.Integer, nullable=False),
    sa.Column("period_key", sa.String(60), nullable=False),
    sa.Column("threshold", sa.Integer, nullable=False),
    sa.Column("spend_usd", sa.Float, nullable=False),
    sa.Column("limit_usd", sa.Float, nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rearmed_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("budget_id", "period_key", "threshold", name="uq_budget_event"),
)

budget_reservations = sa.Table(  # migration 0009_budget_reservations
    "budget_reservations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("budget_id", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("amount_usd", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_epoch", sa.Float, nullable=False),  # seconds since 1970: compares alike on both databases
    sa.Column("api_key", sa.String(64), nullable=True),  # migration 0011: the key's name on a key's reservation
    sa.Index("ix_budget_reservations_budget", "budget_id", "expires_epoch"),
    sa.Index("ix_budget_reservations_key", "api_key", "expires_epoch"),
    sa.Index("ix_budget_reservations_request", "request_id"),
    sa.Index("ix_budget_reservations_expires", "expires_epoch"),
)


@dataclass(frozen=True)
class Budget:
    id: int
    name: str
    scope: str
    scope_value: str | None
    period: str
    rolling_days: int | None
    limit_usd: float
    hard: bool
    thresholds: tuple[int, ...]
    enabled: bool = True

    def applies(self, user: str, policy: str, models: list[str]) -> bool:
        if self.scope == "global":
            return True
        if self.scope == "user":
            return self.scope_value == user
        if self.scope == "policy":
            return self.scope_value == policy
        return self.scope_value in models

    @property
    def scope_label(self) -> str:
        return "all spend" if self.scope == "global" else f"{self.scope} {self.scope_value}"

    @property
    def period_label(self) -> str:
        return f"last {self.rolling_days} days" if self.period == "rolling" else f"this {self.period}"


@dataclass(frozen=True)
class Period:
    first_day: int  # epoch days, UTC
    end_day: int  # exclusive
    key: str
    resets: datetime | None  # when a calendar period starts anew (rolling windows slide instead)


def period_of(b: Budget, now: datetime) -> Period:
    today = now.astimezone(timezone.utc).date()

    def day(d: date) -> int:
        return (d - date(1970, 1, 1)).days

    def at(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)

    if b.period == "day":
        return Period(day(today), day(today) + 1, today.isoformat(), at(today + timedelta(days=1)))
    if b.period == "week":
        monday = today - timedelta(days=today.weekday())
        return Period(day(monday), day(monday) + 7, f"week-{monday.isoformat()}", at(monday + timedelta(days=7)))
    if b.period == "month":
        first = today.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return Period(day(first), day(nxt), f"month-{first:%Y-%m}", at(nxt))
    n = b.rolling_days or 1
    return Period(day(today) - n + 1, day(today) + 1, "rolling", None)


@dataclass(frozen=True)
class BudgetStatus:
    """A budget in its current period, for the budget bars and the status table."""

    budget: Budget
    spend_usd: float
    pct: float  # spend / limit, in percent (above 100 once overspent)
    fired: tuple[int, ...]  # thresholds already fired this period, ascending
    blocking: bool  # a hard, enabled budget that is spent: its scope's paid calls are refused
    resets: datetime | None  # when the period starts anew (None: a rolling window)
    first_day: datetime  # midnight UTC of the period's first day


@dataclass(frozen=True)
class Fired:
    budget: Budget
    threshold: int
    spend_usd: float
    period_key: str


class BudgetService:
    def __init__(self, engine: Engine, audit: AuditLog, queries: LedgerQueries, alerts=None, ttl_s: float = 5.0,
                 gauge: Callable[[str, str, float], None] | None = None):
        self._engine, self._audit, self._q, self._alerts, self._ttl = engine, audit, queries, alerts, ttl_s
        self._gauge = gauge  # (budget name, scope label, spend / limit) -> Prometheus
        self._lock = threading.Lock()
        self._spend: dict[int, tuple[str, float, float]] = {}  # id -> (period key, spend, fetched at)
        self._budgets: tuple[float, list[Budget]] | None = None
        self._key_passed: dict[str, float] = {}  # key name -> when its budget last passed (monotonic)

    # --- definitions (audited) --------------------------------------------------------------------
    def create(self, actor: Actor, name: str, limit_usd: float, scope: str = "global", scope_value: str | None = None,
               period: str = "month", hard: bool = False, thresholds: list[int] | None = None,
               rolling_days: int | None = None) -> int:
        spec = self._validate(name, limit_usd, scope, scope_value, period, thresholds, rolling_days)
        with self._audit.action(actor, "budget.create", spec["name"], need=Action.budgets, hard=hard, **{k: v for k, v in spec.items()
                                                                                    if k != "name"}) as extra:
            with self._engine.begin() as conn:
                if conn.execute(sa.select(budgets.c.id).where(budgets.c.name == spec["name"])).first():
                    raise InputError(f"a budget named '{spec['name']}' exists")
                bid = conn.execute(budgets.insert().values(**spec, hard=hard, enabled=True, created_at=utcnow(),
                                                           created_by=actor.id).returning(budgets.c.id)).scalar_one()
            extra["id"] = bid
        self._forget()
        return bid

    def delete(self, actor: Actor, budget_id: int) -> None:
        with self._audit.action(actor, "budget.delete", str(budget_id), need=Action.budgets):
            with self._engine.begin() as conn:
                if conn.execute(budgets.delete().where(budgets.c.id == budget_id)).rowcount == 0:
                    raise NotFoundError(f"no budget {budget_id}")
                conn.execute(budget_events.delete().where(budget_events.c.budget_id == budget_id))
                conn.execute(budget_reservations.delete().where(budget_reservations.c.budget_id == budget_id))
        if self._alerts is not None:
            self._alerts.resolve_prefix(f"budget:{budget_id}:")
        self._forget()

    def set_enabled(self, actor: Actor, budget_id: int, enabled: bool) -> None:
        with self._audit.action(actor, "budget.enable" if enabled else "budget.disable", str(budget_id),
                                need=Action.budgets):
            with self._engine.begin() as conn:
                if conn.execute(budgets.update().where(budgets.c.id == budget_id).values(enabled=enabled)).rowcount == 0:
                    raise NotFoundError(f"no budget {budget_id}")
        self._forget()

    @staticmethod
    def _validate(name, limit_usd, scope, scope_value, period, thresholds, rolling_days) -> dict:
        """InputError naming the field, before any write: inf or NaN limits, absurd sizes and names
        longer than their VARCHAR(200) column (PostgreSQL refuses them, SQLite stores them) included."""
        name = _name(name, "the budget name")
        if not name:
            raise InputError("a budget needs a name")
        limit = finite_number(limit_usd, "the limit", MAX_LIMIT_USD, " USD")
        if not limit > 0:
            raise InputError("the limit must be more than $0")
        if scope not in SCOPES:
            raise InputError(f"scope must be one of {', '.join(SCOPES)}")
        value = _name(scope_value, f"the {scope}") or None
        if scope != "global" and value is None:
            raise InputError(f"a {scope} budget needs the {scope} it applies to")
        if period not in PERIODS:
            raise InputError(f"period must be one of {', '.join(PERIODS)}")
        days = _whole(rolling_days, "rolling days") if period == "rolling" and rolling_days is not None else None
        if period == "rolling" and not (days and 1 <= days <= 366):
            raise InputError("a rolling budget needs a number of days from 1 to 366")
        ths = sorted({_whole(t, "a threshold") for t in (DEFAULT_THRESHOLDS if thresholds is None else thresholds)})
        if any(t <= 0 or t > 1000 for t in ths):
            raise InputError("thresholds are percentages of the limit from 1 to 1000")
        return {"name": name, "limit_usd": limit, "scope": scope, "scope_value": None if scope == "global" else value,
                "period": period, "rolling_days": days, "thresholds": ths}

    def _forget(self) -> None:
        with self._lock:
            self._budgets = None
            self._spend.clear()

    def list(self, include_disabled: bool = True) -> list[Budget]:
        with self._lock:
            cached = self._budgets
        if cached is None or time.monotonic() - cached[0] > self._ttl:
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(budgets).order_by(budgets.c.name)).all()
            cached = (time.monotonic(), [Budget(r.id, r.name, r.scope, r.scope_value, r.period, r.rolling_days,
                                                r.limit_usd, r.hard, tuple(r.thresholds), r.enabled) for r in rows])
            with self._lock:
                self._budgets = cached
        return [b for b in cached[1] if include_disabled or b.enabled]

    # --- spend ------------------------------------------------------------------------------------
    def spend(self, b: Budget, now: datetime | None = None, fresh: bool = False) -> float:
        p = period_of(b, now or utcnow())
        with self._lock:
            hit = self._spend.get(b.id)
        if not fresh and hit and hit[0] == p.key and time.monotonic() - hit[2] <= self._ttl:
            return hit[1]
        value = self._q.spend(p.first_day, p.end_day, b.scope, b.scope_value)
        with self._lock:
            self._spend[b.id] = (p.key, value, time.monotonic())
        if self._gauge is not None:
            self._gauge(b.name, b.scope_label, value / b.limit_usd)
        return value

    def check(self, user: str, policy: str, paid_models: list[str], now: datetime | None = None) -> None:
        """Raise BudgetExceeded when a hard budget that covers one of these paid calls is spent."""
        now = now or utcnow()
        for b in self.list(include_disabled=False):
            if b.hard and b.applies(user, policy, paid_models):
                spent = self.spend(b, now)
                if spent >= b.limit_usd:
                    raise BudgetExceeded(_refusal(b, now, spent, 0.0, 0.0))

    def reserve(self, request_id: str, user: str, policy: str, estimates: dict[str, float],
                now: datetime | None = None, api_key: str | None = None) -> bool:
        """Hold `estimates` (USD per paid model of this request) on every enabled hard budget that
        covers them and, for an API key's request (`api_key`, the key's name), on the key's monthly
        budget: all or none; BudgetExceeded names the first budget that cannot. True when something
        is held (then `settle(request_id)` must follow)."""
        now = now or utcnow()
        hard = sorted((b for b in self.list(include_disabled=False) if b.hard and b.applies(user, policy, list(estimates))),
                      key=lambda b: b.id)
        try:
            keyed = api_key is not None and key_budget(self._engine, api_key) is not None
            if not hard and not keyed:
                return False
            self._reserve(hard=hard, api_key=api_key if keyed else None, request_id=request_id,
                          estimates=estimates, now=now)
        except sa.exc.OperationalError:
            if hard or not self._key_recent(api_key):
                raise
            log.warning("database unreachable: API key %s's paid request goes on without a hold", api_key)
            return False
        return True

    def _reserve(self, hard: list[Budget], api_key: str | None, request_id: str, estimates: dict[str, float],
                 now: datetime) -> None:
        at = now.timestamp()
        with self._engine.begin() as conn:
            # the first statement writes: on SQLite it takes the database's write lock for the transaction
            conn.execute(budget_reservations.delete().where(budget_reservations.c.expires_epoch < at))
            if conn.dialect.name == "postgresql":  # one budget's reservations at a time, in id order (no deadlock)
                conn.execute(sa.select(budgets.c.id).where(budgets.c.id.in_([b.id for b in hard]))
                             .order_by(budgets.c.id).with_for_update())
                if api_key is not None:  # then the key's rows (always after the budgets': no deadlock)
                    conn.execute(sa.select(api_keys.c.id).where(api_keys.c.name == api_key)
                                 .order_by(api_keys.c.id).with_for_update())
            for b in hard:
                amount = sum(usd for model, usd in estimates.items() if b.scope != "model" or b.scope_value == model)
                if not self._hold(conn, b.id, b.limit_usd, _spend_and_held(b, now), request_id, amount, now):
                    spent, held = conn.execute(sa.select(*_spend_and_held(b, now))).one()
                    raise BudgetExceeded(_refusal(b, now, float(spent), float(held), amount))
            if api_key is not None:
                limit = conn.execute(_key_budget_select(api_key)).scalar()  # read again under the lock
                amount = sum(estimates.values())
                if limit is not None and not self._hold(conn, KEY_BUDGET_ID, float(limit), _key_spend_and_held(api_key, now),
                                                        request_id, amount, now, api_key):
                    spent, held = conn.execute(sa.select(*_key_spend_and_held(api_key, now))).one()
                    raise BudgetExceeded(_key_refusal(api_key, float(limit), now, float(spent), float(held), amount))
        if api_key is not None:
            self._key_ok(api_key)

    def _hold(self, conn, budget_id: int, limit: float, spend_and_held: tuple, request_id: str, amount: float,
              now: datetime, api_key: str | None = None) -> bool:
        """One statement: insert the reservation only if spend + live reservations + it fit the
        limit (and the budget is not already spent, for calls estimated at $0)."""
        spent, held = spend_and_held
        fits = sa.and_(spent + held + amount <= limit + SLACK_USD, spent + held < limit)
        T = budget_reservations
        row = sa.select(sa.literal(budget_id, sa.Integer), sa.literal(request_id, sa.String),
                        sa.literal(amount, sa.Float), sa.literal(now, T.c.created_at.type),
                        sa.literal(now.timestamp() + RESERVATION_TTL_S, sa.Float),
                        sa.literal(api_key, sa.String)).where(fits)
        res = conn.execute(T.insert().from_select(["budget_id", "request_id", "amount_usd", "created_at",
                                                   "expires_epoch", "api_key"], row).returning(T.c.id))
        return res.first() is not None  # (psycopg's rowcount of INSERT ... SELECT is not the rows inserted)

    def settle(self, request_id: str, cost_usd: float = 0.0, keep_s: float = 0.0, now: datetime | None = None) -> None:
        """The request is over. Its ledger rows written (its real cost now counts in the spend), its
        reservations go; with rows still on their way (a journal flushing every few seconds) each
        keeps `cost_usd` (at most what it held) for `keep_s`, so the cost is never counted zero times."""
        T = budget_reservations
        with self._engine.begin() as conn:
            if keep_s <= 0:
                conn.execute(T.delete().where(T.c.request_id == request_id))
                return
            until = (now or utcnow()).timestamp() + keep_s
            conn.execute(T.update().where(T.c.request_id == request_id).values(
                amount_usd=sa.case((T.c.amount_usd < cost_usd, T.c.amount_usd), else_=cost_usd), expires_epoch=until))

    def held(self, budget_id: int, now: datetime | None = None, api_key: str | None = None) -> float:
        """USD held by calls in flight on this budget, or on the API key `api_key`'s budget (the
        status page and tests read it)."""
        at = (now or utcnow()).timestamp()
        T = budget_reservations
        which = T.c.budget_id == budget_id if api_key is None else T.c.api_key == api_key
        with self._engine.connect() as conn:
            return float(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(T.c.amount_usd), 0.0)).where(
                which, T.c.expires_epoch >= at)).scalar())

    def on_spend(self, user: str, policy: str, model: str, cost_usd: float, now: datetime | None = None) -> list[Fired]:
        """A call this process wrote: add its cost to the cached spends, fire thresholds now crossed."""
        now = now or utcnow()
        fired: list[Fired] = []
        for b in self.list(include_disabled=False):
            if not b.applies(user, policy, [model]):
                continue
            key = period_of(b, now).key
            with self._lock:
                hit = self._spend.get(b.id)
                if hit and hit[0] == key:
                    self._spend[b.id] = (key, hit[1] + cost_usd, hit[2])
            fired += self._thresholds(b, self.spend(b, now), now)
        return fired

    def evaluate(self, now: datetime | None = None) -> list[Fired]:
        """Every enabled budget against its fresh spend (the dashboard calls this)."""
        now = now or utcnow()
        fired: list[Fired] = []
        for b in self.list(include_disabled=False):
            fired += self._thresholds(b, self.spend(b, now, fresh=True), now)
        return fired

    def _thresholds(self, b: Budget, spent: float, now: datetime) -> list[Fired]:
        p = period_of(b, now)
        pct = 100 * spent / b.limit_usd
        fired: list[Fired] = []
        if b.period != "rolling" and (not b.thresholds or pct < min(b.thresholds)):
            return fired  # nothing to fire, nothing to re-arm
        with self._engine.begin() as conn:
            done = {t for (t,) in conn.execute(sa.select(budget_events.c.threshold).where(
                budget_events.c.budget_id == b.id, budget_events.c.period_key == p.key))}
            for t in b.thresholds:
                if pct >= t and t not in done:
                    res = conn.execute(dialect_insert(conn, budget_events).on_conflict_do_nothing().values(
                        budget_id=b.id, period_key=p.key, threshold=t, spend_usd=spent, limit_usd=b.limit_usd,
                        fired_at=now))
                    if res.rowcount:  # another process may have fired it first
                        fired.append(Fired(b, t, spent, p.key))
                elif pct < t and t in done and b.period == "rolling":
                    # the window slid below the threshold: re-arm it, keeping the event under another key
                    conn.execute(budget_events.update().where(
                        budget_events.c.budget_id == b.id, budget_events.c.period_key == p.key,
                        budget_events.c.threshold == t).values(period_key=f"rolling@{int(now.timestamp())}",
                                                               rearmed_at=now))
        if fired and self._alerts is not None:
            top = max(f.threshold for f in fired)
            kind = "hard" if b.hard else "soft"
            blocking = " — paid calls are now refused" if b.hard and pct >= 100 else ""
            self._alerts.fire(
                key=f"budget:{b.id}:{p.key}", source="budget", severity="critical" if top >= 100 else "warning",
                title=f"Budget '{b.name}' at {pct:.0f}% ({kind}){blocking}",
                detail=f"{b.scope_label}, {b.period_label}: ${spent:,.4f} of ${b.limit_usd:,.2f}; "
                       f"threshold {top}% crossed", value=spent, threshold=b.limit_usd * top / 100, notify=True)
        return fired

    def check_key(self, actor: Actor, now: datetime | None = None) -> None:
        """`check_key_budget` on this service's database (the API calls it once the key is known).
        A key that passed within KEY_TTL_S passes without a query, as its key lookup does (a busy API
        otherwise waits on the database every request; paid calls are still held against the budget).
        Database down: a key whose budget passed within KEY_STALE_S goes on, else the error is raised."""
        if actor.kind == "api_key" and self._key_recent(actor.name, within_s=KEY_TTL_S):
            return
        try:
            check_key_budget(self._engine, actor, now)
        except sa.exc.OperationalError:
            if not self._key_recent(actor.name):
                raise
            return
        if actor.kind == "api_key":
            self._key_ok(actor.name)

    def _key_ok(self, name: str) -> None:
        with self._lock:
            if len(self._key_passed) > 10_000:
                self._key_passed.clear()
            self._key_passed[name] = time.monotonic()

    def _key_recent(self, name: str | None, within_s: float = KEY_STALE_S) -> bool:
        """The key's budget passed within `within_s` (KEY_STALE_S: what an outage lets go on)."""
        with self._lock:
            seen = self._key_passed.get(name) if name is not None else None
        return seen is not None and time.monotonic() - seen <= within_s

    def close_old_periods(self, now: datetime | None = None) -> None:
        """Resolve budget alerts of periods that have ended."""
        if self._alerts is None:
            return
        now = now or utcnow()
        current = {f"budget:{b.id}:{period_of(b, now).key}" for b in self.list()}
        for a in self._alerts.firing():
            if a.source == "budget" and a.key not in current:
                self._alerts.resolve(a.key)

    def status(self, now: datetime | None = None) -> list[BudgetStatus]:
        """Each budget with its current spend, for the budget bars."""
        now = now or utcnow()
        out = []
        with self._engine.connect() as conn:
            events = conn.execute(sa.select(budget_events.c.budget_id, budget_events.c.period_key,
                                            budget_events.c.threshold, budget_events.c.fired_at)).all()
        for b in self.list():
            p = period_of(b, now)
            spent = self.spend(b, now, fresh=True)
            fired = tuple(sorted(e.threshold for e in events if e.budget_id == b.id and e.period_key == p.key))
            out.append(BudgetStatus(b, spent, 100 * spent / b.limit_usd, fired,
                                    blocking=b.hard and b.enabled and spent >= b.limit_usd, resets=p.resets,
                                    first_day=datetime.fromtimestamp(p.first_day * DAY_S, timezone.utc)))
        return out


def month_start(now: datetime) -> datetime:
    """Midnight UTC of the first day of `now`'s month."""
    now = now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc)


def _key_budget_select(name: str) -> sa.Select:
    return sa.select(sa.func.min(api_keys.c.budget_usd)).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))


def key_budget(engine: Engine, name: str) -> float | None:
    """The monthly budget of the API key `name`: its not revoked keys' smallest budget (keys that
    share a name share one ledger name, so one spend), None when none has one."""
    with engine.connect() as conn:
        value = conn.execute(_key_budget_select(name)).scalar()
    return None if value is None else float(value)


def check_key_budget(engine: Engine, actor: Actor, now: datetime | None = None) -> None:
    """Raise BudgetExceeded when `actor` is an API key with a budget and its month-to-date spend
    (its ledger rows since the first day of this UTC month) has reached it. Other actors pass.
    One statement (budget and spend as subqueries): the API runs it on every request."""
    if actor.kind != "api_key":
        return
    now = now or utcnow()
    first_day = int(month_start(now).timestamp()) // DAY_S
    spent = sa.select(sa.func.coalesce(sa.func.sum(ledger_key_daily.c.cost_usd), 0.0)).where(
        ledger_key_daily.c.api_key == actor.name, ledger_key_daily.c.day >= first_day)
    with engine.connect() as conn:
        budget, spent = conn.execute(sa.select(_key_budget_select(actor.name).scalar_subquery(),
                                               spent.scalar_subquery())).one()
    if budget is not None and spent >= budget:
        raise BudgetExceeded(_key_refusal(actor.name, float(budget), now, float(spent), 0.0, 0.0))


def _key_spend_and_held(name: str, now: datetime) -> tuple:
    """`_spend_and_held` of an API key's monthly budget: its spend since the first day of this UTC
    month (the per-key roll-up) and its live reservations, as scalar subqueries of one statement."""
    T = budget_reservations
    first_day = int(month_start(now).timestamp()) // DAY_S
    spent = sa.select(sa.func.coalesce(sa.func.sum(ledger_key_daily.c.cost_usd), 0.0)).where(
        ledger_key_daily.c.api_key == name, ledger_key_daily.c.day >= first_day)
    held = sa.select(sa.func.coalesce(sa.func.sum(T.c.amount_usd), 0.0)).where(
        T.c.api_key == name, T.c.expires_epoch >= now.timestamp())
    return spent.scalar_subquery(), held.scalar_subquery()


def _key_refusal(name: str, budget: float, now: datetime, spent: float, held: float, amount: float) -> str:
    first = month_start(now)
    resets = (first + timedelta(days=32)).replace(day=1)
    if spent >= budget:
        return (f"API key '{name}' has spent ${spent:,.4f} of its monthly budget of ${budget:,.2f} "
                f"(since {first:%Y-%m-%d} UTC); its requests are refused until {resets:%Y-%m-%d %H:%M} UTC.")
    return (f"API key '{name}' cannot cover this request: ${spent:,.4f} spent this month and ${held:,.4f} held by "
            f"calls in progress, of its monthly budget of ${budget:,.2f}; this request may cost up to "
            f"${amount:,.4f}. Cached answers are still served.")


def _spend_and_held(b: Budget, now: datetime) -> tuple:
    """Scalar subqueries of the period's spend and the budget's live reservations: read in one
    statement they see one snapshot, so a request that wrote its ledger row and then released its
    reservation in between is counted once (or twice), never zero times."""
    p = period_of(b, now)
    T = budget_reservations
    held = sa.select(sa.func.coalesce(sa.func.sum(T.c.amount_usd), 0.0)).where(
        T.c.budget_id == b.id, T.c.expires_epoch >= now.timestamp())
    return (spend_select(p.first_day, p.end_day, b.scope, b.scope_value).scalar_subquery(),
            held.scalar_subquery())


def _refusal(b: Budget, now: datetime, spent: float, held: float, amount: float) -> str:
    p = period_of(b, now)
    until = f"until {p.resets:%Y-%m-%d %H:%M} UTC" if p.resets else "until older spend leaves the window"
    head = f"hard budget '{b.name}' ({b.scope_label}, {b.period_label})"
    if spent >= b.limit_usd:
        return (f"{head} is spent: ${spent:,.4f} of ${b.limit_usd:,.2f}. New paid model calls are refused {until}; "
                "cached answers are still served.")
    return (f"{head} cannot cover this request: ${spent:,.4f} spent and ${held:,.4f} held by calls in progress, "
            f"of ${b.limit_usd:,.2f}; this request may cost up to ${amount:,.4f}. Cached answers are still served.")


def _name(value, field: str) -> str:
    """A name for a VARCHAR(200) column, or InputError (PostgreSQL refuses longer ones and NUL)."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"{field} must be text")
    text = (value or "").strip()
    bad = control_chars(text)
    if bad:
        raise InputError(f"{field} holds a control character ({bad}); remove it")
    if len(text) > NAME_MAX:
        raise InputError(f"{field} has {len(text):,} characters; the limit is {NAME_MAX}")
    return text


def _whole(value, field: str) -> int:
    """A whole number from a form or JSON (7, 7.0, '7'), or InputError."""
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{field} '{str(value)[:40]}' is not a whole number") from None
    if isinstance(value, bool) or not math.isfinite(x) or x != int(x):
        raise InputError(f"{field} '{str(value)[:40]}' is not a whole number")
    return int(x)

