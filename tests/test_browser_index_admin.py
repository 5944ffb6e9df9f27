"""The index admin page in a real browser (Debian's Chromium through Playwright): rebuild a
small corpus and watch the progress bar reach the end, gate, promote through the dialog, ask
the chat page a question only the new version can answer, then roll back. Every step is
screenshotted into tests/artifacts/index-admin-*.png."""
from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path
from typing import Iterator

import pytest

from corpus import SHARED, small_demo
from browser_kit import ARTIFACTS, Console, ask, input_enabled, last_answer, new_page, screenshot, start_console
from index_support import TOPICS

pytestmark = pytest.mark.browser

NEW_FACT = ("The Zorblax protocol synchronises lighthouse clocks with pulses of green light every eleven minutes.")
NEW_QUESTION = "How does the Zorblax protocol synchronise lighthouse clocks?"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, Path]]:
    root = tmp_path_factory.mktemp("browser-index-admin")
    demo = small_demo(root)
    # The new corpus: the demo documents, ten short topics and one fact only it holds.
    new = root / "new-corpus"
    new.mkdir()
    rows = [json.loads(line) for name in ("scifact", "cmrc2018") for line in (demo / name / "corpus.jsonl").open()]
    rows += [{"id": k, "title": k, "text": text} for k, (text, _) in TOPICS.items()]
    # Twelve long abstracts the demo does not hold: embedding them takes seconds, so the bar is seen filling
    # (the short topics alone embed in a fraction of a second on a fast machine, before the page's next poll).
    demo_ids = {r["id"] for r in rows}
    with (SHARED / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        rows += [r for r in map(json.loads, islice(fh, 40)) if r["id"] not in demo_ids][:12]
    rows.append({"id": "zorblax", "title": "Zorblax protocol", "text": NEW_FACT})
    (new / "corpus.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    queries = [{"id": f"q-{k}", "question": q, "gold_ids": [k]} for k, (_, q) in TOPICS.items()]
    queries.append({"id": "q-zorblax", "question": NEW_QUESTION, "gold_ids": ["zorblax"]})
    (new / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    # The new corpus is a server folder: it must lie under INGEST_ROOTS to be indexed from the page.
    console = start_console(root, DEMO_CORPUS=str(demo), DEMO_DOCS="6", EMBEDDING_BATCH_SIZE="2", INGEST_ROOTS=str(new))
    yield console, new
    console.close()


def shot(page, step: str) -> None:  # noqa: ANN001
    screenshot(page, f"index-admin-{step}.png")


def bar_value(page) -> float | None:  # noqa: ANN001
    """The rebuild progress bar's value (0-100), None when no bar is shown."""
    return page.evaluate("""() => { const b = document.querySelector('[data-testid=stProgress] [role=progressbar]');
                                    return b ? Number(b.getAttribute('aria-valuenow')) : null }""")


def dialog(page):  # noqa: ANN001, ANN201
    d = page.get_by_role("dialog")
    d.wait_for()
    return d


def test_rebuild_gate_promote_chat_rollback(browser, setup: tuple[Console, Path]) -> None:  # noqa: ANN001, F811
    console, new_corpus = setup
    page = new_page(browser, height=1400)
    page.goto(f"{console.url}/index_admin")
    page.get_by_role("heading", name="Index admin").wait_for()
    page.get_by_text("Live:").wait_for(timeout=240_000)  # the first start built the demo index (rag_chunks_v1)
    page.get_by_text("rag_chunks_v1").first.wait_for()
    shot(page, "1-versions")

    # Rebuild: the live alias keeps serving while the bar fills (read from the job row every second).
    page.get_by_label("Folder or corpus.jsonl on the server").fill(str(new_corpus))
    page.get_by_role("button", name="Start rebuild").click()
    page.get_by_role("button", name="Cancel rebuild").wait_for()
    values, shot_taken, deadline = [], False, time.monotonic() + 240
    while page.get_by_text("Done:").count() == 0:
        v = bar_value(page)
        if v is not None:
            values.append(v)
            if 0 < v < 100 and not shot_taken:
                shot(page, "2-rebuild-progress")
                shot_taken = True
        assert time.monotonic() < deadline, f"the rebuild did not finish; bar values {values[-5:]}"
        page.wait_for_timeout(150)
    page.get_by_text("built `rag_chunks_v2`").or_(page.get_by_text("built rag_chunks_v2")).first.wait_for()
    assert bar_value(page) == 100, "the finished bar shows 100%"
    assert any(0 < v < 100 for v in values), f"no intermediate progress seen: {sorted(set(values))}"
    assert values == sorted(values), "the bar only moves forward"
    if not shot_taken:
        shot(page, "2-rebuild-progress")
    shot(page, "3-rebuild-done")

    # Gate against the live version on the new corpus' own queries.
    page.get_by_role("button", name="Run gate").click()
    page.get_by_text("Gate passed").wait_for(timeout=120_000)  # the live version lacks the new documents
    shot(page, "4-gate")

    # Promote through the confirmation dialog that says what will change.
    page.get_by_role("button", name="Promote rag_chunks_v2").click()
    d = dialog(page)
    d.get_by_text("will point at").wait_for()
    d.get_by_role("button", name="Promote now").wait_for()
    assert "instead of" in d.inner_text() and "rag_chunks_v1" in d.inner_text()
    d.get_by_label("Why (recorded in the alias history)").fill("adds the Zorblax notes")
    d.get_by_label("Why (recorded in the alias history)").press("Tab")
    if d.get_by_text("Promote anyway").count():
        d.get_by_text("Promote anyway").click()
    shot(page, "5-promote-dialog")
    d.get_by_role("button", name="Promote now").click()
    page.get_by_text("Promoted:").wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("rag_chunks_v2").wait_for()
    shot(page, "6-promoted")

    # The chat page now answers from the new version.
    page.get_by_test_id("stSidebarNav").get_by_text("Chat tester", exact=True).click()
    input_enabled(page)
    ask(page, NEW_QUESTION)
    answer = last_answer(page)
    answer.get_by_text("Zorblax").first.wait_for()
    answer.get_by_text("rag_chunks_v2").first.wait_for()
    assert "green light" in answer.inner_text()
    # The answer itself (text, summary line naming the collection, sources): the chat view keeps
    # its scroll pinned to the bottom, so a page screenshot would show only the last cards.
    answer.screenshot(path=str(ARTIFACTS / "index-admin-7-chat-new-version.png"))

    # Roll back with one click (and a confirmation).
    page.get_by_test_id("stSidebarNav").get_by_text("Index admin", exact=True).click()
    page.get_by_role("button", name="Roll back to rag_chunks_v1").click()
    d = dialog(page)
    d.get_by_text("will point back at").wait_for()
    d.get_by_role("button", name="Roll back now").wait_for()  # the whole dialog is drawn
    shot(page, "8-rollback-dialog")
    d.get_by_role("button", name="Roll back now").click()
    page.get_by_text("Rolled back:").wait_for()
    page.get_by_test_id("stSidebar").get_by_text("rag_chunks_v1").first.wait_for()
    shot(page, "9-rolled-back")
    page.close()
