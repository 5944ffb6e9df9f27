"""Text the services write is checked at the boundary with one rule for SQLite and PostgreSQL
(issue 14 #8): PostgreSQL refuses NUL, lone surrogates and values over VARCHAR(n), SQLite stores
all three, so the same inputs run on both and must give the same InputError, and nothing written."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from actors import Role, user
from services import PostgresServer

from backend.access import PermissionDenied
from backend.access.audit import AuditLog
from backend.access.service import AccessStore, LoginRefused
from backend.access.tables import api_keys, users
from backend.db import audit_log, index_versions, make_engine, migrate, traces, utcnow
from backend.engine.policy import MAX_NAME_CHARS, Policy, PolicyStore, parse_policy
from backend.engine.query_engine import QueryEngine
from backend.errors import InputError
from backend.evaluation.golden import GoldenSets, GoldItem, GoldRef, golden_items, golden_sets
from backend.evaluation.traces import MAX_COMMENT_CHARS, TraceRows, TraceStore
from backend.index_admin.service import MAX_PATH_CHARS, MAX_UPLOAD_NAME_CHARS, IndexAdmin
from backend.index_admin.tables import alias_history
from backend.ledger.journal import WriteJournal
from backend.releases.manager import MAX_REASON_CHARS, ReleaseManager, releases
from backend.settings import Settings
from backend.text import check_text, column_length, control_chars, text_problem

ANN = user("ann", Role.operator)
BAD_TEXT = ["nul\x00byte", "escape\x1b[31m", "bell\x07", "lone \ud800 surrogate"]
SET_NAME_MAX = column_length(golden_sets.c.name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Engine]:  # noqa: ANN001
    """A fresh migrated database of each kind: the same inputs run on both."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'text.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"text_{uuid.uuid4().hex[:10]}")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_check_text_names_the_field_and_never_strips() -> None:
    assert check_text("two\nlines\tand a tab", "the note", multiline=True) == "two\nlines\tand a tab"
    with pytest.raises(InputError, match=r"the name holds a control character \(U\+000A\)"):
        check_text("two\nlines", "the name")
    for bad in BAD_TEXT:
        with pytest.raises(InputError, match="the note holds a control character"):
            check_text(bad, "the note", multiline=True)
    with pytest.raises(InputError, match="the id has 6 characters; the limit is 5"):
        check_text("abcdef", "the id", max_chars=5)
    assert text_problem(None) == "must be text, not NoneType"


def test_the_engine_refuses_a_lone_surrogate_before_any_paid_call() -> None:
    """A lone surrogate passed the question check, then failed the trace and ledger writes on
    PostgreSQL after the model was paid (no UTF-8 encoding exists for it)."""
    engine = QueryEngine.__new__(QueryEngine)  # validate() reads only the settings
    engine.settings = Settings(_env_file=None)
    with pytest.raises(InputError, match=r"the question holds a control character \(U\+D800\)"):
        engine.validate("why \ud800?", Policy())


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_control_characters_are_refused_before_any_write(db: sa.Engine, bad: str) -> None:
    golden, store = GoldenSets(db, AuditLog(db)), PolicyStore(db, AuditLog(db))
    with pytest.raises(InputError, match="the golden set name holds a control character"):
        golden.create(f"set {bad}", ANN)
    with pytest.raises(InputError, match="the description holds a control character"):
        golden.create("described", ANN, description=bad)
    sid = golden.create("texts", ANN)
    item = golden.add_item("texts", GoldItem(question="q", references=[GoldRef(doc_id="d")]), ANN)
    with pytest.raises(InputError, match="the review comment holds a control character"):
        golden.review(item, ANN, approve=True, comment=bad)
    with pytest.raises(InputError, match=f"item {item}: question: holds a control character"):
        golden.update_item(item, ANN, question=bad)
    with pytest.raises(InputError, match=f"item {item}: references.0.doc_id: holds a control character"):
        golden.update_item(item, ANN, references=[{"doc_id": bad}])
    with pytest.raises(InputError, match="item 1: tags: holds a control character"):
        golden.import_items("texts", [GoldItem.model_construct(question="q", references=[GoldRef(doc_id="d")],
                                                               reference_answer="", tags=[bad], external_id="")], ANN)
    with pytest.raises(InputError, match="the policy note holds a control character"):
        store.save(Policy(name="p"), ANN, note=bad)
    with pytest.raises(InputError, match="policy: name: holds a control character"):
        parse_policy(f'{{"name": {__import__("json").dumps(bad)}}}')
    assert golden.items("texts")[0].question == "q" and golden.items("texts")[0].status == "draft"
    assert [h.action for h in golden.history(item)] == ["create"]
    assert _count(db, golden_sets) == 1 and _count(db, golden_items) == 1 and sid
    assert store.list() == []


