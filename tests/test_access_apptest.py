"""Roles in the console through Streamlit's AppTest, on a 6-document demo index with the embedded
stack: an OIDC viewer sees every control they may not use disabled or hidden (and no Access
page), a forced call from their session is refused with one clear line, and the local admin
manages users, API keys (the secret shown once) and reads the audit log. Plus the redaction
of secrets in what the console shows: the alert webhook, base URLs with credentials, errors."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from actors import user
from apptest_kit import demo_console
from ledger_fixtures import cost_stack
from services import HOST, free_port
from streamlit.testing.v1 import AppTest

from backend.access import PermissionDenied, Role
from backend.access.audit import AuditQuery
from backend.access.web import access_store
from backend.health import check_all, scrub
from backend.ledger.alerts import redact_urls, webhook_label
from backend.services import Services
from backend.settings import Settings, get_settings
from console import state
from console.auth import LOCAL_ADMIN

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "console" / "navigation.py")
INDEX_PAGE, COSTS_PAGE, ACCESS_PAGE = "../pages/index_admin.py", "../pages/costs.py", "../pages/access.py"
WEBHOOK = "https://hooks.example.com/services/T000/B000/s3cr3tT0ken?sig=abc123"
VIEWER = {"is_logged_in": True, "email": "viewer@example.com", "name": "Vera"}
OIDC_ENV = {"AUTH_MODE": "oidc", "OIDC_ROLES": "viewer@example.com=viewer,admin@example.com=admin",
            # navigation.py never reads these (console/app.py hands them to st.login); set for realism
            "OIDC_SERVER_METADATA_URL": "https://idp.example.com/.well-known/openid-configuration",
            "OIDC_CLIENT_ID": "rag-console", "OIDC_CLIENT_SECRET": "not-used-here"}


def fresh_login_settings() -> None:
    """A new AUTH_MODE applies to the next run: settings and the login store are read again
    (the cached services, and the index they hold, stay)."""
    get_settings.cache_clear()
    access_store.cache_clear()


@contextmanager
def login_mode(**env: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        fresh_login_settings()
        try:
            yield
        finally:
            mp.undo()
            fresh_login_settings()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The console in local mode with a live v1, a ready shadow v2 (restored from a snapshot of
    v1), a snapshot, a budget and an alert rule: every control the viewer must not use is drawn."""
    root = tmp_path_factory.mktemp("access-console")
    with demo_console(root, ALERT_WEBHOOK_URL=WEBHOOK, AUTH_MODE="local"):
        fresh_login_settings()
        try:
            wait_ready(AppTest.from_file(APP, default_timeout=120))
            svc = services()
            snap = svc.snapshots.create(LOCAL_ADMIN, "rag_chunks_v1")
            assert svc.snapshots.restore(LOCAL_ADMIN, snapshot_id=snap.id).collection == "rag_chunks_v2"
            svc.costs.budgets.create(LOCAL_ADMIN, "team", 50.0)
            svc.costs.alerts.create_rule(LOCAL_ADMIN, "spend", "cost", 5.0, window_minutes=60)
            if not svc.costs.prices.list():
                svc.costs.prices.add(LOCAL_ADMIN, "demo-model", "exact", 1.0, 2.0, note="test row")
            yield {"root": root, "snapshot": snap}
        finally:
            state.reset()
            fresh_login_settings()


def services() -> Services:
    return state.get_services()  # the same cached services the AppTest script uses (same process)


def wait_ready(at: AppTest, timeout_s: float = 300) -> AppTest:
    import time

    deadline = time.monotonic() + timeout_s
    while True:  # the first start builds the demo index in the background
        at.run()
        assert not at.exception, at.exception
        if not any("First start" in e.value for e in at.info):
            return at
        assert time.monotonic() < deadline, "the demo index was not built in time"
        time.sleep(0.5)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    return at


