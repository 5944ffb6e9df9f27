"""The numbers of an A/B comparison.

Online, per live variant (current / candidate), from the ledger, the traces and the pairwise
votes, aggregated in SQL (results are a few rows per variant; nothing loads the ledger):
requests, errors, p50/p95 of end-to-end latency (the ledger's histogram buckets, with
order-statistic intervals), cost per request, thumbs-up rate and blind-vote win rate, each
compared with backend.releases.ab_stats (interval, p-value, significant yet, roughly how many more).
`variant_stats` is the cheap window read the guardrails use.

Offline, two evaluation runs of the same golden-set version (one per policy) run as one
background job; their diff adds cost and latency deltas to EvalRuns.diff."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.background.jobs import JobContext, JobRunner
from backend.db import aware, traces, utcnow
from backend.engine.policy import Policy, policy_label
from backend.errors import InputError
from backend.evaluation.golden import GoldenSets
from backend.evaluation.quality import preload as preload_quality_metrics
from backend.evaluation.runs import EvalRuns, RunDiff
from backend.evaluation.stats import paired_bootstrap
from backend.ledger.buckets import quantile
from backend.ledger.queries import PerRequest
from backend.ledger.store import ledger, to_epoch
from backend.releases.ab_stats import Z_95, Comparison, compare_means, compare_proportions, compare_win_rate, wilson
from backend.releases.manager import Experiment, ReleaseManager, WindowStats

VARIANTS = ("current", "candidate")
OFFLINE_JOB = "ab.offline"


# --- per-variant figures -------------------------------------------------------------------------
@dataclass
class VariantOnline(PerRequest):
    variant: str
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    cost_sq: float = 0.0  # sum of squared per-request costs (the variance of the mean)
    lat_n: int = 0
    lat_sum: float = 0.0
    lat_sq: float = 0.0
    latency_counts: dict[int, float] = field(default_factory=dict)  # total-latency histogram (ledger buckets)
    rated: int = 0
    thumbs_up: int = 0
    releases: list[str] = field(default_factory=list)  # 'policy vN @ collection' seen in the ledger

    @property
    def thumbs_up_rate(self) -> float | None:
        return self.thumbs_up / self.rated if self.rated else None

    @staticmethod
    def _var(n: int, total: float, sq: float) -> float:
        if n < 2:
            return 0.0
        mean = total / n
        return max(0.0, (sq - n * mean * mean) / (n - 1))

    @property
    def latency_mean(self) -> float | None:
        return self.lat_sum / self.lat_n if self.lat_n else None

    @property
    def latency_var(self) -> float:
        return self._var(self.lat_n, self.lat_sum, self.lat_sq)

    @property
    def cost_var(self) -> float:
        return self._var(self.requests, self.cost_usd, self.cost_sq)

    def latency_quantile(self, q: float) -> tuple[float | None, float | None, float | None]:
        """(estimate, low, high): the histogram estimate of the q-quantile and a distribution-free
        95% interval from the ranks of the order statistics (binomial normal approximation)."""
        n = sum(self.latency_counts.values())
        if n <= 0:
            return None, None, None
        half = Z_95 * math.sqrt(n * q * (1 - q))
        lo_rank, hi_rank = max(0.0, n * q - half), min(float(n), n * q + half + 1)
        return (quantile(q, self.latency_counts), quantile(lo_rank / n, self.latency_counts) if lo_rank > 0 else 0.0,
                quantile(hi_rank / n, self.latency_counts))


SOURCES = ("api", "console", "all")  # whose traffic the online figures count (all: every source)


def _source_where(source: str | None) -> list:
    """The ledger condition of a source filter: api, console (or system); None or 'all' = every row."""
    if source in (None, "all"):
        return []
    if source not in ("api", "console", "system"):
        raise InputError(f"unknown traffic source '{source}': one of api, console, all")
    return [ledger.c.source == source]


def _window(since: datetime, until: datetime | None, source: str | None = None) -> list:
    L = ledger
    w = [L.c.epoch >= to_epoch(aware(since)), L.c.variant.in_(VARIANTS), *_source_where(source)]
    if until is not None:
        w.append(L.c.epoch < to_epoch(aware(until)) + 1)
    return w


def variant_numbers(db: Engine, since: datetime, until: datetime | None = None,
                    source: str | None = None) -> dict[str, VariantOnline]:
    """Every variant's figures over [since, until] (until None: now), of one traffic source
    (api, console; None or 'all': every request)."""
    L = ledger
    w = _window(since, until, source)
    out = {v: VariantOnline(v) for v in VARIANTS}
    # One row per request (its model calls summed): requests, failed requests, cost and its square.
    per_request = sa.select(L.c.variant, L.c.request_id, sa.func.sum(L.c.cost_usd).label("cost"),
                            sa.func.max(sa.case((L.c.status == "error", 1), else_=0)).label("failed")) \
        .where(*w).group_by(L.c.variant, L.c.request_id).subquery("per_request")
    pr = per_request.c
    requests_q = sa.select(pr.variant, sa.func.count(), sa.func.sum(pr.failed), sa.func.sum(pr.cost),
                           sa.func.sum(pr.cost * pr.cost)).group_by(pr.variant)
    chat = [*w, L.c.kind == "chat", L.c.total_ms.is_not(None)]
    latency_q = sa.select(L.c.variant, sa.func.count(), sa.func.sum(L.c.total_ms),
                          sa.func.sum(L.c.total_ms * L.c.total_ms)).where(*chat).group_by(L.c.variant)
    hist_q = sa.select(L.c.variant, L.c.total_bucket, sa.func.count()).where(*chat) \
        .group_by(L.c.variant, L.c.total_bucket)
    answered = sa.select(L.c.variant, L.c.request_id).where(*w, L.c.kind == "chat").distinct().subquery("answered")
    thumbs_q = sa.select(answered.c.variant, sa.func.count(), sa.func.sum(sa.case((traces.c.feedback == 1, 1), else_=0))) \
        .select_from(answered.join(traces, traces.c.request_id == answered.c.request_id)) \
        .where(traces.c.feedback.is_not(None)).group_by(answered.c.variant)
    seen_q = sa.select(L.c.variant, L.c.policy, L.c.policy_version, L.c.index_version).where(*w, L.c.kind == "chat") \
        .distinct()
    with db.connect() as conn:
        for v, n, failed, cost, sq in conn.execute(requests_q):
            o = out[v]
            o.requests, o.errors, o.cost_usd, o.cost_sq = int(n), int(failed or 0), float(cost or 0), float(sq or 0)
        for v, n, total, sq in conn.execute(latency_q):
            out[v].lat_n, out[v].lat_sum, out[v].lat_sq = int(n), float(total or 0), float(sq or 0)
        for v, b, n in conn.execute(hist_q):
            if b is not None:
                out[v].latency_counts[int(b)] = float(n)
        for v, n, up in conn.execute(thumbs_q):
            out[v].rated, out[v].thumbs_up = int(n), int(up or 0)
        for v, name, version, collection in conn.execute(seen_q):
            out[v].releases.append(f"{policy_label(name, version)} @ {collection}")
    return out


def variant_stats(db: Engine, window_minutes: int, *, since: datetime | None = None,
                  now: datetime | None = None, source: str | None = None) -> dict[str, WindowStats]:
    """The guardrails' read: per variant over the last `window_minutes` (not before `since`, the
    start of the running experiment), its WindowStats; a variant with no ledger rows is left out.
    `source` (api, console; None or 'all': every request) narrows it to one kind of traffic."""
    now = aware(now or utcnow())
    start = now - timedelta(minutes=window_minutes)
    L = ledger
    exact = []
    if since is not None and aware(since) > start:
        start = aware(since)
        exact = [L.c.ts >= start]  # epoch has whole seconds: the last second of the experiment before counted too
    w = [L.c.epoch >= to_epoch(start), L.c.epoch <= to_epoch(now), L.c.variant.in_(VARIANTS), *exact,
         *_source_where(source)]
    per_request = sa.select(L.c.variant, L.c.request_id,
                            sa.func.max(sa.case((L.c.status == "error", 1), else_=0)).label("failed")) \
        .where(*w).group_by(L.c.variant, L.c.request_id).subquery()
    q = sa.select(per_request.c.variant, sa.func.count(), sa.func.sum(per_request.c.failed)).group_by(per_request.c.variant)
    hq = sa.select(L.c.variant, L.c.total_bucket, sa.func.count()) \
        .where(*w, L.c.kind == "chat", L.c.total_bucket.is_not(None)).group_by(L.c.variant, L.c.total_bucket)
    requests: dict[str, tuple[int, int]] = {}
    counts: dict[str, dict[int, float]] = {}
    with db.connect() as conn:
        for v, n, failed in conn.execute(q):
            requests[v] = int(n), int(failed or 0)
        for v, b, n in conn.execute(hq):
            counts.setdefault(v, {})[int(b)] = float(n)
    p95 = {v: quantile(0.95, c) or 0.0 for v, c in counts.items()}
    return {v: WindowStats(*requests.get(v, (0, 0)), p95.get(v, 0.0)) for v in {**requests, **p95}}


# --- comparisons -----------------------------------------------------------------------------------
@dataclass
class OnlineReport:
    experiment: Experiment
    since: datetime
    until: datetime | None
    variants: dict[str, VariantOnline]
    votes: dict[str, int]  # 'current' / 'candidate' wins, tie, both_bad (blind and open votes)
    comparisons: list[Comparison]

    @property
    def significant(self) -> list[str]:
        return [c.metric for c in self.comparisons if c.significant]


def compare_variants(cur: VariantOnline, cand: VariantOnline, votes: dict[str, int] | None = None) -> list[Comparison]:
    """candidate − current for each figure that has a test (a = current, b = candidate)."""
    rows = [
        compare_proportions("error rate", cur.errors, cur.requests, cand.errors, cand.requests),
        compare_means("mean latency (ms)", cur.latency_mean or 0.0, cur.latency_var, cur.lat_n,
                      cand.latency_mean or 0.0, cand.latency_var, cand.lat_n),
        compare_means("cost per request (USD)", cur.cost_per_request or 0.0, cur.cost_var, cur.requests,
                      cand.cost_per_request or 0.0, cand.cost_var, cand.requests),
        compare_proportions("thumbs-up rate", cur.thumbs_up, cur.rated, cand.thumbs_up, cand.rated),
    ]
    if votes is not None:
        rows.append(compare_win_rate("pairwise win rate", votes.get("current", 0), votes.get("candidate", 0)))
    return rows


def online_report(db: Engine, releases: ReleaseManager, experiment: Experiment,
                  source: str | None = None) -> OnlineReport:
    """The comparison of one experiment (an entry of ReleaseManager.experiments()) over its life,
    on one traffic source's requests (api, console; None or 'all': every request). Votes are the
    console's own (pairwise comparisons), whatever the source."""
    since, until = experiment.started_at, experiment.ended_at
    numbers = variant_numbers(db, since, until, source)
    cur, cand = releases.get(experiment.current_id), releases.get(experiment.candidate_id)
    pair = releases.pair_votes(cur.policy, cand.policy, since=since, until=until)
    votes = {"current": pair["x"], "candidate": pair["y"], "tie": pair["tie"], "both_bad": pair["both_bad"]}
    if cur.policy == cand.policy:  # same policy on two index versions: votes cannot tell them apart
        votes = {"current": 0, "candidate": 0, "tie": 0, "both_bad": 0}
    return OnlineReport(experiment, since, until, numbers, votes,
                        compare_variants(numbers["current"], numbers["candidate"], votes))


