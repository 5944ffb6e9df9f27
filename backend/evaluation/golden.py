"""Golden sets: questions with gold references and reference answers that evaluation runs score against.

A gold reference points at a document span (doc id + character span + text hash + a quote), not
at a chunk id, so it still resolves after the corpus is re-chunked into a new index version.
Items are edited as drafts, reviewed (approved / rejected) and every edit is kept in a history
table. Freezing a set snapshots its approved items as an immutable numbered version."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Sequence

import sqlalchemy as sa
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from qdrant_client import models
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.db import metadata, utcnow
from backend.errors import InputError, NotFoundError
from backend.exports import csv_text
from backend.settings import Settings
from backend.text import check_text, column_length, text_problem

if TYPE_CHECKING:
    from backend.engine.vectorstore import VectorStore

Status = Literal["draft", "approved", "rejected"]
TS = sa.DateTime(timezone=True)

golden_sets = sa.Table(
    "golden_sets", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)
golden_items = sa.Table(
    "golden_items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("set_id", sa.Integer, sa.ForeignKey("golden_sets.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("external_id", sa.String(200), nullable=False, server_default=""),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("references", sa.JSON, nullable=False),
    sa.Column("reference_answer", sa.Text, nullable=False, server_default=""),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=True),
    sa.Column("review_comment", sa.Text, nullable=False, server_default=""),
    sa.Column("source_trace", sa.String(64), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)
golden_item_history = sa.Table(
    "golden_item_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Integer, nullable=False, index=True),
    sa.Column("ts", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
)
golden_set_versions = sa.Table(
    "golden_set_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("set_id", sa.Integer, sa.ForeignKey("golden_sets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("items", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("set_id", "version", name="uq_golden_set_version"),
)


# The engine refuses longer questions, so an item over the limit would fail a whole evaluation run.
DEFAULT_MAX_QUESTION_CHARS: int = Settings.model_fields["max_question_chars"].default
IMPORT_STATUSES = ("draft", "approved")
MAX_OFFSET_DIGITS = 15  # span offsets: far beyond any document (int() of a 5000-digit string raises ValueError)


def _text(v: str, *, multiline: bool = False, max_chars: int | None = None) -> str:
    """A pydantic field check: ValueError, so the parser names the row and the field."""
    problem = text_problem(v, multiline=multiline, max_chars=max_chars)
    if problem:
        raise ValueError(problem)
    return v


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class GoldRef(BaseModel):
    """A span of a document that answers the question; `quote` lets a run check it still matches."""

    doc_id: str
    start: int = Field(0, ge=0, le=10**MAX_OFFSET_DIGITS)
    end: int | None = Field(None, ge=0, le=10**MAX_OFFSET_DIGITS)  # None: the whole document
    text_hash: str = ""
    quote: str = ""

    @field_validator("doc_id")
    @classmethod
    def _doc_id(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("document id is empty")
        return _text(v)

    @field_validator("text_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        return _text(v)

    @field_validator("quote")
    @classmethod
    def _quote(cls, v: str) -> str:
        return _text(v, multiline=True)

    @model_validator(mode="after")
    def _span(self) -> "GoldRef":
        """An empty or reversed span overlaps no chunk: the item could never be found."""
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"the span end {self.end} is not after its start {self.start}")
        return self

    def overlaps(self, doc_id: str, start: int, end: int) -> bool:
        if doc_id != self.doc_id:
            return False
        ref_end = self.end if self.end is not None else 10**12
        return start < ref_end and self.start < end


class GoldItem(BaseModel):
    question: str
    references: list[GoldRef] = Field(min_length=1)
    reference_answer: str = ""
    tags: list[str] = []
    external_id: str = ""

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question is empty")
        return _text(v.strip(), multiline=True)

    @field_validator("reference_answer")
    @classmethod
    def _answer(cls, v: str) -> str:
        return _text(v, multiline=True)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return [_text(t) for t in v]

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, v: str) -> str:
        return _text(v, max_chars=column_length(golden_items.c.external_id))


def question_problem(item: GoldItem, max_question_chars: int) -> str:
    """Why the engine would refuse the item's question, or '' (GoldItem knows no settings)."""
    n = len(item.question)
    return f"question: has {n:,} characters; the limit is {max_question_chars:,}" if n > max_question_chars else ""