def test_lengths_are_checked_against_the_columns(db: sa.Engine) -> None:
    golden = GoldenSets(db, AuditLog(db))
    with pytest.raises(InputError, match=f"the golden set name has {SET_NAME_MAX + 1} characters; the limit is {SET_NAME_MAX}"):
        golden.create("n" * (SET_NAME_MAX + 1), ANN)
    longest = "n" * SET_NAME_MAX
    golden.create(longest, ANN)  # the limit itself fits on both databases
    ext_max = column_length(golden_items.c.external_id)
    too_long = GoldItem.model_construct(question="q", references=[GoldRef(doc_id="d")], reference_answer="", tags=[],
                                        external_id="e" * (ext_max + 1))
    with pytest.raises(InputError, match=f"item 2: external_id: has {ext_max + 1} characters; the limit is {ext_max}"):
        golden.import_items(longest, [GoldItem(question="q", references=[GoldRef(doc_id="d")]), too_long], ANN)
    assert golden.items(longest) == []  # all or nothing
    golden.import_items(longest, [GoldItem(question="q", references=[GoldRef(doc_id="d")], external_id="e" * ext_max)], ANN)
    assert golden.items(longest)[0].external_id == "e" * ext_max


def test_a_refused_import_leaves_no_new_set(db: sa.Engine) -> None:
    golden = GoldenSets(db, AuditLog(db), max_question_chars=50)
    good = GoldItem(question="q", references=[GoldRef(doc_id="d")])
    with pytest.raises(InputError, match="item 2: question: has 51 characters; the limit is 50"):
        golden.import_items("fresh", [good, GoldItem(question="x" * 51, references=[GoldRef(doc_id="d")])], ANN, create=True)
    with pytest.raises(InputError, match="the golden set name holds a control character"):
        golden.import_items("fresh\x00", [good], ANN, create=True)
    assert _count(db, golden_sets) == 0
    assert golden.import_items("fresh", [good], ANN, create=True) == 1
    with db.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.action, audit_log.c.result, audit_log.c.detail)).all()
    assert [(r.action, r.result, r.detail["created"]) for r in rows] == [("golden.import", "ok", True)]


def test_the_longest_policy_name_still_fits_the_trace_of_a_paid_answer(db: sa.Engine) -> None:
    """The trace is written after the model was paid: its `policy` column holds the label 'name vN',
    so the name limit leaves room for it, and the JSON trace takes any text a model returns."""
    store = PolicyStore(db, AuditLog(db))
    with pytest.raises(InputError, match=f"policy: name: has {MAX_NAME_CHARS + 1} characters; the limit is {MAX_NAME_CHARS}"):
        parse_policy(f'{{"name": "{"p" * (MAX_NAME_CHARS + 1)}"}}')
    with pytest.raises(InputError, match="policy: model: has 201 characters"):
        parse_policy(f'{{"model": "{"m" * 201}"}}')
    saved = store.save(Policy(name="p" * MAX_NAME_CHARS), ANN)
    label = saved.model_copy(update={"version": 10**10 - 1}).label()  # the widest version ten digits allow
    with db.begin() as conn:
        conn.execute(traces.insert().values(request_id="r1", ts=utcnow(), user="u" * column_length(traces.c.user),
                                            question="q", policy=label, collection="c",
                                            trace={"answer": "a model's \x00 reply"}))
    with db.connect() as conn:
        assert conn.execute(sa.select(traces.c.policy)).scalar_one() == label


# --- traces, releases, index admin, access and the audit itself (issue 14 #8) ---------------------
# Each refused value runs on both databases and must give the same InputError naming the field,
# nothing written, and an audit record of the refusal that PostgreSQL could store.
ODD_TEXT = BAD_TEXT + ["tab\tthen ESC \x1b"]  # single-line fields refuse the tab too


