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
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, ValidationError, field_validator
from qdrant_client import models
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.audit import AuditLog
from backend.db import metadata, utcnow
from backend.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from backend.vectorstore import VectorStore

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


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class GoldRef(BaseModel):
    """A span of a document that answers the question; `quote` lets a run check it still matches."""

    doc_id: str
    start: int = Field(0, ge=0)
    end: int | None = None  # None: the whole document
    text_hash: str = ""
    quote: str = ""

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
        return v.strip()


def ref_from_chunk(doc_id: str, start: int, end: int, text: str) -> GoldRef:
    """The reference an annotator makes by ticking a retrieved chunk."""
    return GoldRef(doc_id=doc_id, start=start, end=end, text_hash=text_hash(text), quote=text[:300])


class GoldenSets:
    def __init__(self, engine: Engine, audit: AuditLog):
        self._db, self._audit = engine, audit

    # --- sets ---------------------------------------------------------------------------------
    def create(self, name: str, actor: Actor, description: str = "") -> int:
        if not name.strip():
            raise InputError("a golden set needs a name")
        with self._audit.action(actor, "golden.create", name, need=Action.annotate):
            with self._db.begin() as conn:
                if conn.execute(sa.select(golden_sets.c.id).where(golden_sets.c.name == name)).first():
                    raise InputError(f"a golden set named '{name}' exists")
                return conn.execute(golden_sets.insert().values(
                    name=name.strip(), description=description, created_at=utcnow(), created_by=actor.id)).inserted_primary_key[0]

    def set_id(self, name: str) -> int:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(golden_sets.c.id).where(golden_sets.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"unknown golden set '{name}'")
        return row.id

    def list_sets(self) -> list[dict]:
        """Every set with item counts per status and its latest frozen version."""
        counts = (
            sa.select(golden_items.c.set_id, golden_items.c.status, sa.func.count().label("n"))
            .group_by(golden_items.c.set_id, golden_items.c.status).subquery()
        )
        latest = sa.select(golden_set_versions.c.set_id, sa.func.max(golden_set_versions.c.version).label("v")) \
            .group_by(golden_set_versions.c.set_id).subquery()
        with self._db.connect() as conn:
            sets = [dict(r._mapping) for r in conn.execute(sa.select(golden_sets).order_by(golden_sets.c.name))]
            per = conn.execute(sa.select(counts)).all()
            versions = {r.set_id: r.v for r in conn.execute(sa.select(latest))}
        for s in sets:
            s.update({st: 0 for st in ("draft", "approved", "rejected")})
            s.update({r.status: r.n for r in per if r.set_id == s["id"]})
            s["latest_version"] = versions.get(s["id"])
        return sets

    # --- items --------------------------------------------------------------------------------
    def add_item(self, set_name: str, item: GoldItem, actor: Actor, status: Status = "draft",
                 source_trace: str | None = None) -> int:
        self._audit.require(actor, Action.annotate, "golden.item.create", set_name)
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
        if "references" in changes:
            changes["references"] = [GoldRef.model_validate(r).model_dump() for r in changes["references"]]
        with self._db.begin() as conn:
            before = self._get(conn, item_id)
            conn.execute(golden_items.update().where(golden_items.c.id == item_id).values(**changes, updated_at=utcnow()))
            self._history(conn, item_id, actor, "edit", _jsonable(before), _jsonable({**before, **changes}))
        self._audit.record(actor, "golden.item.edit", str(item_id), fields=sorted(changes))

    def review(self, item_id: int, actor: Actor, approve: bool, comment: str = "") -> None:
        self._audit.require(actor, Action.review, "golden.item.review", str(item_id))
        status = "approved" if approve else "rejected"
        with self._db.begin() as conn:
            before = self._get(conn, item_id)
            conn.execute(golden_items.update().where(golden_items.c.id == item_id).values(
                status=status, reviewer=actor.id, review_comment=comment, updated_at=utcnow()))
            self._history(conn, item_id, actor, status, {"status": before["status"]}, {"status": status, "comment": comment})
        self._audit.record(actor, f"golden.item.{status}", str(item_id), comment=comment)

    def items(self, set_name: str, status: str | None = None) -> list[dict]:
        q = sa.select(golden_items).where(golden_items.c.set_id == self.set_id(set_name)).order_by(golden_items.c.id)
        if status:
            q = q.where(golden_items.c.status == status)
        with self._db.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def history(self, item_id: int) -> list[dict]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(golden_item_history).where(golden_item_history.c.item_id == item_id)
                                .order_by(golden_item_history.c.id))
            return [dict(r._mapping) for r in rows]

    def progress(self, set_name: str) -> list[dict]:
        """Items per author and status: annotator progress counts."""
        q = (sa.select(golden_items.c.author, golden_items.c.status, sa.func.count().label("n"))
             .where(golden_items.c.set_id == self.set_id(set_name))
             .group_by(golden_items.c.author, golden_items.c.status))
        with self._db.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # --- versions -----------------------------------------------------------------------------
    def freeze(self, set_name: str, actor: Actor) -> int:
        """Snapshot the approved items as the next immutable version (what runs point at)."""
        sid = self.set_id(set_name)
        approved = self.items(set_name, status="approved")
        if not approved:
            raise InputError(f"golden set '{set_name}' has no approved items to freeze")
        frozen = [{"item_id": r["id"], "external_id": r["external_id"], "question": r["question"],
                   "references": r["references"], "reference_answer": r["reference_answer"], "tags": r["tags"]}
                  for r in approved]
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
    def import_items(self, set_name: str, items: list[GoldItem], actor: Actor, status: Status = "approved") -> int:
        """All or nothing: one transaction."""
        sid = self.set_id(set_name)
        now = utcnow()
        rows = [dict(set_id=sid, question=i.question, references=[r.model_dump() for r in i.references],
                     reference_answer=i.reference_answer, tags=i.tags, external_id=i.external_id, status=status,
                     author=actor.id, created_at=now, updated_at=now) for i in items]
        with self._audit.action(actor, "golden.import", set_name, need=Action.annotate, items=len(rows)):
            with self._db.begin() as conn:
                conn.execute(golden_items.insert(), rows)
        return len(rows)

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


