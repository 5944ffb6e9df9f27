"""Every aggregation the cost dashboard, the budgets and the alert rules need, in SQL.

Day-aligned ranges read the daily roll-ups; hour-grain ranges (the last 24 hours) and filters a
roll-up lacks (user, for latency and questions; api_key, for all) read the raw rows through an index. Each query
is written once against a "facts" sub-select that exposes the same columns from either source.
Results are small (buckets x series); nothing loads the ledger into memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import aware
from backend.ledger.buckets import quantile
from backend.ledger.store import (
    DAY_S, ledger, ledger_daily, ledger_dims, ledger_key_daily, ledger_latency_daily, ledger_question_daily,
    ledger_questions,
)

Grain = Literal["hour", "day"]
# The dashboard's original filter dimensions (the console builds one widget per name).
DIMENSIONS = ("policy", "model", "user", "variant", "index_version")
# Every dimension the roll-ups and `options` know: the above plus where the traffic came from.
FILTER_DIMENSIONS = (*DIMENSIONS, "source")
SOURCES = ("api", "console", "system")
NO_VARIANT = ""  # how rows without an A/B variant are stored and filtered
EPOCH_DAY0 = date(1970, 1, 1)  # epoch day 0 of the roll-ups' `day`


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in UTC. Day grain ranges are whole UTC days; hour grain ranges whole hours."""

    start: datetime
    end: datetime
    grain: Grain = "day"

    @classmethod
    def days(cls, first: date, last: date) -> "TimeRange":
        """Whole days, both included."""
        return cls(_midnight(first), _midnight(last) + timedelta(days=1), "day")

    @classmethod
    def last_days(cls, n: int, now: datetime | None = None) -> "TimeRange":
        today = aware(now or datetime.now(timezone.utc)).date()
        return cls.days(today - timedelta(days=n - 1), today)

    @classmethod
    def last_hours(cls, n: int, now: datetime | None = None) -> "TimeRange":
        now = aware(now or datetime.now(timezone.utc))
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return cls(end - timedelta(hours=n), end, "hour")

    @property
    def bucket_s(self) -> int:
        return 3600 if self.grain == "hour" else DAY_S

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_epoch(self) -> int:
        return int(self.end.timestamp())

    @property
    def start_day(self) -> int:
        return self.start_epoch // DAY_S

    @property
    def end_day(self) -> int:
        return -(-self.end_epoch // DAY_S)

    def previous(self) -> "TimeRange":
        span = self.end - self.start
        return TimeRange(self.start - span, self.start, self.grain)

    def label(self) -> str:
        if self.grain == "hour":
            return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"
        return f"{self.start:%Y-%m-%d} – {(self.end - timedelta(days=1)):%Y-%m-%d} (UTC days)"


@dataclass(frozen=True)
class Filters:
    """Empty tuple = no filter on that dimension. A variant of '' selects rows without one.
    `source` is api, console or system; `api_key` (key names) is read from the raw rows only."""

    policy: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    variant: tuple[str, ...] = ()
    index_version: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    api_key: tuple[str, ...] = ()

    def active(self) -> dict[str, tuple[str, ...]]:
        return {d: getattr(self, d) for d in (*FILTER_DIMENSIONS, "api_key") if getattr(self, d)}


class PerRequest:
    """The per-request rates of a record that counts requests, errors and their cost (the costs
    page's totals, an A/B variant's figures)."""
    requests: int
    errors: int
    cost_usd: float

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> float | None:
        return self.cost_usd / self.requests if self.requests else None


@dataclass
class Summary(PerRequest):
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    calls: int = 0
    requests: int = 0  # chat rows: every answered (or refused / failed) request has exactly one
    cache_hits: int = 0
    errors: int = 0
    refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    unpriced_calls: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # p50/p95/p99 of 'total'

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.requests if self.requests else None


@dataclass(frozen=True)
class RecentRequest:
    """One answered (or refused / failed) request, from its chat row; cost is the whole request's."""

    ts: datetime
    request_id: str
    source: str
    api_key: str | None
    user: str  # the end user (X-End-User) when an API key named one, else the actor
    policy: str
    model: str
    variant: str | None
    status: str  # ok | error | refused | aborted
    cache_hit: bool
    total_ms: float | None
    cost_usd: float


@dataclass(frozen=True)
class MonthForecast:
    """This UTC month's spend so far and its straight-line forecast for the whole month."""

    month_to_date: float
    forecast: float
    days_in_month: int
    elapsed_days: float


@dataclass(frozen=True)
class CostPoint:
    """Cost in one time bucket (epoch seconds of its start) of one value (`key`) of the stacking dimension."""

    bucket: int
    key: str
    cost_usd: float
    requests: int


@dataclass(frozen=True)
class TokenPoint:
    bucket: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class RequestPoint:
    """Requests of one outcome in a bucket: whole from the ledger, an increase() estimate from Prometheus."""

    bucket: int
    outcome: str  # ok | cache_hit | error | refused | aborted
    requests: float


@dataclass(frozen=True)
class LatencyCount:
    """Observations of a stage in one latency bucket (`le`, an index into LATENCY_BUCKETS_MS)."""

    bucket: int | None  # None: summed over the whole range
    stage: str
    le: int
    n: int


@dataclass(frozen=True)
class LatencyPoint:
    """A quantile `q` of a stage's latency in one bucket (histogram estimate; None without observations)."""

    bucket: int
    stage: str
    q: float
    ms: float | None
    n: int | None = None  # observations behind it: the ledger knows, Prometheus does not say


@dataclass(frozen=True)
class UserCost:
    user: str
    cost_usd: float
    requests: int
    tokens: int  # prompt + completion


@dataclass(frozen=True)
class QuestionCost:
    question_hash: str
    question: str | None  # None when its text row is missing
    cost_usd: float
    requests: int
    saved_usd: float


@dataclass(frozen=True)
class UnpricedModel:
    """A model with calls that had no price when written (recorded at $0)."""

    model: str
    calls: int
    last_day: date  # UTC


@dataclass(frozen=True)
class KeyTotal:
    api_key: str
    requests: int
    calls: int
    cost_usd: float


@dataclass(frozen=True)
class WindowFigures:
    """Request-level figures of a short raw window, what the alert rules compare."""

    cost_usd: float
    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def _n(x) -> float:
    return float(x or 0)


def _i(x) -> int:
    """A count from SQL (PostgreSQL's SUM of integers is a Decimal), 0 for NULL."""
    return int(x or 0)


class LedgerQueries:
    def __init__(self, engine: Engine):
        self._engine = engine

    # --- the fact sources -----------------------------------------------------------------------
    @staticmethod
    def _raw_dim(d: str):
        return sa.func.coalesce(ledger.c.variant, NO_VARIANT) if d == "variant" else ledger.c[d]

    def _raw_where(self, r: TimeRange, f: Filters) -> list:
        w = [ledger.c.epoch >= r.start_epoch, ledger.c.epoch < r.end_epoch]
        for d, values in f.active().items():
            w.append(self._raw_dim(d).in_(values))
        return w

    @staticmethod
    def _rollup_ok(t: sa.Table, r: TimeRange, f: Filters) -> bool:
        """A day-aligned range whose every active filter is a key of the roll-up `t`."""
        return r.grain == "day" and all(d in t.c for d in f.active())

    @staticmethod
    def _rollup_where(t: sa.Table, r: TimeRange, f: Filters) -> list:
        w = [t.c.day >= r.start_day, t.c.day < r.end_day]
        for d, values in f.active().items():
            w.append(t.c[d].in_(values))
        return w

    def _calls(self, r: TimeRange, f: Filters) -> sa.Subquery:
        """bucket (epoch of the bucket's start), the dimensions, status, cache_hit and the sums."""
        if self._rollup_ok(ledger_daily, r, f):
            t = ledger_daily
            return sa.select((t.c.day * DAY_S).label("bucket"), t.c.kind, t.c.policy, t.c.model, t.c.user, t.c.variant,
                             t.c.index_version, t.c.source, t.c.status, t.c.cache_hit, t.c.calls, t.c.prompt_tokens,
                             t.c.completion_tokens, t.c.cached_tokens, t.c.cost_usd, t.c.saved_usd, t.c.latency_ms,
                             t.c.unpriced).where(*self._rollup_where(t, r, f)).subquery("facts")
        L = ledger
        return sa.select(((L.c.epoch // r.bucket_s) * r.bucket_s).label("bucket"), L.c.kind, L.c.policy, L.c.model,
                         L.c.user, self._raw_dim("variant").label("variant"), L.c.index_version, L.c.source, L.c.status,
                         L.c.cache_hit, sa.literal(1).label("calls"), L.c.prompt_tokens, L.c.completion_tokens,
                         L.c.cached_tokens, L.c.cost_usd, L.c.saved_usd, L.c.latency_ms,
                         sa.case((L.c.price_known, 0), else_=1).label("unpriced"),
                         ).where(*self._raw_where(r, f)).subquery("facts")

    def _latency(self, r: TimeRange, f: Filters) -> sa.Subquery:
        """bucket, stage, le (histogram bucket index), n."""
        if self._rollup_ok(ledger_latency_daily, r, f):
            t = ledger_latency_daily
            return sa.select((t.c.day * DAY_S).label("bucket"), t.c.stage, t.c.bucket.label("le"), t.c.n) \
                .where(*self._rollup_where(t, r, f)).subquery("lat")
        L = ledger
        bucket = ((L.c.epoch // r.bucket_s) * r.bucket_s).label("bucket")
        where = self._raw_where(r, f)
        parts = [sa.select(bucket, L.c.stage.label("stage"), L.c.lat_bucket.label("le"), sa.literal(1).label("n"))
                 .where(*where)]
        for stage, col in (("retrieve", L.c.retrieve_bucket), ("total", L.c.total_bucket)):
            parts.append(sa.select(bucket, sa.literal(stage).label("stage"), col.label("le"), sa.literal(1).label("n"))
                         .where(*where, L.c.kind == "chat", col.is_not(None)))
        return sa.union_all(*parts).subquery("lat")

    def _questions(self, r: TimeRange, f: Filters) -> sa.Subquery:
        if self._rollup_ok(ledger_question_daily, r, f):
            t = ledger_question_daily
            return sa.select(t.c.question_hash, t.c.requests, t.c.cost_usd, t.c.saved_usd) \
                .where(*self._rollup_where(t, r, f)).subquery("q")
        L = ledger
        return sa.select(L.c.question_hash, sa.literal(1).label("requests"), L.c.cost_usd, L.c.saved_usd) \
            .where(*self._raw_where(r, f), L.c.kind == "chat").subquery("q")

    def _all(self, q) -> list[dict]:
        with self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)]

    def _rows(self, q) -> list[sa.Row]:
        with self._engine.connect() as conn:
            return conn.execute(q).all()

    # --- tiles ----------------------------------------------------------------------------------
    def summary(self, r: TimeRange, f: Filters = Filters()) -> Summary:
        c = self._calls(r, f)
        chat = c.c.kind == "chat"

        def chat_sum(*cond):
            return sa.func.sum(sa.case((sa.and_(chat, *cond), c.c.calls), else_=0))

        q = sa.select(sa.func.sum(c.c.cost_usd), sa.func.sum(c.c.saved_usd), sa.func.sum(c.c.calls), chat_sum(),
                      chat_sum(c.c.cache_hit), chat_sum(c.c.status == "error"), chat_sum(c.c.status == "refused"),
                      sa.func.sum(c.c.prompt_tokens), sa.func.sum(c.c.completion_tokens),
                      sa.func.sum(c.c.cached_tokens), sa.func.sum(c.c.unpriced))
        with self._engine.connect() as conn:
            row = conn.execute(q).one()
        s = Summary(_n(row[0]), _n(row[1]), *[int(_n(x)) for x in row[2:]])
        s.latency_ms = self.latency_quantiles(r, f, "total")
        return s

    def month_forecast(self, now: datetime | None = None, f: Filters = Filters()) -> MonthForecast:
        """Spend so far this month and a straight-line forecast for the whole month (UTC)."""
        now = aware(now or datetime.now(timezone.utc))
        first = now.date().replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        r = TimeRange.days(first, now.date())
        c = self._calls(r, f)
        with self._engine.connect() as conn:
            mtd = _n(conn.execute(sa.select(sa.func.sum(c.c.cost_usd))).scalar())
        elapsed = (now - _midnight(first)).total_seconds() / DAY_S
        days = (nxt - first).days
        return MonthForecast(mtd, mtd / max(elapsed, 1 / 24) * days, days, elapsed)

    # --- charts ---------------------------------------------------------------------------------
    def cost_series(self, r: TimeRange, f: Filters = Filters(), by: str = "model") -> list[CostPoint]:
        """Cost and requests per bucket and value of `by`."""
        c = self._calls(r, f)
        key = c.c[by]
        q = sa.select(c.c.bucket, key.label("key"), sa.func.sum(c.c.cost_usd).label("cost_usd"),
                      sa.func.sum(sa.case((c.c.kind == "chat", c.c.calls), else_=0)).label("requests")) \
            .group_by(c.c.bucket, key).order_by(c.c.bucket, key)
        return [CostPoint(_i(x.bucket), x.key, _n(x.cost_usd), _i(x.requests)) for x in self._rows(q)]

    def token_series(self, r: TimeRange, f: Filters = Filters()) -> list[TokenPoint]:
        c = self._calls(r, f)
        q = sa.select(c.c.bucket, sa.func.sum(c.c.prompt_tokens).label("prompt_tokens"),
                      sa.func.sum(c.c.completion_tokens).label("completion_tokens"),
                      sa.func.sum(c.c.cached_tokens).label("cached_tokens")).group_by(c.c.bucket).order_by(c.c.bucket)
        return [TokenPoint(_i(x.bucket), _i(x.prompt_tokens), _i(x.completion_tokens), _i(x.cached_tokens))
                for x in self._rows(q)]

    def request_series(self, r: TimeRange, f: Filters = Filters()) -> list[RequestPoint]:
        """Requests per bucket by outcome: ok, cache_hit, error, refused, aborted (as Prometheus labels them)."""
        c = self._calls(r, f)
        outcome = sa.case((c.c.cache_hit, "cache_hit"), else_=c.c.status).label("outcome")
        q = sa.select(c.c.bucket, outcome, sa.func.sum(c.c.calls).label("requests")) \
            .where(c.c.kind == "chat").group_by(c.c.bucket, outcome).order_by(c.c.bucket)
        return [RequestPoint(_i(x.bucket), x.outcome, _i(x.requests)) for x in self._rows(q)]

    def latency_histogram(self, r: TimeRange, f: Filters = Filters(), per_bucket: bool = True) -> list[LatencyCount]:
        lat = self._latency(r, f)
        cols = [lat.c.bucket] if per_bucket else []
        q = sa.select(*cols, lat.c.stage, lat.c.le, sa.func.sum(lat.c.n).label("n")).group_by(*cols, lat.c.stage, lat.c.le)
        return [LatencyCount(_i(x.bucket) if per_bucket else None, x.stage, _i(x.le), _i(x.n)) for x in self._rows(q)]

    def latency_series(self, r: TimeRange, f: Filters = Filters(), qs=(0.5, 0.95, 0.99)) -> list[LatencyPoint]:
        """Quantiles per bucket and stage from the histogram counts (histogram_quantile's estimate)."""
        hist: dict[tuple[int, str], dict[int, float]] = {}
        for h in self.latency_histogram(r, f):
            hist.setdefault((h.bucket or 0, h.stage), {})[h.le] = float(h.n)
        out = []
        for (bucket, stage), counts in sorted(hist.items()):
            for q in qs:
                out.append(LatencyPoint(bucket, stage, q, quantile(q, counts), int(sum(counts.values()))))
        return out

    def latency_quantiles(self, r: TimeRange, f: Filters = Filters(), stage: str = "total",
                          qs=(0.5, 0.95, 0.99)) -> dict[float, float | None]:
        lat = self._latency(r, f)
        q = sa.select(lat.c.le, sa.func.sum(lat.c.n)).where(lat.c.stage == stage).group_by(lat.c.le)
        with self._engine.connect() as conn:
            counts = {int(le): _n(n) for le, n in conn.execute(q)}
        return {x: quantile(x, counts) for x in qs}

    def top_users(self, r: TimeRange, f: Filters = Filters(), n: int = 10) -> list[UserCost]:
        c = self._calls(r, f)
        cost = sa.func.sum(c.c.cost_usd).label("cost_usd")
        q = sa.select(c.c.user, cost, sa.func.sum(sa.case((c.c.kind == "chat", c.c.calls), else_=0)).label("requests"),
                      sa.func.sum(c.c.prompt_tokens + c.c.completion_tokens).label("tokens")) \
            .group_by(c.c.user).order_by(cost.desc(), c.c.user).limit(n)
        return [UserCost(x.user, _n(x.cost_usd), _i(x.requests), _i(x.tokens)) for x in self._rows(q)]

    def top_questions(self, r: TimeRange, f: Filters = Filters(), n: int = 10) -> list[QuestionCost]:
        qf = self._questions(r, f)
        cost = sa.func.sum(qf.c.cost_usd).label("cost_usd")
        top = sa.select(qf.c.question_hash, cost, sa.func.sum(qf.c.requests).label("requests"),
                        sa.func.sum(qf.c.saved_usd).label("saved_usd")) \
            .group_by(qf.c.question_hash).order_by(cost.desc(), qf.c.question_hash).limit(n).subquery("top")
        q = sa.select(top, ledger_questions.c.question) \
            .join(ledger_questions, ledger_questions.c.question_hash == top.c.question_hash, isouter=True) \
            .order_by(top.c.cost_usd.desc(), top.c.question_hash)
        return [QuestionCost(x.question_hash, x.question, _n(x.cost_usd), _i(x.requests), _n(x.saved_usd))
                for x in self._rows(q)]

    # --- filters, warnings, drill-down ------------------------------------------------------------
    def options(self, r: TimeRange) -> dict[str, list[str]]:
        """Values each filter can take in the range (seen on a day the range touches)."""
        t = ledger_dims
        q = sa.select(t.c.dim, t.c.value).where(t.c.last_day >= r.start_day, t.c.first_day < r.end_day) \
            .order_by(t.c.dim, t.c.value)
        out: dict[str, list[str]] = {d: [] for d in FILTER_DIMENSIONS}
        with self._engine.connect() as conn:
            for dim, value in conn.execute(q):
                out.setdefault(dim, []).append(value)
        return out

    def unpriced_models(self, r: TimeRange | None = None) -> list[UnpricedModel]:
        """Models with calls that had no price when written (their cost was recorded as 0)."""
        t = ledger_daily
        q = sa.select(t.c.model, sa.func.sum(t.c.unpriced).label("calls"), sa.func.max(t.c.day).label("last_day")) \
            .where(t.c.unpriced > 0).group_by(t.c.model).order_by(t.c.model)
        if r is not None:
            q = q.where(t.c.day >= r.start_day, t.c.day < r.end_day)
        return [UnpricedModel(x.model, _i(x.calls), EPOCH_DAY0 + timedelta(days=_i(x.last_day))) for x in self._rows(q)]

    def rows(self, r: TimeRange, f: Filters = Filters(), *, bucket: int | None = None, bucket_s: int | None = None,
             dim: str | None = None, value: str | None = None, stage: str | None = None,
             question_hash: str | None = None, order: str = "cost", limit: int = 500) -> list[dict]:
        """The raw ledger rows behind a point of a chart: a time bucket, a series value, a stage."""
        L = ledger
        where = self._raw_where(r, f)
        if bucket is not None:
            where += [L.c.epoch >= bucket, L.c.epoch < bucket + (bucket_s or r.bucket_s)]
        if dim and value is not None:
            where.append(self._raw_dim(dim) == value)
        if question_hash:
            where += [L.c.question_hash == question_hash, L.c.kind == "chat"]
        sort = L.c.cost_usd.desc()
        if stage == "total":
            where += [L.c.kind == "chat", L.c.total_ms.is_not(None)]
            sort = L.c.total_ms.desc()
        elif stage == "retrieve":
            where += [L.c.kind == "chat", L.c.retrieve_ms.is_not(None)]
            sort = L.c.retrieve_ms.desc()
        elif stage:
            where.append(L.c.stage == stage)
            sort = L.c.latency_ms.desc()
        if order == "time":
            sort = L.c.epoch.desc()
        cols = [c for c in L.c if c.name not in ("epoch", "lat_bucket", "retrieve_bucket", "total_bucket")]
        return self._all(sa.select(*cols).where(*where).order_by(sort, L.c.id.desc()).limit(limit))

    def recent_requests(self, source: str | None = "api", limit: int = 50, *, api_key: str | None = None,
                        since_epoch: int | None = None) -> list[RecentRequest]:
        """The latest requests (their chat rows, newest first) of one source (None or 'all': every
        source), optionally of one API key. Read through the (source, epoch) or (api_key, epoch)
        index; each request's cost sums its model calls through the request-id index."""
        L, L2 = ledger, ledger.alias("calls")
        where = [L.c.kind == "chat"]
        if source not in (None, "all"):
            where.append(L.c.source == source)
        if api_key is not None:
            where.append(L.c.api_key == api_key)
        if since_epoch is not None:
            where.append(L.c.epoch >= since_epoch)
        cost = sa.select(sa.func.sum(L2.c.cost_usd)).where(L2.c.request_id == L.c.request_id).scalar_subquery()
        q = sa.select(L.c.ts, L.c.request_id, L.c.source, L.c.api_key, L.c.user, L.c.policy, L.c.model, L.c.variant,
                      L.c.status, L.c.cache_hit, L.c.total_ms, cost.label("cost_usd")) \
            .where(*where).order_by(L.c.epoch.desc(), L.c.id.desc()).limit(max(0, int(limit)))
        with self._engine.connect() as conn:
            rows = conn.execute(q).all()
        return [RecentRequest(ts=aware(r.ts), request_id=r.request_id, source=r.source, api_key=r.api_key, user=r.user,
                              policy=r.policy, model=r.model, variant=r.variant, status=r.status,
                              cache_hit=bool(r.cache_hit), total_ms=None if r.total_ms is None else float(r.total_ms),
                              cost_usd=_n(r.cost_usd)) for r in rows]

    def key_spend(self, api_key: str, first_day: int, end_day: int | None = None) -> float:
        """What an API key's requests cost over whole UTC days [first_day, end_day) (end None: on)."""
        t = ledger_key_daily
        q = sa.select(sa.func.sum(t.c.cost_usd)).where(t.c.api_key == api_key, t.c.day >= first_day)
        if end_day is not None:
            q = q.where(t.c.day < end_day)
        with self._engine.connect() as conn:
            return _n(conn.execute(q).scalar())

    def key_totals(self, r: TimeRange, api_key: str | None = None) -> list[KeyTotal]:
        """Requests, calls and cost per API key over the range's days, costliest first."""
        t = ledger_key_daily
        cost = sa.func.sum(t.c.cost_usd).label("cost_usd")
        q = sa.select(t.c.api_key, sa.func.sum(t.c.requests).label("requests"), sa.func.sum(t.c.calls).label("calls"),
                      cost).where(t.c.day >= r.start_day, t.c.day < r.end_day).group_by(t.c.api_key) \
            .order_by(cost.desc(), t.c.api_key)
        if api_key is not None:
            q = q.where(t.c.api_key == api_key)
        return [KeyTotal(x.api_key, _i(x.requests), _i(x.calls), _n(x.cost_usd)) for x in self._rows(q)]

    def spend(self, first_day: int, end_day: int, scope: str = "global", value: str | None = None) -> float:
        """Cost over whole UTC days [first_day, end_day) for a budget's scope."""
        with self._engine.connect() as conn:
            return _n(conn.execute(spend_select(first_day, end_day, scope, value)).scalar())

    def window(self, since_epoch: int, until_epoch: int, f: Filters = Filters()) -> WindowFigures:
        """Request-level figures over a short raw window (alert rules): cost, requests, errors, total latencies."""
        r = TimeRange(datetime.fromtimestamp(since_epoch, timezone.utc), datetime.fromtimestamp(until_epoch, timezone.utc),
                      "hour")
        L = ledger
        where = self._raw_where(r, f)
        chat = L.c.kind == "chat"
        q = sa.select(sa.func.sum(L.c.cost_usd), sa.func.sum(sa.case((chat, 1), else_=0)),
                      sa.func.sum(sa.case((sa.and_(chat, L.c.status == "error"), 1), else_=0))).where(*where)
        hq = sa.select(L.c.total_bucket, sa.func.count()).where(*where, chat, L.c.total_bucket.is_not(None)) \
            .group_by(L.c.total_bucket)
        with self._engine.connect() as conn:
            cost, requests, errors = conn.execute(q).one()
            counts = {int(b): float(n) for b, n in conn.execute(hq)}
        return WindowFigures(_n(cost), _i(requests), _i(errors), quantile(0.95, counts))


def spend_select(first_day: int, end_day: int, scope: str = "global", value: str | None = None) -> sa.Select:
    """A budget scope's cost over whole UTC days [first_day, end_day), 0 when none: also a scalar
    subquery of the budget reservation's conditional insert."""
    t = ledger_daily
    q = sa.select(sa.func.coalesce(sa.func.sum(t.c.cost_usd), 0.0)).where(t.c.day >= first_day, t.c.day < end_day)
    return q if scope == "global" else q.where(t.c[scope] == value)
