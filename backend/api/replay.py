"""`python -m backend replay`: replay questions against a running API at a bounded rate and report
what its callers saw (requests/s, errors by status, client-side latency percentiles, cache hits).

HTTP only: it opens no vector store, so it runs beside a live console or `python -m backend serve`.
The questions come from a file (`--questions`: .jsonl with a "question" or "text" field per line,
else one question per line) or from a frozen golden set read from the database (`--set`).

Open-loop schedule: request i is due at start + i / rate; `concurrency` workers (threads, one
httpx.Client each) take the next due request, wait for its time, send it and time it from send to
the end of the response. Each worker opens its keep-alive connection (GET /healthz) before the
schedule starts, as a caller's connection pool would be open: otherwise the first second measures
`concurrency` TCP handshakes at once rather than the API. When every worker is busy, due requests wait (counted as late) and the
rate achieved drops below the rate asked. Nothing new starts after `duration` seconds; requests in
flight then finish (each bounded by `timeout`). The target is the loopback default or the base URL
the caller names: nothing else."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "http://127.0.0.1:8000/api/v1"  # `python -m backend serve`'s default address
KEY_ENV = "RAG_API_KEY"
MAX_CONCURRENCY = 256
JSON_KEYS = ("requests", "ok", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "cache_hits", "duration_s")


class ReplayError(Exception):
    """Bad arguments or an unreachable API before the first request: `error: replay: ...`, exit 2."""


@dataclass
class ReplayConfig:
    base_url: str
    key: str
    questions: list[str]
    rate: float                     # requests per second, at most (open-loop schedule)
    duration: float                 # seconds during which requests are started
    concurrency: int = 8            # workers, i.e. requests in flight at most
    retrieval_only: bool = False
    policy: str | None = None       # None = the live release (or "default" with retrieval_only)
    end_users: int | None = None    # X-End-User: user-<i % end_users>; None = no header
    timeout: float = 30.0           # one request, connect + read

    def validate(self) -> None:
        for name, value in (("--rate", self.rate), ("--duration", self.duration), ("--timeout", self.timeout)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ReplayError(f"{name} must be a number > 0, got {value}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ReplayError(f"--concurrency must be 1-{MAX_CONCURRENCY}, got {self.concurrency}")
        if self.end_users is not None and self.end_users < 1:
            raise ReplayError(f"--end-users must be >= 1, got {self.end_users}")
        if not self.key:
            raise ReplayError(f"an API key is needed: --key KEY or {KEY_ENV} (python -m backend keys create NAME --role viewer)")
        if not self.questions:
            raise ReplayError("no questions to send")
        check_base_url(self.base_url)

    def body(self, i: int) -> dict:
        out: dict = {"question": self.questions[i % len(self.questions)], "retrieval_only": self.retrieval_only}
        policy = self.policy or ("default" if self.retrieval_only else None)  # the live release refuses retrieval_only
        if policy:
            out["policy"] = policy
        return out

    def headers(self, i: int) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.key}"}
        if self.end_users:
            h["X-End-User"] = f"user-{i % self.end_users}"
        return h


@dataclass
class Sample:
    """One request: its outcome ("ok", an HTTP status as text, "timeout" or "connection")."""

    i: int
    outcome: str
    latency_ms: float
    late_ms: float                 # how long after its due time it was sent
    cache_hit: bool = False
    engine_ms: dict[str, float] = field(default_factory=dict)  # the answer's latency_ms (server-side stages)


@dataclass
class ReplayResult:
    config: ReplayConfig
    samples: list[Sample]
    scheduled: int                 # requests due within the duration
    duration_s: float              # first send to last response

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def ok(self) -> int:
        return sum(s.outcome == "ok" for s in self.samples)

    @property
    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            if s.outcome != "ok":
                out[s.outcome] = out.get(s.outcome, 0) + 1
        return dict(sorted(out.items()))

    @property
    def cache_hits(self) -> int:
        return sum(s.cache_hit for s in self.samples)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def latencies(self) -> list[float]:
        """Client-side latency of the successful requests (errors such as 401 are fast and would flatter)."""
        return [s.latency_ms for s in self.samples if s.outcome == "ok"]

    def engine(self, stage: str = "total") -> list[float]:
        """The server's own timing of one stage (`latency_ms[stage]` of each answer)."""
        return [s.engine_ms[stage] for s in self.samples if s.outcome == "ok" and stage in s.engine_ms]

    def late(self) -> int:
        """Requests sent more than 10 ms after their due time (every worker was busy)."""
        return sum(s.late_ms > 10 for s in self.samples)

    def as_json(self) -> dict:
        lat = self.latencies()
        return {"requests": self.requests, "ok": self.ok, "errors": self.errors, "rps": round(self.rps, 2),
                "p50_ms": _r(percentile(lat, 50)), "p95_ms": _r(percentile(lat, 95)), "p99_ms": _r(percentile(lat, 99)),
                "cache_hits": self.cache_hits, "duration_s": round(self.duration_s, 3)}

    def table(self) -> str:
        c, lat = self.config, self.latencies()
        eng = self.engine("total")
        rows = [
            ("target", f"{c.base_url}/query"),
            ("questions", f"{len(c.questions)} (request i asks question i mod {len(c.questions)})"),
            ("mode", ("retrieval only" if c.retrieval_only else "answers")
             + f", policy {c.body(0).get('policy', 'live release')}"
             + (f", X-End-User over {c.end_users} users" if c.end_users else "")),
            ("asked", f"{c.rate:g} req/s for {c.duration:g} s, {c.concurrency} workers ({self.scheduled} due)"),
            ("requests", f"{self.requests}" + (f" ({self.scheduled - self.requests} due but not sent: workers busy)"
                                               if self.scheduled > self.requests else "")),
            ("ok", f"{self.ok}"),
            ("errors", ", ".join(f"{k}: {v}" for k, v in self.errors.items()) or "0"),
            ("requests/s", f"{self.rps:.1f} achieved over {self.duration_s:.2f} s"
             + (f"; {self.late()} sent > 10 ms late" if self.late() else "")),
            ("latency ms", f"p50 {_f(percentile(lat, 50))}  p95 {_f(percentile(lat, 95))}  p99 {_f(percentile(lat, 99))}"
             f"  max {_f(max(lat) if lat else None)}  (client side, {len(lat)} ok requests)"),
            ("engine ms", f"p50 {_f(percentile(eng, 50))}  p95 {_f(percentile(eng, 95))}  (the answers' latency_ms.total)"
             if eng else "–"),
            ("cache hits", f"{self.cache_hits} of {self.ok} ok"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# --- where questions come from ---------------------------------------------------------------
def read_questions(path: str | Path) -> list[str]:
    """.jsonl: the "question" (or "text") field of each line; any other file: one question per line."""
    p = Path(path)
    if not p.is_file():
        raise ReplayError(f"no questions file {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{p}: cannot read it as UTF-8 text ({exc})") from None
    out: list[str] = []
    if p.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayError(f"{p} line {n}: not JSON ({exc.msg})") from None
            q = row.get("question", row.get("text")) if isinstance(row, dict) else None
            if not isinstance(q, str) or not q.strip():
                raise ReplayError(f"{p} line {n}: needs a non-empty \"question\" (or \"text\") string")
            out.append(q.strip())
    else:
        out = [line.strip() for line in text.splitlines() if line.strip()]
    if not out:
        raise ReplayError(f"{p}: no questions")
    return out


def golden_questions(set_name: str, version: int | None = None, sql_url: str | None = None) -> list[str]:
    """The questions of a frozen golden set version (latest by default), read from the database only."""
    import sqlalchemy as sa

    from backend.access.audit import AuditLog
    from backend.db import make_engine
    from backend.errors import RagError
    from backend.evaluation.golden import GoldenSets
    from backend.settings import get_settings

    url = sql_url or get_settings().sql_url
    engine = make_engine(url)
    try:
        _, items = GoldenSets(engine, AuditLog(engine)).version_items(set_name, version)
    except RagError as exc:  # unknown set, no frozen version
        raise ReplayError(str(exc.args[0]) if exc.args else str(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise ReplayError(f"cannot read golden set '{set_name}' from {shown}: {type(exc).__name__}") from None
    finally:
        engine.dispose()
    return [i.question for i in items]


# --- the target --------------------------------------------------------------------------------
def check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplayError(f"--base-url must be an http(s) URL such as {DEFAULT_BASE_URL}, got '{base_url}'")


def preflight(base_url: str, timeout: float = 5.0) -> None:
    """GET {base_url}/healthz once: the API must answer before any load is sent."""
    import httpx

    url = f"{base_url}/healthz"
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ReplayError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise ReplayError(f"{url} answered HTTP {r.status_code}: is the base URL the API's (…/api/v1)?")


# --- the run -----------------------------------------------------------------------------------
def run_replay(config: ReplayConfig, progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Send the schedule and collect one Sample per request sent. Bounded: nothing starts after
    `duration` seconds, and every request has `timeout`. Raises ReplayError on bad config."""
    import httpx

    config.validate()
    base = config.base_url.rstrip("/")
    scheduled = max(1, math.ceil(config.rate * config.duration - 1e-9))
    samples: list[Sample] = []
    lock = threading.Lock()
    stop = threading.Event()
    next_i = [0]
    clock: dict[str, float] = {}

    def start_clock() -> None:  # once every worker is connected: request 0 is due now
        clock["t0"] = time.monotonic() + 0.01
        clock["deadline"] = clock["t0"] + config.duration

    connected = threading.Barrier(config.concurrency + 1, action=start_clock)
    last_done = [0.0]

    def take() -> int | None:
        with lock:
            i = next_i[0]
            if i >= scheduled:
                return None
            next_i[0] += 1
            return i

    def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(timeout=config.timeout, limits=limits) as client:
            try:  # open this worker's keep-alive connection before the schedule starts (see the docstring)
                client.get(f"{base}/healthz")
            except httpx.HTTPError:
                pass  # the first request then connects, and says what failed
            try:
                connected.wait(config.timeout + 5)
            except threading.BrokenBarrierError:
                return
            t0, deadline = clock["t0"], clock["deadline"]
            while not stop.is_set():
                i = take()
                if i is None:
                    return
                due = t0 + i / config.rate
                now = time.monotonic()
                if now >= deadline:  # behind schedule at the end: stop, don't overrun the duration
                    return
                if due > now:
                    if stop.wait(due - now):
                        return
                sample, done = _send(client, base, config, i, due)
                with lock:
                    samples.append(sample)
                    last_done[0] = max(last_done[0], done)
                    n = len(samples)
                if progress:
                    progress(n, scheduled)

    threads = [threading.Thread(target=worker, name=f"replay-{w}", daemon=True) for w in range(config.concurrency)]
    for t in threads:
        t.start()
    try:
        connected.wait(config.timeout + 5)
    except threading.BrokenBarrierError:
        pass  # a worker never connected: the others stop too (the barrier is broken for all)
    t0 = clock.get("t0", time.monotonic())
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:  # Ctrl-C: stop sending, report what was sent
        stop.set()
        for t in threads:
            t.join(config.timeout + 1)
    samples.sort(key=lambda s: s.i)
    return ReplayResult(config, samples, scheduled, max(0.0, last_done[0] - t0) if samples else 0.0)


def _send(client, base: str, config: ReplayConfig, i: int, due: float) -> tuple[Sample, float]:  # noqa: ANN001
    """Request i on `client` (an httpx.Client); (its Sample, the monotonic time its response ended).
    The latency runs from the send to the end of the response: the body is read, not yet parsed."""
    import httpx

    body, headers = config.body(i), config.headers(i)
    sent = time.monotonic()
    late_ms = max(0.0, (sent - due) * 1000)
    try:
        r = client.post(f"{base}/query", json=body, headers=headers)
    except httpx.TimeoutException:
        return Sample(i, "timeout", 0.0, late_ms), time.monotonic()
    except httpx.HTTPError:
        return Sample(i, "connection", 0.0, late_ms), time.monotonic()
    done = time.monotonic()
    latency_ms = (done - sent) * 1000
    if r.status_code != 200:
        return Sample(i, str(r.status_code), latency_ms, late_ms), done
    try:
        answer = r.json()
        lat = {k: float(v) for k, v in (answer.get("latency_ms") or {}).items()}
        return Sample(i, "ok", latency_ms, late_ms, bool(answer.get("cache_hit")), lat), done
    except (ValueError, AttributeError, TypeError):
        return Sample(i, "bad_body", latency_ms, late_ms), done


# --- command line ------------------------------------------------------------------------------
def add_command(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("replay", help="replay questions against a running API at a bounded rate; latency and errors",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = rp.add_mutually_exclusive_group(required=True)
    src.add_argument("--questions", metavar="FILE", help=".jsonl with a \"question\" (or \"text\") field, or one question per line")
    src.add_argument("--set", metavar="GOLDEN_SET", help="the questions of a frozen golden set (from the database)")
    rp.add_argument("--set-version", type=int, help="golden set version (default: the latest frozen one)")
    rp.add_argument("--rate", type=float, required=True, metavar="R", help="requests per second, at most")
    rp.add_argument("--duration", type=float, required=True, metavar="S", help="seconds during which requests start")
    rp.add_argument("--concurrency", type=int, default=8, metavar="C", help="requests in flight at most (default 8)")
    rp.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"the API's base URL (default {DEFAULT_BASE_URL})")
    rp.add_argument("--key", default=None, help=f"API key (default: ${KEY_ENV})")
    rp.add_argument("--retrieval-only", action="store_true",
                    help="retrieve only, call no model (needs a named policy: 'default' unless --policy)")
    rp.add_argument("--policy", help="saved policy name or name@version (default: the live release)")
    rp.add_argument("--end-users", type=int, metavar="N", help="send X-End-User: user-<i mod N> (spreads sticky releases)")
    rp.add_argument("--timeout", type=float, default=30.0, help="seconds for one request (default 30)")
    rp.add_argument("--json", action="store_true",
                    help="only the JSON object on standard output (the table goes to standard error)")
    rp.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        if args.set_version is not None and not args.set:
            raise ReplayError("--set-version needs --set")
        config = ReplayConfig(base_url=args.base_url.rstrip("/"), key=args.key or os.environ.get(KEY_ENV, ""),
                              questions=[], rate=args.rate, duration=args.duration, concurrency=args.concurrency,
                              retrieval_only=args.retrieval_only, policy=args.policy, end_users=args.end_users,
                              timeout=args.timeout)
        config.questions = ["?"]  # checked before the questions are read: a bad rate needs no database
        config.validate()
        config.questions = read_questions(args.questions) if args.questions else golden_questions(args.set, args.set_version)
        preflight(config.base_url)
        print(f"replay: {len(config.questions)} questions at {config.rate:g} req/s for {config.duration:g} s, "
              f"{config.concurrency} workers -> {config.base_url}/query", file=sys.stderr, flush=True)
        result = run_replay(config)
    except ReplayError as exc:
        print(f"error: replay: {exc}", file=sys.stderr)
        return 2
    print(result.table(), file=sys.stderr if args.json else sys.stdout, flush=True)
    print(json.dumps(result.as_json()), flush=True)
    return 0
