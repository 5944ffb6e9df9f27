"""Access control: the one permissions table, refusals by the real services (nothing changes and
the audit log says who was denied), who the ledger and traces name, accounts, sessions and API
keys (on SQLite and PostgreSQL), the folders a console user may index, and the `users` / `keys`
commands as real subprocesses."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from actors import ADMIN, ANNOTATOR, OPERATOR, SYSTEM, VIEWER, Actor, Role, api_key, system_actor, user
from corpus import first_queries
from index_support import cli

from backend.access import PERMISSIONS, Action, PermissionDenied, can, require
from backend.access import service as access_service
from backend.access.audit import AuditLog, AuditQuery, AuditRecord, audit_csv
from backend.access.roots import check_ingest_root
from backend.access.service import KEY_PREFIX, AccessStore, LoginRefused, check_password, check_user_name, open_access
from backend.access.tables import api_keys, auth_sessions, users
from backend.background.jobs import DONE
from backend.db import make_engine, migrate, utcnow
from backend.engine.policy import Policy
from backend.errors import InputError, NotFoundError
from backend.ledger.budgets import budgets
from backend.ledger.store import ledger
from backend.services import Services
from backend.settings import Settings

ROLES = list(Role)


# --- (a) the permissions table --------------------------------------------------------------------

def test_every_action_has_a_role() -> None:
    assert set(PERMISSIONS) == set(Action)
    assert [r.name for r in sorted(Role)] == ["viewer", "annotator", "operator", "admin"]


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.name)
def test_one_role_below_is_refused_and_the_role_itself_is_allowed(action: Action) -> None:
    needed = PERMISSIONS[action]
    for role in ROLES:
        actor = user(f"{role.name}-1", role)
        if role >= needed:
            require(actor, action)  # no exception
            assert can(actor, action)
            continue
        assert not can(actor, action)
        with pytest.raises(PermissionDenied) as err:
            require(actor, action)
        msg = str(err.value)
        assert msg.startswith("access: ") and err.value.part == "access"
        assert f"may not {action.value}" in msg and f"needs the {needed.name} role or higher" in msg
        assert f"({role.name})" in msg and err.value.needed == needed and err.value.action == action
    if needed > Role.viewer:  # the role just below is the one that matters
        below = user("below", Role(needed - 1))
        with pytest.raises(PermissionDenied, match=f"needs the {needed.name} role"):
            require(below, action)


def test_require_refuses_anything_but_an_actor() -> None:
    for fake in ("alice", None, {"id": "alice", "role": "admin"}):
        with pytest.raises(TypeError, match="an Actor is required"):
            require(fake, Action.view)  # type: ignore[arg-type]
    assert not can(None, Action.view)
    assert system_actor("ci") == Actor("ci", "ci", Role.admin, "system") and SYSTEM.kind == "system"
    assert Role.parse(" Operator ") is Role.operator
    with pytest.raises(ValueError, match="unknown role 'root'"):
        Role.parse("root")


# --- (b) the real services refuse a role below, change nothing and audit the denial -----------------

@dataclass(frozen=True)
class Case:
    action: str  # the audit action of the refusal
    actor: Actor  # one role below what the call needs
    call: Callable[[Services], Any]
    state: Callable[[Services], Any]  # what must stay the same


def _live(svc: Services) -> str:
    return svc.store.resolve("rag_chunks")


def _index_state(svc: Services) -> tuple:
    return (svc.store.aliases(), sorted(svc.store.collections()), [(r.collection, r.status) for r in svc.registry.list()],
            [j.id for j in svc.jobs.list(limit=1000)])


def _users(svc: Services) -> list:
    with svc.db.connect() as conn:
        return conn.execute(sa.select(users.c.name, users.c.role)).all()


def _keys(svc: Services) -> list:
    with svc.db.connect() as conn:
        return conn.execute(sa.select(api_keys.c.id, api_keys.c.revoked_at)).all()


def _budgets(svc: Services) -> list:
    with svc.db.connect() as conn:
        return conn.execute(sa.select(budgets.c.id)).all()


CASES = {
    "promote": Case("index.promote", OPERATOR, lambda s: s.index_admin.promote(OPERATOR, _live(s), reason="x"), _index_state),
    "delete version": Case("index.delete", OPERATOR, lambda s: s.index_admin.delete(OPERATOR, _live(s)), _index_state),
    "rollback": Case("index.rollback", OPERATOR, lambda s: s.index_admin.rollback(OPERATOR), _index_state),
    "rebuild": Case("index.rebuild", ANNOTATOR,
                    lambda s: s.index_admin.start_rebuild(ANNOTATOR, source=s.settings.uploads_dir), _index_state),
    "rebuild by key": Case("index.rebuild", api_key("ci-bot", Role.annotator),
                           lambda s: s.index_admin.start_rebuild(api_key("ci-bot", Role.annotator),
                                                                 source=s.settings.uploads_dir), _index_state),
    "price": Case("prices.add", OPERATOR,
                  lambda s: s.costs.prices.add(OPERATOR, "acme-x", "exact", 1, 2, effective_from="2025-01-01"),
                  lambda s: [(p.id, p.pattern) for p in s.costs.prices.rows()]),
    "budget": Case("budget.create", OPERATOR, lambda s: s.costs.budgets.create(OPERATOR, "denied", 5.0), _budgets),
    "alert rule": Case("alert_rule.create", OPERATOR,
                       lambda s: s.costs.alerts.create_rule(OPERATOR, "denied", "cost", 1.0), lambda s: s.costs.alerts.rules()),
    "golden set": Case("golden.create", VIEWER, lambda s: s.golden.create("denied-set", VIEWER), lambda s: s.golden.list_sets()),
    "policy": Case("policy.save", ANNOTATOR, lambda s: s.policies.save(Policy(name="denied-policy"), ANNOTATOR),
                   lambda s: s.policies.list()),
    "release": Case("release.create", ANNOTATOR, lambda s: s.releases.create(ANNOTATOR, "default"), lambda s: s.releases.list()),
    "snapshot": Case("snapshot.create", ANNOTATOR, lambda s: s.snapshots.create(ANNOTATOR, _live(s)),
                     lambda s: ([x.id for x in s.snapshots.list()], sorted(p.name for p in s.snapshots.dir.glob("*")))),
    "evaluation": Case("eval.run", ANNOTATOR, lambda s: s.evals.start_job(s.jobs, "any-set", Policy(), ANNOTATOR),
                       lambda s: ([j.id for j in s.jobs.list(limit=1000)], s.evals.list())),
    "user": Case("user.add", OPERATOR, lambda s: s.access.add_user(OPERATOR, "mallory", Role.admin, "a-long-password"), _users),
    "role": Case("user.set_role", OPERATOR, lambda s: s.access.set_role(OPERATOR, OPERATOR.id, Role.admin), _users),
    "key": Case("key.create", OPERATOR, lambda s: s.access.create_key(OPERATOR, "denied-key", Role.admin), _keys),
    "audit log": Case("audit.search", OPERATOR, lambda s: s.audit.search(OPERATOR), lambda s: None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_role_below_is_refused_by_the_service_and_audited(services: Services, name: str) -> None:
    case = CASES[name]
    services.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    before = case.state(services)
    with pytest.raises(PermissionDenied) as err:
        case.call(services)
    assert err.value.actor == case.actor and case.actor.role < err.value.needed
    assert case.state(services) == before  # nothing changed
    row = services.audit.recent(1)[0]  # the refusal is the newest record
    assert (row.action, row.result) == (case.action, "denied")
    assert (row.actor, row.actor_kind, row.actor_role) == (case.actor.id, case.actor.kind, case.actor.role.name)
    assert "may not" in row.detail["error"]


def test_the_role_itself_is_allowed_by_the_service(services: Services) -> None:
    """The other side of the same calls: the needed role goes through (and is audited as ok)."""
    sid = services.golden.create("access-allowed", ANNOTATOR)
    assert sid and services.audit.recent(1)[0].actor == ANNOTATOR.id
    saved = services.policies.save(Policy(name="access-allowed", top_k=2), OPERATOR)
    row = services.audit.recent(1)[0]
    assert saved.version >= 1 and (row.action, row.result, row.actor_role) == ("policy.save", "ok", "operator")
    bid = services.costs.budgets.create(ADMIN, "access-allowed", 5.0)
    services.costs.budgets.delete(ADMIN, bid)
    assert services.audit.recent(1)[0].action == "budget.delete"
    assert services.audit.search(ADMIN, AuditQuery(who=ANNOTATOR.id, action="golden."))[0].target == "access-allowed"


def test_audit_records_need_an_actor_and_the_csv_is_safe(services: Services) -> None:
    with pytest.raises(TypeError, match="need an Actor"):
        services.audit.record("alice", "x.y")  # type: ignore[arg-type]
    key = api_key("exporter", Role.annotator, end_user="erin")
    services.audit.record(key, "export.test", "=HYPERLINK(\"http://evil\")", rows=3)
    rows = services.audit.search(ADMIN, AuditQuery(who="key:exporter", action="export.", limit=5))
    assert len(rows) == 1 and (rows[0].actor_kind, rows[0].actor_role) == ("api_key", "annotator")
    assert services.audit.search(ADMIN, AuditQuery(who="key:exporter", result="denied")) == []
    assert services.audit.search(ADMIN, AuditQuery(target="HYPERLINK", since=utcnow() - timedelta(minutes=5)))
    assert services.audit.search(ADMIN, AuditQuery(who="key:exporter", until=utcnow() - timedelta(days=1))) == []
    text = audit_csv(rows)
    assert text.splitlines()[0] == "ts,actor,actor_kind,actor_role,action,target,result,detail"
    assert "'=HYPERLINK" in text  # a spreadsheet shows the formula as text instead of running it
    assert "export.test" in services.audit.actions()


# --- (c) the ledger and the trace name the actor (or the end user an API key speaks for) ----------

def _ledger(svc: Services, request_id: str) -> list[dict]:
    with svc.db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(ledger).where(ledger.c.request_id == request_id))]


@pytest.mark.parametrize("actor,recorded", [
    (user("vivian"), "vivian"),
    (api_key("chatbot", Role.viewer, end_user="erin@example.com"), "erin@example.com"),
    (api_key("batch", Role.operator), "key:batch"),
], ids=["user", "key with end user", "key alone"])
def test_ledger_rows_and_trace_carry_the_actor(services: Services, actor: Actor, recorded: str) -> None:
    question = {"vivian": 0, "erin@example.com": 1, "key:batch": 2}[recorded]
    answer = services.engine.query(first_queries("scifact", 3)[question]["question"], Policy(top_k=2), actor)
    rows = _ledger(services, answer.request_id)
    assert rows and {r["user"] for r in rows} == {recorded}
    assert answer.user == recorded
    trace = services.traces.get(answer.request_id)
    assert trace is not None and trace.user == recorded
    services.traces.feedback(answer.request_id, 1, actor)  # a viewer (or any key) may rate its answer
    row = services.audit.recent(1)[0]
    assert (row.action, row.actor, row.actor_kind) == ("trace.feedback", actor.id, actor.kind)
    assert services.traces.get(answer.request_id).feedback_by == actor.id


def test_the_engine_refuses_a_bare_user_string(services: Services) -> None:
    with pytest.raises(TypeError, match="an Actor is required"):
        services.engine.query("a question", Policy(), "alice")  # type: ignore[arg-type]


# --- (d) accounts, sessions and keys, on SQLite and PostgreSQL --------------------------------------

SECRET = "test-signing-secret-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.engine.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'console.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"a_{abs(hash(request.node.name)) % 10**8}")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(db: sa.engine.Engine) -> AccessStore:
    return AccessStore(db, AuditLog(db), SECRET)


def _flip(text: str) -> str:
    """The same text with its last character changed."""
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def _audit(store: AccessStore, n: int = 1) -> list[AuditRecord]:
    return store._audit.recent(n)


def test_add_user_authenticate_and_wrong_passwords(store: AccessStore) -> None:
    info = store.add_user(ADMIN, "dana", Role.operator, "correct horse 1", display_name="Dana D.")
    assert (info.name, info.role, info.source, info.disabled, info.last_login_at) == ("dana", Role.operator, "password", False, None)
    row = _audit(store)[0]
    assert (row.action, row.target, row.actor, row.detail["role"]) == ("user.add", "dana", "alice", "operator")
    with store._engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash).where(users.c.name == "dana")).scalar_one()
    assert stored.startswith("$argon2") and "correct horse" not in stored

    actor = store.authenticate("dana", "correct horse 1", "10.0.0.1")
    assert actor == Actor("dana", "Dana D.", Role.operator, "user")
    assert store.get_user("dana").last_login_at is not None
    assert _audit(store)[0].action == "auth.login" and _audit(store)[0].result == "ok"
    for name, password in (("dana", "correct horse 2"), ("dana", ""), ("nobody", "correct horse 1"), ("bad name!", "x")):
        with pytest.raises(LoginRefused, match="wrong user name or password"):  # one message: names stay secret
            store.authenticate(name, password, "10.0.0.2")
    refused = _audit(store)[0]
    assert (refused.action, refused.result, refused.actor_role) == ("auth.login", "refused", "viewer")
    with pytest.raises(InputError, match="already exists"):
        store.add_user(ADMIN, "dana", Role.viewer, "another password")
    assert [u.name for u in store.list_users(ADMIN)] == ["dana"]


def test_disabled_accounts_roles_and_passwords(store: AccessStore) -> None:
    store.add_user(ADMIN, "dana", Role.viewer, "first password")
    token = store.open_session(store.authenticate("dana", "first password"))
    store.set_role(ADMIN, "dana", Role.annotator)
    assert store.session_actor(token).role == Role.annotator  # a changed role holds on the next request
    store.set_disabled(ADMIN, "dana", True)
    assert store.session_actor(token) is None  # logged out everywhere
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        store.authenticate("dana", "first password")
    store.set_disabled(ADMIN, "dana", False)
    token = store.open_session(store.authenticate("dana", "first password"))
    store.reset_password(ADMIN, "dana", "second password")
    assert store.session_actor(token) is None  # a new password ends the sessions
    with pytest.raises(LoginRefused):
        store.authenticate("dana", "first password")
    assert store.authenticate("dana", "second password").role == Role.annotator
    assert [r.action for r in _audit(store, 20)][:1] == ["auth.login"]
    assert {"user.set_role", "user.disable", "user.enable", "user.reset_password"} <= {r.action for r in _audit(store, 20)}
    assert all("password_hash" not in r.detail for r in _audit(store, 20))
    with pytest.raises(NotFoundError, match="no user 'ghost'"):
        store.set_role(ADMIN, "ghost", Role.admin)
    assert _audit(store)[0].result == "error"
    store.add_user(ADMIN, "root2", Role.admin, "admin password")
    me = store.authenticate("root2", "admin password")
    with pytest.raises(InputError, match="cannot disable your own account"):
        store.set_disabled(me, "root2", True)
    with pytest.raises(PermissionDenied):
        store.set_role(store.authenticate("dana", "second password"), "dana", Role.admin)  # no self-promotion
    assert store.get_user("dana").role == Role.annotator


def test_session_tokens_tampered_expired_or_closed(store: AccessStore, db: sa.engine.Engine) -> None:
    store.add_user(ADMIN, "erin", Role.viewer, "erin's password")
    actor = store.authenticate("erin", "erin's password")
    token = store.open_session(actor, "10.0.0.3")
    assert store.session_actor(token) == actor
    sid, exp, sig = token.split(".")
    for bad in (None, "", "garbage", f"{sid}.{exp}.{_flip(sig)}", f"{sid}.{int(exp) + 3600}.{sig}",
                f"{_flip(sid)}.{exp}.{sig}", f"{sid}.{exp}", token + "." + sig, "a" * 600):
        assert store.session_actor(bad) is None, bad
    other = AccessStore(db, AuditLog(db), "another secret")
    assert other.session_actor(token) is None  # signed with another AUTH_SECRET

    short = AccessStore(db, AuditLog(db), SECRET, session_hours=2 / 3600)  # a two-second login
    brief = short.open_session(actor)
    assert short.session_actor(brief) == actor
    time.sleep(3.1)
    assert short.session_actor(brief) is None and store.session_actor(brief) is None

    token2 = store.open_session(actor)
    with db.begin() as conn:  # the server-side row expires too, whatever the cookie says
        conn.execute(auth_sessions.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert store.session_actor(token2) is None and store.session_actor(token) is None

    token3 = store.open_session(actor)
    assert store.session_actor(token3) == actor
    store.close_session(token3)
    assert store.session_actor(token3) is None
    assert _audit(store)[0].action == "auth.logout" and _audit(store)[0].actor == "erin"
    store.close_session("not.a.token")  # nothing to do, no error
    store.close_session(None)


def test_five_failures_then_throttled_per_account_and_per_address(store: AccessStore) -> None:
    store.add_user(ADMIN, "frank", Role.viewer, "frank's password")
    for _ in range(5):
        with pytest.raises(LoginRefused, match="wrong user name or password"):
            store.authenticate("frank", "guess", "10.0.0.4")
    with pytest.raises(LoginRefused, match=r"too many failed logins: try again in \d+ s"):
        store.authenticate("frank", "frank's password", "10.0.0.5")  # even the right password, from elsewhere
    row = _audit(store)[0]
    assert (row.result, row.detail["reason"]) == ("refused", "throttled")
    time.sleep(1.2)  # the first delay is one second
    assert store.authenticate("frank", "frank's password", "10.0.0.5").id == "frank"  # and the count resets
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        store.authenticate("frank", "guess", "10.0.0.5")

    store.add_user(ADMIN, "gina", Role.viewer, "gina's password")
    for i in range(5):  # one address guessing five different names
        with pytest.raises(LoginRefused, match="wrong user name or password"):
            store.authenticate(f"guess{i}", "guess", "10.6.6.6")
    with pytest.raises(LoginRefused, match="try again"):
        store.authenticate("gina", "gina's password", "10.6.6.6")
    assert store.authenticate("gina", "gina's password", "10.0.0.7").id == "gina"  # other addresses are fine


def test_api_keys_create_use_revoke_and_expire(store: AccessStore, db: sa.engine.Engine) -> None:
    new = store.create_key(ADMIN, "ci-bot", Role.operator, expires_days=30, budget_usd=5.0)
    assert new.key.startswith(KEY_PREFIX) and len(new.key) > 40 and new.info.prefix == new.key[:12]
    assert (new.info.name, new.info.role, new.info.budget_usd, new.info.created_by) == ("ci-bot", Role.operator, 5.0, "alice")
    assert new.info.active() and new.info.expires_at is not None and new.info.last_used_at is None
    with db.connect() as conn:  # only the hash is stored
        cells = [str(v) for r in conn.execute(sa.select(api_keys)) for v in r]
    assert new.key not in cells and not any(new.key[12:30] in c for c in cells)
    assert _audit(store)[0].action == "key.create" and _audit(store)[0].detail["key_id"] == new.info.id
    assert new.key not in json.dumps(_audit(store)[0].detail)

    actor = store.key_actor(new.key)
    assert actor == Actor("key:ci-bot", "ci-bot", Role.operator, "api_key") and actor.ledger_user == "key:ci-bot"
    speaking = store.key_actor(new.key, end_user="erin")
    assert speaking.end_user == "erin" and speaking.ledger_user == "erin" and speaking.id == "key:ci-bot"
    assert store.list_keys(ADMIN)[0].last_used_at is not None
    for bad in (None, "", "rok_" + "x" * 43, "sk-" + new.key[4:], new.key + "x", new.key[:-1], "rok_" + "y" * 300):
        assert store.key_actor(bad) is None, bad

    store.revoke_key(ADMIN, new.info.id)
    assert store.key_actor(new.key) is None
    listed = store.list_keys(ADMIN)[0]
    assert listed.revoked_at is not None and not listed.active()
    with pytest.raises(NotFoundError, match="no active API key"):
        store.revoke_key(ADMIN, new.info.id)
    with pytest.raises(PermissionDenied):
        store.revoke_key(actor, new.info.id)  # an operator's key cannot manage keys

    old = store.create_key(ADMIN, "old-bot", Role.viewer, expires_days=1)
    assert store.key_actor(old.key) is not None
    with db.begin() as conn:  # expired behind this process's back (another process, or a clock past the date)
        conn.execute(api_keys.update().where(api_keys.c.id == old.info.id).values(expires_at=utcnow() - timedelta(minutes=1)))
    assert AccessStore(db, AuditLog(db), SECRET).key_actor(old.key) is None  # a process that never saw the key
    time.sleep(getattr(access_service, "KEY_TTL_S", 0.0) + 0.05)  # this one may trust its last lookup that long
    assert store.key_actor(old.key) is None
    assert not next(k for k in store.list_keys(ADMIN) if k.id == old.info.id).active()
    forever = store.create_key(ADMIN, "forever", Role.viewer)
    assert forever.info.expires_at is None and store.key_actor(forever.key).role == Role.viewer

    for kwargs, message in (({"expires_days": 0}, "more than 0"), ({"expires_days": 4000}, "ceiling of 3,650 days"),
                            ({"budget_usd": -1}, "budget must be zero or more")):
        with pytest.raises(InputError, match=message):
            store.create_key(ADMIN, "bad", Role.viewer, **kwargs)
    with pytest.raises(InputError, match="letters, digits"):
        store.create_key(ADMIN, "bad name", Role.viewer)


@pytest.mark.parametrize("name,ok", [
    ("alice", True), ("a.b-c_D9", True), ("x" * 64, True), ("erin@example.com", False), ("", False), ("x" * 65, False),
    ("a b", False), ("zoë", False), ("a/b", False), ("../x", False), ("a\nb", False),
])
def test_user_name_rules(name: str, ok: bool) -> None:
    if ok:
        assert check_user_name(name) == name
    else:
        with pytest.raises(InputError, match="1-64 letters, digits, '-', '_' or '.'"):
            check_user_name(name)


@pytest.mark.parametrize("password,message", [
    ("", "at least 8 characters"), ("seven77", "at least 8 characters"), ("x" * 1025, "at most 1024"),
    ("nul\x00in the middle", "no NUL byte"),
])
def test_password_rules(password: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_password(password)


def test_password_rules_hold_for_every_account_change(store: AccessStore) -> None:
    assert check_password("exactly8") == "exactly8" and check_password("密码密码密码密码")
    with pytest.raises(InputError, match="at least 8"):
        store.add_user(ADMIN, "hank", Role.viewer, "short")
    with pytest.raises(InputError, match="letters, digits"):
        store.add_user(ADMIN, "hank smith", Role.viewer, "long enough")
    store.add_user(ADMIN, "hank", Role.viewer, "long enough")
    with pytest.raises(InputError, match="at least 8"):
        store.reset_password(ADMIN, "hank", "short")
    assert store.authenticate("hank", "long enough").id == "hank"


def test_oidc_accounts(store: AccessStore) -> None:
    first = store.oidc_actor("ivy@example.com", "Ivy", Role.viewer)
    assert first == Actor("ivy@example.com", "Ivy", Role.viewer, "user")
    again = store.oidc_actor("ivy@example.com", "Ivy", Role.operator)  # the mapping changed: the role follows
    assert again.role == Role.operator and store.get_user("ivy@example.com").source == "oidc"
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        store.authenticate("ivy@example.com", "no password account")
    store.set_disabled(ADMIN, "ivy@example.com", True)
    with pytest.raises(LoginRefused, match="disabled"):
        store.oidc_actor("ivy@example.com", "Ivy", Role.operator)


def test_non_admins_manage_nothing(store: AccessStore) -> None:
    store.add_user(ADMIN, "jo", Role.operator, "jo's password")
    jo = store.authenticate("jo", "jo's password")
    calls = [lambda: store.add_user(jo, "kim", Role.viewer, "kim's password"), lambda: store.list_users(jo),
             lambda: store.set_role(jo, "jo", Role.admin), lambda: store.set_disabled(jo, "jo", False),
             lambda: store.reset_password(jo, "jo", "new password"), lambda: store.create_key(jo, "k", Role.viewer),
             lambda: store.list_keys(jo)]
    for call in calls:
        with pytest.raises(PermissionDenied, match="needs the admin role"):
            call()
    assert [u.name for u in store.list_users(ADMIN)] == ["jo"] and store.list_keys(ADMIN) == []
    assert store.get_user("jo").role == Role.operator
    denied = [r for r in _audit(store, 30) if r.result == "denied"]
    assert {r.action for r in denied} >= {"user.add", "user.set_role", "key.create"}
    assert all((r.actor, r.actor_kind, r.actor_role) == ("jo", "user", "operator") for r in denied)


# --- (e) INGEST_ROOTS: the folders a console user may index -----------------------------------------

def _docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "roots.md").write_text("# Roots\n\nINGEST_ROOTS lists the folders the console may index.\n")
    return folder


def test_default_roots_are_the_demo_corpus_and_uploads(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path / "data", ingest_roots="")
    assert s.ingest_root_paths == [s.demo_corpus, tmp_path / "data" / "uploads"]
    custom = Settings(_env_file=None, data_dir=tmp_path, ingest_roots=f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert custom.ingest_root_paths == [tmp_path / "a", tmp_path / "b"]
    inside = _docs(tmp_path / "a" / "team")
    assert check_ingest_root(inside, custom) == inside.resolve()
    with pytest.raises(InputError, match="INGEST_ROOTS"):
        check_ingest_root(tmp_path / "c", custom)
    if s.demo_corpus is not None and (s.demo_corpus / "scifact").is_dir():
        assert check_ingest_root(s.demo_corpus / "scifact", s) == (s.demo_corpus / "scifact").resolve()


@pytest.fixture
def roots(services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's index admin with DEMO_CORPUS at a folder of our own (INGEST_ROOTS unset)."""
    corpus = tmp_path / "demo-corpus"
    corpus.mkdir()
    settings = services.index_admin.settings.model_copy(update={"demo_corpus": corpus, "ingest_roots": ""})
    monkeypatch.setattr(services.index_admin, "settings", settings)
    return corpus


