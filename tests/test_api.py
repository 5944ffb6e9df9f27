"""The HTTP API against real parts on loopback: real API processes (`python -m backend serve`
and the console's Streamlit server, which mounts the same API at /api/v1), API keys made with
the real CLI, the official `openai` client, schemathesis, a real Redis and PostgreSQL shared by
two API processes, and a real llama.cpp server (SmolLM2) or the fault-injection server as the LLM.

Every server is started on 127.0.0.1 with a bounded start-up wait; every request loop is bounded
in count and time."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import jsonschema
import openai
import pytest
from browser_kit import start_console
from services import HOST, FaultLLM, LlmServer, PostgresServer, RedisServer, free_port

from backend.api.models import ChatCompletion
from backend.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0  # a server process answers /healthz within this
WARM_TIMEOUT_S = 120.0  # the first /readyz builds the services (embedding model, index, LLM probe)
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}  # the stack of the test process is never inherited
METRICS_TOKEN = "scrape-secret"  # /metrics of the extractive API asks for it
ERROR_KEYS = {"type", "message", "part", "request_id"}

# A tiny corpus of short documents: small prompts keep SmolLM2 (2048-token context) quick.
DOCS = [
    ("lighthouse", "Lighthouse clocks",
     "The Zorblax protocol synchronises lighthouse clocks with pulses of green light every eleven minutes."),
    ("honey", "Honey storage", "Honey keeps for centuries because its low water content and acidity stop bacteria from growing."),
    ("tides", "Tides", "Ocean tides are caused mainly by the gravitational pull of the Moon and, to a lesser degree, the Sun."),
    ("basalt", "Basalt", "Basalt is a dark volcanic rock that forms when lava rich in iron and magnesium cools quickly."),
    ("violin", "Violin strings", "A violin has four strings tuned in perfect fifths: G, D, A and E."),
    ("penguins", "Emperor penguins", "Emperor penguins breed during the Antarctic winter and the males incubate the single egg."),
]
QUESTIONS = [
    "How does the Zorblax protocol synchronise lighthouse clocks?",
    "Why does honey keep for centuries?",
    "What causes ocean tides?",
    "How does basalt form?",
    "How are violin strings tuned?",
    "When do emperor penguins breed?",
]


# --- shared helpers ------------------------------------------------------------------------------

def write_corpus(dest: Path) -> Path:
    """DOCS as a corpus.jsonl folder (what `python -m backend ingest` reads)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "corpus.jsonl").write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS))
    return dest


def child_env(data_dir: Path, **env: str) -> dict[str, str]:
    """The environment of a backend child process: none of the test process' settings, its own DATA_DIR."""
    out = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
    out.update(DATA_DIR=str(data_dir), OPENBLAS_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", DEMO_DOCS="4")
    out.update(env)
    return out


def backend_cli(env: dict[str, str], *args: str, timeout: float = 240) -> str:
    """`python -m backend ARGS` (bounded); fails the test with its output when it fails."""
    r = subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, f"python -m backend {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def create_key(env: dict[str, str], name: str | None = None, role: str = "viewer") -> tuple[int, str]:
    """(id, secret) of a new API key made by the real CLI."""
    out = backend_cli(env, "keys", "create", name or f"k-{uuid.uuid4().hex[:8]}", "--role", role, "--json", timeout=60)
    made = json.loads(out.strip().splitlines()[-1])
    assert made["key"].startswith("rok_")
    return int(made["id"]), made["key"]


def revoke_key(env: dict[str, str], key_id: int) -> None:
    backend_cli(env, "keys", "revoke", str(key_id), timeout=60)


@dataclass
class ApiProcess:
    """A server child in its own process group; `url` ends in /api/v1."""

    url: str
    proc: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own group: this server and nothing else
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "<no log>"

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        hdrs = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers={**hdrs, **headers}, timeout=120)


