"""Prometheus: the exporter the engine's meter feeds, and the query side the dashboard uses
when PROMETHEUS_URL is set.

Exported series (one registry per Services, served on METRICS_HOST:METRICS_PORT at /metrics):
  rag_requests_total{policy,status}              requests by outcome (ok, error, refused, aborted)
  rag_stage_latency_seconds{stage,policy}        histogram per stage (embed, retrieve, rerank, generate, cache, total)
  rag_model_calls_total{kind,model,policy,status}
  rag_tokens_total{kind,model,policy,type}       type = prompt | completion | cached
  rag_cost_usd_total{kind,model,policy}          cost fixed at write time, as in the ledger
  rag_cache_hits_total{policy} / rag_cache_misses_total{policy}, rag_cache_saved_usd_total{policy}
  rag_budget_spend_ratio{budget,scope}           spend / limit of each budget's current period
  rag_api_ratelimit_fail_open_total              API requests let through while the limiter's Redis was down
The latency buckets are the ledger's (backend.ledger.buckets), so both sources estimate
percentiles from the same bucket bounds."""
from __future__ import annotations

import logging
import math
import os
import re
from datetime import datetime, timezone

from backend.ledger.buckets import LATENCY_BUCKETS_MS
from backend.ledger.calls import ModelCall, RequestContext
from backend.ledger.queries import LatencyPoint, RequestPoint

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = tuple(ms / 1000 for ms in LATENCY_BUCKETS_MS)
LATENCY_METRIC = "rag_stage_latency_seconds"


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rag_requests_total", "Requests by outcome", ["policy", "status"], registry=r)
        self.latency = Histogram(LATENCY_METRIC, "Latency of each request stage", ["stage", "policy"],
                                 buckets=LATENCY_BUCKETS_S, registry=r)
        self.calls = Counter("rag_model_calls_total", "Model calls", ["kind", "model", "policy", "status"], registry=r)
        self.tokens = Counter("rag_tokens_total", "Tokens of model calls", ["kind", "model", "policy", "type"], registry=r)
        self.cost = Counter("rag_cost_usd_total", "Cost of model calls in USD", ["kind", "model", "policy"], registry=r)
        self.cache_hits = Counter("rag_cache_hits_total", "Answers served from the cache", ["policy"], registry=r)
        self.cache_misses = Counter("rag_cache_misses_total", "Answers not in the cache", ["policy"], registry=r)
        self.saved = Counter("rag_cache_saved_usd_total", "What cached answers would have cost", ["policy"], registry=r)
        self.budget_ratio = Gauge("rag_budget_spend_ratio", "Spend / limit of each budget's current period",
                                  ["budget", "scope"], registry=r, multiprocess_mode="max")
        self.ratelimit_fail_open = Counter("rag_api_ratelimit_fail_open_total",
                                           "API requests let through because the rate limiter's Redis was down",
                                           registry=r)
        self._server = None
        # Series of the default policy exist at 0 from the first scrape, so increase()/rate() count
        # the very first requests too (a series born with its first observation would miss it).
        for stage in ("embed", "retrieve", "generate", "cache", "total"):
            self.latency.labels(stage, "default")
        for status in ("ok", "cache_hit", "error", "refused"):
            self.requests.labels("default", status)
        self.cache_hits.labels("default")
        self.cache_misses.labels("default")

    def model_call(self, ctx: RequestContext, call: ModelCall) -> None:
        p = ctx.policy
        self.calls.labels(call.kind, call.model, p, call.status).inc()
        for kind, n in (("prompt", call.prompt_tokens), ("completion", call.completion_tokens),
                        ("cached", call.cached_tokens)):
            if n:
                self.tokens.labels(call.kind, call.model, p, kind).inc(n)
        if call.cost_usd:
            self.cost.labels(call.kind, call.model, p).inc(call.cost_usd)
        if call.cache_hit and call.saved_usd:
            self.saved.labels(p).inc(call.saved_usd)

    def request(self, ctx: RequestContext, status: str, latency_ms: dict[str, float]) -> None:
        """status: ok, cache_hit, error, refused or aborted."""
        self.requests.labels(ctx.policy, status).inc()
        if ctx.cache == "hit":
            self.cache_hits.labels(ctx.policy).inc()
        elif ctx.cache == "miss":
            self.cache_misses.labels(ctx.policy).inc()
        for stage, ms in latency_ms.items():
            if stage == "total" and ctx.retrieval_only:
                continue  # the ledger's 'total' is per chat row; retrieval-only requests have none
            self.latency.labels(stage, ctx.policy).observe(ms / 1000)

    def set_budget(self, name: str, scope: str, ratio: float) -> None:
        self.budget_ratio.labels(name, scope).set(ratio)

    def exposition(self) -> bytes:
        """This process's series; with PROMETHEUS_MULTIPROC_DIR set (`serve --workers N`), the sum
        over every worker, so one scrape of any worker sees the whole server."""
        from prometheus_client import CollectorRegistry, generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> bool:
        """Serve /metrics; False (and a warning) when the port is taken, e.g. by another process."""
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("metrics endpoint not started on %s:%s: %s", host, port, exc)
            return False
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _label_filter(policies: tuple[str, ...] = ()) -> str:
    """`,policy=~"a|b"` with each name regex-escaped, then escaped for a PromQL string."""
    if not policies:
        return ""
    alt = "|".join(re.escape(p) for p in policies).replace("\\", "\\\\").replace('"', '\\"')
    return f',policy=~"{alt}"'