def open_page(page: str | None, user_info: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if user_info is not None:
        at.user = dict(user_info)
    ok(at.run())
    if page:
        ok(at.switch_page(page).run())
    return at


def text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "error", "warning", "info", "code")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def table(at: AppTest, column: str):  # noqa: ANN201 - pandas.DataFrame
    return next(d.value for d in at.dataframe if column in d.value.columns)


WIDGETS = ("button", "download_button", "text_input", "number_input", "selectbox", "toggle", "checkbox",
           "file_uploader", "date_input", "multiselect", "text_area")


def widgets(at: AppTest) -> dict[str, Any]:
    """Every keyed widget of the run, by key."""
    return {w.key: w for kind in WIDGETS for w in getattr(at, kind) if w.key}


# --- a viewer (OIDC) ------------------------------------------------------------------------------
def test_viewer_index_admin_has_no_enabled_promote_delete_or_restore(console: dict) -> None:
    with login_mode(**OIDC_ENV):
        at = open_page(INDEX_PAGE, VIEWER)
        assert at.title[0].value == "🗂️ Index admin"
        assert "👤 **Vera** · viewer" in [m.value for m in at.sidebar.markdown]
        start = next(b for b in at.button if b.label == "🏗️ Start rebuild")
        assert start.disabled and start.help == "Needs the operator role (you are viewer)"
        snap = console["snapshot"]
        w = widgets(at)
        for name in ("promote", "delete", f"restore.{snap.id}", "snapshot_create", "snapshot_import", "gate"):
            assert w[f"index_admin.{name}"].disabled, name
        assert "Needs the admin role" in w["index_admin.promote"].help
        enabled = [k for k, x in w.items() if isinstance(x, type(start)) and not x.disabled and any(
            word in k for word in ("promote", "rollback", "delete", "restore", "snapshot", "rebuild", "gate", "cancel"))]
        assert enabled == []
        assert all(d.disabled for d in at.download_button)  # snapshot downloads
        assert w["index_admin.snapshot_upload"].disabled
        assert not [e for e in at.expander if "Audit log" in e.label]  # the audit log is admins' only


def test_viewer_costs_page_has_no_price_budget_or_alert_editing(console: dict) -> None:
    with login_mode(**OIDC_ENV):
        at = open_page(COSTS_PAGE, VIEWER)
        editing = {"costs.b.name", "costs.b.limit", "costs.b.toggle", "costs.b.delete", "costs.b.pick",
                   "costs.r.name", "costs.r.th", "costs.r.toggle", "costs.r.delete", "costs.r.pick",
                   "costs.p.pattern", "costs.p.in", "costs.p.upload", "costs.p.import", "costs.p.delete", "costs.p.pick",
                   "costs.confirm"}
        for tab, what in (("🎯 Budgets", "Creating, disabling or deleting budgets"),
                          ("🚨 Alerts", "Creating, disabling or deleting alert rules"),
                          ("🏷️ Prices", "Adding, importing or deleting prices")):
            at.session_state["costs.tab"] = tab
            ok(at.run())
            w = widgets(at)
            assert not editing & set(w), (tab, editing & set(w))
            assert f"🔒 {what} needs the **admin** role; you are viewer." in text(at), tab
            if tab == "🏷️ Prices":
                assert w["costs.p.checked"].disabled
                assert not w["costs.p.export"].disabled  # reading the table is fine
            if tab == "🚨 Alerts":
                assert "Webhook: `https://hooks.example.com/…` (ALERT_WEBHOOK_URL)" in text(at)
                assert "s3cr3t" not in text(at) and "abc123" not in text(at)
        # The rules and budgets stay visible: only their editing is hidden.
        assert not table(at, "pattern").empty