def _audit_rows(engine: sa.Engine, action: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)).all()


def _no_raw_control(row: sa.Row) -> None:
    """The stored record holds the refused text escaped (its JSON went through PostgreSQL too)."""
    for text in (row.target, row.actor, __import__("json").dumps(row.detail, ensure_ascii=False)):
        assert control_chars(text) == "", text


def test_the_audit_records_any_value_on_both_databases(db: sa.Engine) -> None:
    """The record of a refusal holds the refused value: escaped and cut only inside the audit."""
    audit = AuditLog(db)
    odd = user("mallory\x00\ud800", Role.viewer)
    audit.record(odd, "test.odd", "target \x00 \x1b \ud800" + "t" * 600, result="error",
                 reason="r\x00\x1b\ud800", long="x" * 50_000, nested={"k\x00": ["v\ud800", float("inf")]},
                 nan=float("nan"), fine="two\nlines\tand é 中文")
    row = _audit_rows(db, "test.odd")[0]
    _no_raw_control(row)
    assert row.actor == "mallory\\u0000\\ud800" and row.target.startswith("target \\u0000 \\u001b \\ud800ttt")
    assert len(row.target) == 500
    assert row.detail["reason"] == "r\\u0000\\u001b\\ud800" and row.detail["fine"] == "two\nlines\tand é 中文"
    assert row.detail["long"].endswith("... (50,000 characters)") and len(row.detail["long"]) < 1_100
    assert row.detail["nested"] == {"k\\u0000": ["v\\ud800", "inf"]} and row.detail["nan"] == "nan"


@pytest.fixture
def journal(tmp_path, db: sa.Engine) -> Iterator[WriteJournal]:  # noqa: ANN001
    j = WriteJournal(db, tmp_path / "journal", {"trace": TraceRows()})
    yield j
    j.close()


def test_feedback_comments_are_checked_before_any_write(db: sa.Engine, journal: WriteJournal) -> None:
    store = TraceStore(db, AuditLog(db), journal)
    with db.begin() as conn:
        conn.execute(traces.insert().values(request_id="r1", ts=utcnow(), user="u", question="q", policy="p",
                                            collection="c", trace={}))
    for bad in BAD_TEXT:
        with pytest.raises(InputError, match="the feedback comment holds a control character"):
            store.feedback("r1", -1, ANN, comment=bad)
    with pytest.raises(InputError, match="the feedback comment has 4,001 characters; the limit is 4,000"):
        store.feedback("r1", -1, ANN, comment="c" * (MAX_COMMENT_CHARS + 1))
    rid_max = column_length(traces.c.request_id)
    for bad_id in ("r\x00", "r" * (rid_max + 1)):
        with pytest.raises(InputError, match="the request id"):
            store.feedback(bad_id, 1, ANN)
    assert store.get("r1").feedback is None and store.get("r1").comment == ""
    refused = _audit_rows(db, "trace.feedback")
    assert [r.result for r in refused] == ["error"] * (len(BAD_TEXT) + 3)
    for row in refused:
        _no_raw_control(row)
    longest = "two lines\n\t" + "c" * (MAX_COMMENT_CHARS - 11)
    store.feedback("r1", -1, ANN, comment=longest)  # newlines, tabs and the limit itself are fine
    assert store.get("r1").comment == longest and store.get("r1").feedback == -1


class _Store:
    """The vector store calls a ReleaseManager makes, for two collections behind alias 'fam'."""

    def resolve(self, name: str) -> str:
        return name

    def collections(self) -> list[str]:
        return ["fam_v1", "fam_v2"]

    def aliases(self) -> dict[str, str]:
        return {"fam": "fam_v1"}

    def point_alias(self, alias: str, collection: str) -> str:
        return "fam_v1"


