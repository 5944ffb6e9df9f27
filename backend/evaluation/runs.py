"""Evaluation runs: a frozen golden-set version x a policy x an index version, scored per item
and in aggregate (with bootstrap confidence intervals), stored so runs can be reopened and diffed.

Retrieval metrics are computed here from the gold references, at document level exactly like
`python -m backend evaluate` (a document counts when a retrieved chunk of it overlaps a gold span),
so a run over a data set imported as a golden set reproduces the CLI's numbers."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Callable, Literal

import sqlalchemy as sa
from qdrant_client import models
from sqlalchemy.engine import Engine

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.background.jobs import JobContext, JobRunner
from backend.db import eval_run_items, eval_runs, utcnow
from backend.engine.policy import Policy
from backend.engine.query_engine import QueryEngine, SourceChunk
from backend.engine.vectorstore import VectorStore
from backend.errors import InputError, NotFoundError, RagError
from backend.evaluation.golden import GoldenSets, GoldItem, GoldRef
from backend.evaluation.judge import Judge
from backend.evaluation.metrics import ranking_policy, ranking_scores
from backend.evaluation.quality import answer_metrics
from backend.evaluation.quality import preload as preload_quality_metrics
from backend.evaluation.stats import bootstrap_ci, paired_bootstrap
from backend.exports import csv_dicts

HEADLINE = ("recall@10", "ndcg@10", "mrr@10", "hit@10")
EVAL_JOB = "eval.run"  # the JobRunner kind of a background evaluation run
Change = Literal["improved", "regressed", "unchanged"]
CHANGES: tuple[Change, ...] = ("improved", "regressed", "unchanged")


@dataclass(frozen=True)
class EvalRun:
    """A run as stored. `metrics`: metric -> {"mean", "low", "high", "n"} (its 95% bootstrap interval)."""
    id: int
    golden_set: str
    golden_version: int
    policy: str  # the policy's label, 'bm25 v2'
    policy_spec: dict
    index: str  # as asked: an alias or a collection
    collection: str  # what it resolved to
    status: str
    n_items: int
    done_items: int
    metrics: dict[str, dict[str, float]]
    unresolved: int  # gold references no chunk of the collection covers
    seconds: float
    error: str
    created_at: datetime
    created_by: str
    judge: str  # the judge model; "" = not judged
    owner: str
    heartbeat_at: datetime | None

    @property
    def progress(self) -> float:
        """Share of the items scored so far (0 for a run without items)."""
        return self.done_items / self.n_items if self.n_items else 0.0


@dataclass(frozen=True)
class GoldRank:
    """A gold reference of a run item and the document rank where the run found it (None: not found)."""
    key: str
    doc_id: str
    rank: int | None
    quote: str


@dataclass(frozen=True)
class RetrievedChunk:
    rank: int
    doc_id: str
    chunk_id: str
    title: str
    score: float | None


@dataclass(frozen=True)
class RunItem:
    """One scored item of a run. `metrics`: metric -> value; `judge_errors`: judged metric -> why it has no value."""
    id: int
    run_id: int
    idx: int
    key: str
    question: str
    metrics: dict[str, float]
    gold: tuple[GoldRank, ...]
    retrieved: tuple[RetrievedChunk, ...]
    answer: str
    answer_kind: str
    reference_answer: str
    latency_ms: float
    tokens: int
    cost_usd: float
    judge_errors: dict[str, str] | None

    @classmethod
    def from_row(cls, row: Any) -> "RunItem":
        m = dict(row._mapping)
        return cls(**{**m, "gold": tuple(GoldRank(**g) for g in m["gold"]),
                      "retrieved": tuple(RetrievedChunk(**r) for r in m["retrieved"])})


@dataclass(frozen=True)
class MetricDelta:
    """A metric's paired difference b - a over the shared items: mean, 95% interval and p-value."""
    delta: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class GoldMove:
    """A gold reference's document rank in run a and in run b (None: not found)."""
    doc_id: str
    before: int | None
    after: int | None


@dataclass(frozen=True)
class ItemDiff:
    """One shared item: how the primary metric moved (a, b, delta = b - a) and each gold reference's rank."""
    key: str
    question: str
    change: Change
    delta: float
    a: float | None
    b: float | None
    moves: tuple[GoldMove, ...]