def ref_from_chunk(doc_id: str, start: int, end: int, text: str) -> GoldRef:
    """The reference an annotator makes by ticking a retrieved chunk."""
    return GoldRef(doc_id=doc_id, start=start, end=end, text_hash=text_hash(text), quote=text[:300])


@dataclass(frozen=True)
class GoldenSet:
    """A set as listed: its items per status and its latest frozen version (None: never frozen)."""
    id: int
    name: str
    description: str
    created_at: datetime
    created_by: str
    draft: int
    approved: int
    rejected: int
    latest_version: int | None


@dataclass(frozen=True)
class SetItem:
    """An item of a set's working copy as stored: the gold item plus its review state."""
    id: int
    set_id: int
    external_id: str
    question: str
    references: tuple[GoldRef, ...]
    reference_answer: str
    tags: tuple[str, ...]
    status: Status
    author: str
    reviewer: str | None
    review_comment: str
    source_trace: str | None  # the request id of the chat answer the item came from
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> "SetItem":
        m = dict(row._mapping)
        return cls(**{**m, "references": tuple(GoldRef.model_validate(r) for r in m["references"]),
                      "tags": tuple(m["tags"])})

    def gold(self) -> GoldItem:
        """What runs score and exports write (no review state)."""
        return GoldItem(question=self.question, references=list(self.references), reference_answer=self.reference_answer,
                        tags=list(self.tags), external_id=self.external_id)


@dataclass(frozen=True)
class ItemChange:
    """One entry of an item's history; `before` and `after` are the JSON snapshots of what changed."""
    id: int
    item_id: int
    ts: datetime
    actor: str
    action: str
    before: dict | None
    after: dict | None


@dataclass(frozen=True)
class AuthorCount:
    """How many items of a set one annotator has in one status."""
    author: str
    status: Status
    n: int


@dataclass(frozen=True)
class Neighbours:
    """The chunks of a document just before and just after one chunk, in document order. Each is the
    vector store's payload (plus `point_id`): its keys are whatever the index wrote."""
    before: tuple[dict, ...]
    after: tuple[dict, ...]


