"""Health of every dependency, for the console sidebar, the status page and ops checks.

Every check is bounded in time and never raises: a dependency that is down becomes a row
with its reason, so one dead service can never take down the page that asks about it."""
from __future__ import annotations

import concurrent.futures as cf
import re
import time
from dataclasses import dataclass
from typing import Callable, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa

from backend.errors import RagError
from backend.services import Services
from backend.settings import _redact

Status = Literal["up", "down", "not configured"]
UP, DOWN, NOT_CONFIGURED = "up", "down", "not configured"
HTTP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Health:
    part: str
    status: Status
    detail: str
    latency_ms: float | None = None


URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!?)\]]")  # not the sentence's last mark


def _safe_url(url: str) -> str:
    """A URL fit for the sidebar: no user:password@ (settings._redact), no query (API keys ride there)."""
    try:
        return urlunsplit(urlsplit(_redact(url))._replace(query="", fragment=""))
    except ValueError:
        return "(unreadable URL)"


def scrub(text: str) -> str:
    """Every URL in a detail without its credentials: details are shown to every role, and error
    texts from clients (httpx, redis, SQLAlchemy) quote the URL they were given."""
    return URL_RE.sub(lambda m: _safe_url(m.group(0)), text)


def _error(exc: BaseException) -> str:
    text = str(exc).strip() if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}".rstrip(": ")
    return text if len(text) < 300 else text[:297] + "..."


def _unreachable(url: str, exc: httpx.HTTPError) -> tuple[Status, str]:
    return DOWN, f"unreachable at {_safe_url(url)}: {_error(exc)}"


def _headers(secret) -> dict[str, str]:  # noqa: ANN001 - pydantic SecretStr or None
    return {"Authorization": f"Bearer {secret.get_secret_value()}"} if secret else {}


# --- one check per dependency: each returns (status, detail) or raises ---------------------
def _vector_store(s: Services) -> tuple[Status, str]:
    aliases = s.store.aliases()
    where = "server" if s.settings.qdrant_url else "local mode"
    live = aliases.get(s.settings.index_alias)
    index = f"{s.settings.index_alias} → {live}" if live else f"alias {s.settings.index_alias} not created yet"
    return UP, f"{where}; {index}"