@dataclass(frozen=True)
class Estimate:
    """A figure and its 95% interval; None where there is no data (the console shows a dash)."""
    value: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, value: float | None, interval: tuple[float | None, float | None]) -> Estimate:
        lo, hi = interval
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            lo = hi = None
        return cls(value, lo, hi)


@dataclass(frozen=True)
class VariantFigures:
    """One variant's online figures, each rate and percentile with its 95% interval."""
    variant: str
    requests: int
    errors: int
    error_rate: Estimate
    p50_ms: Estimate
    p95_ms: Estimate
    cost_per_request: float | None
    thumbs_up: int
    rated: int
    thumbs_up_rate: Estimate
    votes_won: int
    votes_decided: int
    win_rate: Estimate
    served: tuple[str, ...]


def variant_figures(report: OnlineReport) -> list[VariantFigures]:
    """One entry per variant (current, candidate), in that order."""
    out = []
    for v in VARIANTS:
        o = report.variants[v]
        p50, *p50_ci = o.latency_quantile(0.5)
        p95, *p95_ci = o.latency_quantile(0.95)
        won, lost = report.votes.get(v, 0), report.votes.get("candidate" if v == "current" else "current", 0)
        out.append(VariantFigures(
            variant=v, requests=o.requests, errors=o.errors,
            error_rate=Estimate.of(o.error_rate, wilson(o.errors, o.requests)),
            p50_ms=Estimate.of(p50, tuple(p50_ci)), p95_ms=Estimate.of(p95, tuple(p95_ci)),
            cost_per_request=o.cost_per_request, thumbs_up=o.thumbs_up, rated=o.rated,
            thumbs_up_rate=Estimate.of(o.thumbs_up_rate, wilson(o.thumbs_up, o.rated)),
            votes_won=won, votes_decided=won + lost,
            win_rate=Estimate.of(won / (won + lost) if won + lost else None, wilson(won, won + lost)),
            served=tuple(sorted(o.releases)),
        ))
    return out