class GoldenSets:
    def __init__(self, engine: Engine, audit: AuditLog, max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS):
        self._db, self._audit, self.max_question_chars = engine, audit, max_question_chars

    # --- sets ---------------------------------------------------------------------------------
    def create(self, name: str, actor: Actor, description: str = "") -> int:
        name = _set_name(name)
        check_text(description, "the description", multiline=True)
        with self._audit.action(actor, "golden.create", name, need=Action.annotate):
            with self._db.begin() as conn:
                return self._insert_set(conn, name, actor, description)

    @staticmethod
    def _insert_set(conn: sa.Connection, name: str, actor: Actor, description: str = "") -> int:
        if conn.execute(sa.select(golden_sets.c.id).where(golden_sets.c.name == name)).first():
            raise InputError(f"a golden set named '{name}' exists")
        return conn.execute(golden_sets.insert().values(
            name=name, description=description, created_at=utcnow(), created_by=actor.id)).inserted_primary_key[0]

    def set_id(self, name: str) -> int:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(golden_sets.c.id).where(golden_sets.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"unknown golden set '{name}'")
        return row.id

    def list_sets(self) -> list[GoldenSet]:
        """Every set with item counts per status and its latest frozen version."""
        counts = (
            sa.select(golden_items.c.set_id, golden_items.c.status, sa.func.count().label("n"))
            .group_by(golden_items.c.set_id, golden_items.c.status).subquery()
        )
        latest = sa.select(golden_set_versions.c.set_id, sa.func.max(golden_set_versions.c.version).label("v")) \
            .group_by(golden_set_versions.c.set_id).subquery()
        with self._db.connect() as conn:
            sets = conn.execute(sa.select(golden_sets).order_by(golden_sets.c.name)).all()
            per = conn.execute(sa.select(counts)).all()
            versions = {r.set_id: r.v for r in conn.execute(sa.select(latest))}
        out = []
        for s in sets:
            n = {"draft": 0, "approved": 0, "rejected": 0} | {r.status: r.n for r in per if r.set_id == s.id}
            out.append(GoldenSet(**s._mapping, **n, latest_version=versions.get(s.id)))
        return out

    # --- items --------------------------------------------------------------------------------
    def add_item(self, set_name: str, item: GoldItem, actor: Actor, status: Status = "draft",
                 source_trace: str | None = None) -> int:
        self._audit.require(actor, Action.annotate, "golden.item.create", set_name)
        item = self._checked(item, "the item")
        if source_trace is not None:
            check_text(source_trace, "the source trace", max_chars=column_length(golden_items.c.source_trace))
        if status not in ("draft", "approved", "rejected"):
            raise InputError(f"unknown status '{status}'")
        sid = self.set_id(set_name)
        now = utcnow()
        values = dict(set_id=sid, question=item.question, references=[r.model_dump() for r in item.references],
                      reference_answer=item.reference_answer, tags=item.tags, external_id=item.external_id,
                      status=status, author=actor.id, source_trace=source_trace, created_at=now, updated_at=now)
        with self._db.begin() as conn:
            item_id = conn.execute(golden_items.insert().values(**values)).inserted_primary_key[0]
            self._history(conn, item_id, actor, "create", None, _jsonable(values))
        self._audit.record(actor, "golden.item.create", f"{set_name}#{item_id}", status=status)
        return item_id

    def update_item(self, item_id: int, actor: Actor, **changes: Any) -> None:
        self._audit.require(actor, Action.annotate, "golden.item.edit", str(item_id))
        allowed = {"question", "references", "reference_answer", "tags", "status"}
        if not changes or set(changes) - allowed:
            raise InputError(f"can change only {sorted(allowed)}")
        if changes.get("status", "draft") not in ("draft", "approved", "rejected"):
            raise InputError(f"unknown status '{changes['status']}'")
        with self._db.begin() as conn:
            before = self._get(conn, item_id)
            fields = ("question", "references", "reference_answer", "tags", "external_id")
            item = self._checked({k: changes.get(k, before[k]) for k in fields}, f"item {item_id}")
            changes.update({k: v for k, v in _item_values(item).items() if k in changes})
            conn.execute(golden_items.update().where(golden_items.c.id == item_id).values(**changes, updated_at=utcnow()))
            self._history(conn, item_id, actor, "edit", _jsonable(before), _jsonable({**before, **changes}))
        self._audit.record(actor, "golden.item.edit", str(item_id), fields=sorted(changes))

    def review(self, item_id: int, actor: Actor, approve: bool, comment: str = "") -> None:
        self._audit.require(actor, Action.review, "golden.item.review", str(item_id))
        status = "approved" if approve else "rejected"
        check_text(comment, "the review comment", multiline=True)
        with self._db.begin() as conn:
            before = self._get(conn, item_id)
            conn.execute(golden_items.update().where(golden_items.c.id == item_id).values(
                status=status, reviewer=actor.id, review_comment=comment, updated_at=utcnow()))
            self._history(conn, item_id, actor, status, {"status": before["status"]}, {"status": status, "comment": comment})
        self._audit.record(actor, f"golden.item.{status}", str(item_id), comment=comment)

    def items(self, set_name: str, status: str | None = None) -> list[SetItem]:
        q = sa.select(golden_items).where(golden_items.c.set_id == self.set_id(set_name)).order_by(golden_items.c.id)
        if status:
            q = q.where(golden_items.c.status == status)
        with self._db.connect() as conn:
            return [SetItem.from_row(r) for r in conn.execute(q)]

    def history(self, item_id: int) -> list[ItemChange]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(golden_item_history).where(golden_item_history.c.item_id == item_id)
                                .order_by(golden_item_history.c.id))
            return [ItemChange(**r._mapping) for r in rows]

    def progress(self, set_name: str) -> list[AuthorCount]:
        """Items per author and status: annotator progress counts."""
        q = (sa.select(golden_items.c.author, golden_items.c.status, sa.func.count().label("n"))
             .where(golden_items.c.set_id == self.set_id(set_name))
             .group_by(golden_items.c.author, golden_items.c.status))
        with self._db.connect() as conn:
            return [AuthorCount(**r._mapping) for r in conn.execute(q)]

    # --- versions -----------------------------------------------------------------------------
    def freeze(self, set_name: str, actor: Actor) -> int:
        """Snapshot the approved items as the next immutable version (what runs point at)."""
        sid = self.set_id(set_name)
        approved = self.items(set_name, status="approved")
        if not approved:
            raise InputError(f"golden set '{set_name}' has no approved items to freeze")
        frozen = [{"item_id": r.id, **r.gold().model_dump()} for r in approved]
        with self._audit.action(actor, "golden.freeze", set_name, need=Action.review, items=len(frozen)) as extra:
            with self._db.begin() as conn:
                current = conn.execute(sa.select(sa.func.max(golden_set_versions.c.version))
                                       .where(golden_set_versions.c.set_id == sid)).scalar() or 0
                conn.execute(golden_set_versions.insert().values(
                    set_id=sid, version=current + 1, items=frozen, created_at=utcnow(), created_by=actor.id))
            extra["version"] = current + 1
        return current + 1

    def version_items(self, set_name: str, version: int | None = None) -> tuple[int, list[GoldItem]]:
        sid = self.set_id(set_name)
        q = sa.select(golden_set_versions).where(golden_set_versions.c.set_id == sid)
        q = q.where(golden_set_versions.c.version == version) if version else q.order_by(golden_set_versions.c.version.desc())
        with self._db.connect() as conn:
            row = conn.execute(q.limit(1)).first()
        if row is None:
            raise NotFoundError(f"golden set '{set_name}' has no frozen version" + (f" {version}" if version else ""))
        return row.version, [GoldItem.model_validate(i) for i in row.items]

    # --- import / export ----------------------------------------------------------------------
    def import_items(self, set_name: str, items: list[GoldItem], actor: Actor, status: Status = "approved",
                     *, create: bool = False) -> int:
        """All or nothing, one transaction; every item is checked before anything is written. With
        `create`, a missing set is created in that transaction, so a refused import leaves no empty set."""
        if status not in IMPORT_STATUSES:
            raise InputError(f"items are imported as {' or '.join(IMPORT_STATUSES)}, not '{status}'")
        checked = [self._checked(i, f"item {n}") for n, i in enumerate(items, 1)]
        if not checked:
            raise InputError("nothing to import")
        name = _set_name(set_name) if create else set_name
        now = utcnow()
        rows = [dict(_item_values(i), status=status, author=actor.id, created_at=now, updated_at=now) for i in checked]
        with self._audit.action(actor, "golden.import", name, need=Action.annotate, items=len(rows)) as extra:
            with self._db.begin() as conn:
                found = conn.execute(sa.select(golden_sets.c.id).where(golden_sets.c.name == name)).first()
                if found is None and not create:
                    raise NotFoundError(f"unknown golden set '{name}'")
                sid = found.id if found is not None else self._insert_set(conn, name, actor)
                conn.execute(golden_items.insert(), [dict(r, set_id=sid) for r in rows])
            extra["created"] = found is None
        return len(rows)

    def _checked(self, item: GoldItem | dict, what: str) -> GoldItem:
        """The item re-validated (a GoldItem may have been built with model_construct or changed
        after validation) and its question within the engine's limit, or InputError naming `what`."""
        data = item.model_dump() if isinstance(item, GoldItem) else item
        try:
            checked = GoldItem.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{what}: {_first_error(exc)}") from exc
        problem = question_problem(checked, self.max_question_chars)
        if problem:
            raise InputError(f"{what}: {problem}")
        return checked

    def _get(self, conn: sa.Connection, item_id: int) -> dict:
        row = conn.execute(sa.select(golden_items).where(golden_items.c.id == item_id)).first()
        if row is None:
            raise NotFoundError(f"unknown golden item {item_id}")
        return dict(row._mapping)

    @staticmethod
    def _history(conn: sa.Connection, item_id: int, actor: Actor, action: str, before: dict | None, after: dict | None) -> None:
        conn.execute(golden_item_history.insert().values(item_id=item_id, ts=utcnow(), actor=actor.id, action=action,
                                                         before=before, after=after))


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _set_name(name: object) -> str:
    """A set name stripped and checked against its column (PostgreSQL refuses a longer one)."""
    check_text(name, "the golden set name", max_chars=column_length(golden_sets.c.name))
    name = str(name).strip()
    if not name:
        raise InputError("a golden set needs a name")
    return name