def _spawn(name: str, argv: list[str], env: dict[str, str], log: Path, api_url: str,
           health_url: str) -> ApiProcess:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    api = ApiProcess(api_url, proc, log, env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(health_url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            api.stop()
            pytest.fail(f"{name} did not start within {START_TIMEOUT_S:.0f} s:\n{api.log_tail()}", pytrace=False)
        time.sleep(0.2)
    warm(api)
    return api


def warm(api: ApiProcess) -> None:
    """The first /readyz builds the process' services; bounded, and it must say ready."""
    try:
        r = httpx.get(f"{api.url}/readyz", timeout=WARM_TIMEOUT_S)
    except httpx.HTTPError as exc:
        api.stop()
        pytest.fail(f"{api.url}/readyz did not answer: {exc}\n{api.log_tail()}", pytrace=False)
    if r.status_code != 200:
        api.stop()
        pytest.fail(f"{api.url}/readyz: {r.status_code} {r.text}\n{api.log_tail()}", pytrace=False)


def start_api(data_dir: Path, **env: str) -> ApiProcess:
    """`python -m backend serve` on a free loopback port with DATA_DIR=data_dir (index ingested before)."""
    port = free_port()
    return _spawn("python -m backend serve",
                  [sys.executable, "-m", "backend", "serve", "--host", HOST, "--port", str(port)],
                  child_env(data_dir, **env), data_dir / f"api-{port}.log", f"http://{HOST}:{port}/api/v1",
                  f"http://{HOST}:{port}/api/v1/healthz")


def start_mounted_api(data_dir: Path, **env: str) -> ApiProcess:
    """The console's own server (browser_kit.start_console) and its API under /api/v1."""
    console = start_console(data_dir, **{"DEMO_DOCS": "4", "OMP_WAIT_POLICY": "PASSIVE", **env})
    api = ApiProcess(f"{console.url}/api/v1", console.proc, console.log, child_env(data_dir, **env))
    warm(api)
    return api


def ingest(env: dict[str, str], corpus: Path) -> None:
    """The real ingest CLI into env's DATA_DIR (before any server holds the Qdrant local folder)."""
    out = backend_cli(env, "ingest", str(corpus))
    assert "alias rag_chunks ->" in out, out


def save_policy(env: dict[str, str], **spec: object) -> None:
    """A saved policy in env's database (no Qdrant: the server may already hold the local folder)."""
    from actors import system_actor

    from backend.access.audit import AuditLog
    from backend.db import make_engine, migrate
    from backend.engine.policy import Policy, PolicyStore

    settings = Settings(_env_file=None, data_dir=Path(env["DATA_DIR"]), database_url=env.get("DATABASE_URL"))
    db = make_engine(settings.sql_url)
    try:
        migrate(db)
        PolicyStore(db, AuditLog(db)).save(Policy(**spec), actor=system_actor("test-api"))
    finally:
        db.dispose()


def assert_error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    """The one JSON error shape, its request id the response's X-Request-Id, and no internals."""
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    err = body["error"]
    assert err["request_id"] and err["request_id"] == r.headers["x-request-id"]
    assert err["message"] and isinstance(err["message"], str)
    for leak in ("Traceback", 'File "', "site-packages", "/work/", str(ROOT)):
        assert leak not in r.text, f"internals in the error body: {r.text[:500]}"
    if type_:
        assert err["type"] == type_, body
    return err


def sse_events(r: httpx.Response) -> list[tuple[str, dict]]:
    """(event, data) pairs of a server-sent events response."""
    out: list[tuple[str, dict]] = []
    event, data = "message", []
    for line in r.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            out.append((event, json.loads("\n".join(data))))
            event, data = "message", []
    if data:
        out.append((event, json.loads("\n".join(data))))
    return out


def sse_order(events: list[tuple[str, dict]]) -> list[str]:
    """Event names with runs of deltas collapsed: ['sources', 'delta', 'done']."""
    names = [e for e, _ in events]
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


# --- 1. the openai client and the HTTP contract, on the console's API and on the standalone one ---

@dataclass
class Target:
    api: ApiProcess
    key: str
    key_id: int


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("api-corpus"))


def _llm_env(llm: LlmServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": llm.api_key, "LLM_MODEL": llm.model,
            "LLM_TIMEOUT_S": "120", "LLM_MAX_RETRIES": "0", "API_MAX_BODY_BYTES": "4096"}


def _target(kind: str, data_dir: Path, corpus: Path, llm: LlmServer) -> Iterator[Target]:
    env = child_env(data_dir, **_llm_env(llm))
    ingest(env, corpus)  # the alias exists, so the console builds no demo index
    save_policy(env, name="short", top_k=3, max_tokens=48, retrieval_mode="hybrid")
    save_policy(env, name="default", top_k=4, max_tokens=64)  # what `rag` runs without a release: short answers
    key_id, key = create_key(env, f"{kind}-client")
    api = (start_mounted_api if kind == "console" else start_api)(data_dir, **_llm_env(llm))
    try:
        yield Target(api, key, key_id)
    finally:
        api.stop()
    log = api.log_tail(100_000)
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def console_target(tmp_path_factory: pytest.TempPathFactory, corpus: Path, llm_server: LlmServer) -> Iterator[Target]:
    yield from _target("console", tmp_path_factory.mktemp("api-console"), corpus, llm_server)


@pytest.fixture(scope="module")
def standalone_target(tmp_path_factory: pytest.TempPathFactory, corpus: Path, llm_server: LlmServer) -> Iterator[Target]:
    yield from _target("standalone", tmp_path_factory.mktemp("api-standalone"), corpus, llm_server)


@pytest.fixture(params=["console", "standalone"])
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue(f"{request.param}_target")


def test_openai_client_chat_completions(target: Target) -> None:
    client = openai.OpenAI(base_url=target.api.url, api_key=target.key, timeout=120, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert "rag" in ids and "short" in ids, ids

    # Non-streaming, the live configuration (`rag`): the answer, its token usage, the sources extra field.
    raw = client.chat.completions.with_raw_response.create(
        model="rag", messages=[{"role": "user", "content": QUESTIONS[0]}], max_tokens=48)
    assert raw.headers.get("x-request-id")
    ChatCompletion.model_validate_json(raw.content)  # what the OpenAPI schema documents
    done = raw.parse()
    assert done.object == "chat.completion" and done.model == "rag"
    assert done.choices[0].message.role == "assistant" and done.choices[0].message.content.strip()
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    extra = done.model_extra or {}
    assert extra["sources"] and extra["sources"][0]["doc_id"] == "lighthouse", extra["sources"][:1]
    assert extra["rag"]["answer_kind"] == "llm" and extra["rag"]["cache_hit"] is False
    assert extra["rag"]["request_id"] and extra["rag"]["variant"] is None  # no release configured:
    # The saved default policy (max_tokens 64; tokens may be counted with tiktoken when the server reports none).
    assert extra["rag"]["policy"] == "default v1" and done.usage.completion_tokens <= 2 * 64

    # Streaming, a saved policy by name: the first chunk carries the sources, the last one the usage.
    chunks = list(client.chat.completions.create(
        model="short", messages=[{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": QUESTIONS[1]}], stream=True))
    assert len(chunks) >= 3
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    sources = (first.model_extra or {}).get("sources")
    assert sources and sources[0]["doc_id"] == "honey" and len(sources) <= 3
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.prompt_tokens > 0 and 0 < last.usage.completion_tokens <= 2 * 48
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    rag = (last.model_extra or {})["rag"]
    assert rag["policy"] == "short v1" and rag["answer_kind"] == "llm"
    assert len({c.id for c in chunks}) == 1 and all(c.model == "short" for c in chunks)

    # A key that is not one: the client's AuthenticationError (401).
    bad = openai.OpenAI(base_url=target.api.url, api_key="rok_not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.models.list()
    assert err.value.status_code == 401
    # An unknown policy as the model: NotFoundError (404).
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-policy", messages=[{"role": "user", "content": "hi"}])


def test_query_json_and_sse(target: Target) -> None:
    with target.api.client(target.key) as c:
        # JSON, the live configuration (no release set up: the saved default policy on the alias).
        r = c.post("/query", json={"question": QUESTIONS[2]}, headers={"X-Request-Id": "req-json-1"})
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "req-json-1"  # the caller's id, when sane, is kept
        a = r.json()
        assert a["answer"].strip() and a["answer_kind"] == "llm" and a["policy"] == "default v1"
        assert a["sources"][0]["doc_id"] == "tides" and len(a["sources"]) <= 4
        assert a["usage"]["prompt_tokens"] > 0 and a["usage"]["completion_tokens"] > 0
        assert a["release"] is None and a["variant"] is None and not a["cache_hit"]

        # Retrieval only, with top_k overriding the named policy: no model call.
        r = c.post("/query", json={"question": QUESTIONS[3], "policy": "short", "top_k": 1, "retrieval_only": True})
        assert r.status_code == 200, r.text
        assert r.json()["answer_kind"] == "retrieval_only" and len(r.json()["sources"]) == 1
        assert r.json()["sources"][0]["doc_id"] == "basalt"

        # Server-sent events, a named policy: sources, then deltas, then done with the whole answer.
        with c.stream("POST", "/query", json={"question": QUESTIONS[4], "policy": "short", "stream": True}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            assert s.headers.get("x-request-id")
            events = sse_events(s)
        assert sse_order(events) == ["sources", "delta", "done"], [e for e, _ in events]
        assert events[0][1]["sources"][0]["doc_id"] == "violin" and len(events[0][1]["sources"]) <= 3
        final = events[-1][1]
        assert final["answer"] == "".join(d["text"] for e, d in events if e == "delta")
        documented = c.get("/openapi.json").json()["paths"]["/query"]["post"]["responses"]["200"]["content"]
        for e, d in events:  # each event as the schema describes it (schemathesis checks the same)
            jsonschema.validate({"event": e, "data": json.dumps(d)}, documented["text/event-stream"]["schema"])
        assert final["answer_kind"] == "llm" and final["policy"] == "short v1" and final["usage"]["completion_tokens"] > 0


def test_every_response_has_a_request_id_and_errors_have_one_shape(target: Target) -> None:
    with target.api.client() as anon, target.api.client(target.key) as c:
        for r in (anon.get("/healthz"), anon.get("/readyz"), anon.get("/openapi.json")):
            assert r.status_code == 200 and r.headers.get("x-request-id"), (r.url, r.status_code)

        # No key, a malformed header, an unknown key: 401 with WWW-Authenticate.
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer rok_nope"}):
            r = anon.post("/query", json={"question": "hi"}, headers=headers)
            assert_error(r, 401, "unauthorized")
            assert r.headers.get("www-authenticate") == "Bearer"
        assert_error(anon.get("/models"), 401)

        # Malformed JSON, NUL in the question (both endpoints), top_k out of range: 422.
        r = c.post("/query", content=b'{"question": "unterminated', headers={"Content-Type": "application/json"})
        assert_error(r, 422, "invalid_request")
        for path in ("/query", "/chat/completions", "/feedback"):  # bytes that are not UTF-8 (400 before)
            r = c.post(path, content=b'{"question": "\xff\xfe"}', headers={"Content-Type": "application/json"})
            assert assert_error(r, 422, "invalid_request")["part"] == "input"
        assert_error(c.post("/query", json={"question": "what\x00is this"}), 422, "invalid_request")
        assert_error(c.post("/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": "a\x00b"}]}),
                     422, "invalid_request")
        for top_k in (0, 1000):
            err = assert_error(c.post("/query", json={"question": "q", "policy": "short", "top_k": top_k}), 422)
            assert "top_k" in err["message"]
        assert_error(c.post("/query", json={"question": "q", "no_such_field": 1}), 422)
        assert_error(c.post("/chat/completions", json={"model": "rag", "messages": []}), 422)

        # Filters: equality on a payload key works; a float value or a key the vector store cannot parse is
        # the caller's error (422), not a 5xx (both were 500/503 before; schemathesis found them).
        r = c.post("/query", json={"question": QUESTIONS[0], "policy": "short", "retrieval_only": True,
                                   "filters": {"doc_id": "honey"}})
        assert r.status_code == 200 and {s["doc_id"] for s in r.json()["sources"]} == {"honey"}, r.text[:300]
        for filters in ({"doc_id": 1.5}, {"/": False}, {"": "x"}, {"a\x0bb": 1}):
            body = {"question": "q", "policy": "short", "retrieval_only": True, "filters": filters}
            assert_error(c.post("/query", json=body), 422, "invalid_request")

        # An unknown policy: 404 (query and chat).
        assert_error(c.post("/query", json={"question": "q", "policy": "no-such-policy"}), 404, "not_found")
        assert_error(c.post("/chat/completions", json={"model": "nope@3", "messages": [{"role": "user", "content": "q"}]}),
                     404, "not_found")

        # A body over API_MAX_BODY_BYTES (4096 here): 413 before it is read.
        err = assert_error(c.post("/query", json={"question": "x" * 5000}), 413, "payload_too_large")
        assert err["part"] == "input"
        # ...also for the chat endpoint, and with the caller's request id kept.
        r = c.post("/chat/completions", headers={"X-Request-Id": "big-1"},
                   json={"model": "rag", "messages": [{"role": "user", "content": "y" * 5000}]})
        assert assert_error(r, 413)["request_id"] == "big-1"
        # An insane request id is replaced, not echoed.
        r = anon.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
        assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32


def test_a_revoked_key_gets_401(target: Target) -> None:
    """Every role may ask (no 403 is reachable with a valid key); a revoked key is refused."""
    key_id, key = create_key(target.api.env, f"soon-revoked-{uuid.uuid4().hex[:6]}", role="viewer")
    with target.api.client(key) as c:
        assert c.get("/models").status_code == 200
        assert c.post("/query", json={"question": QUESTIONS[0], "policy": "short", "retrieval_only": True}).status_code == 200
        revoke_key(target.api.env, key_id)
        assert_error(c.get("/models"), 401, "unauthorized")
        assert_error(c.post("/query", json={"question": QUESTIONS[0]}), 401, "unauthorized")
    with target.api.client(target.key) as c:  # the other key is untouched
        assert c.get("/models").status_code == 200


# --- 2. schemathesis against the standalone API's OpenAPI schema --------------------------------

@pytest.fixture(scope="module")
def extractive_api(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Iterator[Target]:
    """The standalone API without an LLM (extractive answers): quick enough to fuzz."""
    data = tmp_path_factory.mktemp("api-fuzz")
    env = child_env(data)
    ingest(env, corpus)
    save_policy(env, name="short", top_k=3)
    key_id, key = create_key(env, "fuzz")
    api = start_api(data, API_RATE_LIMIT="100000/minute", METRICS_TOKEN=METRICS_TOKEN)
    try:
        yield Target(api, key, key_id)
    finally:
        api.stop()


def test_json_answers_count_as_finished_requests_in_metrics(extractive_api: Target) -> None:
    """A JSON answer reads the engine's stream to its end: the request is counted ok in
    Prometheus, never aborted (it was, when the API returned at the first Answer event)."""
    api = extractive_api.api
    with api.client(extractive_api.key) as c:
        for q in ("What does aspirin do? metrics-1", "What does aspirin do? metrics-2"):
            assert c.post("/query", json={"question": q}).status_code == 200
        r = c.post("/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": "metrics-3?"}]})
        assert r.status_code == 200
    metrics = httpx.get(api.url.removesuffix("/api/v1") + "/metrics", timeout=30,
                        headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    counts = {m.group(1): float(m.group(2)) for m in
              re.finditer(r'^rag_requests_total\{policy="default",status="(\w+)"\} (\S+)$', metrics, flags=re.M)}
    assert counts.get("aborted", 0.0) == 0.0, counts
    assert counts.get("ok", 0.0) >= 3, counts


LOADED_BEFORE_SERVING = """
import sys
from streamlit import config
config.set_option("server.address", "127.0.0.1")
{build}
from backend.engine.tokens import _encoding
print("backend.engine.stages" in sys.modules, _encoding.cache_info().currsize)
"""


@pytest.mark.parametrize("build", ["from backend.api.server import create_server; create_server()",
                                   "import runpy; runpy.run_path('console/app.py')"], ids=["serve", "console"])
def test_servers_preload_before_they_serve(build: str, tmp_path: Path) -> None:
    """Both servers import llama-index (and load the token encoding) in their main thread before
    serving: two threads importing it at once (a request and a warm-up, two pages) fail with
    'partially initialized module'; and the first question would pay both."""
    code = LOADED_BEFORE_SERVING.format(build=build)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(tmp_path), capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "1"]


def test_metrics_ask_for_the_token_when_one_is_set(extractive_api: Target) -> None:
    url = extractive_api.api.url.removesuffix("/api/v1") + "/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN},
                    {"Authorization": f"Bearer {extractive_api.key}"}):  # an API key is not the metrics token
        r = httpx.get(url, headers=headers, timeout=30)
        assert (r.status_code, r.headers.get("www-authenticate")) == (401, "Bearer"), headers
        assert "rag_requests_total" not in r.text
    r = httpx.get(url, headers={"Authorization": f"bearer {METRICS_TOKEN}"}, timeout=30)
    assert r.status_code == 200 and "rag_requests_total" in r.text


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(extractive_api: Target,
                                                                            tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "schemathesis"
    assert exe.exists(), "schemathesis is not installed: pip install -r requirements-test.txt"
    argv = [str(exe), "run", f"{extractive_api.api.url}/openapi.json", "--checks", CHECKS,
            "-H", f"Authorization: Bearer {extractive_api.key}", "-n", "25", "--request-timeout", "60",
            "--generation-database", "none", "--no-color"]
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540, check=False,
                       stdin=subprocess.DEVNULL)
    print(r.stdout[-3000:])
    assert r.returncode == 0, f"schemathesis exit {r.returncode}:\n{r.stdout[-12000:]}\n{r.stderr[-3000:]}"
    assert re.search(r"Operations:\s+6 selected / 6 total", r.stdout), r.stdout[:2000]  # every operation was fuzzed
    ran = re.search(r"(\d+) generated, (\d+) passed", r.stdout)
    assert ran and int(ran.group(1)) >= 100 and ran.group(1) == ran.group(2), r.stdout[-2000:]
    log = extractive_api.api.log_tail(200_000)
    assert "Traceback" not in log, log[-6000:]


# --- 3. the rate limit and revocation across two processes sharing Redis and PostgreSQL ----------

@pytest.mark.slow
def test_rate_limit_and_revocation_across_two_processes(tmp_path: Path, corpus: Path, redis_url: str,
                                                         postgres_server: PostgresServer) -> None:
    db_url = postgres_server.create_database(f"api_rl_{uuid.uuid4().hex[:8]}")
    shared = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "API_RATE_LIMIT": "10/minute",
              "AUTH_SECRET": "shared-test-secret-" + uuid.uuid4().hex}
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:  # Qdrant local mode: one process per folder, so each gets its own copy of the index
        ingest(child_env(d, **shared), corpus)
    apis: list[ApiProcess] = []
    try:
        for d in dirs:
            apis.append(start_api(d, **shared))
        env = apis[0].env
        _, key = create_key(env, f"rl-{uuid.uuid4().hex[:8]}")
        clients = [a.client(key) for a in apis]
        # 10 requests in total, alternated between the two processes: all allowed.
        for i in range(10):
            c = clients[i % 2]
            r = c.get("/models") if i % 3 else c.post("/query", json={"question": QUESTIONS[i % 6]})
            assert r.status_code == 200, (i, r.status_code, r.text[:300])
        # The 11th and 12th, on either process: 429 with Retry-After (the window is shared through Redis).
        for c in clients:
            r = c.post("/query", json={"question": QUESTIONS[0]})
            err = assert_error(r, 429, "rate_limited")
            assert "10/minute" in err["message"]
            assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
        # Another key has its own window.
        key2_id, key2 = create_key(env, f"rl2-{uuid.uuid4().hex[:8]}")
        clients2 = [a.client(key2) for a in apis]
        assert [c.get("/models").status_code for c in clients2] == [200, 200]
        # Revoked through the CLI (the database both share): refused by both within a second.
        revoke_key(env, key2_id)
        revoked_at, refused = time.monotonic(), set()
        while len(refused) < 2 and time.monotonic() - revoked_at < 1.0:
            for i, c in enumerate(clients2):
                if i not in refused and c.get("/models").status_code == 401:
                    refused.add(i)
        elapsed = time.monotonic() - revoked_at
        assert refused == {0, 1}, f"only {sorted(refused)} refused the revoked key within 1 s"
        for c in clients2:
            assert_error(c.get("/models"), 401, "unauthorized")
        print(f"\nrevocation seen by both processes {elapsed * 1000:.0f} ms after the CLI returned")
        for c in clients + clients2:
            c.close()
    finally:
        for a in apis:
            a.stop()
    for a in apis:
        assert "Traceback" not in a.log_tail(100_000), a.log_tail()


# --- 4. Redis killed during traffic -----------------------------------------------------------------

@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (the session's one is never killed here)."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="test-redis-api-"))
    srv = RedisServer(work)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_redis_down_during_traffic_then_back(tmp_path: Path, corpus: Path, own_redis: RedisServer) -> None:
    env = {"REDIS_URL": own_redis.url, "API_RATE_LIMIT": "100000/minute"}
    ingest(child_env(tmp_path, **env), corpus)
    api = start_api(tmp_path, **env)
    try:
        _, key = create_key(api.env)
        with api.client(key) as c:
            def ask(q: str) -> dict:
                r = c.post("/query", json={"question": q}, timeout=30)
                assert r.status_code == 200, r.text[:500]
                return r.json()

            assert not ask(QUESTIONS[0])["cache_hit"]
            assert ask(QUESTIONS[0])["cache_hit"], "Redis up: the repeated question is a cache hit"
            ready = c.get("/readyz").json()["rate_limiter"]
            assert ready == {"backend": "redis", "failing_open": False}

            # Traffic in a thread (bounded), Redis killed in the middle of it.
            results: list[tuple[float, int, bool | None]] = []
            stop = threading.Event()

            def traffic() -> None:
                with api.client(key) as tc:
                    t_end = time.monotonic() + 60
                    for i in range(400):
                        if stop.is_set() or time.monotonic() > t_end:
                            return
                        r = tc.post("/query", json={"question": QUESTIONS[1 + i % 2]}, timeout=30)
                        results.append((time.monotonic(), r.status_code,
                                        r.json().get("cache_hit") if r.status_code == 200 else None))

            thread = threading.Thread(target=traffic, daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 30
                while len(results) < 5 and time.monotonic() < deadline:
                    time.sleep(0.05)
                own_redis.stop()
                killed_at = time.monotonic()
                deadline = killed_at + 30
                # at least 5 answers from after the first half second without Redis (what is checked below)
                while sum(1 for t, *_ in results if t > killed_at + 0.5) < 5 and time.monotonic() < deadline:
                    time.sleep(0.05)
                # While Redis is down: every request answered, uncached; the limiter says it fails open.
                down = ask(QUESTIONS[3]), ask(QUESTIONS[3])
                assert not any(d["cache_hit"] for d in down), "no cache while Redis is down"
                ready = c.get("/readyz").json()
                assert ready["rate_limiter"] == {"backend": "redis", "failing_open": True}, ready
            finally:
                stop.set()
                thread.join(60)
            assert any(hit for t, _, hit in results if t < killed_at), "no cache hit before Redis was killed"
            after = [(s, hit) for t, s, hit in results if t > killed_at + 0.5]
            assert len(after) >= 5 and all(s == 200 for s, _ in after), results[-10:]
            assert not any(hit for _, hit in after), "cache hits while Redis was down"
            assert all(s == 200 for _, s, _ in results), [s for _, s, _ in results if s != 200]

            # Redis back: caching resumes (the cache retries Redis a few seconds after a failure).
            own_redis.start()
            deadline, hit = time.monotonic() + 30, False
            while not hit and time.monotonic() < deadline:
                hit = ask(QUESTIONS[4])["cache_hit"]
                time.sleep(0.5)
            assert hit, "no cache hit within 30 s of Redis coming back"
    finally:
        api.stop()


# --- 5. a failing candidate release trips the guardrail under API traffic ----------------------------

@pytest.mark.slow
def test_failing_candidate_trips_the_guardrail_under_api_traffic(tmp_path: Path, corpus: Path,
                                                                 fault_llm: FaultLLM) -> None:
    from actors import Role
    from actors import user as person

    from backend.access.audit import AuditLog
    from backend.db import make_engine
    from backend.engine.policy import Policy, PolicyStore
    from backend.ingestion.sources import load_source
    from backend.releases.manager import Guardrails, ReleaseManager
    from backend.services import build_services

    ann = person("ann", Role.admin)
    fault_llm.fail_models.add("broken-model")
    env = {"OPENAI_BASE_URL": fault_llm.base_url, "OPENAI_API_KEY": fault_llm.api_key, "LLM_MODEL": fault_llm.model,
           "LLM_MAX_RETRIES": "0", "LLM_TIMEOUT_S": "10", "API_RATE_LIMIT": "100000/minute"}
    # The index and the releases are set up before the server holds the Qdrant local folder.
    settings = Settings(_env_file=None, data_dir=tmp_path, openai_base_url=fault_llm.base_url, llm_model=fault_llm.model,
                        redis_url=None, database_url=None, qdrant_url=None, embedding_base_url=None, rerank_url=None)
    svc = build_services(settings)
    try:
        svc.ingestor.ingest(load_source(corpus).documents, actor=ann, family="rag_chunks", source="t")
        ok = svc.policies.save(Policy(name="api-ok", retrieval_mode="sparse", top_k=3), actor=ann)
        broken = svc.policies.save(Policy(name="api-broken", retrieval_mode="sparse", top_k=3, model="broken-model"),
                                   actor=ann)
        r1 = svc.releases.create(ann, "api-ok", ok.version)
        r2 = svc.releases.create(ann, "api-broken", broken.version, note="new model")
        svc.releases.set_current(ann, r1.id, "baseline")
        svc.releases.set_guardrails(ann, Guardrails(max_error_rate=0.2, max_p95_ms=30_000, window_minutes=5,
                                                      min_requests=4))
        svc.releases.set_candidate(ann, r2.id, 0.5, "try the new model")
    finally:
        svc.close()
    api = start_api(tmp_path, **env)
    db = make_engine(settings.sql_url)  # the server's database, read alongside it
    audit = AuditLog(db)
    releases = ReleaseManager(db, audit, PolicyStore(db, audit), None, "rag_chunks")  # type: ignore[arg-type]
    try:
        _, key = create_key(api.env, "ab-traffic")
        seen: dict[str, list[str]] = {"current": [], "candidate": []}
        t0, n_sent = time.monotonic(), 0
        with api.client(key) as c:
            for i in range(400):  # bounded: the guardrail must trip well before
                if releases.state().share == 0.0 or time.monotonic() - t0 > 90:
                    break
                user = f"user-{i}"
                r = c.post("/query", json={"question": QUESTIONS[i % 6]}, headers={"X-End-User": user})
                n_sent += 1
                if r.status_code == 200:
                    assert r.json()["variant"] == "current" and r.json()["release"] == r1.label
                    seen["current"].append(user)
                else:  # the candidate's failure: a clear error naming the release, never a silent drop
                    err = assert_error(r, 502, "upstream_error")
                    assert err["part"] == "LLM" and r2.label in err["message"], err
                    assert "HTTP 500" in err["message"]
                    seen["candidate"].append(user)
                time.sleep(0.05)
            assert releases.state().share == 0.0, (
                f"no trip after {n_sent} requests in {time.monotonic() - t0:.0f} s "
                f"({len(seen['candidate'])} candidate failures)")
            print(f"\nguardrail tripped after {n_sent} API requests ({len(seen['candidate'])} candidate failures)")
            assert len(seen["candidate"]) >= 4 and seen["current"]

            # Later requests all go to the current release, the users who failed included.
            for user in seen["candidate"][:10] + [f"later-{i}" for i in range(10)]:
                r = c.post("/chat/completions", headers={"X-End-User": user},
                           json={"model": "rag", "messages": [{"role": "user", "content": QUESTIONS[2]}]})
                assert r.status_code == 200, r.text[:500]
                assert r.json()["rag"]["variant"] == "current" and r.json()["rag"]["release"] == r1.label
                q = c.post("/query", json={"question": QUESTIONS[3]}, headers={"X-End-User": user})
                assert q.status_code == 200 and q.json()["variant"] == "current", q.text[:300]
            with c.stream("POST", "/query", json={"question": QUESTIONS[5], "stream": True},
                          headers={"X-End-User": seen["candidate"][0]}) as s:
                events = sse_events(s)
            assert sse_order(events) == ["sources", "delta", "done"] and events[-1][1]["variant"] == "current"

        # The trip is visible: a release event, an audit record, the experiment's history.
        trip = releases.events(5)
        trip = next(e for e in trip if e.action == "guardrail_trip")
        assert trip.from_id == r2.id and trip.to_id == r1.id and "error rate" in trip.reason
        audited = audit.recent(5, action="release.guardrail_trip")
        assert audited and audited[0].result == "tripped" and audited[0].target == str(r2.id)
        assert releases.experiments(1)[0].trips[0].reason == trip.reason
        state = releases.state()
        assert state.share == 0.0 and state.candidate.id == r2.id and state.current.id == r1.id
        # The CLI reads the same (it opens the database only through build_services: run it with the server stopped).
    finally:
        api.stop()
        db.dispose()
    out = backend_cli(child_env(tmp_path, **env), "release", "status")
    assert "guardrail_trip" in out and "paused (0% share)" in out, out
    # Promote and roll back from the CLI: both releases serve the one index, so the alias does not move.
    out = backend_cli(child_env(tmp_path, **env), "release", "promote", "--reason", "fixed upstream")
    assert out.strip() == f"promoted {r2.label}", out
    out = backend_cli(child_env(tmp_path, **env), "release", "rollback", "--reason", "not yet")
    assert out.strip() == f"rolled back to {r1.label}", out
    assert [e.action for e in releases.events(2)] == ["rollback", "promote"]


# --- 6. PostgreSQL down during API traffic, then back: no failed answer, no lost ledger row ----------

@pytest.mark.slow
def test_postgres_down_during_traffic_then_back(tmp_path: Path, corpus: Path) -> None:
    import sqlalchemy as sa
    from services import _workdir

    pg = PostgresServer(_workdir("pg-api-outage"))
    pg.start()
    env = {"DATABASE_URL": pg.url, "API_RATE_LIMIT": "100000/minute"}
    api = None
    try:
        ingest(child_env(tmp_path, **env), corpus)
        api = start_api(tmp_path, **env)
        _, key = create_key(api.env)
        answered: list[str] = []
        with api.client(key) as c:
            def ask(q: str) -> dict:
                r = c.post("/query", json={"question": q}, timeout=60)
                assert r.status_code == 200, r.text[:500]
                answered.append(r.json()["request_id"])
                return r.json()

            for q in QUESTIONS[:3]:
                ask(q)
            pg.stop("fast")
            # Extractive answers need no database: each is answered; its ledger row waits in the journal.
            for i in range(12):
                ask(f"{QUESTIONS[i % len(QUESTIONS)]} (outage {i})")
            ready = c.get("/readyz").json()["ledger_journal"]
            assert ready["pending"] >= 12 and ready["database_failing"], ready
            # What does need the database says so: 503 with its part, not a 500.
            r = c.post("/query", json={"question": "x", "policy": "no-such-policy"})
            assert r.status_code == 503 and r.json()["error"]["part"] == "database", r.text

            pg.resume()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready = c.get("/readyz").json()["ledger_journal"]
                if ready["pending"] == 0 and not ready["database_failing"]:
                    break
                time.sleep(0.5)
            assert ready == {"pending": 0, "rejected": 0, "database_failing": False}, ready
            ask(QUESTIONS[4])
    finally:
        if api is not None:
            api.stop()
    db = sa.create_engine(pg.url)
    try:
        with db.connect() as conn:
            logged = set(conn.execute(sa.text("SELECT request_id FROM ledger WHERE kind = 'chat'")).scalars())
            traced = set(conn.execute(sa.text("SELECT request_id FROM traces")).scalars())
        assert set(answered) <= logged and set(answered) <= traced, (len(answered), len(logged), len(traced))
    finally:
        db.dispose()
        pg.stop()
        shutil.rmtree(pg.workdir, ignore_errors=True)


# --- 7. the LLM endpoint down during API traffic, then back ---------------------------------------

@pytest.mark.slow
def test_llm_down_then_back_fails_only_what_needs_it(tmp_path: Path, corpus: Path) -> None:
    from http.server import ThreadingHTTPServer

    import sqlalchemy as sa
    from services import _fault_handler

    port = free_port()
    llm = FaultLLM(base_url=f"http://{HOST}:{port}/v1")  # a fault-injection stand-in we can switch off and on

    def llm_up() -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer((HOST, port), _fault_handler(llm))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    httpd = llm_up()
    env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": llm.api_key, "LLM_MODEL": llm.model,
           "LLM_MAX_RETRIES": "0", "LLM_TIMEOUT_S": "5", "API_RATE_LIMIT": "100000/minute"}
    ingest(child_env(tmp_path, **env), corpus)
    api = start_api(tmp_path, **env)
    try:
        _, key = create_key(api.env)
        with api.client(key) as c:
            def post(**body: object) -> httpx.Response:
                return c.post("/query", json=body, timeout=60)

            assert post(question=QUESTIONS[0]).status_code == 200
            httpd.shutdown()
            httpd.server_close()  # the LLM is gone: connections are refused
            cached = post(question=QUESTIONS[0])
            assert cached.status_code == 200 and cached.json()["cache_hit"], "a cached answer needs no LLM"
            retrieved = post(question=QUESTIONS[1], policy="default", retrieval_only=True)
            assert retrieved.status_code == 200 and retrieved.json()["sources"], "retrieval needs no LLM"
            failed = [post(question=f"{QUESTIONS[2]} ({i})") for i in range(3)]
            assert {r.status_code for r in failed} <= {502, 503}, [r.text[:200] for r in failed]
            assert {r.json()["error"]["part"] for r in failed} == {"LLM"}, [r.text[:200] for r in failed]
            deadline = time.monotonic() + 15  # /readyz keeps its self-test for a few seconds
            while (ready := c.get("/readyz")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert ready.status_code == 503 and ready.json()["failing"] == "llm", ready.text

            httpd = llm_up()
            deadline, back = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                back = post(question=QUESTIONS[3])
                if back.status_code == 200:
                    break
                time.sleep(0.5)
            assert back is not None and back.status_code == 200, back.text if back is not None else ""
    finally:
        api.stop()
        httpd.shutdown()
        httpd.server_close()
    db = sa.create_engine(f"sqlite:///{tmp_path / 'console.db'}")
    with db.connect() as conn:
        errors = conn.execute(sa.text("SELECT count(*) FROM ledger WHERE kind = 'chat' AND status = 'error'")).scalar()
    db.dispose()
    assert errors == 3, "every failed call is a ledger row (the guardrail and the cost page count them)"
