"""Alerts: rules on cost, error rate and p95 latency over a sliding window, evaluated against
the ledger, plus the budget thresholds (backend.ledger.budgets). An alert is stored once per episode
with its first-seen, last-seen and resolved times; firing and resolving can be POSTed as JSON to
ALERT_WEBHOOK_URL (Slack-style `text` included), in a background thread so no request waits."""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.access import SYSTEM, Action, Actor
from backend.access.audit import AuditLog
from backend.db import aware, metadata, utcnow
from backend.errors import InputError, NotFoundError
from backend.ledger.queries import Filters, LedgerQueries
from backend.text import finite_number

log = logging.getLogger(__name__)
MAX_THRESHOLD = 1e9  # USD, a share, or ms: larger is a typo
R = TypeVar("R")

METRICS = {
    "cost": "cost (USD) over the window",
    "error_rate": "share of requests that failed (0-1)",
    "p95_latency": "p95 end-to-end latency (ms)",
}

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("metric", sa.String(30), nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("window_minutes", sa.Integer, nullable=False),
    sa.Column("policy", sa.String(200), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("min_requests", sa.Integer, nullable=False, server_default="5"),
    sa.Column("webhook", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # rule | budget
    sa.Column("rule_id", sa.Integer, nullable=True),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("notify_error", sa.Text, nullable=True),
    sa.Index("ix_alerts_key_open", "key", "resolved_at"),
    sa.Index("uq_alerts_open_key", "key", unique=True,  # one open episode per key (0016_alert_episodes)
             sqlite_where=sa.text("resolved_at IS NULL"), postgresql_where=sa.text("resolved_at IS NULL")),
)


@dataclass(frozen=True)
class AlertRule:
    """A rule as stored: `metric` above `threshold` over the last `window_minutes` fires."""

    id: int
    name: str
    metric: str  # a key of METRICS
    threshold: float  # USD, a share (0-1) or ms, as the metric
    window_minutes: int
    policy: str | None  # None: every policy
    model: str | None  # None: every model
    min_requests: int  # fewer requests in the window: a rate or latency rule does not fire (cost rules always may)
    webhook: bool
    enabled: bool
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class RuleCheck:
    """One rule's evaluation: its figure over the window (None: no data) and whether it fires."""

    rule: str  # the rule's name
    value: float | None
    firing: bool
    requests: int


@dataclass(frozen=True)
class Alert:
    """An alert episode: open (firing) until `resolved_at`."""

    id: int
    key: str  # rule:<id>, budget:<id>:<period key>, guardrail:<experiment>...
    source: str  # rule | budget | guardrail
    rule_id: int | None
    severity: str  # warning | critical
    title: str
    detail: str
    value: float | None
    threshold: float | None
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    notified_at: datetime | None
    notify_error: str | None  # the webhook's failure, its URL cut to scheme and host


def _aware(value: object) -> object:
    """A column's value, a naive datetime made UTC: SQLite hands them back naive, every stored time is UTC."""
    return aware(value) if isinstance(value, datetime) else value


def _select(cls: type, table: sa.Table) -> sa.Select:
    """The table's columns named like the fields of `cls`, in their order."""
    return sa.select(*[table.c[f.name] for f in fields(cls)])


def _of(cls: type[R], row) -> R:
    """A row of `_select(cls, ...)` as a `cls`."""
    return cls(*[_aware(v) for v in row])


URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!?)\]]")  # not the sentence's last mark