def test_release_notes_and_reasons_are_checked_before_any_write(db: sa.Engine) -> None:
    audit = AuditLog(db)
    policies = PolicyStore(db, audit)
    policies.save(Policy(name="p"), ANN)
    manager = ReleaseManager(db, audit, policies, _Store(), "fam")  # type: ignore[arg-type]
    admin = user("ada", Role.admin)
    too_long = "r" * (MAX_REASON_CHARS + 1)
    for bad in BAD_TEXT + [too_long]:
        with pytest.raises(InputError, match="the release note"):
            manager.create(admin, "p", index="fam_v1", note=bad)
    with pytest.raises(InputError, match="the policy name holds a control character"):
        manager.create(admin, "p\x00", index="fam_v1")
    with pytest.raises(InputError, match=f"the index has {column_length(releases.c.collection) + 1} characters"):
        manager.create(admin, "p", index="i" * (column_length(releases.c.collection) + 1))
    assert manager.list() == []
    r1 = manager.create(admin, "p", index="fam_v1", note="first\n\tnote").id
    r2 = manager.create(admin, "p", index="fam_v2").id
    for bad in BAD_TEXT + [too_long]:
        with pytest.raises(InputError, match="the reason"):
            manager.set_current(admin, r1, reason=bad)
    manager.set_current(admin, r1, reason="first\nrelease")
    for bad in BAD_TEXT + [too_long]:
        with pytest.raises(InputError, match="the reason"):
            manager.set_candidate(admin, r2, 0.5, reason=bad)
    manager.set_candidate(admin, r2, 0.5)
    for call in (lambda r: manager.set_share(admin, 0.2, reason=r), lambda r: manager.promote(admin, reason=r),
                 lambda r: manager.clear_candidate(admin, reason=r)):
        for bad in BAD_TEXT + [too_long]:
            with pytest.raises(InputError, match="the reason"):
                call(bad)
    state = manager.state()
    assert (state.current.id, state.candidate.id, state.share) == (r1, r2, 0.5)
    manager.promote(admin)
    for bad in BAD_TEXT + [too_long]:
        with pytest.raises(InputError, match="the reason"):
            manager.rollback(admin, reason=bad)
    assert manager.state().current.id == r2
    assert [e.action for e in manager.events()] == ["promote", "set_candidate", "set_current"]
    for args, field in ((dict(question="q\x00"), "the question"), (dict(policy_a="a\ud800"), "policy A"),
                        (dict(request_b="r" * 65), "request B")):
        with pytest.raises(InputError, match=field):
            manager.vote(ANN, **{**dict(question="q", policy_a="a", policy_b="b", request_a="ra", request_b="rb",
                                        shown_first="a", blind=True, vote="a"), **args})
    assert manager.vote_counts() == {"a": 0, "b": 0, "tie": 0, "both_bad": 0}
    refused = [r for r in _audit_rows(db, "release.create") + _audit_rows(db, "release.rollback") if r.result == "error"]
    assert len(refused) == 2 * (len(BAD_TEXT) + 1)
    for row in refused:
        _no_raw_control(row)
    # A viewer's refused reason is recorded as 'denied' (the role check comes first), and stored.
    with pytest.raises(PermissionDenied):
        manager.rollback(user("vic", Role.viewer), reason="\x00" + too_long)
    denied = _audit_rows(db, "release.rollback")[-1]
    assert denied.result == "denied" and denied.detail["reason"].startswith("\\u0000rrr")
    _no_raw_control(denied)


def _index_admin(db: sa.Engine) -> IndexAdmin:
    """An IndexAdmin whose checks can run: each refusal below comes before any store, registry
    or job call (so none is wired: reaching one fails the test)."""
    admin = IndexAdmin.__new__(IndexAdmin)
    admin.settings, admin.db, admin.audit, admin.releases = Settings(_env_file=None), db, AuditLog(db), None
    return admin


