"""The console under Streamlit's AppTest, for every AppTest file: the entry script and the chat page,
the one list of settings that would change the stack if the developer's shell had them, the context
that sets the console's environment with fresh services, and the chat helpers (no tests here)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from corpus import small_demo
from streamlit.testing.v1 import AppTest

from console import state

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "console" / "navigation.py")
CHAT = "../pages/chat.py"  # AppTest takes page paths relative to the entry script
COSTS = "../pages/costs.py"
# Settings that would change the stack (or the console) if the developer's shell had them; browser tests too.
STACK_ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "LLM_MODEL", "LLM_TIMEOUT_S", "LLM_MAX_RETRIES", "REDIS_URL",
             "QDRANT_URL", "EMBEDDING_BASE_URL", "RERANK_URL", "DATABASE_URL", "INDEX_ALIAS", "DEMO_CORPUS",
             "DEMO_DOCS", "EMBEDDING_BATCH_SIZE", "PROMETHEUS_URL", "METRICS_PORT", "ALERT_WEBHOOK_URL",
             "AUTH_SECRET", "OIDC_ROLES", "PIPELINE_FACTORIES")


@contextmanager
def console_config(data_dir: Path, **env: str) -> Iterator[pytest.MonkeyPatch]:
    """Environment for the console's settings (DATA_DIR, 20 demo documents unless `env` says otherwise),
    with fresh services before and released after (the local Qdrant folder admits one client at a time)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in STACK_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("DATA_DIR", str(data_dir))
        mp.setenv("DEMO_DOCS", "20")
        for name, value in env.items():
            mp.setenv(name, value)
        state.reset()
        try:
            yield mp
        finally:
            state.reset()


@contextmanager
def demo_console(root: Path, **env: str) -> Iterator[pytest.MonkeyPatch]:
    """console_config on root/data with the six-document demo of `corpus.small_demo`; the console may
    index only under `root` (INGEST_ROOTS)."""
    with console_config(root / "data", DEMO_CORPUS=str(small_demo(root)), DEMO_DOCS="6", EMBEDDING_BATCH_SIZE="2",
                        INGEST_ROOTS=str(root), **env) as mp:
        yield mp


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-data")


@pytest.fixture(scope="module")
def extractive(data_dir: Path) -> Iterator[Path]:
    """No LLM configured: answers are extractive. The first test to use it builds the index."""
    with console_config(data_dir):
        yield data_dir


def wait_ready(at: AppTest, timeout_s: float = 240) -> AppTest:
    """Rerun until the first-start build is over (AppTest does not run timed fragments)."""
    deadline = time.monotonic() + timeout_s
    while True:
        at.run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert not errors, errors
        if not any("First start" in e.value for e in at.info):
            return at
        assert time.monotonic() < deadline, "the demo index was not built in time"
        time.sleep(0.5)


def chat_page(query_params: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query_params or {})
    wait_ready(at)
    at.switch_page(CHAT).run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str):  # noqa: ANN201 - console.chat.Turn
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at.session_state["chat.history"][-1]
