"""Login in a real browser (Debian's Chromium through Playwright), on freshly started servers.

AUTH_MODE=password: a direct link to the index admin page shows the login form, not the page; a
viewer and an admin see different pages and buttons; a reload keeps the session; Log out ends
it. AUTH_MODE=local refuses to start on a non-loopback address. Screenshots land in
tests/artifacts/auth-*.png."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from corpus import cut_dataset
from browser_kit import ROOT, Console, new_page, screenshot, start_console

pytestmark = pytest.mark.browser
PASSWORDS = {"vera": "viewer-pass-1", "ada": "admin-pass-12"}


def add_user(data_dir: Path, name: str, role: str) -> None:
    env = {**os.environ, "DATA_DIR": str(data_dir)}
    subprocess.run([sys.executable, "-m", "backend", "users", "add", name, "--role", role, "--password-stdin"],
                   cwd=ROOT, env=env, input=PASSWORDS[name] + "\n", text=True, check=True, capture_output=True)


@pytest.fixture(scope="module")
def password_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("browser-auth")
    demo = root / "demo"
    cut_dataset("scifact", 2, 2, demo / "scifact")
    add_user(root, "vera", "viewer")
    add_user(root, "ada", "admin")
    # The live index exists before the start (no first-start build redrawing the pages under the clicks).
    subprocess.run([sys.executable, "-m", "backend", "ingest", str(demo / "scifact")], cwd=ROOT,
                   env={**os.environ, "DATA_DIR": str(root)}, check=True, capture_output=True)
    c = start_console(root, AUTH_MODE="password", DEMO_CORPUS=str(demo), DEMO_DOCS="2")
    yield c
    c.close()


def log_in(page, name: str, password: str) -> None:  # noqa: ANN001
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_password_login_roles_reload_logout(password_console: Console, browser) -> None:  # noqa: ANN001, F811
    page = new_page(browser)
    page.goto(f"{password_console.url}/index_admin")
    # A direct link on a fresh server shows the login form, never the page.
    page.get_by_role("button", name="Log in").wait_for()
    assert page.get_by_label("Username").is_visible() and page.get_by_label("Password").is_visible()
    assert "Index admin" not in page.content()
    screenshot(page, "auth-login-form.png")

    log_in(page, "vera", "wrong-password")
    page.get_by_text("Wrong user name or password.").wait_for()
    assert page.get_by_label("Username").is_visible()  # the form stays

    log_in(page, "vera", PASSWORDS["vera"])
    page.get_by_text("vera · viewer").wait_for()
    assert page.url.endswith("/index_admin")
    page.get_by_role("button", name="Start rebuild").wait_for()
    assert page.get_by_role("button", name="Start rebuild").is_disabled()
    nav = page.locator("[data-testid=stSidebarNav]")
    assert nav.get_by_text("Access").count() == 0
    screenshot(page, "auth-viewer-index-admin.png")

    page.reload()  # the session survives a reload
    page.get_by_text("vera · viewer").wait_for()

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    page.goto(f"{password_console.url}/index_admin")
    page.get_by_label("Username").wait_for()  # logged out: the link shows the form again

    log_in(page, "ada", PASSWORDS["ada"])
    page.get_by_text("ada · admin").wait_for()
    page.get_by_role("button", name="Start rebuild").wait_for()
    assert page.get_by_role("button", name="Start rebuild").is_enabled()
    assert nav.get_by_text("Access").count() == 1
    screenshot(page, "auth-admin-index-admin.png")
    page.close()


def test_tampered_cookie_is_refused(password_console: Console, browser) -> None:  # noqa: ANN001, F811
    context = browser.new_context()
    host = password_console.url.split("//", 1)[1].split(":")[0]
    context.add_cookies([{"name": "rag_session", "value": "abc.9999999999.deadbeef", "domain": host, "path": "/"}])
    page = context.new_page()
    page.goto(f"{password_console.url}/costs")
    page.get_by_label("Username").wait_for()
    context.close()


def test_cross_site_login_post_is_refused(password_console: Console) -> None:
    import urllib.error
    import urllib.request

    data = f"username=ada&password={PASSWORDS['ada']}&next=/".encode()
    req = urllib.request.Request(f"{password_console.url}/auth/login", data=data,
                                 headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403


def test_local_mode_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUTH_MODE"}
    env.update(DATA_DIR=str(tmp_path), HOST="0.0.0.0")
    # The start script refuses before any install step.
    res = subprocess.run(["bash", "scripts/console.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "AUTH_MODE" in res.stderr, res.stderr
    assert not (tmp_path / "console.db").exists()
    # Started another way, the app refuses too.
    res = subprocess.run([sys.executable, "-m", "streamlit", "run", "console/app.py", "--server.address", "0.0.0.0",
                          "--server.port", "8599", "--server.headless", "true"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "AUTH_MODE" in res.stderr, res.stderr


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[str]:
    """A real OpenID Connect provider (oidc-provider-mock) on loopback, with one predefined user."""
    import json
    import time
    import urllib.request

    from services import free_port

    port = free_port()
    claims = {"sub": "olga", "email": "olga@ops.example", "name": "Olga", "groups": ["rag-ops"]}
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--host", "127.0.0.1",
                             "--user-claims", json.dumps(claims)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/.well-known/openid-configuration", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("oidc-provider-mock did not start", pytrace=False)
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_oidc_login_maps_the_role(oidc_provider: str, browser, tmp_path_factory: pytest.TempPathFactory) -> None:  # noqa: ANN001, F811
    from services import free_port

    root = tmp_path_factory.mktemp("browser-oidc")
    demo = root / "demo"
    cut_dataset("scifact", 2, 2, demo / "scifact")
    port = free_port()
    c = start_console(root, port=port, AUTH_MODE="oidc", DEMO_CORPUS=str(demo), DEMO_DOCS="2",
                      OIDC_SERVER_METADATA_URL=f"{oidc_provider}/.well-known/openid-configuration",
                      OIDC_CLIENT_ID="rag-console", OIDC_CLIENT_SECRET="test-secret",
                      OIDC_REDIRECT_URI=f"http://127.0.0.1:{port}/oauth2callback",
                      OIDC_ROLES="@ops.example=viewer,group:rag-ops=operator")
    try:
        page = new_page(browser)
        page.goto(f"{c.url}/index_admin")
        page.get_by_role("button", name="Log in").click()  # Streamlit's st.login: off to the provider
        page.get_by_role("button", name="olga").click()  # the provider's predefined user
        page.get_by_text("Olga · operator").wait_for()  # the group outranks the domain
        assert page.url.rstrip("/") == c.url  # Streamlit's callback lands on the console's first page
        page.goto(f"{c.url}/index_admin")  # the login holds across page loads
        page.get_by_role("button", name="Start rebuild").wait_for()
        assert page.get_by_role("button", name="Start rebuild").is_enabled()
        screenshot(page, "auth-oidc-operator.png")
        page.close()
    finally:
        c.stop()
    assert "Traceback" not in c.log.read_text(errors="replace"), c.log.read_text(errors="replace")[-3000:]


def test_access_page_creates_and_revokes_a_key(password_console: Console, browser) -> None:  # noqa: ANN001, F811
    """The admin's Access page: create an API key (its secret shown once, and it works on the API),
    revoke it through the confirmation dialog (then the API refuses it), find both in the audit log."""
    import urllib.error
    import urllib.request

    page = new_page(browser, height=1600)
    page.goto(f"{password_console.url}/access")
    log_in(page, "ada", PASSWORDS["ada"])
    page.get_by_role("tab", name="🔑 API keys").click()
    form = page.locator("[data-testid=stForm]").filter(has_text="Create a key")
    form.get_by_label("Name").fill("etl-bot")
    form.get_by_role("button", name="Create the key").click()
    page.get_by_text("this is the only time the key is shown").wait_for()
    secret = page.locator("[data-testid=stCode] code").filter(has_text="rok_").first.inner_text().strip()
    assert secret.startswith("rok_")
    screenshot(page, "auth-access-key-created.png")

    def ask(key: str) -> int:
        req = urllib.request.Request(f"{password_console.url}/api/v1/models", headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    assert ask(secret) == 200
    page.get_by_role("button", name="🚫 Revoke").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("stops working at once").wait_for()
    screenshot(page, "auth-access-revoke-dialog.png")
    dialog.get_by_role("button", name="🚫 Revoke now").click()
    page.get_by_text("revoked").first.wait_for()
    assert ask(secret) == 401
    page.reload()  # the secret is never shown again
    page.get_by_role("tab", name="🔑 API keys").click()
    page.get_by_text("etl-bot").first.wait_for(state="attached")
    assert secret not in page.content()
    page.get_by_role("tab", name="🧾 Audit log").click()
    audit = page.locator("[data-testid=stDataFrame]:visible").last
    for action in ("key.create", "key.revoke"):
        audit.locator("td[role=gridcell]", has_text=action).first.wait_for(state="attached")
    page.close()