def test_a_console_user_cannot_index_outside_the_roots(services: Services, roots: Path, tmp_path: Path) -> None:
    outside = _docs(tmp_path / "elsewhere")
    link = roots / "escape"
    link.symlink_to(outside, target_is_directory=True)
    before = _index_state(services)
    for source in (outside, Path("/etc"), link, roots / ".." / "elsewhere", "~/"):
        with pytest.raises(InputError, match="INGEST_ROOTS") as err:
            services.index_admin.start_rebuild(OPERATOR, source=source, family="access_roots")
        assert "outside the folders the console may index" in str(err.value) and str(roots.resolve()) in str(err.value)
    with pytest.raises(InputError, match="INGEST_ROOTS"):  # an API key is held to the same roots
        services.index_admin.start_rebuild(api_key("ci", Role.admin), source=outside, family="access_roots")
    assert _index_state(services) == before  # refused before any job


def test_inside_the_roots_a_console_user_may_index(services: Services, roots: Path) -> None:
    inside = _docs(roots / "team" / "notes")
    job = services.jobs.wait(services.index_admin.start_rebuild(OPERATOR, source=inside, family="access_roots"), 120)
    assert job.status == DONE, job.error
    assert job.actor == OPERATOR.id and services.registry.get(job.result["collection"]).created_by == OPERATOR.id
    assert services.store.resolve("rag_chunks") != job.result["collection"]  # a shadow build of its own family