def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else x


class PrometheusSource:
    """Latency percentiles and request rates from a Prometheus server (prometheus-api-client),
    with histogram_quantile over the exporter's histograms. Prometheus knows the policy label
    only: other filters (user, model, variant, index version) stay with the ledger."""

    FILTERABLE = ("policy",)

    def __init__(self, url: str, timeout_s: float = 5.0):
        from prometheus_api_client import PrometheusConnect

        self.url = url
        self._prom = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout_s)

    def check(self) -> bool:
        return bool(self._prom.check_prometheus_connection())

    def quantile_query(self, q: float, window_s: int, stage: str | None = "total", policies: tuple[str, ...] = (),
                       by_stage: bool = False) -> str:
        sel = f'stage="{stage}"' if stage else 'stage=~".+"'
        by = "le, stage" if by_stage else "le"
        return (f"histogram_quantile({q}, sum by ({by}) "
                f"(increase({LATENCY_METRIC}_bucket{{{sel}{_label_filter(policies)}}}[{int(window_s)}s])))")

    def latency_quantiles(self, start: datetime, end: datetime, stage: str = "total", policies: tuple[str, ...] = (),
                          qs=(0.5, 0.95, 0.99)) -> dict[float, float | None]:
        """Percentiles (ms) of the whole [start, end) window, evaluated at `end`."""
        window = max(1, int((end - start).total_seconds()))
        out: dict[float, float | None] = {}
        for q in qs:
            res = self._prom.custom_query(self.quantile_query(q, window, stage, policies),
                                          params={"time": end.timestamp()})
            out[q] = _num(res[0]["value"][1]) * 1000 if res and _num(res[0]["value"][1]) is not None else None
        return out

    def _stepped(self, make_query, start: datetime, end: datetime, step_s: int) -> list[tuple[int, dict, float]]:
        """(bucket start, labels, value) for each step of [start, end): full steps with one range query
        (each evaluated at its step's end over the step), the last, partial one (e.g. today so far)
        with an instant query over its elapsed part."""
        t0, t_end = int(start.timestamp()), int(end.timestamp())
        n_full = max(0, (t_end - t0) // step_s)
        out: list[tuple[int, dict, float]] = []
        if n_full:
            res = self._prom.custom_query_range(
                make_query(step_s), start_time=datetime.fromtimestamp(t0 + step_s, timezone.utc),
                end_time=datetime.fromtimestamp(t0 + n_full * step_s, timezone.utc), step=f"{int(step_s)}s")
            for series in res:
                for ts, v in series["values"]:
                    if (x := _num(v)) is not None:
                        out.append((int(float(ts)) - step_s, series["metric"], x))
        last = t0 + n_full * step_s
        if t_end - last >= 1:
            for series in self._prom.custom_query(make_query(t_end - last), params={"time": t_end}):
                if (x := _num(series["value"][1])) is not None:
                    out.append((last, series["metric"], x))
        return out

    def latency_series(self, start: datetime, end: datetime, step_s: int, policies: tuple[str, ...] = (),
                       qs=(0.5, 0.95, 0.99)) -> list[LatencyPoint]:
        """Points as the ledger's `latency_series` gives them (bucket: epoch of the step's start; no count),
        each step over its own window."""
        out = []
        for q in qs:
            for bucket, labels, v in self._stepped(lambda w: self.quantile_query(q, w, None, policies, by_stage=True),
                                                   start, end, step_s):
                out.append(LatencyPoint(bucket, labels.get("stage", "?"), q, v * 1000))
        return sorted(out, key=lambda p: (p.bucket, p.stage, p.q))

    def request_series(self, start: datetime, end: datetime, step_s: int,
                       policies: tuple[str, ...] = ()) -> list[RequestPoint]:
        """Requests per step by outcome (the status label): the increase of the counter, not always whole."""
        def query(w: int) -> str:
            return f"sum by (status) (increase(rag_requests_total{{status=~\".+\"{_label_filter(policies)}}}[{int(w)}s]))"
        out = [RequestPoint(b, labels.get("status", "?"), v) for b, labels, v in self._stepped(query, start, end, step_s)]
        return sorted(out, key=lambda p: (p.bucket, p.outcome))