@dataclass(frozen=True)
class RunDiff:
    """Run b against run a over their shared items, items judged by `primary`."""
    run_a: int
    run_b: int
    primary: str
    n_items: int
    metrics: dict[str, MetricDelta]
    improved: int
    regressed: int
    unchanged: int
    items: tuple[ItemDiff, ...]

    def count(self, change: Change) -> int:
        return {"improved": self.improved, "regressed": self.regressed, "unchanged": self.unchanged}[change]


def _ref_key(r: GoldRef) -> str:
    return r.doc_id if r.end is None else f"{r.doc_id}:{r.start}-{r.end}"


def retrieval_metrics(gold: list[GoldRef], chunks: list[SourceChunk]) -> tuple[dict[str, float], dict[str, int | None]]:
    """Document-level metrics and, per gold reference, the document rank where it was found."""
    ranked: list[str] = []
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in chunks:
        if c.doc_id not in spans:
            ranked.append(c.doc_id)
        spans.setdefault(c.doc_id, []).append((c.start, c.end))
    ref_rank: dict[str, int | None] = {}
    for r in gold:
        hit = r.doc_id in spans and any(r.overlaps(r.doc_id, s, e) for s, e in spans[r.doc_id])
        ref_rank[_ref_key(r)] = ranked.index(r.doc_id) + 1 if hit else None
    relevant = {r.doc_id for r in gold if ref_rank[_ref_key(r)] is not None}
    gold_docs = {r.doc_id for r in gold}
    # Documents whose retrieved chunks miss every gold span do not count as found.
    ranked_rel = [d if d in relevant else f"~{d}" for d in ranked]
    m = {
        **ranking_scores(ranked_rel, gold_docs),
        "precision@5": sum(d in relevant for d in ranked[:5]) / 5,
        "hit@10": float(any(d in relevant for d in ranked[:10])),
    }
    return m, ref_rank


