"""The console in a real browser: `streamlit run console/app.py` as a subprocess from the
repo root (its own DATA_DIR, a 20-document demo index built by the first start), driven with
Debian's /usr/bin/chromium through Playwright's sync API. Screenshots land in tests/artifacts/.

Also the direct-link check: on a freshly started server, a link to any page must run the
entry script (navigation + sidebar status), never the page alone."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from browser_kit import (ARTIFACTS, Console, ask, input_enabled, last_answer, new_page, page_paths,
                         screenshot, start_console)

pytestmark = pytest.mark.browser

ENGLISH_Q = "5% of perinatal mortality is due to low birth weight."
CHINESE_Q = "大莱龙铁路一共投资多少亿元？"  # CMRC 2018 DEV_3_QUERY_1: its gold passage DEV_3 is in the demo sample
OWN_PAGES = {"chat": "Chat tester", "": "Status"}  # url path -> title, for the pages this suite knows
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    c = start_console(tmp_path_factory.mktemp("browser-console"))
    yield c
    c.close()


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2))
        print("\nbrowser timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in TIMINGS.items()))


def engine_seconds(answer) -> float:  # noqa: ANN001
    """The engine's own total, from the answer's summary line ('⏱ 37 ms · ...')."""
    value, unit = re.search(r"⏱ ([\d.]+) (ms|s)\b", answer.inner_text()).groups()
    return float(value) / (1000 if unit == "ms" else 1)


# --- direct links ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", page_paths())
def test_direct_link_on_a_fresh_server_runs_the_entry_script(browser, tmp_path: Path, path: str) -> None:  # noqa: ANN001
    """A server that has never run the entry script; no demo corpus, so nothing is built."""
    empty = tmp_path / "no-corpus"
    empty.mkdir()
    c = start_console(tmp_path, DEMO_CORPUS=str(empty))
    try:
        page = new_page(browser)
        page.goto(f"{c.url}/{path}")
        nav = page.get_by_test_id("stSidebarNav")
        for label in OWN_PAGES.values():
            nav.get_by_text(label, exact=True).wait_for()
        assert nav.get_by_test_id("stSidebarNavLink").count() == len(page_paths())
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("Live index").wait_for()
        sidebar.get_by_text("Stack in use").wait_for()
        # The frame's first-start banner: no corpus is a readable reason with a retry, not a traceback.
        page.get_by_text("Building the demo index failed").wait_for()
        page.get_by_role("button", name="Retry the demo build").wait_for()
        if path in OWN_PAGES:
            page.get_by_role("heading", name=OWN_PAGES[path]).wait_for()
        if path == "chat":
            assert page.get_by_test_id("stChatInputTextArea").is_disabled()
        if path == "":
            page.get_by_test_id("stDataFrame").first.wait_for()  # the dependency table
            page.wait_for_timeout(500)
        assert page.get_by_text("Page not found").count() == 0
        screenshot(page, f"direct-link-{path or 'root'}.png")
        page.close()
    finally:
        c.stop()


# --- chat ----------------------------------------------------------------------------------
def test_first_start_shows_build_progress_then_opens_chat(browser, console: Console) -> None:  # noqa: ANN001
    page = new_page(browser)
    page.goto(f"{console.url}/chat")
    page.get_by_text("First start").wait_for()
    page.get_by_test_id("stProgress").wait_for()
    assert page.get_by_test_id("stChatInputTextArea").is_disabled()
    screenshot(page, "first-start-progress.png")
    t = time.perf_counter()
    input_enabled(page)
    TIMINGS["demo_build_wait"] = time.perf_counter() - t
    assert page.get_by_text("First start").count() == 0
    page.close()


def test_english_and_chinese_questions(browser, console: Console) -> None:  # noqa: ANN001
    page = new_page(browser, height=1300)
    t0 = time.perf_counter()
    page.goto(f"{console.url}/chat")
    input_enabled(page)
    TIMINGS["open_to_input_ready"] = time.perf_counter() - t0

    t = ask(page, ENGLISH_Q)
    answer = last_answer(page)
    answer.get_by_text("Extractive answer — no LLM configured").wait_for()
    answer.locator(".rag-card").first.wait_for()
    TIMINGS["english_enter_to_sources"] = time.perf_counter() - t
    assert answer.locator(".rag-card").count() == 8
    assert answer.locator(".rag-card mark").count() > 0  # question terms highlighted
    answer.get_by_role("radio", name="Thumbs up").click()
    page.get_by_text("Feedback saved").wait_for()
    screenshot(page, "chat-english.png")

    page.get_by_role("button", name="New chat").click()  # so the Chinese answer is at the top of the page
    page.get_by_text("Try a question the demo index can answer").wait_for()
    t = ask(page, CHINESE_Q)
    answer = last_answer(page)
    answer.locator(".rag-card").first.wait_for()
    TIMINGS["chinese_enter_to_sources"] = time.perf_counter() - t
    assert "大莱龙铁路" in answer.locator(".rag-card").first.inner_text()
    assert "11.42亿元" in answer.get_by_test_id("stMarkdownContainer").first.inner_text() or \
        "11.42亿元" in answer.inner_text()
    screenshot(page, "chat-chinese.png")
    page.close()


def test_retrieval_only_timing_and_prompt(browser, console: Console) -> None:  # noqa: ANN001
    page = new_page(browser)
    t0 = time.perf_counter()
    page.goto(f"{console.url}/chat")
    input_enabled(page)
    TIMINGS["open_to_input_ready_2"] = time.perf_counter() - t0
    page.get_by_test_id("stSidebar").get_by_text("Retrieval only", exact=True).click()
    page.get_by_placeholder("Ask a question — retrieval only, no model call").wait_for()

    t = ask(page, "What do archived appendix samples show about vCJD carriers?")
    answer = last_answer(page)
    answer.get_by_text("Retrieved", exact=False).first.wait_for()  # the answer's first text
    TIMINGS["retrieval_only_enter_to_first_text"] = time.perf_counter() - t
    answer.get_by_text("Retrieval only — no model called").wait_for()
    TIMINGS["retrieval_only_enter_to_done"] = time.perf_counter() - t
    TIMINGS["retrieval_only_engine_total"] = engine_seconds(answer)
    code = answer.get_by_test_id("stCode").last.inner_text()
    assert "Question: What do archived appendix samples show about vCJD carriers?" in code
    screenshot(page, "chat-retrieval-only.png")
    page.close()


def test_bad_input_is_a_message_not_a_traceback(browser, console: Console) -> None:  # noqa: ANN001
    page = new_page(browser)
    page.goto(f"{console.url}/chat")
    input_enabled(page)
    ask(page, "x" * 4001)
    alert = last_answer(page).get_by_test_id("stAlertContentError")
    alert.wait_for()
    assert "input: the question has 4,001 characters; the limit is 4,000" in alert.inner_text()
    assert page.get_by_text("Traceback").count() == 0
    screenshot(page, "chat-input-error.png")
    page.close()
