"""API benchmark: `python -m backend serve` on Redis + PostgreSQL with Qdrant local mode, driven by
`python -m backend replay`'s own code (`backend.api.replay.run_replay`), loopback only.

    .venv/bin/python -m bench.api [--docs 200] [--data-dir DIR] [--duration 15] [--ledger-flush-ms 100]

Starts a throwaway Redis and PostgreSQL on 127.0.0.1 (as tests/services.py does), indexes the first
`--docs` SciFact abstracts with `python -m backend ingest`, creates an API key with `python -m backend
keys create`, starts the API (1 worker: Qdrant local mode allows one process per folder; with
QDRANT_URL it could run 2), then replays these scenarios, each bounded in rate, time and workers:

- cached answers: a small question set asked again and again (the Redis answer cache serves it), at
  concurrency 8 and 32 with no rate cap worth the name (throughput), then at 150 req/s (latency);
- uncached retrieval-only: distinct questions (retrieval-only answers never touch the cache), at a
  low rate (API overhead over the engine) and saturated (throughput);
- extractive answers (no OPENAI_BASE_URL), distinct questions, through the live release path.

Engine time comes from each response's own `latency_ms` (the API process holds the Qdrant folder,
so the bench cannot open it): client p95 ÷ engine p95 is the API's overhead plus queueing.
Prints one table and the targets; writes bench/results/api-<timestamp>.json.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as bench.retrieval; the server gets it too

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

from backend.api.replay import ReplayConfig, ReplayResult, percentile, read_questions, run_replay  # noqa: E402
from backend.settings import PROJECT_ROOT  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
HOST = "127.0.0.1"
RATE_LIMIT = "100000/minute"  # the API's per-key limit (600/minute by default) would cap every scenario
ENV_DROP = ("OPENAI_BASE_URL", "QDRANT_URL", "EMBEDDING_BASE_URL", "RERANK_URL", "JUDGE_BASE_URL", "METRICS_PORT",
            "DATABASE_URL", "REDIS_URL", "RAG_API_KEY")
CACHED_TARGET_RPS, CACHED_TARGET_P95, OVERHEAD_TARGET = 150.0, 50.0, 1.5

sys.path.insert(0, str(PROJECT_ROOT / "tests"))
from services import PostgresServer, RedisServer, free_port  # noqa: E402  (tests/services.py: loopback servers)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class KeptPostgres(PostgresServer):
    """tests/services.py's throwaway cluster, in a folder of our choosing; a cluster already there
    (a kept --data-dir) is started as it is, so its index registry matches the kept Qdrant folder."""

    def start(self) -> None:
        if not (self.datadir / "PG_VERSION").exists():
            super().start()
            return
        (self.datadir / "postmaster.pid").unlink(missing_ok=True)  # left by a killed run
        opts = (f"-c listen_addresses={HOST} -p {self.port} -k {self.workdir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                  "-o", opts, "start", what="pg_ctl start")


@dataclass
class Scenario:
    name: str
    questions: list[str]
    rate: float
    concurrency: int
    duration: float
    retrieval_only: bool = False
    policy: str | None = None
    note: str = ""
    result: ReplayResult | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    extra: dict = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "backend", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise SystemExit(f"`python -m backend {' '.join(args)}` failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out


def wait_up(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited ({proc.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"serve not up within {timeout:.0f} s:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def distinct(claims: list[str], n: int, tag: str) -> list[str]:
    """n distinct questions: the claims, then the claims again with a suffix (so no answer repeats)."""
    return [claims[i % len(claims)] + ("" if i < len(claims) else f" ({tag} {i // len(claims)})") for i in range(n)]


def fmt(v: float | int | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def row_of(s: Scenario) -> dict:
    r = s.result
    assert r is not None
    lat, eng = r.latencies(), r.engine("total")
    p95, e95 = percentile(lat, 95), percentile(eng, 95)
    return {
        "scenario": s.name, "questions": len(s.questions), "rate": s.rate, "concurrency": s.concurrency,
        "duration": s.duration, **r.as_json(), "late": r.late(), "scheduled": r.scheduled,
        "engine_p50_ms": percentile(eng, 50), "engine_p95_ms": e95,
        "engine_retrieve_p95_ms": percentile(r.engine("retrieve"), 95),
        "ratio_p95": (p95 / e95) if p95 and e95 else None,
        "server_cpu_ms_per_req": (s.server_cpu_s * 1000 / r.requests) if s.server_cpu_s and r.requests else None,
        "client_cpu_ms_per_req": (s.client_cpu_s * 1000 / r.requests) if s.client_cpu_s and r.requests else None,
        "note": s.note, "load_after": s.extra.get("load_after"),
    }


def table(rows: list[dict]) -> str:
    head = ["scenario", "questions", "asked req/s", "conc.", "requests", "errors", "req/s", "p50 ms", "p95 ms",
            "p99 ms", "engine p95 ms", "client/engine p95", "cache hits", "server CPU ms/req", "client CPU ms/req"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        cells = [r["scenario"], str(r["questions"]), f"{r['rate']:g}", str(r["concurrency"]), str(r["requests"]),
                 errors, fmt(r["rps"], ".1f"), fmt(r["p50_ms"], ".1f"), fmt(r["p95_ms"], ".1f"), fmt(r["p99_ms"], ".1f"),
                 fmt(r["engine_p95_ms"], ".1f"), fmt(r["ratio_p95"], ".2f"), str(r["cache_hits"]),
                 fmt(r["server_cpu_ms_per_req"], ".1f"), fmt(r["client_cpu_ms_per_req"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(rows: dict[str, dict]) -> list[dict]:
    out: list[dict] = []

    def add(what: str, value: float | None, ok: bool) -> None:
        out.append({"target": what, "value": None if value is None else round(value, 2), "met": ok,
                    "verdict": "met" if ok else "NOT met"})

    best = max(rows["cached-c8"]["rps"], rows["cached-c32"]["rps"])
    add(f"cached answers >= {CACHED_TARGET_RPS:g} req/s (best of concurrency 8 / 32, saturated)", best,
        best >= CACHED_TARGET_RPS)
    at = rows["cached-150"]
    add(f"cached answers at {CACHED_TARGET_RPS:g} req/s asked: achieved req/s", at["rps"],
        at["rps"] >= 0.97 * CACHED_TARGET_RPS)  # the open-loop schedule ends 1/rate early: ~0.99 when it keeps up
    add(f"cached answers at {CACHED_TARGET_RPS:g} req/s asked: p95 <= {CACHED_TARGET_P95:g} ms", at["p95_ms"],
        at["p95_ms"] is not None and at["p95_ms"] <= CACHED_TARGET_P95)
    ro = rows["uncached-ro"]
    add(f"uncached retrieval-only: client p95 / engine p95 <= {OVERHEAD_TARGET:g}", ro["ratio_p95"],
        ro["ratio_p95"] is not None and ro["ratio_p95"] <= OVERHEAD_TARGET)
    errors = sum(sum(r["errors"].values()) for r in rows.values())
    add("0 errors over all scenarios", errors, errors == 0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200, help="SciFact abstracts to index (python -m backend ingest --limit)")
    ap.add_argument("--data-dir", type=Path, help="kept DATA_DIR (with its PostgreSQL cluster in DIR/postgres): an "
                                                  "identical index is reused; default: a fresh folder per run")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per scenario (the low-rate ones run 2x)")
    ap.add_argument("--cached-questions", type=int, default=10, help="questions the cached scenarios repeat")
    ap.add_argument("--ledger-flush-ms", type=int, default=int(os.environ.get("LEDGER_FLUSH_MS", "100")),
                    help="the server's LEDGER_FLUSH_MS: 0 writes each ledger row and trace in the request, >0 in "
                         "batches (a production API's setting; default 100)")
    ap.add_argument("--only", nargs="+", metavar="SCENARIO",
                    help="run these scenarios only (e.g. cached-150 while profiling); the targets need all of them")
    args = ap.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # run the finally blocks: no server left behind
        signal.signal(sig, lambda n, _f: sys.exit(128 + n))

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS / f"api-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    data = (args.data_dir or run_dir / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t_start = time.monotonic()
    log(f"pid {os.getpid()}; data dir {data}; load {load_start[0]:.2f}")

    (run_dir / "redis").mkdir()
    redis = RedisServer(run_dir / "redis")
    pg_dir = data / "postgres"
    pg_dir.mkdir(exist_ok=True)
    pg = KeptPostgres(pg_dir)
    serve: subprocess.Popen | None = None
    serve_log = run_dir / "serve.log"
    try:
        redis.start()
        pg.start()
        log(f"redis {redis.url}; postgresql on {HOST}:{pg.port}")
        env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
        env.update(DATA_DIR=str(data), DATABASE_URL=pg.url, REDIS_URL=redis.url, API_RATE_LIMIT=RATE_LIMIT,
                   OPENBLAS_NUM_THREADS=os.environ["OPENBLAS_NUM_THREADS"], LEDGER_FLUSH_MS=str(args.ledger_flush_ms))

        t = time.monotonic()
        ing = run_cli(["ingest", str(DATASETS / "scifact" / "corpus.jsonl"), "--limit", str(args.docs)], env, 1800)
        ingest_line = ing.stdout.strip().splitlines()[0]
        log(f"ingest ({time.monotonic() - t:.0f} s): {ingest_line}")
        key = json.loads(run_cli(["keys", "create", f"bench-{stamp}", "--role", "viewer", "--json"], env, 120)
                         .stdout.strip().splitlines()[-1])["key"]

        port = free_port()
        base = f"http://{HOST}:{port}/api/v1"
        with serve_log.open("wb") as fh:
            serve = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--host", HOST, "--port", str(port),
                                      "--workers", "1"], cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_up(f"{base}/healthz", serve, serve_log, 60)
        log(f"serve pid {serve.pid} on {base} (1 worker)")

        claims = read_questions(DATASETS / "scifact" / "queries.jsonl")
        cached_qs = claims[: args.cached_questions]
        fresh = claims[args.cached_questions:]  # never asked by the cached scenarios
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=120, headers=auth) as c:  # build the services, then fill the cache
            for body in [{"question": "warm up", "retrieval_only": True, "policy": "default"}] + \
                        [{"question": q} for q in cached_qs]:
                r = c.post(f"{base}/query", json=body)
                if r.status_code != 200:
                    raise SystemExit(f"warm-up request failed: {r.status_code} {r.text[:500]}")
            ready = c.get(f"{base}/readyz").json()
        log(f"warm; readyz {ready['status']}, rate limiter {ready['rate_limiter']}")

        d = args.duration
        sat = 1000.0  # "no cap": the workers bound the rate
        scenarios = [
            Scenario("cached-c8", cached_qs, sat, 8, d, note="cached answers, saturated"),
            Scenario("cached-c32", cached_qs, sat, 32, d, note="cached answers, saturated"),
            Scenario("cached-150", cached_qs, CACHED_TARGET_RPS, 32, d, note="cached answers at the target rate"),
            Scenario("uncached-ro", distinct(fresh, int(5 * 2 * d) + 10, f"ro-{stamp}"), 5, 4, 2 * d, True,
                     note="retrieval-only, distinct questions, low rate"),
            Scenario("uncached-ro-c8", distinct(fresh, int(sat * d), f"ros-{stamp}"), sat, 8, d, True,
                     note="retrieval-only, distinct questions, saturated"),
            Scenario("extractive", distinct(fresh, int(5 * 2 * d) + 10, f"ex-{stamp}"), 5, 4, 2 * d,
                     note="extractive answers (no LLM), distinct questions, live release path"),
        ]
        if args.only:
            scenarios = [s for s in scenarios if s.name in args.only]
        for s in scenarios:
            cfg = ReplayConfig(base, key, s.questions, rate=s.rate, duration=s.duration, concurrency=s.concurrency,
                               retrieval_only=s.retrieval_only, policy=s.policy, end_users=20, timeout=30)
            srv0, cli0 = cpu_seconds(serve.pid), time.process_time()
            s.result = run_replay(cfg)
            s.server_cpu_s, s.client_cpu_s = cpu_seconds(serve.pid) - srv0, time.process_time() - cli0
            s.extra["load_after"] = round(os.getloadavg()[0], 2)
            (run_dir / f"samples-{s.name}.json").write_text(json.dumps(  # for a latency-over-time look
                [[x.i, x.outcome, round(x.latency_ms, 2), round(x.late_ms, 2)] for x in s.result.samples]))
            r = row_of(s)
            log(f"{s.name}: {r['requests']} requests, {r['rps']:.1f} req/s, p50/p95/p99 {fmt(r['p50_ms'], '.1f')}/"
                f"{fmt(r['p95_ms'], '.1f')}/{fmt(r['p99_ms'], '.1f')} ms, engine p95 {fmt(r['engine_p95_ms'], '.1f')} ms, "
                f"errors {r['errors'] or 0}, cache hits {r['cache_hits']}, load {os.getloadavg()[0]:.2f}")
        with httpx.Client(timeout=10) as c:
            metrics_ok = c.get(f"http://{HOST}:{port}/metrics").status_code == 200
    finally:
        if serve is not None and serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            try:
                serve.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
        pg.stop()
        redis.stop()

    rows = {s.name: row_of(s) for s in scenarios}
    checks = targets(rows) if not args.only else []
    load_end = os.getloadavg()
    print()
    print(f"## API: `python -m backend serve --workers 1` (Qdrant local mode allows one process per data folder; "
          f"with QDRANT_URL it could run 2 workers on these 2 cores), Redis answer cache + rate limiter "
          f"(API_RATE_LIMIT={RATE_LIMIT}), PostgreSQL ledger (LEDGER_FLUSH_MS={args.ledger_flush_ms}), extractive answers (no OPENAI_BASE_URL); "
          f"{ingest_line}; client and server on the same {os.cpu_count()} cores; load avg {load_start[0]:.2f} -> "
          f"{load_end[0]:.2f}")
    print(table(list(rows.values())))
    for s in scenarios:
        print(f"- {s.name}: {s.note}; X-End-User over 20 users"
              + (", policy default (retrieval-only needs a named policy)" if s.retrieval_only else ", live release")
              + f"; {s.duration:g} s; load avg after it {s.extra.get('load_after')}")
    print("- latency is client side, send to end of response, successful requests; engine p95 = the answers' "
          "latency_ms.total; server CPU = the serve process's user+sys time per request (Redis and PostgreSQL not "
          "included); client CPU = this process's (replay's threads) per request")
    print("\nTargets")
    for c in checks:
        print(f"- {c['target']}: {fmt(c['value'], '.2f')} -> {c['verdict']}")
    result = {"stamp": stamp, "args": {k: str(v) for k, v in vars(args).items()}, "data_dir": str(data),
              "ingest": ingest_line, "rate_limit": RATE_LIMIT, "workers": 1, "cpu_count": os.cpu_count(),
              "openblas_num_threads": os.environ["OPENBLAS_NUM_THREADS"], "loadavg_start": load_start,
              "loadavg_end": load_end, "seconds": round(time.monotonic() - t_start, 1), "metrics_endpoint_ok": metrics_ok,
              "rows": list(rows.values()), "targets": checks}
    out = RESULTS / f"api-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    log(f"wrote {out} ({result['seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()