class EvalRuns:
    def __init__(self, db: Engine, audit: AuditLog, engine: QueryEngine, store: VectorStore, golden: GoldenSets,
                 judge: Judge | None = None):
        """`judge`: scores generated answers with ragas' LLM metrics (JUDGE_BASE_URL); None = no judged metrics."""
        self._db, self._audit, self._engine, self._store, self._golden = db, audit, engine, store, golden
        self.judge = judge

    def resolve_references(self, collection: str, items: list[GoldItem]) -> dict[str, list[str]]:
        """Reference key -> texts of the chunks of `collection` that cover it. An empty list means
        unresolved: the document is gone, or its quoted text is no longer there (it changed)."""
        doc_ids = sorted({r.doc_id for i in items for r in i.references})
        chunks: dict[str, list[dict]] = {}
        flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=doc_ids))])
        for _, payload in self._store.scroll(collection, flt, ["doc_id", "start", "end", "text"]) if doc_ids else ():
            chunks.setdefault(str(payload["doc_id"]), []).append(payload)
        resolved: dict[str, list[str]] = {}
        for r in (r for i in items for r in i.references):
            texts = [c["text"] for c in sorted(chunks.get(r.doc_id, []), key=lambda c: c["start"])
                     if r.overlaps(r.doc_id, c["start"], c["end"])]
            quote = r.quote[:80]
            resolved[_ref_key(r)] = texts if texts and (not quote or any(quote in t for t in texts)) else []
        return resolved

    def run(self, set_name: str, policy: Policy, actor: Actor, version: int | None = None, index: str | None = None,
            generate: bool = True, progress: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None) -> int:
        """Run synchronously (callers put it in a background job); returns the run id."""
        self._audit.require(actor, Action.run_evaluation, "eval.run", set_name)
        gversion, items = self._golden.version_items(set_name, version)
        index = index or self._engine.index_of(policy)
        collection = self._store.resolve(index)
        t0 = time.perf_counter()
        with self._db.begin() as conn:
            run_id = conn.execute(eval_runs.insert().values(
                golden_set=set_name, golden_version=gversion, policy=policy.label(), policy_spec=policy.content(),
                index=index, collection=collection, status="running", n_items=len(items), metrics={},
                created_at=utcnow(), created_by=actor.id, heartbeat_at=utcnow(),
                judge=self.judge.model if self.judge and generate else "")).inserted_primary_key[0]
        self._audit.record(actor, "eval.run.start", str(run_id), golden_set=set_name, version=gversion, policy=policy.label(),
                           collection=collection)
        try:
            resolved = self.resolve_references(collection, items)
            unresolved = {k for k, texts in resolved.items() if not texts}
            deep = ranking_policy(policy, collection)
            answer_policy = policy.model_copy(update={"index": collection})
            per_item: list[dict] = []
            for idx, item in enumerate(items):
                if cancel is not None and cancel.is_set():
                    raise RagError("evaluation run cancelled", part="evaluation")
                gold_texts = [t for r in item.references for t in resolved[_ref_key(r)]]
                row = self._score_item(idx, item, deep, answer_policy, generate, actor, gold_texts)
                row["metrics"]["unresolved_refs"] = sum(_ref_key(r) in unresolved for r in item.references)
                per_item.append(row)
                with self._db.begin() as conn:
                    conn.execute(eval_run_items.insert().values(run_id=run_id, **row))
                    conn.execute(eval_runs.update().where(eval_runs.c.id == run_id)
                                 .values(done_items=idx + 1, heartbeat_at=utcnow()))
                if progress:
                    progress(idx + 1, len(items))
            metrics = aggregate([r["metrics"] for r in per_item])
            with self._db.begin() as conn:
                conn.execute(eval_runs.update().where(eval_runs.c.id == run_id).values(
                    status="done", metrics=metrics, unresolved=len(unresolved), seconds=time.perf_counter() - t0))
        except Exception as exc:
            status = "cancelled" if "cancelled" in str(exc) else "failed"
            with self._db.begin() as conn:
                conn.execute(eval_runs.update().where(eval_runs.c.id == run_id).values(
                    status=status, error=str(exc)[:2000], seconds=time.perf_counter() - t0))
            self._audit.record(actor, "eval.run.finish", str(run_id), result="error", error=str(exc))
            raise
        self._audit.record(actor, "eval.run.finish", str(run_id), **{k: metrics[k]["mean"] for k in HEADLINE if k in metrics})
        return run_id

    def _score_item(self, idx: int, item: GoldItem, deep: Policy, answer_policy: Policy, generate: bool, actor: Actor,
                    gold_texts: list[str]) -> dict:
        t = time.perf_counter()
        retrieval = self._engine.retrieve(item.question, deep, actor=actor)
        latency = (time.perf_counter() - t) * 1000
        metrics, ref_rank = retrieval_metrics(item.references, retrieval.sources)
        answer, kind, tokens, cost = "", "", 0, 0.0
        judge_errors: dict[str, str] | None = None
        if generate:
            ans = self._engine.query(item.question, answer_policy, actor)
            answer, kind = ans.answer, ans.answer_kind
            tokens, cost = ans.usage.prompt_tokens + ans.usage.completion_tokens, ans.cost_usd
            contexts = [s.text for s in ans.sources]
            metrics.update(answer_metrics(item.question, answer, item.reference_answer, contexts, gold_texts))
            if self.judge is not None and answer:
                judged = self.judge.score(item.question, answer, contexts, item.reference_answer, user=actor.ledger_user,
                                          policy=answer_policy.name, index_version=answer_policy.index or "")
                metrics.update(judged.metrics)
                judge_errors = judged.errors or None
        retrieved = [{"rank": s.rank, "doc_id": s.doc_id, "chunk_id": s.chunk_id, "title": s.title,
                      "score": s.scores.get("fused") or s.scores.get("dense") or s.scores.get("sparse")}
                     for s in retrieval.sources[:20]]
        gold = [{"key": _ref_key(r), "doc_id": r.doc_id, "rank": ref_rank[_ref_key(r)], "quote": r.quote[:200]}
                for r in item.references]
        return dict(idx=idx, key=item.external_id or item.question[:300], question=item.question, metrics=metrics,
                    gold=gold, retrieved=retrieved, answer=answer, answer_kind=kind,
                    reference_answer=item.reference_answer, latency_ms=latency, tokens=tokens, cost_usd=cost,
                    judge_errors=judge_errors)

    # --- background runs (the console's run viewer) ------------------------------------------------
    def start_job(self, jobs: JobRunner, set_name: str, policy: Policy, actor: Actor, *, version: int | None = None,
                  index: str | None = None, generate: bool = True) -> int:
        """Start `run` as a background job (kind `eval.run`): its progress (done/total items) and cancel
        flag live in the job's row, so a reload or another tab follows it. The set version and the index
        are checked first, so a mistake is refused at once instead of becoming a failed job. Returns the
        job id; the finished job's result holds the run id."""
        self._audit.require(actor, Action.run_evaluation, "eval.run", set_name)
        gversion, _ = self._golden.version_items(set_name, version)
        collection = self._store.resolve(index or self._engine.index_of(policy))
        target = f"{set_name} v{gversion} · {policy.label()} · {collection}"
        detail = {"golden_set": set_name, "version": gversion, "policy": policy.label(), "index": index or "",
                  "collection": collection, "generate": generate}

        def work(ctx: JobContext) -> dict:
            ctx.progress(done=0, total=0, final=True)
            run_id = self.run(set_name, policy, actor, version=gversion, index=index, generate=generate, cancel=ctx.cancel,
                              progress=lambda done, total: ctx.progress(done=done, total=total, final=done == total))
            metrics = self.get(run_id).metrics
            return {"run_id": run_id,
                    "summary": {"run_id": run_id, **{k: round(metrics[k]["mean"], 4) for k in HEADLINE if k in metrics}}}

        preload_quality_metrics()  # here, not in the job's thread (see quality_metrics.preload)
        return jobs.submit(EVAL_JOB, actor, work, target=target, detail=detail, what=f"an evaluation run of {target}")

    def reference_contexts(self, collection: str, items: list[GoldItem]) -> list[list[str]]:
        """Per item, the texts of `collection`'s chunks that cover its gold references (ragas export)."""
        resolved = self.resolve_references(collection, items)
        return [[t for r in i.references for t in resolved[_ref_key(r)]] for i in items]

    # --- reading --------------------------------------------------------------------------------
    def list(self, limit: int = 200) -> list[EvalRun]:
        with self._db.connect() as conn:
            return [EvalRun(**r._mapping) for r in conn.execute(sa.select(eval_runs).order_by(eval_runs.c.id.desc()).limit(limit))]

    def get(self, run_id: int) -> EvalRun:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(eval_runs).where(eval_runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"unknown evaluation run {run_id}")
        return EvalRun(**row._mapping)

    def items(self, run_id: int) -> list[RunItem]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(eval_run_items).where(eval_run_items.c.run_id == run_id).order_by(eval_run_items.c.idx))
            return [RunItem.from_row(r) for r in rows]

    def diff(self, run_a: int, run_b: int, primary: str = "ndcg@10") -> RunDiff:
        """Per-metric paired deltas (b - a) with p-values, improved/regressed/unchanged items, and
        per item the movement of each gold reference's rank."""
        a_items = {r.key: r for r in self.items(run_a)}
        b_items = {r.key: r for r in self.items(run_b)}
        keys = [k for k in a_items if k in b_items]
        if not keys:
            raise InputError(f"runs {run_a} and {run_b} share no items")
        names = sorted(set.intersection(*(set(a_items[k].metrics) & set(b_items[k].metrics) for k in keys)))
        metrics = {m: MetricDelta(**paired_bootstrap([a_items[k].metrics[m] for k in keys],
                                                     [b_items[k].metrics[m] for k in keys]))
                   for m in names}
        rows = []
        for k in keys:
            a, b = a_items[k], b_items[k]
            delta = b.metrics.get(primary, 0) - a.metrics.get(primary, 0)
            b_ranks = {g.key: g.rank for g in b.gold}
            change: Change = "improved" if delta > 1e-9 else "regressed" if delta < -1e-9 else "unchanged"
            rows.append(ItemDiff(key=k, question=a.question, change=change, delta=delta, a=a.metrics.get(primary),
                                 b=b.metrics.get(primary),
                                 moves=tuple(GoldMove(g.doc_id, g.rank, b_ranks.get(g.key)) for g in a.gold)))
        return RunDiff(run_a=run_a, run_b=run_b, primary=primary, n_items=len(keys), metrics=metrics,
                       **{c: sum(r.change == c for r in rows) for c in CHANGES}, items=tuple(rows))

    def gate(self, run_id: int, minimums: dict[str, float], baseline: int | None = None, tolerance: float = 0.0) -> list[str]:
        """Failures of a CI gate: a metric under its minimum, or below the baseline run beyond the tolerance."""
        run = self.get(run_id)
        failures = []
        for m, floor in minimums.items():
            value = run.metrics.get(m, {}).get("mean")
            if value is None:
                failures.append(f"{m}: not measured in run {run_id}")
            elif value < floor:
                failures.append(f"{m} = {value:.4f} < minimum {floor:.4f}")
        if baseline is not None:
            base = self.get(baseline)
            for m in HEADLINE:
                if m in base.metrics and m in run.metrics:
                    b, v = base.metrics[m]["mean"], run.metrics[m]["mean"]
                    if v < b - tolerance:
                        failures.append(f"{m} = {v:.4f} regressed from {b:.4f} (run {baseline}) beyond tolerance {tolerance}")
        return failures


