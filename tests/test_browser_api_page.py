"""The API page in a real browser: the console serves the HTTP API on its own port; a request
sent with a key shows up in "Latest live requests" with its key, end user and status."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Iterator

import pytest

from corpus import cut_dataset
from browser_kit import ROOT, Console, new_page, screenshot, start_console

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def api_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, str]]:
    root = tmp_path_factory.mktemp("browser-api")
    corpus = root / "corpus"
    cut_dataset("scifact", 3, 3, corpus / "scifact")
    env = {**os.environ, "DATA_DIR": str(root)}
    # Index and key first, from the shell (it and the console cannot share the local store at once).
    subprocess.run([sys.executable, "-m", "backend", "ingest", str(corpus / "scifact")], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    out = subprocess.run([sys.executable, "-m", "backend", "keys", "create", "shop-bot", "--role", "viewer", "--json"],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    key = json.loads(out.strip().splitlines()[-1])["key"]
    c = start_console(root)
    yield c, key
    c.close()


def test_api_page_shows_a_live_request(api_console: tuple[Console, str], browser) -> None:  # noqa: ANN001, F811
    console, key = api_console
    req = urllib.request.Request(f"{console.url}/api/v1/query", data=json.dumps({"question": "What does aspirin do?"}).encode(),
                                 headers={"Authorization": f"Bearer {key}", "X-End-User": "carol",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        body = json.loads(r.read())
        assert r.headers["X-Request-Id"] == body["request_id"] or r.headers["X-Request-Id"]
    assert body["sources"] and body["user"] == "carol"

    page = new_page(browser)
    page.goto(f"{console.url}/api")
    page.get_by_text("Latest live requests").wait_for()
    page.get_by_text("Rate limit 600 per 1 minute per key, counted in memory").wait_for()
    page.get_by_text(f"{console.url}/api/v1").first.wait_for()
    table = page.locator("[data-testid=stDataFrame]")
    table.wait_for()
    page.get_by_role("tab", name="Python (OpenAI SDK)").click()
    page.get_by_text('model="rag"').wait_for()
    screenshot(page, "api-page.png")
    # The data grid draws on a canvas; its accessible grid holds the cell texts.
    for text in ("shop-bot", "carol", body["request_id"]):
        table.locator("td[role=gridcell]", has_text=text).first.wait_for(state="attached")
    page.close()