def webhook_label(url: str | None) -> str | None:
    """A webhook URL as it may be shown or stored: scheme and host only. Webhooks carry their
    secret in the path or query (Slack, Teams, Discord) and sometimes in user:password@."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL we can read: show nothing of it
        return "(unreadable URL)"
    hidden = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}{hidden}"


def redact_urls(text: str) -> str:
    """Every URL in a message cut down to its scheme and host (httpx errors quote the full URL)."""
    return URL_RE.sub(lambda m: webhook_label(m.group(0)) or "", text)


def describe_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric == "cost":
        return f"${value:,.4f}"
    if metric == "error_rate":
        return f"{value:.1%}"
    return f"{value:,.0f} ms"


class AlertService:
    def __init__(self, engine: Engine, audit: AuditLog, queries: LedgerQueries, webhook_url: str | None = None,
                 webhook_timeout_s: float = 5.0):
        self._engine, self._audit, self._q = engine, audit, queries
        self.webhook_url = webhook_url
        self._timeout = webhook_timeout_s
        self._lock = threading.Lock()
        self._eval_lock = threading.Lock()
        self._senders: list[threading.Thread] = []

    # --- rules (audited) ------------------------------------------------------------------------
    def create_rule(self, actor: Actor, name: str, metric: str, threshold: float, window_minutes: int = 60,
                    policy: str | None = None, model: str | None = None, min_requests: int = 5,
                    webhook: bool = True) -> int:
        name = (name or "").strip()
        if not name:
            raise InputError("an alert rule needs a name")
        if metric not in METRICS:
            raise InputError(f"metric must be one of {', '.join(METRICS)}")
        threshold = finite_number(threshold, "the threshold", MAX_THRESHOLD)  # inf / NaN would never (or always) fire
        try:
            window_minutes, min_requests = int(window_minutes), int(min_requests)
        except (TypeError, ValueError, OverflowError):
            raise InputError("threshold, window and minimum requests must be numbers") from None
        if threshold < 0 or not 1 <= window_minutes <= 60 * 24 * 31 or min_requests < 0:
            raise InputError("the threshold must be >= 0 and the window from 1 minute to 31 days")
        spec = dict(name=name, metric=metric, threshold=threshold, window_minutes=window_minutes,
                    policy=(policy or "").strip() or None, model=(model or "").strip() or None,
                    min_requests=min_requests, webhook=bool(webhook))
        with self._audit.action(actor, "alert_rule.create", name, need=Action.alert_rules, **spec) as extra:
            with self._engine.begin() as conn:
                if conn.execute(sa.select(alert_rules.c.id).where(alert_rules.c.name == name)).first():
                    raise InputError(f"an alert rule named '{name}' exists")
                rid = conn.execute(alert_rules.insert().values(**spec, enabled=True, created_at=utcnow(),
                                                               created_by=actor.id).returning(alert_rules.c.id)).scalar_one()
            extra["id"] = rid
        return rid

    def delete_rule(self, actor: Actor, rule_id: int) -> None:
        with self._audit.action(actor, "alert_rule.delete", str(rule_id), need=Action.alert_rules):
            with self._engine.begin() as conn:
                if conn.execute(alert_rules.delete().where(alert_rules.c.id == rule_id)).rowcount == 0:
                    raise NotFoundError(f"no alert rule {rule_id}")
        self.resolve(f"rule:{rule_id}", actor=actor)

    def set_rule_enabled(self, actor: Actor, rule_id: int, enabled: bool) -> None:
        with self._audit.action(actor, "alert_rule.enable" if enabled else "alert_rule.disable", str(rule_id),
                                need=Action.alert_rules):
            with self._engine.begin() as conn:
                if conn.execute(alert_rules.update().where(alert_rules.c.id == rule_id)
                                .values(enabled=enabled)).rowcount == 0:
                    raise NotFoundError(f"no alert rule {rule_id}")
        if not enabled:
            self.resolve(f"rule:{rule_id}", actor=actor)

    def rules(self) -> list[AlertRule]:
        with self._engine.connect() as conn:
            return [_of(AlertRule, r) for r in conn.execute(_select(AlertRule, alert_rules).order_by(alert_rules.c.name))]

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, now: datetime | None = None) -> list[RuleCheck]:
        """Each enabled rule over its window ending now: fire, keep firing, or resolve. Runs every
        HOUSEKEEPING_S in one process (backend.background.housekeeping), and when an operator asks."""
        now = now or utcnow()
        out = []
        with self._eval_lock:
            for rule in self.rules():
                if not rule.enabled:
                    continue
                f = Filters(policy=(rule.policy,) if rule.policy else (), model=(rule.model,) if rule.model else ())
                since = now - timedelta(minutes=rule.window_minutes)
                w = self._q.window(int(since.timestamp()), int(now.timestamp()) + 1, f)
                value = {"cost": w.cost_usd, "p95_latency": w.p95_ms, "error_rate": w.error_rate}[rule.metric]
                enough = rule.metric == "cost" or w.requests >= rule.min_requests
                firing = enough and value is not None and value > rule.threshold
                key = f"rule:{rule.id}"
                if firing:
                    scope = ", ".join(x for x in (rule.policy and f"policy {rule.policy}",
                                                  rule.model and f"model {rule.model}") if x) or "all traffic"
                    self.fire(key, "rule", f"{rule.name}: {describe_value(rule.metric, value)} > "
                                           f"{describe_value(rule.metric, rule.threshold)}",
                              f"{METRICS[rule.metric]}, last {rule.window_minutes} min, {scope}; "
                              f"{w.requests} requests", value, rule.threshold,
                              severity="warning", rule_id=rule.id, notify=rule.webhook, now=now)
                else:
                    self.resolve(key, now=now, notify=rule.webhook)
                out.append(RuleCheck(rule.name, value, firing, w.requests))
        return out

    # --- alert episodes -------------------------------------------------------------------------
    def _open(self, conn, key: str):
        return conn.execute(sa.select(alerts).where(alerts.c.key == key, alerts.c.resolved_at.is_(None))
                            .order_by(alerts.c.id.desc()).limit(1)).first()

    def fire(self, key: str, source: str, title: str, detail: str, value: float | None, threshold: float | None,
             severity: str = "warning", rule_id: int | None = None, notify: bool = True,
             now: datetime | None = None, actor: Actor = SYSTEM) -> int:
        """Open an episode (first time) or refresh it. A budget alert re-notifies when its title changes
        (a higher threshold crossed); a rule alert notifies once per episode."""
        now = now or utcnow()
        fields = dict(last_seen=now, value=value, title=title, detail=detail, severity=severity, threshold=threshold)

        def refresh(conn: sa.Connection, row: sa.Row) -> tuple[int, bool]:
            conn.execute(alerts.update().where(alerts.c.id == row.id).values(**fields))
            return row.id, source == "budget" and row.title != title

        try:
            with self._engine.begin() as conn:
                row = self._open(conn, key)
                if row is None:
                    aid = conn.execute(alerts.insert().values(key=key, source=source, rule_id=rule_id, first_seen=now,
                                                              **fields).returning(alerts.c.id)).scalar_one()
                    new = True
                else:
                    aid, new = refresh(conn, row)
        except sa.exc.IntegrityError:  # another process or thread opened this episode meanwhile: it notified
            with self._engine.begin() as conn:
                row = self._open(conn, key)
                if row is None:  # ...and resolved it already
                    raise
                aid, new = refresh(conn, row)
        if new:
            self._audit.record(actor, "alert.fire", key, title=title, value=value, threshold=threshold)
            if notify:
                self._notify(aid, "firing")
        return aid

    def resolve(self, key: str, now: datetime | None = None, notify: bool = True, actor: Actor = SYSTEM) -> bool:
        now = now or utcnow()
        with self._engine.begin() as conn:
            row = self._open(conn, key)
            if row is None:
                return False
            conn.execute(alerts.update().where(alerts.c.id == row.id).values(resolved_at=now))
        self._audit.record(actor, "alert.resolve", key, title=row.title)
        if notify:
            self._notify(row.id, "resolved")
        return True

    def resolve_prefix(self, prefix: str) -> None:
        for a in self.firing():
            if a.key.startswith(prefix):
                self.resolve(a.key)

    def firing(self) -> list[Alert]:
        """Open episodes, the newest first."""
        with self._engine.connect() as conn:
            return [_of(Alert, r) for r in conn.execute(
                _select(Alert, alerts).where(alerts.c.resolved_at.is_(None)).order_by(alerts.c.first_seen.desc()))]

    def history(self, limit: int = 50) -> list[Alert]:
        """Every episode, open or resolved, the latest first."""
        with self._engine.connect() as conn:
            return [_of(Alert, r) for r in conn.execute(_select(Alert, alerts).order_by(alerts.c.id.desc()).limit(limit))]

    # --- webhook --------------------------------------------------------------------------------
    def _notify(self, alert_id: int, status: str) -> None:
        """The payload is taken now (a later refresh must not change what this notification says);
        the POST runs in the background."""
        if not self.webhook_url:
            return
        with self._engine.connect() as conn:
            a = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        if a is None:
            return
        icon = "🔥" if status == "firing" else "✅"
        body = {"status": status, "key": a.key, "source": a.source, "severity": a.severity, "title": a.title,
                "detail": a.detail, "value": a.value, "threshold": a.threshold,
                "first_seen": a.first_seen.isoformat(), "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
                "text": f"{icon} [{status}] {a.title} — {a.detail}"}
        t = threading.Thread(target=self._send, args=(alert_id, body), name="alert-webhook", daemon=True)
        with self._lock:
            self._senders = [x for x in self._senders if x.is_alive()] + [t]
        t.start()

    def _send(self, alert_id: int, body: dict) -> None:
        error = None
        try:
            httpx.post(self.webhook_url, json=body, timeout=self._timeout).raise_for_status()
        except httpx.HTTPError as exc:  # stored and shown: never with the webhook's secret path
            error = redact_urls(f"{type(exc).__name__}: {exc}")
            log.warning("alert webhook to %s failed: %s", webhook_label(self.webhook_url), error)
        with self._engine.begin() as conn:
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(notified_at=utcnow(), notify_error=error))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait for webhook deliveries in flight (tests, shutdown)."""
        with self._lock:
            senders = list(self._senders)
        for s in senders:
            s.join(timeout)