def test_every_page_renders_for_a_viewer_with_its_writes_disabled(console: dict) -> None:
    with login_mode(**OIDC_ENV):
        at = open_page(None, VIEWER)
        assert at.title[0].value == "🩺 Status"
        for page, off in (("../pages/chat.py", ["chat.save"]),
                          ("../pages/golden_sets.py", ["golden.create"]),
                          ("../pages/eval_runs.py", []),
                          ("../pages/ab.py", ["ab.create", "ab.save_guardrails"])):
            ok(at.switch_page(page).run())
            assert not [e.value for e in at.error], (page, [e.value for e in at.error])
            w = widgets(at)
            for k in off:
                assert w[k].disabled and "Needs the" in w[k].help, (page, k)


def test_viewer_has_no_access_page(console: dict) -> None:
    with login_mode(**OIDC_ENV):
        at = open_page(None, VIEWER)
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(ACCESS_PAGE)


def test_forced_calls_of_the_viewer_are_refused_with_one_clear_line(console: dict) -> None:
    with login_mode(**OIDC_ENV):
        at = open_page(INDEX_PAGE, VIEWER)
        # The delete dialog opened by hand (its button is disabled): confirming reaches the backend.
        at.session_state["index_admin.dialog"] = {"kind": "delete", "collection": "rag_chunks_v2"}
        ok(at.run())
        assert "The collection **`rag_chunks_v2`** and its points will be dropped" in text(at)
        ok(at.button(key="index_admin.delete_confirm").click().run())
        errors = [e.value for e in at.error]
        assert "access: Vera (viewer) may not delete an index version: it needs the admin role or higher" in errors
        assert "rag_chunks_v2" in services().store.collections()

        # The same through the backend with the session's own actor.
        viewer = at.session_state["auth.actor"]
        assert (viewer.id, viewer.role) == ("viewer@example.com", Role.viewer)
        with pytest.raises(PermissionDenied, match=r"^access: Vera \(viewer\) may not promote: it needs the admin role"):
            services().index_admin.promote(viewer, "rag_chunks_v2")
        assert services().index_admin.live() == "rag_chunks_v1"
        denied = services().audit.search(LOCAL_ADMIN, AuditQuery(who="viewer@example.com", result="denied"))
        assert {"index.delete", "index.promote"} <= {r.action for r in denied}