# --- offline: both policies over a golden set ------------------------------------------------------------
def start_offline(jobs: JobRunner, evals: EvalRuns, golden: GoldenSets, set_name: str, policy_a: Policy,
                  policy_b: Policy, actor: str, *, version: int | None = None, generate: bool = True) -> int:
    """Run the golden-set version with A, then with B, as one background job (progress over both
    runs' items, cancellable between items). The finished job's result holds both run ids."""
    gversion, items = golden.version_items(set_name, version)
    if not items:
        raise InputError(f"{set_name} v{gversion} has no items")
    target = f"{set_name} v{gversion} · {policy_a.label()} vs {policy_b.label()}"
    detail = {"golden_set": set_name, "version": gversion, "policy_a": policy_a.label(), "policy_b": policy_b.label(),
              "generate": generate}

    def work(ctx: JobContext) -> dict:
        n = len(items)
        ctx.progress(done=0, total=2 * n, phase="A", final=True)
        runs = {}
        for side, policy, offset in (("a", policy_a, 0), ("b", policy_b, n)):
            runs[side] = evals.run(set_name, policy, actor, version=gversion, generate=generate, cancel=ctx.cancel,
                                   progress=lambda done, total, o=offset, s=side: ctx.progress(
                                       done=o + done, total=2 * n, phase=s.upper(), final=done == total))
        return {"run_a": runs["a"], "run_b": runs["b"], "summary": {"run_a": runs["a"], "run_b": runs["b"]}}

    preload_quality_metrics()  # in the caller's thread, not the job's (see quality_metrics.preload)
    return jobs.submit(OFFLINE_JOB, actor, work, target=target, detail=detail,
                       what=f"an offline comparison of {target}")