# --- file formats ----------------------------------------------------------------------------
def parse_items(data: bytes, filename: str) -> list[GoldItem]:
    """JSONL (our format or ../shared/datasets queries.jsonl) or CSV in the seed's
    `question | gold_context_ids | reference_answer` form. Raises InputError naming the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{filename}: not UTF-8 text ({exc})") from exc
    items: list[GoldItem] = []
    if filename.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        need = {"question", "gold_context_ids"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise InputError(f"{filename}: the header needs columns {sorted(need)} (and optionally reference_answer, tags)")
        for n, row in enumerate(reader, 2):
            ids = [x.strip() for x in (row.get("gold_context_ids") or "").replace(";", "|").split("|") if x.strip()]
            items.append(_item(filename, n, {"question": row.get("question") or "", "references": [_ref(x) for x in ids],
                                             "reference_answer": row.get("reference_answer") or "",
                                             "tags": [t for t in (row.get("tags") or "").split(",") if t.strip()]}))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{filename} line {n}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InputError(f"{filename} line {n}: expected a JSON object")
            if "references" not in row and "gold_ids" in row:  # the shared datasets' queries.jsonl
                row = {"question": row.get("question", ""), "references": [{"doc_id": str(g)} for g in row["gold_ids"]],
                       "reference_answer": row.get("answer") or "", "external_id": str(row.get("id", ""))}
            items.append(_item(filename, n, row))
    if not items:
        raise InputError(f"{filename}: no items")
    return items


def _ref(value: str) -> dict:
    """'doc' or 'doc:start-end' (the chunk id form) -> reference dict."""
    doc, sep, span = value.rpartition(":")
    if sep and re.fullmatch(r"\d+-\d+", span):
        start, end = span.split("-")
        return {"doc_id": doc, "start": int(start), "end": int(end)}
    return {"doc_id": value}


def _item(filename: str, n: int, row: dict) -> GoldItem:
    try:
        return GoldItem.model_validate(row)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "row"
        raise InputError(f"{filename} line {n}: {where}: {first['msg']}") from exc


def export_jsonl(items: list[dict | GoldItem]) -> str:
    rows = [i.model_dump() if isinstance(i, GoldItem) else GoldItem.model_validate(i).model_dump() for i in items]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def export_csv(items: list[dict | GoldItem]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["question", "gold_context_ids", "reference_answer", "tags"])
    for i in items:
        g = i if isinstance(i, GoldItem) else GoldItem.model_validate(i)
        ids = "|".join(r.doc_id if r.end is None else f"{r.doc_id}:{r.start}-{r.end}" for r in g.references)
        w.writerow([g.question, ids, g.reference_answer, ",".join(g.tags)])
    return out.getvalue()


def export_ragas(items: list[dict | GoldItem], contexts: list[list[str]] | None = None) -> str:
    """JSONL that `ragas.EvaluationDataset.from_jsonl` reads: user_input, reference (the reference
    answer), reference_contexts (the texts of the gold spans: `contexts[i]` when the caller resolved
    them on an index, else each reference's stored quote) and reference_context_ids."""
    out = []
    for n, i in enumerate(items):
        g = i if isinstance(i, GoldItem) else GoldItem.model_validate(i)
        texts = contexts[n] if contexts is not None and contexts[n] else [r.quote for r in g.references if r.quote]
        ids = [r.doc_id if r.end is None else f"{r.doc_id}:{r.start}-{r.end}" for r in g.references]
        out.append(json.dumps({"user_input": g.question, "reference": g.reference_answer, "reference_contexts": texts,
                               "reference_context_ids": ids}, ensure_ascii=False) + "\n")
    return "".join(out)


def neighbour_chunks(store: "VectorStore", collection: str, doc_id: str, start: int, n: int = 1) -> dict[str, list[dict]]:
    """The `n` chunks of the same document just before and just after the chunk starting at `start`, in
    document order (payload dicts), so an annotator can widen a ticked chunk to its context."""
    flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
    chunks: list[dict] = []
    offset = None
    while True:
        points, offset = store.client.scroll(collection, scroll_filter=flt, limit=256, offset=offset,
                                             with_payload=True, with_vectors=False)
        chunks.extend({**(p.payload or {}), "point_id": str(p.id)} for p in points)
        if offset is None:
            break
    chunks.sort(key=lambda c: (int(c.get("start", 0)), int(c.get("end", 0))))
    before = [c for c in chunks if int(c.get("start", 0)) < start]
    after = [c for c in chunks if int(c.get("start", 0)) > start]
    return {"before": before[-n:] if n else [], "after": after[:n]}