# --- the local admin -------------------------------------------------------------------------------
def test_admin_manages_users_keys_and_reads_the_audit_log(console: dict) -> None:
    with login_mode(AUTH_MODE="local"):
        at = open_page(ACCESS_PAGE)
        assert at.title[0].value == "🔐 Access"

        # Users: add, change the role, disable; a bad password is refused in one line.
        at.text_input(key="access.new_user").set_value("ann")
        at.text_input(key="access.new_display").set_value("Ann Lee")
        at.selectbox(key="access.new_role").set_value("annotator")
        at.text_input(key="access.new_password").set_value("correct horse battery")
        ok(at.button(key="access.add_user").click().run())
        assert "User **ann** added as annotator." in [s.value for s in at.success]
        users = table(at, "last login")
        row = users[users["name"] == "ann"].iloc[0]
        assert (row["role"], row["source"], row["status"], row["last login"]) == ("annotator", "password", "active", "never")
        ok(at.selectbox(key="access.pick_user").set_value("ann").run())
        ok(at.selectbox(key="access.role.ann").set_value("operator").run())
        ok(at.button(key="access.set_role").click().run())
        assert services().access.get_user("ann").role == Role.operator
        ok(at.button(key="access.toggle_user").click().run())
        assert "**ann** disabled." in [s.value for s in at.success] and services().access.get_user("ann").disabled
        at.text_input(key="access.reset_password").set_value("short")
        ok(at.button(key="access.reset").click().run())
        assert [e.value for e in at.error] == ["password: a password has at least 8 characters"]

        # A key: its secret is shown once, with a warning, never in the list.
        at.text_input(key="access.key_name").set_value("ci")
        at.selectbox(key="access.key_role").set_value("operator")
        at.number_input(key="access.key_days").set_value(30)
        at.number_input(key="access.key_budget").set_value(5.0)
        ok(at.button(key="access.create_key").click().run())
        secret = at.code[0].value
        assert secret.startswith("rok_") and len(secret) > 40
        assert any("only time the key is shown" in w.value for w in at.warning)
        keys = table(at, "prefix")
        row = keys[keys["name"] == "ci"].iloc[0]
        assert (row["prefix"], row["role"], row["budget"], row["status"], row["last used"]) == (
            secret[:12] + "…", "operator", "$5.00", "active", "never")
        assert not any(secret in str(v) for v in keys.to_numpy().ravel())
        assert services().access.key_actor(secret).role == Role.operator
        ok(at.run())
        assert not any(secret in c.value for c in at.code) and secret not in text(at)  # gone after one run

        # Revoking asks first, naming the key.
        ok(at.button(key="access.revoke").click().run())
        assert "The key **ci** (`" in text(at) and "stops working at once" in text(at)
        assert services().access.key_actor(secret) is not None
        ok(at.button(key="access.revoke_confirm").click().run())
        assert "Key **ci** revoked." in [s.value for s in at.success]
        assert services().access.key_actor(secret) is None
        assert table(at, "prefix").set_index("name").loc["ci", "status"] == "revoked"

        # The audit log, filtered by action prefix, who, result and days; CSV of what is shown.
        ok(at.text_input(key="access.a.action").set_value("key.").run())
        audit = table(at, "action")
        assert list(audit["action"]) == ["key.revoke", "key.create"] and set(audit["who"]) == {"local-admin"}
        assert set(audit["role"]) == {"admin"} and set(audit["result"]) == {"ok"}
        assert at.download_button(key="access.audit_csv").label == "⬇️ CSV"
        ok(at.text_input(key="access.a.action").set_value("user.").run())
        assert {"user.add", "user.set_role", "user.disable"} <= set(table(at, "action")["action"])
        with pytest.raises(PermissionDenied):
            services().costs.budgets.delete(user("victor"), 1)
        at.text_input(key="access.a.action").set_value("")
        ok(at.selectbox(key="access.a.result").set_value("denied").run())
        audit = table(at, "action")
        assert set(audit["result"]) == {"denied"} and "budget.delete" in set(audit["action"])
        ok(at.text_input(key="access.a.who").set_value("victor").run())
        assert list(table(at, "action")["action"]) == ["budget.delete"]
        ok(at.date_input(key="access.a.days").set_value((date(2020, 1, 1), date(2020, 1, 2))).run())
        assert "0 records" in text(at) and at.download_button(key="access.audit_csv").disabled


def test_admin_confirms_deleting_and_disabling_on_the_costs_page(console: dict) -> None:
    with login_mode(AUTH_MODE="local"):
        at = open_page(COSTS_PAGE)
        at.session_state["costs.tab"] = "🎯 Budgets"
        ok(at.run())
        ok(at.button(key="costs.b.delete").click().run())
        assert "The soft budget **team** ($50.00 per" in text(at) and "is deleted for good" in text(at)
        assert [s.budget.name for s in services().costs.budgets.status()] == ["team"]
        ok(at.button(key="costs.confirm").click().run())
        assert "Budget 'team' deleted" in [s.value for s in at.success]
        assert services().costs.budgets.status() == [] and "costs.dialog" not in at.session_state

        at.session_state["costs.tab"] = "🚨 Alerts"
        ok(at.run())
        ok(at.selectbox(key="costs.r.pick").set_value("spend").run())
        ok(at.button(key="costs.r.toggle").click().run())
        assert "The rule **spend** (" in text(at) and "stops being evaluated" in text(at)
        ok(at.button(key="costs.confirm").click().run())
        assert "Rule 'spend' disabled" in [s.value for s in at.success]
        assert {x.name: x.enabled for x in services().costs.alerts.rules()}["spend"] is False

        at.session_state["costs.tab"] = "🏷️ Prices"
        ok(at.run())
        n = len(services().costs.prices.list())
        ok(at.button(key="costs.p.delete").click().run())
        assert "is deleted. Ledger rows keep the cost they were written with" in text(at)
        ok(at.button(key="costs.confirm").click().run())
        assert len(services().costs.prices.list()) == n - 1


