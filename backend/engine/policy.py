"""Policies: a named, versioned, typed set of retrieval and generation knobs.

Saving a policy with a name that exists creates the next version; old versions are never
rewritten, so evaluation runs and A/B releases can point at an exact version."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Sequence

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.db import policies, traces, utcnow
from backend.errors import InputError, NotFoundError
from backend.ledger.store import ledger
from backend.text import check_text, column_length, text_problem

PROMPT_TEMPLATES: dict[str, str] = {
    "default": (
        "You answer questions using only the numbered sources below. Cite every claim with the source "
        "number in square brackets, like [1] or [2][3]. If the sources do not contain the answer, reply exactly: "
        "\"Not enough context to answer.\" Answer in the language of the question."
    ),
    "concise": (
        "Answer in at most two sentences using only the numbered sources, citing them as [n]. "
        "If they do not contain the answer, reply exactly: \"Not enough context to answer.\""
    ),
}


# Traces store the label "name vN" after the answer was paid for: the name leaves room for " v" and
# ten digits, so that write cannot fail on the column length (PostgreSQL would refuse it).
MAX_NAME_CHARS = min(column_length(policies.c.name) or 200, (column_length(traces.c.policy) or 200) - 12)
MAX_MODEL_CHARS = column_length(ledger.c.model) or 200  # the ledger row of the chat call records it
MAX_INDEX_CHARS = column_length(traces.c.collection) or 200
_TEXT_LIMITS = {"name": MAX_NAME_CHARS, "prompt_template": 100, "model": MAX_MODEL_CHARS, "index": MAX_INDEX_CHARS,
                "pipeline": 200, "postprocessor": 200}
FACTORY_REF = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")  # package.module:function


class Policy(BaseModel):
    """Everything that decides how a question is answered (the cache key includes all of it but the name)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    version: int | None = None
    top_k: int = Field(8, ge=1, le=200)
    retrieval_mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "dbsf"] = "rrf"
    candidates: int = Field(50, ge=1, le=500, description="Hits fetched from each retriever before fusion.")
    rerank: bool = False
    rerank_candidates: int = Field(20, ge=1, le=200)
    prompt_template: str = "default"
    model: str | None = None  # None: the LLM_MODEL setting
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=8192)
    index: str | None = None  # alias or collection; None: the INDEX_ALIAS setting
    pipeline: str | None = Field(None, description="A team's own LlamaIndex pipeline, 'package.module:function' "
                                 "(one of the PIPELINE_FACTORIES setting); None: our engine's stages.")
    postprocessor: str | None = Field(None, description="A LlamaIndex node postprocessor run on our retrieval's "
                                      "first rerank_candidates nodes in place of our rerank stage: a factory "
                                      "'package.module:function' (one of the PIPELINE_FACTORIES setting) returning "
                                      "a BaseNodePostprocessor; None: ours.")

    @field_validator("pipeline", "postprocessor")
    @classmethod
    def _factory_ref(cls, v: str | None, info) -> str | None:  # noqa: ANN001 - pydantic's ValidationInfo
        if v is not None and not FACTORY_REF.fullmatch(v):
            raise ValueError(f"{info.field_name} '{v[:200]}' is not a factory reference 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _one_owner_of_the_stages(self) -> "Policy":
        if self.pipeline is not None and self.postprocessor is not None:
            raise ValueError("a policy names a pipeline or a postprocessor, not both: a pipeline runs its own "
                             "stages (put the postprocessor in it)")
        return self

    @field_validator("name", "prompt_template", "model", "index", "pipeline", "postprocessor")
    @classmethod
    def _one_line(cls, v: str | None, info) -> str | None:  # noqa: ANN001 - pydantic's ValidationInfo
        """Checked here, not at save: an unsaved policy still names the ledger and trace rows of a paid call."""
        problem = "" if v is None else text_problem(v, max_chars=_TEXT_LIMITS[info.field_name])
        if problem:
            raise ValueError(problem)
        return v

    def content(self) -> dict:
        """What the policy does (its hash keys caches and traces): a policy with no pipeline and no
        postprocessor has the content, and hash, it had before either existed."""
        unset = {f for f in ("pipeline", "postprocessor") if getattr(self, f) is None}
        return self.model_dump(exclude={"name", "version"} | unset)

    def factories(self) -> list[str]:
        """The factories this policy runs (a pipeline, a postprocessor, or none)."""
        return [f for f in (self.pipeline, self.postprocessor) if f is not None]

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()

    def label(self) -> str:
        return policy_label(self.name, self.version)


def policy_label(name: str, version: int | None) -> str:
    """How a policy version is named on answers, ledger rows and votes ('bm25 v2')."""
    return f"{name} v{version}" if version else name


def check_factories(policy: Policy, allowed: Sequence[str]) -> None:
    """A policy may name only a factory (pipeline or postprocessor) the operator listed in
    PIPELINE_FACTORIES: the factory is imported and run in the serving process, so the list never
    comes from a user. Checked at save and again at use (the setting may have changed since)."""
    for ref in policy.factories():
        if ref not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            what = "pipeline" if ref == policy.pipeline else "postprocessor"
            raise InputError(f"policy '{policy.name}': {what} '{ref}' is not an allowed factory "
                             f"(PIPELINE_FACTORIES lists: {listed})")


def parse_policy(data: str | bytes) -> Policy:
    """A policy from its JSON (as `content()` or the whole model), or InputError naming the field."""
    try:
        spec = json.loads(data)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, a 5000-digit number
        raise InputError(f"policy: not JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise InputError("policy: expected a JSON object")
    try:
        return Policy.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "policy"
        raise InputError(f"policy: {where}: {first['msg'].removeprefix('Value error, ')}") from exc


@dataclass(frozen=True)
class SavedPolicy:
    """A stored policy version; `spec` is its content (Policy.content()), `versions` how many
    versions its name has (set by PolicyStore.list, which lists the latest ones)."""
    id: int
    name: str
    version: int
    spec: dict
    content_hash: str
    created_at: datetime
    created_by: str
    note: str
    versions: int


class PolicyStore:
    def __init__(self, engine: Engine, audit: AuditLog, pipelines: Sequence[str] = ()):
        """`pipelines`: the factories a policy may name (the PIPELINE_FACTORIES setting)."""
        self._engine, self._audit, self._pipelines = engine, audit, tuple(pipelines)

    def save(self, policy: Policy, actor: Actor, note: str = "") -> Policy:
        """Store as the next version of its name (returns the stored policy with its version)."""
        if not policy.name.strip():
            raise InputError("a policy needs a name")
        check_text(note, "the policy note", multiline=True)
        if policy.prompt_template not in PROMPT_TEMPLATES:
            raise InputError(f"unknown prompt template '{policy.prompt_template}'")
        check_factories(policy, self._pipelines)
        with self._audit.action(actor, "policy.save", policy.name, need=Action.save_policy, spec=policy.content()) as extra:
            with self._engine.begin() as conn:
                current = conn.execute(
                    sa.select(sa.func.max(policies.c.version)).where(policies.c.name == policy.name)
                ).scalar()
                version = (current or 0) + 1
                conn.execute(
                    policies.insert().values(
                        name=policy.name, version=version, spec=policy.content(), content_hash=policy.content_hash(),
                        created_at=utcnow(), created_by=actor.id, note=note,
                    )
                )
            extra["version"] = version
        return policy.model_copy(update={"version": version})

    def get(self, name: str, version: int | None = None) -> Policy:
        q = sa.select(policies).where(policies.c.name == name)
        q = q.where(policies.c.version == version) if version else q.order_by(policies.c.version.desc())
        with self._engine.connect() as conn:
            row = conn.execute(q.limit(1)).first()
        if row is None:
            if name == "default" and version is None:
                return Policy()
            raise NotFoundError(f"unknown policy '{name}'" + (f" version {version}" if version else ""))
        return Policy(name=row.name, version=row.version, **row.spec)

    def by_ref(self, ref: str) -> Policy:
        """A saved policy named as `name` (its latest version) or `name@version`."""
        name, _, version = ref.partition("@")
        if version and not version.isdigit():
            raise NotFoundError(f"unknown policy '{ref}': use name or name@version")
        return self.get(name, int(version) if version else None)

    def list(self) -> list[SavedPolicy]:
        """Latest version of every policy, plus its version count."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(policies).order_by(policies.c.name, policies.c.version)).all()
        latest: dict[str, SavedPolicy] = {}
        for r in rows:
            latest[r.name] = SavedPolicy(**r._mapping, versions=r.version)
        return list(latest.values())

    def versions(self, name: str) -> list[Policy]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(policies).where(policies.c.name == name).order_by(policies.c.version)).all()
        return [Policy(name=r.name, version=r.version, **r.spec) for r in rows]