def _embedding(s: Services) -> tuple[Status, str]:
    st = s.settings
    if not st.embedding_base_url:
        vec = s.embedder.embed_queries(["health check"])
        return UP, f"{s.embedder.name} in process, dim {vec.shape[1]}"
    # Our own short-timeout request: the embedder's client has the long LLM timeout and retries.
    url = st.embedding_base_url.rstrip("/") + "/embeddings"
    try:
        resp = httpx.post(url, json={"model": st.embedding_model, "input": ["health check"]},
                          headers=_headers(st.embedding_api_key), timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return _unreachable(st.embedding_base_url, exc)
    if resp.status_code != 200:
        return DOWN, f"{_safe_url(st.embedding_base_url)} answered HTTP {resp.status_code}"
    dim = len(resp.json()["data"][0]["embedding"])
    return UP, f"{st.embedding_model} at {_safe_url(st.embedding_base_url)}, dim {dim}"


def _llm(s: Services) -> tuple[Status, str]:
    st = s.settings
    if not st.openai_base_url:
        return NOT_CONFIGURED, "extractive answers (OPENAI_BASE_URL is not set)"
    try:
        resp = httpx.get(st.openai_base_url.rstrip("/") + "/models", headers=_headers(st.openai_api_key),
                         timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return _unreachable(st.openai_base_url, exc)
    if resp.status_code in (401, 403):
        return DOWN, f"{_safe_url(st.openai_base_url)} refused the key (HTTP {resp.status_code}): check OPENAI_API_KEY"
    if resp.status_code != 200:
        return DOWN, f"{_safe_url(st.openai_base_url)} answered HTTP {resp.status_code}"
    ids = [m.get("id", "") for m in resp.json().get("data", [])]
    listed = "" if st.llm_model in ids or not ids else f"; default model {st.llm_model} is not listed"
    return UP, f"{_safe_url(st.openai_base_url)}, {len(ids)} model(s){listed}"


def _reranker(s: Services) -> tuple[Status, str]:
    if not s.settings.rerank_url:
        return NOT_CONFIGURED, "re-scores with the embedding model (RERANK_URL is not set)"
    s.engine.reranker.scores("health check", None, "", ["0"], ["health check"])
    return UP, f"{s.settings.rerank_model} at {_safe_url(s.settings.rerank_url)}"


def _cache(s: Services) -> tuple[Status, str]:
    cache = s.engine.cache
    ping: Callable[[], bool] | None = getattr(cache, "ping", None)
    if ping is None:
        return UP, "in-process TTL+LRU (REDIS_URL is not set)"
    if ping():
        return UP, f"redis at {s.settings.stack['cache']}"
    return DOWN, f"redis at {s.settings.stack['cache']}: {cache.last_error or 'no PONG'}; answers are not cached"


def _database(s: Services) -> tuple[Status, str]:
    with s.db.connect() as conn:
        conn.execute(sa.text("select 1"))
    return UP, f"{s.db.dialect.name}: {s.settings.stack['database']}"


def _ledger_journal(s: Services) -> tuple[Status, str]:
    """Rows that have not reached the database yet, or that it refused: kept on disk, shown here."""
    j = s.costs.journal.status()
    where = s.costs.journal.path.parent
    problems = []
    if j.pending:
        since = time.strftime("%H:%M:%S", time.localtime(j.failing_since)) if j.failing_since else "now"
        problems.append(f"{j.pending} ledger rows/traces waiting for the database since {since}, kept in {where}; "
                        f"written when it is back ({j.last_error or 'retrying'})")
    if j.rejected:
        problems.append(f"{j.rejected} rows refused by the database, kept in {where}/*.rejected.jsonl")
    if problems:
        return DOWN, "; ".join(problems)
    replayed = f"; {j.replayed} rows of a stopped process written at start" if j.replayed else ""
    return UP, f"nothing waiting ({'batched every ' + str(s.costs.journal.flush_ms) + ' ms' if s.costs.journal.flush_ms else 'written in the request'}){replayed}"


CHECKS: dict[str, Callable[[Services], tuple[Status, str]]] = {
    "vector store": _vector_store,
    "embedding model": _embedding,
    "LLM endpoint": _llm,
    "reranker": _reranker,
    "cache": _cache,
    "database": _database,
    "ledger journal": _ledger_journal,
}


def _timed(check: Callable[[Services], tuple[Status, str]], services: Services) -> tuple[Status, str, float]:
    t = time.perf_counter()
    status, detail = check(services)
    return status, detail, (time.perf_counter() - t) * 1000


def check_all(services: Services, timeout_s: float = 3.0) -> list[Health]:
    """Run every check in parallel; any check still running after `timeout_s` counts as down
    (except the in-process embedding model, which is only busy, e.g. with an ingest)."""
    pool = cf.ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="health")
    futures = {part: pool.submit(_timed, check, services) for part, check in CHECKS.items()}
    cf.wait(futures.values(), timeout=timeout_s)
    pool.shutdown(wait=False, cancel_futures=True)  # never wait for a hung check
    out: list[Health] = []
    for part, fut in futures.items():
        if not fut.done():
            local_model = part == "embedding model" and not services.settings.embedding_base_url
            out.append(Health(part, UP, f"in process, busy: no answer within {timeout_s:g} s (an ingest may hold it)")
                       if local_model else Health(part, DOWN, f"no answer within {timeout_s:g} s"))
            continue
        try:
            status, detail, ms = fut.result()
            out.append(Health(part, status, scrub(detail), ms))
        except Exception as exc:  # every failure is a status, never an exception for the caller
            out.append(Health(part, DOWN, scrub(_error(exc))))
    return out