def test_index_admin_names_and_reasons_are_checked_before_any_write(db: sa.Engine) -> None:
    admin, op = _index_admin(db), user("otto", Role.admin)
    too_long = "r" * (MAX_REASON_CHARS + 1)
    name_max = column_length(index_versions.c.collection)
    for bad in ODD_TEXT + ["c" * (name_max + 1)]:
        with pytest.raises(InputError, match="the index version"):
            admin.promote(op, bad)
        with pytest.raises(InputError, match="the alias"):
            admin.promote(op, "fam_v2", alias=bad)
        with pytest.raises(InputError, match="the alias"):
            admin.rollback(op, alias=bad)
        with pytest.raises(InputError, match="the index version"):
            admin.delete(op, bad)
        with pytest.raises(InputError, match="the index family|not a valid index family"):
            admin.start_rebuild(op, source="/nowhere", family=bad)
        with pytest.raises(InputError, match="the index version"):
            admin.start_gate(op, bad, "/nowhere")
    for bad in BAD_TEXT + [too_long]:
        with pytest.raises(InputError, match="the reason"):
            admin.promote(op, "fam_v2", reason=bad)
        with pytest.raises(InputError, match="the reason"):
            admin.rollback(op, alias="fam", reason=bad)
    for bad in ODD_TEXT + ["d" * (MAX_PATH_CHARS + 1)]:
        with pytest.raises(InputError, match="the source path"):
            admin.start_rebuild(op, source=f"/{bad}")
        with pytest.raises(InputError, match="the gate dataset"):
            admin.start_gate(op, "fam_v2", f"/{bad}")
    for bad in ODD_TEXT + ["u" * (MAX_UPLOAD_NAME_CHARS + 1)]:
        with pytest.raises(InputError, match="the upload's file name"):
            admin.start_rebuild(op, upload=(bad, b"x"))
    assert _count(db, alias_history) == 0 and _count(db, index_versions) == 0
    refused = [r for a in ("index.promote", "index.rollback", "index.delete") for r in _audit_rows(db, a)]
    assert refused and {r.result for r in refused} == {"error"}
    for row in refused:
        _no_raw_control(row)
    with pytest.raises(PermissionDenied):
        admin.delete(user("vic", Role.viewer), "gone\x00")
    denied = _audit_rows(db, "index.delete")[-1]
    assert (denied.result, denied.target) == ("denied", "gone\\u0000")


def test_access_names_budgets_and_expiries_are_checked_before_any_write(db: sa.Engine) -> None:
    store, admin = AccessStore(db, AuditLog(db), "s" * 32), user("ada", Role.admin)
    display_max = column_length(users.c.display_name)
    for bad in ODD_TEXT + ["u" * 65]:
        with pytest.raises(InputError, match="a user name is 1-64 letters"):
            store.add_user(admin, bad, Role.viewer, "a-long-password")
        with pytest.raises(InputError, match="a key name is 1-64 letters"):
            store.create_key(admin, bad, Role.viewer)
        with pytest.raises(InputError, match="the user name"):
            store.set_role(admin, bad, Role.admin)
    for bad in ODD_TEXT + ["d" * (display_max + 1)]:
        with pytest.raises(InputError, match="the display name"):
            store.add_user(admin, "dana", Role.viewer, "a-long-password", display_name=bad)
        with pytest.raises(LoginRefused, match="the identity provider's display name"):
            store.oidc_actor("erin@example.com", bad, Role.viewer)
    with pytest.raises(LoginRefused, match="the identity provider's e-mail address has 65 characters"):
        store.oidc_actor("e" * 53 + "@example.com", "Erin", Role.viewer)
    for budget, message in ((float("inf"), "finite"), (float("nan"), "finite"), ("1e999", "finite"),
                            (-1, "zero or more"), (1e12, "above the ceiling"), ("ten", "not a number"), (True, "not a number")):
        with pytest.raises(InputError, match=f"the key's budget .*{message}"):
            store.create_key(admin, "ci", Role.viewer, budget_usd=budget)
    for days, message in ((float("inf"), "finite"), (float("nan"), "finite"), (0, "more than 0"), (-1, "zero or more"),
                          (3651, "above the ceiling")):
        with pytest.raises(InputError, match=f"the key's expiry in days .*{message}"):
            store.create_key(admin, "ci", Role.viewer, expires_days=days)
    assert _count(db, users) == 0 and _count(db, api_keys) == 0
    refused = _audit_rows(db, "user.add") + _audit_rows(db, "key.create") + _audit_rows(db, "user.set_role")
    assert refused and {r.result for r in refused} == {"error"}
    for row in refused:
        _no_raw_control(row)
    with pytest.raises(PermissionDenied):
        store.add_user(user("vic", Role.viewer), "x\x00", Role.admin, None)
    assert _audit_rows(db, "user.add")[-1].result == "denied"
    assert store.add_user(admin, "dana", Role.viewer, "a-long-password", display_name="d" * display_max).display_name \
        == "d" * display_max
    key = store.create_key(admin, "ci", Role.viewer, expires_days="30", budget_usd=" 2.5 ")
    assert key.info.budget_usd == 2.5 and key.info.expires_at is not None