def test_the_system_may_index_any_readable_folder(services: Services, roots: Path, tmp_path: Path) -> None:
    outside = _docs(tmp_path / "server-folder")
    ci = system_actor("ci")
    job = services.jobs.wait(services.index_admin.start_rebuild(ci, source=outside, family="access_system"), 120)
    assert job.status == DONE, job.error
    started = next(r for r in services.audit.recent(20) if r.action == "index.rebuild" and r.result == "started")
    assert (started.actor, started.actor_kind, started.actor_role) == ("ci", "system", "admin")


# --- (f) the `users` and `keys` commands ------------------------------------------------------------

def test_users_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add = cli(data, "--user", "root-shell", "users", "add", "dana", "--role", "operator", "--password-stdin",
              "--display-name", "Dana D.", stdin="correct horse battery\n")
    assert add.returncode == 0, add.stderr
    assert "user dana added as operator" in add.stdout and "correct horse" not in add.stdout + add.stderr
    short = cli(data, "users", "add", "eve", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "error: password: a password has at least 8 characters" in short.stderr
    assert "Traceback" not in short.stderr
    no_stdin = cli(data, "users", "add", "eve", "--role", "viewer")
    assert no_stdin.returncode == 2 and "--password-stdin" in no_stdin.stderr
    bad_name = cli(data, "users", "add", "eve smith", "--role", "viewer", "--password-stdin", stdin="long enough\n")
    assert bad_name.returncode == 2 and "letters, digits" in bad_name.stderr
    bad_role = cli(data, "users", "add", "eve", "--role", "root", "--password-stdin", stdin="long enough\n")
    assert bad_role.returncode == 2 and "invalid choice: 'root'" in bad_role.stderr

    listed = cli(data, "users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [dana] = json.loads(listed.stdout.strip().splitlines()[-1])
    assert (dana["name"], dana["display_name"], dana["role"], dana["disabled"]) == ("dana", "Dana D.", "operator", False)
    assert "password" not in json.dumps(dana).replace('"source": "password"', "")

    assert cli(data, "users", "set-role", "dana", "admin").returncode == 0
    assert cli(data, "users", "disable", "dana").returncode == 0
    store = open_access(Settings(_env_file=None, data_dir=data, database_url=None))
    with pytest.raises(LoginRefused):
        store.authenticate("dana", "correct horse battery")
    reset = cli(data, "users", "reset-password", "dana", "--password-stdin", stdin="a new passphrase\n")
    assert reset.returncode == 0 and "password of dana changed" in reset.stdout
    assert cli(data, "users", "enable", "dana").returncode == 0
    assert store.authenticate("dana", "a new passphrase").role == Role.admin
    with pytest.raises(LoginRefused):
        store.authenticate("dana", "correct horse battery")
    missing = cli(data, "users", "set-role", "ghost", "viewer")
    assert missing.returncode == 2 and "no user 'ghost'" in missing.stderr

    rows = store._audit.search(ADMIN, AuditQuery(action="user.", limit=20))
    added = next(r for r in rows if r.action == "user.add" and r.result == "ok")
    assert (added.actor, added.actor_kind, added.actor_role) == ("root-shell", "system", "admin")
    assert {"user.set_role", "user.disable", "user.reset_password", "user.enable"} <= {r.action for r in rows}


def test_keys_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = cli(data, "--user", "ci", "keys", "create", "ci-bot", "--role", "operator", "--expires", "30", "--budget", "5",
                  "--json")
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout.strip().splitlines()[-1])
    assert set(out) == {"id", "key"} and out["key"].startswith(KEY_PREFIX)
    plain = cli(data, "keys", "create", "viewer-bot", "--role", "viewer")
    assert plain.returncode == 0 and "shown once" in plain.stdout
    second = plain.stdout.strip().splitlines()[-1]
    assert second.startswith(KEY_PREFIX)

    store = open_access(Settings(_env_file=None, data_dir=data, database_url=None))
    actor = store.key_actor(out["key"])
    assert actor is not None and (actor.id, actor.role, actor.kind) == ("key:ci-bot", Role.operator, "api_key")
    assert store.key_actor(second).role == Role.viewer

    listed = cli(data, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = {k["name"]: k for k in json.loads(listed.stdout.strip().splitlines()[-1])}
    assert keys["ci-bot"]["id"] == out["id"] and keys["ci-bot"]["active"] and keys["ci-bot"]["budget_usd"] == 5.0
    assert keys["ci-bot"]["created_by"] == "ci" and keys["ci-bot"]["expires_at"] is not None
    assert out["key"] not in listed.stdout and second not in listed.stdout  # never the secret again
    table = cli(data, "keys", "list")
    assert "ci-bot" in table.stdout and "active" in table.stdout and out["key"] not in table.stdout

    revoked = cli(data, "keys", "revoke", str(out["id"]))
    assert revoked.returncode == 0 and f"key {out['id']} revoked" in revoked.stdout
    assert store.key_actor(out["key"]) is None and store.key_actor(second) is not None
    assert "revoked" in cli(data, "keys", "list").stdout
    again = cli(data, "keys", "revoke", str(out["id"]))
    assert again.returncode == 2 and "no active API key" in again.stderr
    bad = cli(data, "keys", "create", "x", "--role", "viewer", "--expires", "0")
    assert bad.returncode == 2 and "expiry in days must be more than 0" in bad.stderr