# What an offline comparison costs, per item: the name it is shown by and the run item's field.
COST_FIGURES = (("retrieval latency (ms)", "latency_ms"), ("tokens per item", "tokens"),
                ("cost per item (USD)", "cost_usd"))


@dataclass(frozen=True)
class CostDelta:
    """A per-item figure of both runs: A's and B's means and the paired difference b − a with its
    95% interval and p-value."""
    name: str
    a: float
    b: float
    delta: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class OfflineDiff:
    """Run b against run a: the quality comparison as EvalRuns.diff gives it, and what each run costs."""
    quality: RunDiff
    costs: tuple[CostDelta, ...]  # in COST_FIGURES order


def offline_diff(evals: EvalRuns, run_a: int, run_b: int, primary: str = "ndcg@10") -> OfflineDiff:
    """EvalRuns.diff (b − a: paired bootstrap per metric, improved / regressed items) plus the
    per-item latency, token and cost deltas with the same paired test."""
    quality = evals.diff(run_a, run_b, primary=primary)  # refuses two runs without shared items
    a_items = {r.key: r for r in evals.items(run_a)}
    b_items = {r.key: r for r in evals.items(run_b)}
    keys = [k for k in a_items if k in b_items]
    costs = []
    for name, field_ in COST_FIGURES:
        a = [float(getattr(a_items[k], field_)) for k in keys]
        b = [float(getattr(b_items[k], field_)) for k in keys]
        costs.append(CostDelta(name, sum(a) / len(a), sum(b) / len(b), **paired_bootstrap(a, b)))
    return OfflineDiff(quality, tuple(costs))