def _item_values(item: GoldItem) -> dict:
    """The golden_items columns an item fills."""
    return dict(question=item.question, references=[r.model_dump() for r in item.references],
                reference_answer=item.reference_answer, tags=item.tags, external_id=item.external_id)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "row"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


# --- file formats ----------------------------------------------------------------------------
def parse_items(data: bytes, filename: str, max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS) -> list[GoldItem]:
    """JSONL (our format or ../shared/datasets queries.jsonl) or CSV in the seed's
    `question | gold_context_ids | reference_answer` form. Any malformed row raises InputError naming
    its line (JSONL) or row (CSV) and the reason; nothing else escapes, so a caller imports all or nothing."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{filename}: not UTF-8 text ({exc})") from exc
    rows = _csv_rows(text, filename) if filename.lower().endswith(".csv") else _jsonl_rows(text, filename)
    items = [_item(where, row, max_question_chars) for where, row in rows]
    if not items:
        raise InputError(f"{filename}: no items")
    return items


def _csv_rows(text: str, filename: str) -> list[tuple[str, dict]]:
    """(where, item dict) per CSV record; a record may span lines, so it is named by row (header = row 1)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    need = {"question", "gold_context_ids"}
    out: list[tuple[str, dict]] = []
    n = 0  # the last row read: the header is row 1
    try:
        header = reader.fieldnames
        n = 1
        if not header or not need <= set(header):
            raise InputError(f"{filename}: the header needs columns {sorted(need)} (and optionally reference_answer, tags)")
        for n, row in enumerate(reader, 2):
            where = f"{filename} row {n}"
            ids = [x.strip() for x in (row.get("gold_context_ids") or "").replace(";", "|").split("|") if x.strip()]
            out.append((where, {"question": row.get("question") or "", "references": [_ref(where, x) for x in ids],
                                "reference_answer": row.get("reference_answer") or "",
                                "tags": [t.strip() for t in (row.get("tags") or "").split(",") if t.strip()]}))
    except csv.Error as exc:  # the reader fails on the record after the last one it returned
        row_no = n + 1
        reason = (f"a field is longer than {csv.field_size_limit():,} characters" if "field limit" in str(exc)
                  else f"not CSV ({exc})")
        raise InputError(f"{filename} row {row_no}: {reason}") from exc
    return out


