"""Text the services write is checked at the boundary with one rule for SQLite and PostgreSQL
(issue 14 #8): PostgreSQL refuses NUL, lone surrogates and values over VARCHAR(n), SQLite stores
all three, so the same inputs run on both and must give the same InputError, and nothing written."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from backend.audit import AuditLog
from backend.db import audit_log, make_engine, migrate, traces, utcnow
from backend.engine import QueryEngine
from backend.errors import InputError
from backend.golden import GoldenSets, GoldItem, GoldRef, golden_items, golden_sets
from backend.policy import MAX_NAME_CHARS, Policy, PolicyStore, parse_policy
from backend.settings import Settings
from backend.text import check_text, column_length, text_problem
from actors import Role, user
from services import PostgresServer

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
    assert golden.items("texts")[0]["question"] == "q" and golden.items("texts")[0]["status"] == "draft"
    assert [h["action"] for h in golden.history(item)] == ["create"]
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
    assert golden.items(longest)[0]["external_id"] == "e" * ext_max


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