def describe_move(before: int | None, after: int | None, k: int = 10) -> str:
    if before == after:
        return f"rank {before}" if before else "not found"
    if before is None:
        return f"found at rank {after}" + (f" (new in top {k})" if after <= k else "")
    if after is None:
        return f"rank {before} → lost" + (f" (lost from top {k})" if before <= k else "")
    note = f" (lost from top {k})" if before <= k < after else f" (new in top {k})" if after <= k < before else ""
    return f"rank {before} → {after}{note}"


def describe_moves(moves: tuple[GoldMove, ...]) -> str:
    """'DEV_3: rank 1 → lost (lost from top 10); DEV_7: not found' (the CLI and the CSV export)."""
    return "; ".join(f"{m.doc_id}: {describe_move(m.before, m.after)}" for m in moves)


def aggregate(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean with a 95% bootstrap interval for every numeric per-item metric."""
    names = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))})
    out = {}
    for name in names:
        values = [float(r[name]) for r in rows if isinstance(r.get(name), (int, float))]
        mean, low, high = bootstrap_ci(values)
        out[name] = {"mean": mean, "low": low, "high": high, "n": len(values)}
    return out


# --- exports (the console's run viewer) -------------------------------------------------------------
def _flat_item(row: RunItem) -> dict:
    gold = "; ".join(f"{g.key}={g.rank if g.rank is not None else '-'}" for g in row.gold)
    return {"idx": row.idx, "key": row.key, "question": row.question, **row.metrics, "gold_ranks": gold,
            "top10_docs": " ".join(list(dict.fromkeys(r.doc_id for r in row.retrieved))[:10]),
            "answer": row.answer, "answer_kind": row.answer_kind, "reference_answer": row.reference_answer,
            "latency_ms": round(row.latency_ms, 2), "tokens": row.tokens, "cost_usd": row.cost_usd}


def _csv(rows: list[dict]) -> str:
    return csv_dicts(rows)


def export_run_json(run: EvalRun, items: list[RunItem]) -> str:
    """A run and its items as one JSON document (what `eval_runs` and `eval_run_items` hold)."""
    return json.dumps({"run": asdict(run), "items": [asdict(i) for i in items]}, default=str, ensure_ascii=False, indent=2)


def export_run_csv(items: list[RunItem]) -> str:
    """One row per item: every per-item metric, gold ranks, top-10 documents, answer, latency, cost."""
    return _csv([_flat_item(r) for r in items])


def export_diff_json(diff: RunDiff) -> str:
    return json.dumps(asdict(diff), default=str, ensure_ascii=False, indent=2)


def export_diff_csv(diff: RunDiff, part: Literal["items", "metrics"] = "items") -> str:
    """One row per item (change, the primary metric in a and b, delta, gold moves), or one row per
    metric (delta, 95% CI, p-value)."""
    if part == "metrics":
        return _csv([{"metric": m, **asdict(d)} for m, d in diff.metrics.items()])
    p = diff.primary
    return _csv([{"key": r.key, "question": r.question, "change": r.change, "delta": r.delta, f"{p} A": r.a,
                  f"{p} B": r.b, "gold moves": describe_moves(r.moves)} for r in diff.items])
