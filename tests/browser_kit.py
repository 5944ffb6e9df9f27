"""What the browser tests share: the console started as a subprocess (`streamlit run console/app.py`
from the repo root, its own DATA_DIR and process group, none of the shell's production-stack
settings), Debian's Chromium and its flags, new tabs, screenshots and waits for Streamlit's reruns.
The `browser` fixture (one Chromium per test module) is in conftest.py."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from apptest_kit import STACK_ENV
from services import _http_ok, _wait_ready, free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Settings of the shell that would point a test console at a production part or change its demo build
DEFAULT_PAGE = "status"  # served at "/"


@dataclass
class Console:
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own process group: streamlit and nothing else
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def close(self) -> None:
        """Stop, then fail the test module if the server logged a traceback."""
        self.stop()
        log = self.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]


def start_console(data_dir: Path, port: int | None = None, **env: str) -> Console:
    """The console on a free port (or `port`), a 20-document demo build unless `env` says otherwise."""
    port = port or free_port()
    log = data_dir / "streamlit.log"
    child_env = {k: v for k, v in os.environ.items() if k not in STACK_ENV}
    child_env.update({"DATA_DIR": str(data_dir), "DEMO_DOCS": "20", "OPENBLAS_NUM_THREADS": "1", **env})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "console/app.py", "--server.port", str(port),
             "--server.headless", "true", "--server.address", "127.0.0.1"],
            cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    console = Console(f"http://127.0.0.1:{port}", proc, log)

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited during start-up (code {proc.returncode}):\n"
                        f"{log.read_text(errors='replace')[-3000:]}", pytrace=False)
        return _http_ok(f"{console.url}/_stcore/health")

    try:
        _wait_ready("streamlit", healthy, 60, log=lambda: log.read_text(errors="replace")[-3000:])
    except BaseException:
        console.stop()
        raise
    return console


def page_paths() -> list[str]:
    """Every page file's URL path (Streamlit derives it from the file name), "" for the default page."""
    return [""] + sorted(p.stem for p in (ROOT / "pages").glob("*.py") if p.stem != DEFAULT_PAGE)


# --- in the page (playwright objects) --------------------------------------------------------------
def new_page(browser, height: int = 1100, locale: str | None = None):  # noqa: ANN001, ANN201
    """A tab in a new browser session (its own cookies); `locale` sets navigator.language."""
    page = browser.new_page(viewport={"width": 1400, "height": height}, locale=locale)
    page.set_default_timeout(60_000)
    return page


def screenshot(page, name: str) -> None:  # noqa: ANN001
    """Scroll the main area to the top with the wheel first: chat apps stick to the bottom, and
    only a user's scroll (not a scripted scrollTop) releases them."""
    page.wait_for_timeout(800)  # let the last rerender settle
    page.mouse.move(330, 500)  # the main area's left margin: not over a scrollable source text
    page.mouse.wheel(0, -50_000)
    page.wait_for_timeout(600)
    page.screenshot(path=str(ARTIFACTS / name))


def idle(page) -> None:  # noqa: ANN001
    """Wait until the script run the last interaction started is over: no 'running' widget and no
    stale element (Streamlit marks the previous run's elements stale until the new run replaces them)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]') && "
                           "!document.querySelector('[data-stale=true]')", timeout=90_000)


def choose(page, label: str, option: str) -> None:  # noqa: ANN001
    """Pick an option (matched by prefix) of the visible selectbox with this label. Retried: a timed
    fragment rerun elsewhere on the page (the sidebar's health check) can redraw an open dropdown."""
    box = page.locator("[data-testid=stSelectbox]:visible").filter(has=page.get_by_text(label, exact=True))
    for attempt in range(3):
        idle(page)
        box.click()
        try:
            page.get_by_role("option").filter(has_text=re.compile("^" + re.escape(option))).first.click(timeout=5_000)
            break
        except Exception:
            page.keyboard.press("Escape")
            if attempt == 2:
                page.screenshot(path=str(ARTIFACTS / "choose-failed.png"))
                raise
    idle(page)


def input_enabled(page, timeout_ms: float = 240_000) -> None:  # noqa: ANN001
    """The chat input accepts text (the first start's build is over)."""
    page.wait_for_function(
        "() => { const e = document.querySelector('[data-testid=stChatInputTextArea]'); return e && !e.disabled }",
        timeout=timeout_ms)


def ask(page, question: str) -> float:  # noqa: ANN001
    """Type and send; returns the time the Enter key was pressed."""
    n = page.get_by_test_id("stChatMessage").count()
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    t = time.perf_counter()
    box.press("Enter")
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=stChatMessage]').length >= {n + 2}")
    return t


def last_answer(page):  # noqa: ANN001, ANN201
    return page.get_by_test_id("stChatMessage").last
