"""The A/B page in a real browser: `streamlit run console/app.py` as a subprocess (its own DATA_DIR,
the 20-document demo index of the first start), driven with Debian's /usr/bin/chromium through
Playwright's sync API, started the way tests/test_browser_chat.py does.

A second policy (BM25 only) and a small SciFact golden set (the shared data set's first queries,
imported with backend.evaluation.golden.parse_items and frozen) are written to the console's database; then
in the browser: the policy diff, one question side by side, blind votes, an offline comparison
as a background job, two releases, a 50% candidate, live requests through the live path, the
online comparison, promote and roll back. Every step is screenshotted into tests/artifacts/ab-*.png."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
from actors import Role, user
from browser_kit import ARTIFACTS, Console, choose, idle, input_enabled, new_page, start_console
from corpus import cut_dataset

from backend.access.audit import AuditLog
from backend.db import make_engine
from backend.engine.policy import Policy, PolicyStore
from backend.evaluation.golden import GoldenSets, parse_items

pytestmark = pytest.mark.browser

SET = "scifact-small"
ENGLISH_Q = "5% of perinatal mortality is due to low birth weight."
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-ab")


@pytest.fixture(scope="module")
def console(data_dir: Path) -> Iterator[Console]:
    c = start_console(data_dir)
    yield c
    c.close()
    if TIMINGS:
        (ARTIFACTS / "ab-timings.json").write_text(json.dumps(TIMINGS, indent=2))
        print("\nA/B browser timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in TIMINGS.items()))


def shot(page, name: str, locator=None, full: bool = False) -> None:  # noqa: ANN001
    """The page from the top of the main area, or with `locator` scrolled into view."""
    page.wait_for_timeout(700)
    if locator is not None:
        locator.scroll_into_view_if_needed()
        page.wait_for_timeout(400)
    else:
        page.mouse.move(700, 400)
        page.mouse.wheel(0, -50_000)
        page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full)


def tab(page, name: str) -> None:  # noqa: ANN001
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(400)


def alert(page, kind: str, text: str, timeout_ms: float = 90_000):  # noqa: ANN001, ANN201
    found = page.get_by_test_id(f"stAlertContent{kind}").filter(has_text=text).first
    found.wait_for(timeout=timeout_ms)
    return found


ANN = user("ann", Role.admin)  # writes the policy and the golden set straight to the console's database


def button(page, name: str):  # noqa: ANN001, ANN201
    return page.locator("button:visible").filter(has_text=name).first


def test_compare_vote_offline_release_promote_rollback(browser, console: Console, data_dir: Path,  # noqa: ANN001
                                                        tmp_path: Path) -> None:
    page = new_page(browser, height=1250)
    page.goto(f"{console.url}/chat")
    t = time.perf_counter()
    input_enabled(page)  # the first-start demo build is over; the console's database exists
    TIMINGS["demo_build_wait"] = time.perf_counter() - t

    # A second policy and a frozen SciFact golden set, written to the console's database.
    db = make_engine(f"sqlite:///{data_dir / 'console.db'}")
    audit = AuditLog(db)
    PolicyStore(db, audit).save(Policy(name="bm25", retrieval_mode="sparse", top_k=5), actor=ANN, note="BM25 only")
    golden = GoldenSets(db, audit)
    queries = cut_dataset("scifact", 5, 0, tmp_path / "scifact") / "queries.jsonl"
    golden.create(SET, actor=ANN)
    golden.import_items(SET, parse_items(queries.read_bytes(), queries.name), actor=ANN)
    assert golden.freeze(SET, actor=ANN) == 1
    db.dispose()

    # --- what changed between the two policies ---------------------------------------------------------
    t = time.perf_counter()
    page.goto(f"{console.url}/ab?a=default:&b=bm25:1")
    page.get_by_text("differs from").first.wait_for()
    TIMINGS["open_page"] = time.perf_counter() - t
    page.get_by_text("Changed fields only").click()
    idle(page)
    shot(page, "ab-1-policy-diff.png")

    # --- one question, both answers side by side --------------------------------------------------------
    tab(page, "🆚 Side by side")
    box = page.get_by_role("textbox", name="Question", exact=True)
    box.fill(ENGLISH_Q)
    t = time.perf_counter()
    box.press("Enter")  # the form submits on Enter
    page.get_by_text("B · bm25 v1").first.wait_for(timeout=90_000)
    idle(page)
    TIMINGS["ask_both"] = time.perf_counter() - t
    assert page.locator(".rag-card:visible").count() >= 10  # A's 8 sources and B's 5 (scrollable)
    shot(page, "ab-2-side-by-side.png")
    button(page, "➡️ B better").click()
    alert(page, "Success", "Vote saved")

    # --- blind: names hidden, order random, votes mapped back --------------------------------------------
    page.get_by_text("🙈 Blind").click()
    idle(page)
    for n, vote in enumerate(("⬅️ Left better", "➡️ Right better", "🤝 Tie")):
        button(page, "🆚 Ask both").click()
        page.get_by_text("Left answer").first.wait_for(timeout=90_000)
        idle(page)
        answers = page.get_by_test_id("stTabs").first.inner_text().split("Left answer", 1)[1]  # both columns
        assert "bm25" not in answers and "policy " not in answers
        if n == 0:
            shot(page, "ab-3-blind.png")
        button(page, vote).click()
        alert(page, "Success", "Vote saved")
        idle(page)
        page.get_by_text(re.compile(r"Left was [AB] · ")).first.wait_for()
        if n == 0:
            shot(page, "ab-4-blind-voted.png")
    page.get_by_text(re.compile(r"Votes so far")).first.wait_for()

    # --- offline: both policies over the golden set, one background job -------------------------------------
    tab(page, "🧪 Offline")
    t = time.perf_counter()
    button(page, "▶️ Run A and B").click()
    page.get_by_test_id("stProgress").first.wait_for(timeout=30_000)
    shot(page, "ab-5-offline-running.png")
    page.get_by_text("delta (B − A)").first.wait_for(state="attached", timeout=240_000)
    page.locator("[data-testid=stMetric]:visible").first.wait_for()
    idle(page)
    TIMINGS["offline_click_to_diff"] = time.perf_counter() - t
    shot(page, "ab-6-offline-diff.png")

    # --- releases: create two, make the first current, the second a 50% candidate ---------------------------
    tab(page, "🚀 Releases")
    for option in ("default", "bm25 v1"):
        choose(page, "Policy version", option)
        page.get_by_role("textbox", name="Note").fill(f"release of {option}")
        button(page, "➕ Create release").click()
        alert(page, "Success", "Created release")
        idle(page)
    choose(page, "Release", "#1 ")
    button(page, "📌 Make current").click()
    alert(page, "Success", "is now current")
    idle(page)
    choose(page, "Release", "#2 ")
    share = page.get_by_role("spinbutton", name="Candidate share (%)")
    share.fill("50")
    share.press("Tab")
    idle(page)
    page.get_by_role("textbox", name="Why", exact=True).fill("try BM25")
    page.get_by_role("textbox", name="Why", exact=True).press("Tab")
    idle(page)
    button(page, "🧪 Set as candidate").click()
    alert(page, "Success", "is the candidate for 50% of users")
    idle(page)
    shot(page, "ab-7-candidate-50.png")

    # Live requests through the live path (the probe), for a handful of users.
    page.get_by_text("🎯 Try the live path as a user").click()
    probe = page.get_by_test_id("stExpander").filter(has_text="Try the live path as a user")
    served = {}
    for i in range(6):
        page.get_by_role("textbox", name="User id").fill(f"user-{i}")
        question = page.get_by_role("textbox", name="Question for the live path")
        question.fill(ENGLISH_Q)
        # Enter submits the form with the value just typed; a click right after fill could beat the field's
        # commit, and the form was then sent without its question (the one-run-in-several timeout of user-0).
        question.press("Enter")
        found = page.get_by_text(re.compile(rf"user-{i}\s*is served by the")).first
        refused = probe.locator("[data-testid=stAlertContentWarning], [data-testid=stAlertContentError]")
        found.or_(refused).first.wait_for(timeout=90_000)
        assert found.is_visible(), refused.all_inner_texts()
        served[f"user-{i}"] = "candidate" if "candidate" in found.inner_text() else "current"
        idle(page)
    print(f"\nlive path variants: {served}")

    tab(page, "📈 Online")
    button(page, "🔄 Refresh").click()  # this tab was drawn before the last probe's request was written
    idle(page)
    page.get_by_text("significant yet?").first.wait_for(state="attached")
    shot(page, "ab-8-online.png")

    # --- promote, then roll back, each through its confirmation dialog -------------------------------------
    tab(page, "🚀 Releases")
    button(page, "🚀 Promote candidate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("becomes the current release").wait_for()
    dialog.get_by_role("textbox").fill("BM25 wins the blind votes")
    shot(page, "ab-9-promote-dialog.png", full=False)
    dialog.get_by_role("button", name="🚀 Promote now").click()
    alert(page, "Success", "Promoted #2")
    idle(page)
    shot(page, "ab-10-promoted.png")
    button(page, "↩️ Roll back to #1").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Back to").wait_for()
    dialog.get_by_role("textbox").fill("complaints")
    dialog.get_by_role("button", name="↩️ Roll back now").click()
    alert(page, "Success", "Rolled back to #1")
    idle(page)
    shot(page, "ab-11-rolled-back.png", locator=page.get_by_text("🕘 History"))
    assert page.get_by_text("Traceback").count() == 0
    page.close()