# --- secrets never shown ---------------------------------------------------------------------------
def test_webhook_urls_are_cut_to_scheme_and_host() -> None:
    assert webhook_label(WEBHOOK) == "https://hooks.example.com/…"
    assert webhook_label("http://user:pw@10.0.0.5:8080/hook?token=x") == "http://10.0.0.5:8080/…"
    assert webhook_label("https://alerts.example.org") == "https://alerts.example.org"
    assert webhook_label(None) is None and webhook_label("") is None
    said = redact_urls(f"HTTPStatusError: Client error '404 Not Found' for url '{WEBHOOK}'\nFor more information…")
    assert said == "HTTPStatusError: Client error '404 Not Found' for url 'https://hooks.example.com/…'\nFor more information…"


def test_health_details_never_carry_credentials(tmp_path: Path) -> None:
    assert scrub("down: postgresql+psycopg://rag:dbpass@db:5432/rag refused") == "down: postgresql+psycopg://***@db:5432/rag refused"
    assert scrub("unreachable at http://bob:hunter2@llm:8080/v1?api_key=zzz: ConnectError") == \
        "unreachable at http://***@llm:8080/v1: ConnectError"
    s = Settings(_env_file=None, data_dir=tmp_path, openai_base_url="http://bob:hunter2@127.0.0.1:9/v1?api_key=zzz",
                 openai_api_key="sk-secret", embedding_base_url="http://eve:pw123@127.0.0.1:9/emb")
    rows = check_all(SimpleNamespace(settings=s), timeout_s=5)  # type: ignore[arg-type]
    details = "\n".join(h.detail for h in rows)
    assert "unreachable at http://***@127.0.0.1:9/v1:" in details and "unreachable at http://***@127.0.0.1:9/emb:" in details
    for secret in ("hunter2", "bob", "zzz", "pw123", "eve", "sk-secret"):
        assert secret not in details, secret


class _NotFound(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(404)
        self.end_headers()


def test_a_failed_webhook_is_recorded_without_its_secret(tmp_path: Path) -> None:
    server = ThreadingHTTPServer((HOST, free_port()), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        url = f"http://hook:pa55@{HOST}:{port}/services/T0/B0/s3cr3tT0ken?sig=abc123"
        costs = cost_stack(tmp_path, alert_webhook_url=url)
        costs.alerts.fire("manual:1", "rule", "t", "d", 1.0, 0.5)
        costs.alerts.flush()
        error = costs.alerts.history(1)[0].notify_error
    finally:
        server.shutdown()
        server.server_close()
    assert error.startswith("HTTPStatusError: Client error '404 Not Found' for url ") and f"http://{HOST}:{port}/…" in error
    for secret in ("s3cr3t", "abc123", "pa55", "hook:"):
        assert secret not in error, error


def test_api_page_shows_the_base_url_examples_and_live_requests(console: dict) -> None:
    """The API page: base URL and examples, the rate limiter line, and API rows of the ledger
    (a request from an API-key actor appears with its key and end user; console rows do not)."""
    from actors import api_key

    services: Services = state.get_services()
    services.engine.query("What is the weight of a newborn?", services.policies.get("default"),
                          api_key("shop-bot", end_user="carol"))
    services.engine.query("A console question", services.policies.get("default"), user("ann"))
    with login_mode(AUTH_MODE="local"):
        at = open_page("../pages/api.py")
        assert at.title[0].value == "🔌 HTTP API"
        body = text(at)
        # (no API app runs inside AppTest, so there is no rate-limiter line; the browser test sees it)
        assert "/api/v1" in body and 'model="rag"' in body
        rows = at.dataframe[0].value
        assert list(rows["key"]) == ["shop-bot"] and list(rows["end user"]) == ["carol"]
        assert list(rows["status"]) == ["ok"]