def _jsonl_rows(text: str, filename: str) -> list[tuple[str, dict]]:
    """(where, item dict) per line. Split on \\n only: str.splitlines also breaks at U+2028, U+0085 and
    other characters that JSON strings may hold raw, which cut a valid line in two."""
    out: list[tuple[str, dict]] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{filename} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting too deep
            raise InputError(f"{where}: not JSON ({type(exc).__name__}: {exc})") from exc
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object")
        if "references" not in row and "gold_ids" in row:  # the shared datasets' queries.jsonl
            row = {"question": row.get("question", ""), "references": _gold_refs(where, row["gold_ids"]),
                   "reference_answer": row.get("answer") or "", "external_id": _external_id(where, row.get("id", ""))}
        out.append((where, row))
    return out


def _json_kind(value: object) -> str:
    """A JSON value's type as the file's author would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _gold_refs(where: str, gold_ids: object) -> list[dict]:
    """`gold_ids` as references: a list of ids (text or whole numbers) in the `doc` or `doc:start-end`
    form. A bare string is refused: iterating it made "doc12" five one-letter references."""
    if not isinstance(gold_ids, list):
        raise InputError(f"{where}: gold_ids: expected a list of document ids, got {_json_kind(gold_ids)}")
    refs = []
    for g in gold_ids:
        if isinstance(g, bool) or not isinstance(g, (str, int)):
            raise InputError(f"{where}: gold_ids: expected document ids (text or whole numbers), got {_json_kind(g)}")
        refs.append(_ref(where, str(g)))
    return refs


def _external_id(where: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: id: expected text or a whole number, got {_json_kind(value)}")
    return str(value)


def _ref(where: str, value: str) -> dict:
    """'doc' or 'doc:start-end' (the chunk id form) -> reference dict."""
    doc, sep, span = value.rpartition(":")
    m = re.fullmatch(r"([0-9]+)-([0-9]+)", span) if sep else None
    if m is None:
        return {"doc_id": value}
    if max(len(m.group(1)), len(m.group(2))) > MAX_OFFSET_DIGITS:
        raise InputError(f"{where}: a span offset of '{doc[:80]}' has over {MAX_OFFSET_DIGITS} digits")
    return {"doc_id": doc, "start": int(m.group(1)), "end": int(m.group(2))}


def _item(where: str, row: dict, max_question_chars: int) -> GoldItem:
    try:
        item = GoldItem.model_validate(row)
    except ValidationError as exc:
        raise InputError(f"{where}: {_first_error(exc)}") from exc
    problem = question_problem(item, max_question_chars)
    if problem:
        raise InputError(f"{where}: {problem}")
    return item


def _gold(item: GoldItem | SetItem) -> GoldItem:
    return item if isinstance(item, GoldItem) else item.gold()


def export_jsonl(items: Sequence[GoldItem | SetItem]) -> str:
    rows = [_gold(i).model_dump() for i in items]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def export_csv(items: Sequence[GoldItem | SetItem]) -> str:
    rows = []
    for g in map(_gold, items):
        ids = "|".join(r.doc_id if r.end is None else f"{r.doc_id}:{r.start}-{r.end}" for r in g.references)
        rows.append([g.question, ids, g.reference_answer, ",".join(g.tags)])
    return csv_text(["question", "gold_context_ids", "reference_answer", "tags"], rows)


def export_ragas(items: Sequence[GoldItem | SetItem], contexts: list[list[str]] | None = None) -> str:
    """JSONL that `ragas.EvaluationDataset.from_jsonl` reads: user_input, reference (the reference
    answer), reference_contexts (the texts of the gold spans: `contexts[i]` when the caller resolved
    them on an index, else each reference's stored quote) and reference_context_ids."""
    out = []
    for n, g in enumerate(map(_gold, items)):
        texts = contexts[n] if contexts is not None and contexts[n] else [r.quote for r in g.references if r.quote]
        ids = [r.doc_id if r.end is None else f"{r.doc_id}:{r.start}-{r.end}" for r in g.references]
        out.append(json.dumps({"user_input": g.question, "reference": g.reference_answer, "reference_contexts": texts,
                               "reference_context_ids": ids}, ensure_ascii=False) + "\n")
    return "".join(out)


def neighbour_chunks(store: "VectorStore", collection: str, doc_id: str, start: int, n: int = 1) -> Neighbours:
    """The `n` chunks of the same document just before and just after the chunk starting at `start`, in
    document order, so an annotator can widen a ticked chunk to its context."""
    flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
    chunks = [{**payload, "point_id": pid} for pid, payload in store.scroll(collection, flt, batch=256)]
    chunks.sort(key=lambda c: (int(c.get("start", 0)), int(c.get("end", 0))))
    before = [c for c in chunks if int(c.get("start", 0)) < start]
    after = [c for c in chunks if int(c.get("start", 0)) > start]
    return Neighbours(before=tuple(before[-n:] if n else ()), after=tuple(after[:n]))
