"""Golden sets and evaluation runs in a real browser: `streamlit run console/app.py` as a subprocess
(its own DATA_DIR, the 20-document demo index of the first start), driven with Debian's
/usr/bin/chromium through Playwright's sync API, started the way tests/test_browser_chat.py does.

An annotator builds a 3-item golden set by searching the index and ticking chunks (widening one
to its neighbours), freezes it, saves a sparse (BM25) policy in the chat tester, runs an evaluation
with each policy as background jobs (reloading the page while the first one runs), opens a run
and diffs the two. Every step is screenshotted into tests/artifacts/golden-*.png."""
from __future__ import annotations

import json
import re
import time
from typing import Iterator

import pytest

from browser_kit import ARTIFACTS, Console, choose, idle, input_enabled, new_page, screenshot, start_console

pytestmark = pytest.mark.browser

SET = "demo-gold"
QUESTIONS = [
    ("5% of perinatal mortality is due to low birth weight.", "Low birth weight is a leading cause of perinatal deaths."),
    # Asked in English about a Chinese passage: the multilingual embeddings find it, BM25 cannot,
    # so the diff against the BM25-only policy shows a gold reference lost from the top 10.
    ("How much was invested in the Dalai-Longkou railway?", "11.42 billion yuan"),
    ("尚恩·菲南在校时为什么会有“矮冬瓜”这个绰号？", "因为他个子矮小"),
]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    c = start_console(tmp_path_factory.mktemp("browser-golden"))
    yield c
    c.close()
    if TIMINGS:
        (ARTIFACTS / "golden-timings.json").write_text(json.dumps(TIMINGS, indent=2))
        print("\ngolden/eval browser timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in TIMINGS.items()))


def shot(page, name: str, locator=None) -> None:  # noqa: ANN001 - playwright objects
    """From the top of the page, or with `locator` scrolled into view."""
    if locator is None:
        screenshot(page, name)
        return
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(400)
    page.screenshot(path=str(ARTIFACTS / name))


def success(page, text: str, timeout_ms: float = 60_000):  # noqa: ANN001, ANN201
    alert = page.get_by_test_id("stAlertContentSuccess").filter(has_text=text)
    alert.first.wait_for(timeout=timeout_ms)
    return alert.first


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator:  # noqa: ANN001
    """A browser tab; when the test fails, its last state is saved as golden-failure-<test>.png."""
    tab = new_page(browser, height=1200)
    failed_before = request.session.testsfailed
    yield tab
    if request.session.testsfailed > failed_before:  # the call phase's report is logged before teardown
        tab.screenshot(path=str(ARTIFACTS / f"golden-failure-{request.node.name}.png"))
    tab.close()


def test_annotate_run_and_diff(page, console: Console) -> None:  # noqa: ANN001
    page.goto(f"{console.url}/chat")
    t = time.perf_counter()
    input_enabled(page)  # the first-start demo build is over
    TIMINGS["demo_build_wait"] = time.perf_counter() - t

    # --- a golden set, three items by searching and ticking -------------------------------------
    page.goto(f"{console.url}/golden_sets")
    page.get_by_text("No golden set yet").wait_for()
    idle(page)
    name = page.get_by_role("textbox", name="Name")
    name.fill(SET)
    page.wait_for_function("v => document.activeElement && document.activeElement.value === v", arg=SET)
    name.press("Enter")  # the form submits on Enter
    success(page, "Created the golden set")
    assert f"set={SET}" in page.url
    shot(page, "golden-1-new-set.png")

    for n, (question, answer) in enumerate(QUESTIONS):
        box = page.get_by_role("textbox", name="Question", exact=True)
        box.fill(question)
        t = time.perf_counter()
        box.press("Enter")  # Enter searches
        first = page.get_by_test_id("stCheckbox").filter(has_text="#1 answers the question")
        first.wait_for()
        TIMINGS[f"search_{n + 1}"] = time.perf_counter() - t
        cards = page.locator(".rag-card")
        cards.nth(2).wait_for()  # cards arrive one by one after the first checkbox (CI saw 2 of them)
        assert n > 0 or page.locator(".rag-card mark").count() > 0  # terms marked
        if n == 0:
            shot(page, "golden-2-search-results.png")
        first.locator("label").click()
        idle(page)
        page.locator(".rag-card-cited").first.wait_for()  # the ticked card is marked
        if n == 0:  # widen the ticked chunk to its neighbours in its document, tick one of them too
            page.get_by_role("button", name="↔️ Widen").first.click()
            neighbour = page.get_by_test_id("stCheckbox").filter(has_text="(neighbour").first
            neighbour.wait_for()
            idle(page)
            neighbour.locator("label").click()
            idle(page)
            page.get_by_text("Gold references (2)").wait_for()
            shot(page, "golden-3-widened.png")
        page.get_by_role("textbox", name="Reference answer").fill(answer)
        page.get_by_role("textbox", name="Tags").fill("demo")
        if n == 0:
            shot(page, "golden-4-item-ready.png")
        if n < 2:
            page.get_by_role("button", name="✅ Save and approve").click()
            success(page, f"Saved item #{n + 1} as approved with")
        else:  # the last one goes through the review queue
            page.get_by_role("button", name="💾 Save draft").click()
            success(page, f"Saved item #{n + 1} as draft with")
        idle(page)

    page.get_by_role("tab", name="📥 Review queue").click()
    page.get_by_text("1 draft to review").wait_for()
    page.get_by_role("textbox", name="Comment").fill("span checked against the passage")
    shot(page, "golden-5-review-queue.png")
    page.get_by_role("button", name="✅ Approve").click()
    success(page, "Item #3 approved with your comment")
    page.get_by_text(re.compile(r"✅ 3 approved")).wait_for()

    page.get_by_role("tab", name="📈 Progress").click()
    page.locator("[data-testid=stDataFrame]:visible").first.wait_for()
    page.get_by_role("button", name="🧊 Freeze approved items as v1").click()
    success(page, "Frozen")
    shot(page, "golden-6-frozen-progress.png")
    page.get_by_role("tab", name="📋 Items").click()
    page.wait_for_timeout(500)
    shot(page, "golden-7-items.png")
    page.get_by_role("tab", name="⇅ Import / export").click()
    page.get_by_role("button", name="⬇️ ragas JSONL").wait_for()
    shot(page, "golden-8-import-export.png")

    # --- a second policy: BM25 only, saved in the chat tester's sidebar ----------------------------
    page.goto(f"{console.url}/chat")
    input_enabled(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("sparse", exact=True).click()
    idle(page)
    sidebar.get_by_role("button", name="💾 Save as policy").click()
    page.get_by_role("textbox", name="Name").fill("bm25")
    page.get_by_role("button", name="Save new version").click()
    success(page, "Saved as bm25 v1")

    # --- evaluation runs ---------------------------------------------------------------------------
    page.goto(f"{console.url}/eval_runs")
    page.get_by_text("No evaluation run yet").wait_for()
    shot(page, "golden-9-start-form.png")
    t = time.perf_counter()
    page.get_by_role("button", name="▶️ Start run").click()
    page.get_by_test_id("stProgress").first.wait_for()
    assert "job=" in page.url
    page.wait_for_timeout(800)  # the tables below finish drawing
    shot(page, "golden-10-run-progress.png")
    page.reload()  # the progress (or the outcome) survives a reload: the job lives in the database
    # A reload while the job runs ends on its "finished in" message; a run that ended before the reload
    # (2-3 s when the machine is free) had its message in the first page, which put the run in the URL.
    finished = page.get_by_test_id("stAlertContentSuccess").filter(has_text="finished in")
    opened = page.get_by_text("Run #1 · demo-gold v1")  # the run detail tab opens on the finished run
    finished.or_(opened).first.wait_for(timeout=180_000)
    TIMINGS["run_hybrid_click_to_done"] = time.perf_counter() - t
    page.wait_for_url(re.compile(r"run=\d+"))
    assert "job=" not in page.url
    opened.first.wait_for(state="attached")  # in the run detail tab, visible once it is picked below
    page.get_by_role("tab", name="🔬 Run detail").click()
    page.get_by_text("Per-item metrics").wait_for()
    shot(page, "golden-11-run-detail.png")

    policy = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Policy", exact=True))
    if not policy.is_visible():  # the form folds once runs exist
        page.get_by_test_id("stExpander").filter(has_text="Start an evaluation run").get_by_text(
            "Start an evaluation run").click()
        policy.wait_for()
    choose(page, "Policy", "bm25")
    t = time.perf_counter()
    page.get_by_role("button", name="▶️ Start run").click()
    success(page, "run #2 is open below", timeout_ms=180_000)
    TIMINGS["run_sparse_click_to_done"] = time.perf_counter() - t

    choose(page, "Compare with baseline run", "#1")
    assert "base=1" in page.url
    page.get_by_role("tab", name="⚖️ Diff").click()
    page.get_by_text("gold moves (baseline → this run)").first.wait_for(state="attached")
    page.get_by_text("🟢 Improved").first.wait_for()
    shot(page, "golden-12-diff.png")
    # The grid is drawn on a canvas; its accessible copy holds the text. BM25 cannot match the English
    # question to the Chinese passage: its gold reference drops out.
    page.get_by_text("DEV_3: rank 1 → lost (lost from top 10)").wait_for(state="attached")
    toggle = page.get_by_test_id("stTabs").get_by_text("Changed only")
    toggle.click()
    idle(page)
    shot(page, "golden-13-diff-changed-only.png", toggle)

    page.get_by_role("tab", name="📋 Runs").click()
    page.locator("[data-testid=stPlotlyChart]").first.wait_for()
    # Plotly's drawn SVG: a line per metric asked for (recall@10, ndcg@10), each with its legend entry.
    page.wait_for_function("""() => { const c = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
      return c && c.querySelectorAll('.scatterlayer .trace').length === 2
        && [...c.querySelectorAll('.legendtext')].map(t => t.textContent).join() === 'recall@10,ndcg@10'; }""")
    shot(page, "golden-14-runs-over-time.png", page.locator("[data-testid=stPlotlyChart]").first)


def test_a_link_opens_the_diff(page, console: Console) -> None:  # noqa: ANN001
    page.goto(f"{console.url}/eval_runs?run=2&base=1")
    page.get_by_text("gold moves (baseline → this run)").first.wait_for(state="attached")
    page.get_by_text("🟢 Improved").first.wait_for()  # opens on the diff tab
    assert page.get_by_role("tab", name="⚖️ Diff").get_attribute("aria-selected") == "true"
    shot(page, "golden-15-linked-diff.png")
