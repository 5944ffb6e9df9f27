"""Prometheus: a real Prometheus (Debian package) scrapes the console's exporter; the
dashboard's Prometheus source (prometheus-api-client, histogram_quantile) returns the same p95
as the ledger within one histogram bucket; the shipped rules, config and Grafana JSON are valid
and use only series the exporter exports."""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from actors import user
from corpus import first_queries
from ledger_fixtures import cost_stack, ledger_rows, metered_engine
from prometheus_fixture import prometheus  # noqa: F401  (fixture)
from services import HOST, free_port

from backend.engine.generation import ExtractiveGenerator
from backend.engine.policy import Policy
from backend.ledger.buckets import bucket_bounds, bucket_of
from backend.ledger.metrics import Metrics, PrometheusSource
from backend.ledger.queries import TimeRange
from backend.services import Services

ROOT = Path(__file__).resolve().parent.parent


def _exported_names() -> set[str]:
    m = Metrics()
    names = set()
    for fam in m.registry.collect():
        for s in fam.samples:
            names.add(s.name)
        names.add(fam.name)
        if fam.type == "histogram":
            names |= {fam.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        if fam.type == "counter":
            names.add(fam.name + "_total")
    return names | {"up"}


def test_rules_config_and_grafana_dashboard_are_valid() -> None:
    r = subprocess.run(["promtool", "check", "rules", str(ROOT / "deploy" / "alert_rules.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    exported = _exported_names()
    rules = (ROOT / "deploy" / "alert_rules.yml").read_text()
    for name in re.findall(r"\b(rag_[a-z_]+)", rules):
        assert name in exported, name
    dash = json.loads((ROOT / "deploy" / "grafana_dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    for e in exprs:
        used = set(re.findall(r"\b(rag_[a-z_]+)", e))
        assert used and used <= exported, (e, used - exported)
    compose_cfg = (ROOT / "deploy" / "prometheus.yml").read_text()
    assert "job_name: rag-console" in compose_cfg and "console:9464" in compose_cfg
    assert 'METRICS_PORT: "9464"' in (ROOT / "docker-compose.yml").read_text()


def _query(url: str, promql: str) -> list:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


@pytest.mark.timeout(600)
def test_real_prometheus_scrapes_and_agrees_with_the_ledger(services: Services, tmp_path, prometheus) -> None:  # noqa: F811
    costs = cost_stack(tmp_path)
    port = free_port()
    assert costs.metrics.serve(HOST, port)
    try:
        t_start = datetime.now(timezone.utc) - timedelta(seconds=2)  # before the first scrape: its zeros are in the window
        prom = prometheus([f"{HOST}:{port}"])
        deadline = time.monotonic() + 30
        while not any(s["value"][1] == "1" for s in _query(prom.url, 'up{job="rag-console"}')):
            assert time.monotonic() < deadline, "Prometheus never scraped the exporter"
            time.sleep(0.3)

        def scraped(n: int) -> None:
            deadline = time.monotonic() + 30
            while True:
                got = _query(prom.url, "sum(rag_requests_total)")
                if got and float(got[0]["value"][1]) == n:
                    return
                assert time.monotonic() < deadline, f"Prometheus saw {got} requests, expected {n}"
                time.sleep(0.3)

        engine = metered_engine(services, costs, ExtractiveGenerator())
        questions = [q["question"] for q in first_queries("scifact", 8) + first_queries("cmrc2018", 6)]
        n = 0
        for policy in (Policy(top_k=3), Policy(top_k=5, rerank=True, rerank_candidates=20), Policy(top_k=3)):
            for i, q in enumerate(questions):  # the third pass is answered from the cache: a fast mode in the distribution
                engine.query(q, policy, user("alice"))
                n += 1
                if i == 0:  # a pass's first request may create label series (rerank, cache): Prometheus sees them
                    scraped(n)  # before the rest, else a burst inside one scrape interval shows no increase()
        scraped(n)
        t_end = datetime.now(timezone.utc)

        source = PrometheusSource(prom.url)
        assert source.check()
        from_prom = source.latency_quantiles(t_start, t_end, "total")
        window = TimeRange(t_start.replace(microsecond=0) - timedelta(seconds=1), t_end + timedelta(seconds=1), "hour")
        from_ledger = costs.queries.latency_quantiles(window, stage="total")
        totals = sorted(r["total_ms"] for r in ledger_rows(costs, kind="chat"))
        assert len(totals) == n
        exact_p95 = totals[int(0.95 * n + 0.5) - 1]
        lo, hi = bucket_bounds(bucket_of(exact_p95))
        print(f"\np95 total: exact {exact_p95:.1f} ms, ledger {from_ledger[0.95]:.1f} ms, "
              f"Prometheus {from_prom[0.95]:.1f} ms (bucket {lo:g}-{hi:g} ms)")
        for q in (0.5, 0.95, 0.99):
            assert from_prom[q] is not None and from_ledger[q] is not None
            b_lo, b_hi = bucket_bounds(bucket_of(from_ledger[q]))
            assert abs(from_prom[q] - from_ledger[q]) <= b_hi - b_lo, (q, from_prom[q], from_ledger[q])
        assert lo <= from_ledger[0.95] <= hi and lo <= from_prom[0.95] <= hi

        series = source.latency_series(t_end - timedelta(minutes=2), t_end, 60)
        assert {"total", "embed", "retrieve", "cache"} <= {r.stage for r in series}
        rate = source.request_series(t_end - timedelta(minutes=2), t_end + timedelta(seconds=1), 60)
        assert {r.outcome for r in rate} >= {"ok", "cache_hit"}

        with urllib.request.urlopen(f"{prom.url}/api/v1/rules", timeout=5) as r:
            groups = json.loads(r.read())["data"]["groups"]
        assert [g["name"] for g in groups] == ["rag-console"] and len(groups[0]["rules"]) == 7
        assert all(rule["health"] == "ok" for rule in groups[0]["rules"])

        _page_reads_prometheus(tmp_path / "console", prom.url)
    finally:
        costs.metrics.stop()


def _page_reads_prometheus(data_dir: Path, url: str) -> None:
    """The dashboard with PROMETHEUS_URL set: choosing Prometheus as the source changes what the
    latency chart and tiles say they read; a user filter sends them back to the ledger, saying why."""
    from ledger_fixtures import seed_console
    from streamlit.testing.v1 import AppTest

    from console import state

    data_dir.mkdir()
    seed_console(data_dir, rows=500, days=3)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OPENAI_BASE_URL", "REDIS_URL", "QDRANT_URL", "EMBEDDING_BASE_URL", "RERANK_URL", "DATABASE_URL",
                     "METRICS_PORT", "ALERT_WEBHOOK_URL", "INDEX_ALIAS"):
            mp.delenv(name, raising=False)
        mp.setenv("DATA_DIR", str(data_dir))
        mp.setenv("PROMETHEUS_URL", url)
        state.reset()
        try:
            at = AppTest.from_file(str(ROOT / "console" / "navigation.py"), default_timeout=120)
            at.run()
            at.switch_page("../pages/costs.py")
            at.session_state["costs.tab"] = "⏱️ Latency"
            at.run()
            assert "Source: **ledger" in " ".join(c.value for c in at.caption)
            at.sidebar.segmented_control(key="costs.latency_source").set_value("Prometheus").run()
            captions = " ".join(c.value for c in at.caption)
            assert not at.exception, at.exception
            assert f"Source: **Prometheus ({url}): histogram_quantile(0.95" in captions
            assert "Latency tiles: **Prometheus**" in captions
            at.sidebar.multiselect(key="costs.user").set_value(["user001"]).run()
            captions = " ".join(c.value for c in at.caption)
            assert "Prometheus has no user label: these figures come from the ledger." in captions
            at.sidebar.multiselect(key="costs.user").set_value([]).run()
            at.sidebar.multiselect(key="costs.source").set_value(["api"]).run()  # API traffic only
            captions = " ".join(c.value for c in at.caption)
            assert not at.exception, at.exception
            assert "Prometheus has no source label: these figures come from the ledger." in captions
        finally:
            state.reset()
