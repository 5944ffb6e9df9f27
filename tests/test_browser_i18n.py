"""The console in Chinese in a real browser: a Chinese browser (navigator.language zh-CN) gets every
page in Chinese, sidebar navigation included, at the same URLs; the sidebar switch changes the
language and the choice sticks for the user on a new session. One test per page, each with a
screenshot (tests/artifacts/zh-<page>.png)."""
from __future__ import annotations

import re
from typing import Iterator

import pytest

from console.i18n import catalog
from browser_kit import ARTIFACTS, Console, choose, idle, input_enabled, new_page, page_paths, start_console

pytestmark = pytest.mark.browser

CJK = re.compile(r"[\u4e00-\u9fff]")
NAV = ["Status", "Chat tester", "Index admin", "Golden sets", "Evaluation runs", "Costs & latency", "A/B & releases"]
SWITCH = "🌐 Language · 语言"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    c = start_console(tmp_path_factory.mktemp("browser-i18n"))
    yield c
    c.close()


def drawn(page) -> None:  # noqa: ANN001
    """The page's run is over and no element is still a loading placeholder."""
    idle(page)
    page.wait_for_function("() => !document.querySelector('[data-testid=stSkeleton]')", timeout=60_000)
    idle(page)


def sidebar_titles(page) -> list[str]:  # noqa: ANN001
    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_test_id("stSidebarNavLink").first.wait_for()
    return [x.strip() for x in nav.get_by_test_id("stSidebarNavLink").all_inner_texts()]


def test_a_chinese_browser_gets_the_chat_in_chinese(browser, console: Console) -> None:  # noqa: ANN001
    page = new_page(browser, locale="zh-CN")
    page.goto(f"{console.url}/chat")
    input_enabled(page)  # the first-start demo build is over
    zh = catalog("zh")
    titles = sidebar_titles(page)
    assert all(any(zh[t] in x for x in titles) for t in NAV), titles
    assert CJK.search(page.locator("h1").first.inner_text())
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("大莱龙铁路一共投资多少亿元？")
    box.press("Enter")
    page.get_by_test_id("stChatMessage").nth(1).wait_for()
    idle(page)
    answer = page.get_by_test_id("stChatMessage").nth(1).inner_text()
    assert "11.42" in answer and re.search(r"[\d.]+(毫秒|秒)", answer), answer  # durations in Chinese units
    assert page.get_by_test_id("stException").count() == 0
    page.screenshot(path=str(ARTIFACTS / "zh-chat.png"))
    page.close()


@pytest.mark.parametrize("path", [p for p in page_paths() if p != "chat"])
def test_every_page_in_chinese(browser, console: Console, path: str) -> None:  # noqa: ANN001
    page = new_page(browser, locale="zh-CN")
    page.goto(f"{console.url}/{path}")
    heading = page.locator("h1").first
    heading.wait_for()
    drawn(page)
    text = heading.inner_text().strip()
    assert CJK.search(text) or text in catalog("zh").values(), text  # "🔌 HTTP API" reads the same in both
    assert page.get_by_test_id("stException").count() == 0
    main = page.get_by_test_id("stMain").inner_text()
    letters = re.findall(r"[A-Za-z]{4,}", main)
    assert len(CJK.findall(main)) > 4 * len(letters) / 10, (path, letters[:40])  # mostly Chinese
    assert f"{console.url}/{path}".rstrip("/") == page.url.split("?")[0].rstrip("/")  # same URL in both languages
    page.screenshot(path=str(ARTIFACTS / f"zh-{path or 'status'}.png"), full_page=True)
    page.close()


def test_the_sidebar_switch_sticks_for_the_user(browser, console: Console) -> None:  # noqa: ANN001
    zh = catalog("zh")
    page = new_page(browser, locale="en-US")
    page.goto(f"{console.url}/golden_sets")
    assert any(x.endswith("Golden sets") for x in sidebar_titles(page))  # nothing saved: the browser's language
    idle(page)
    choose(page, SWITCH, "简体中文")
    page.get_by_test_id("stSidebarNav").get_by_text(zh["Golden sets"], exact=True).wait_for()
    page.close()

    again = new_page(browser, locale="en-US")  # a new session of the same user, on an English browser
    again.goto(f"{console.url}/golden_sets")
    again.get_by_test_id("stSidebarNav").get_by_text(zh["Golden sets"], exact=True).wait_for()
    drawn(again)
    again.screenshot(path=str(ARTIFACTS / "zh-switch.png"))
    choose(again, SWITCH, "English")
    again.get_by_test_id("stSidebarNav").get_by_text("Golden sets", exact=True).wait_for()
    again.close()

    chinese_browser = new_page(browser, locale="zh-CN")  # the saved choice wins over the browser's language
    chinese_browser.goto(f"{console.url}/golden_sets")
    assert any(x.endswith("Golden sets") for x in sidebar_titles(chinese_browser))
    chinese_browser.close()
