"""`python -m backend replay` against a real API: `python -m backend serve` in a subprocess on its own
DATA_DIR (Qdrant local mode, SQLite, 1 worker) over a tiny real SciFact index, a real API key and a
frozen golden set, all made with the command line before the server starts (the CLI and the server
cannot hold the Qdrant folder at once). Replay itself only talks HTTP and reads SQLite, so it runs
beside the server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from backend.api.replay import (JSON_KEYS, ReplayConfig, ReplayError, percentile, read_questions, run_replay)
from backend.settings import PROJECT_ROOT
from corpus import cut_dataset
from services import HOST, free_port

ENV_DROP = ("OPENAI_BASE_URL", "REDIS_URL", "DATABASE_URL", "QDRANT_URL", "EMBEDDING_BASE_URL", "RERANK_URL",
            "JUDGE_BASE_URL", "METRICS_PORT", "API_RATE_LIMIT", "RAG_API_KEY")


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    return {**env, "DATA_DIR": str(data), "OPENBLAS_NUM_THREADS": "1"}


def cli(args: list[str], data: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=PROJECT_ROOT, env=_env(data),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@dataclass
class Api:
    base_url: str
    key: str
    data: Path
    queries: Path  # the 3 SciFact claims, queries.jsonl format


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("replay")
    ds = cut_dataset("scifact", 3, 2, root / "ds")  # 5 abstracts: a few seconds of embedding
    data = root / "data"
    for args in (["ingest", str(ds / "corpus.jsonl")],
                 ["eval", "import", str(ds / "queries.jsonl"), "--set", "smoke", "--freeze"]):
        out = cli(args, data)
        assert out.returncode == 0, f"{args}: {out.stderr[-2000:]}"
    made = cli(["keys", "create", "replay-bot", "--role", "viewer", "--json"], data)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout.strip().splitlines()[-1])["key"]

    port = free_port()
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--host", HOST, "--port", str(port)],
                            cwd=PROJECT_ROOT, env=_env(data), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://{HOST}:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"serve exited ({proc.returncode}): {(root / 'serve.log').read_text()[-2000:]}"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"serve not up in 60 s: {(root / 'serve.log').read_text()[-2000:]}"
            time.sleep(0.2)
        # The first request builds the services (model, Qdrant, migrations): not part of any measurement.
        # Then each golden question once on the live path, so the cache holds their answers.
        bodies = [{"question": "warm up", "retrieval_only": True, "policy": "default"}]
        bodies += [{"question": json.loads(line)["question"]} for line in (ds / "queries.jsonl").read_text().splitlines()]
        for body in bodies:
            warm = httpx.post(f"{base}/query", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)
            assert warm.status_code == 200, warm.text
        yield Api(base, key, data, ds / "queries.jsonl")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def replay(api: Api, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    return cli(["replay", "--base-url", api.base_url, "--key", key or api.key, *args], api.data, timeout=120)


def last_json(out: subprocess.CompletedProcess) -> dict:
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert tuple(result) == JSON_KEYS
    return result


@pytest.mark.slow
def test_retrieval_only_replay_prints_the_table_and_the_json_line(api: Api) -> None:
    t = time.monotonic()
    out = replay(api, "--questions", str(api.queries), "--rate", "10", "--duration", "2", "--concurrency", "4",
                 "--retrieval-only", "--end-users", "3")
    took = time.monotonic() - t
    assert out.returncode == 0, out.stderr
    for label in ("requests", "ok", "errors", "requests/s", "latency ms", "p50", "p95", "p99", "cache hits",
                  "retrieval only, policy default", "X-End-User over 3 users", "20 due"):
        assert label in out.stdout, label
    res = last_json(out)
    assert 1 <= res["requests"] <= 20 and res["ok"] == res["requests"] and res["errors"] == {}
    assert res["cache_hits"] == 0  # retrieval-only answers are never served from the cache
    assert 0 < res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"]
    assert res["rps"] > 0 and 0 < res["duration_s"] < 2 + 30  # stops by itself: 2 s plus the last request
    assert took < 60


@pytest.mark.slow
def test_wrong_key_is_counted_as_401_errors_and_still_exits_0(api: Api) -> None:
    out = replay(api, "--questions", str(api.queries), "--rate", "10", "--duration", "1", "--concurrency", "2",
                 "--retrieval-only", key="rok_not-a-real-key")
    assert out.returncode == 0, out.stderr
    res = last_json(out)
    assert res["requests"] >= 1 and res["ok"] == 0 and res["errors"] == {"401": res["requests"]}
    assert res["p50_ms"] is None and res["cache_hits"] == 0
    assert "401: " in out.stdout


@pytest.mark.slow
def test_golden_set_questions_extractive_answers_and_cache_hits(api: Api) -> None:
    out = replay(api, "--set", "smoke", "--rate", "5", "--duration", "3", "--concurrency", "2", "--json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1  # --json: only the object on stdout, the table on stderr
    res = last_json(out)
    assert res["ok"] == res["requests"] >= 2 and res["errors"] == {}
    assert res["cache_hits"] == res["requests"]  # the fixture asked these 3 questions once: the cache serves them
    assert "3 (request i asks question i mod 3)" in out.stderr and "policy live release" in out.stderr
    missing = replay(api, "--set", "no-such-set", "--rate", "1", "--duration", "1")
    assert missing.returncode == 2 and "error: replay: unknown golden set 'no-such-set'" in missing.stderr


@pytest.mark.slow
def test_run_replay_in_process_keeps_the_schedule_and_the_engine_timings(api: Api) -> None:
    questions = [q for q in read_questions(api.queries)]
    t = time.monotonic()
    result = run_replay(ReplayConfig(api.base_url, api.key, questions, rate=5, duration=1, concurrency=2,
                                     retrieval_only=True))
    assert time.monotonic() - t < 1 + 30
    assert result.scheduled == 5 and result.requests <= 5 and result.ok == result.requests >= 1
    assert [s.i for s in result.samples] == list(range(result.requests))
    assert all("total" in s.engine_ms and "retrieve" in s.engine_ms for s in result.samples)
    assert len(result.engine("total")) == result.ok and result.as_json()["requests"] == result.requests


def test_bad_arguments_and_an_unreachable_api_exit_2(tmp_path: Path) -> None:
    qs = tmp_path / "q.txt"
    qs.write_text("one question\n\nanother one\n")
    dead = f"http://{HOST}:{free_port()}/api/v1"
    base = ["replay", "--questions", str(qs), "--key", "rok_x", "--base-url", dead]
    cases = [
        (["--rate", "0", "--duration", "1"], "--rate must be a number > 0"),
        (["--rate", "5", "--duration", "-1"], "--duration must be a number > 0"),
        (["--rate", "5", "--duration", "1", "--concurrency", "0"], "--concurrency must be 1-256"),
        (["--rate", "5", "--duration", "1", "--end-users", "0"], "--end-users must be >= 1"),
        (["--rate", "5", "--duration", "1"], "cannot reach " + dead + "/healthz"),
    ]
    for extra, message in cases:
        out = cli([*base, *extra], tmp_path / "data", timeout=60)
        assert out.returncode == 2 and f"error: replay: {message}" in out.stderr, (extra, out.stderr)
        assert "Traceback" not in out.stderr
    url = cli(["replay", "--questions", str(qs), "--key", "k", "--rate", "1", "--duration", "1", "--base-url",
               "127.0.0.1:8000"], tmp_path / "data", timeout=60)
    assert url.returncode == 2 and "error: replay: --base-url must be an http(s) URL" in url.stderr
    nokey = cli(["replay", "--questions", str(qs), "--rate", "1", "--duration", "1"], tmp_path / "data", timeout=60)
    assert nokey.returncode == 2 and "error: replay: an API key is needed" in nokey.stderr
    nofile = cli(["replay", "--questions", str(tmp_path / "none.txt"), "--key", "k", "--rate", "1", "--duration", "1"],
                 tmp_path / "data", timeout=60)
    assert nofile.returncode == 2 and "error: replay: no questions file" in nofile.stderr
    both = cli(["replay", "--questions", str(qs), "--set", "x", "--rate", "1", "--duration", "1"], tmp_path / "data",
               timeout=60)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr  # argparse: one source only


def test_question_files_and_percentiles(tmp_path: Path) -> None:
    jl = tmp_path / "q.jsonl"
    jl.write_text('{"question": "first?"}\n\n{"text": " second? "}\n')
    assert read_questions(jl) == ["first?", "second?"]
    txt = tmp_path / "q.txt"
    txt.write_text("alpha\n\n  beta  \n")
    assert read_questions(txt) == ["alpha", "beta"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"id": 3}\n')
    with pytest.raises(ReplayError, match="line 2"):
        read_questions(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ReplayError, match="no questions"):
        read_questions(empty)
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(x) for x in range(1, 101)], 50) == pytest.approx(50.5)
    assert percentile([float(x) for x in range(1, 101)], 95) == pytest.approx(95.05)


def test_request_bodies_and_headers() -> None:
    c = ReplayConfig("http://127.0.0.1:1/api/v1", "rok_k", ["a", "b"], rate=1, duration=1, end_users=3)
    assert c.body(3) == {"question": "b", "retrieval_only": False}  # the live release: no policy field
    assert c.headers(4) == {"Authorization": "Bearer rok_k", "X-End-User": "user-1"}
    ro = ReplayConfig("http://127.0.0.1:1/api/v1", "rok_k", ["a"], rate=1, duration=1, retrieval_only=True)
    assert ro.body(0) == {"question": "a", "retrieval_only": True, "policy": "default"}  # retrieval needs a policy
    assert "X-End-User" not in ro.headers(0)
    named = ReplayConfig("http://127.0.0.1:1/api/v1", "rok_k", ["a"], rate=1, duration=1, policy="fast@2")
    assert named.body(0)["policy"] == "fast@2"


def test_workers_connect_before_the_schedule_starts() -> None:
    """Each worker opens its keep-alive connection (GET /healthz) before request 0 is due, and sends
    its requests on it: the first second of a run used to measure 32 TCP handshakes at once (cached
    answers at 150 req/s: p95 85 ms over the run, 7 ms after its first two seconds). The real API does
    not show which connection a request came on, so a small recording HTTP/1.1 server stands in."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, int]] = []  # (path, client port) in arrival order

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self) -> None:
            if self.command == "POST":
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, self.client_address[1]))
            body = b'{"cache_hit": true, "latency_ms": {"total": 1.0}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

    server = ThreadingHTTPServer((HOST, free_port()), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://{HOST}:{server.server_address[1]}/api/v1"
        result = run_replay(ReplayConfig(base, "k", ["q"], rate=40, duration=0.5, concurrency=4))
    finally:
        server.shutdown()
        server.server_close()
    paths = [p for p, _ in seen]
    assert paths[:4] == ["/api/v1/healthz"] * 4 and paths[4:] == ["/api/v1/query"] * result.requests
    assert result.ok == result.requests == 20
    connections = {port for _, port in seen}
    assert len(connections) == 4 and {port for p, port in seen if p.endswith("/query")} <= connections
