"""The cost & latency page through Streamlit's AppTest over a seeded ledger: the tiles equal
the backend's figures, changing the range and a filter changes them, the warnings, budgets,
alerts, prices and ledger-rows sections work, and a budget can be created from the page.
(Charts are opaque to AppTest: their data is checked through the backend queries here
and their drawing in tests/test_browser_costs.py.)"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from backend.db import make_engine
from backend.ledger.queries import SOURCES, Filters, LedgerQueries, TimeRange
from backend.ledger.store import ledger
from console import costs_view, kit, state
from apptest_kit import APP, COSTS, STACK_ENV
from ledger_fixtures import seed_console

PAGE = COSTS


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LedgerQueries]]:
    data_dir = tmp_path_factory.mktemp("costs-console")
    seed_console(data_dir)
    with pytest.MonkeyPatch.context() as mp:
        for name in STACK_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("DATA_DIR", str(data_dir))
        state.reset()
        db = make_engine(f"sqlite:///{data_dir / 'console.db'}")
        try:
            yield data_dir, LedgerQueries(db)
        finally:
            db.dispose()
            state.reset()


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_tiles_follow_range_and_filters(seeded) -> None:
    _, q = seeded
    at = _page()
    assert at.title[0].value == "💰 Costs & latency"
    r30 = TimeRange.last_days(30)
    s30 = q.summary(r30)
    assert _metric(at, "Spend") == kit.money(s30.cost_usd)
    assert _metric(at, "Requests") == f"{s30.requests:,}"
    assert _metric(at, "p95 latency") == kit.duration(s30.latency_ms[0.95])
    assert _metric(at, "Cache savings") == kit.money(s30.saved_usd)
    assert len(at.get("plotly_chart")) == 1  # the Spend tab: cost per day

    warnings = " ".join(w.value for w in at.warning)
    assert "mystery" in warnings and "(3 calls)" in warnings  # a model without a price
    assert "last checked" in warnings  # the seeded table is older than PRICE_TABLE_MAX_AGE_DAYS
    assert any("errors: 7.5% > 5.0%" in e.value.replace("\\", "") for e in at.error)  # firing alert banner
    assert "🚨 1 alert firing" in [e.label for e in at.sidebar.expander]  # on every page's sidebar

    at.sidebar.selectbox(key="costs.range").set_value("Last 7 days").run()
    s7 = q.summary(TimeRange.last_days(7))
    assert s7.cost_usd != s30.cost_usd
    assert _metric(at, "Spend") == kit.money(s7.cost_usd)

    policy = sorted(q.options(r30)["policy"])[1]
    at.sidebar.multiselect(key="costs.policy").set_value([policy]).run()
    sf = q.summary(TimeRange.last_days(7), Filters(policy=(policy,)))
    assert _metric(at, "Spend") == kit.money(sf.cost_usd) and sf.cost_usd < s7.cost_usd
    assert _metric(at, "Requests") == f"{sf.requests:,}"

    at.sidebar.selectbox(key="costs.range").set_value("Last 24 hours").run()  # hour grain: raw rows
    sh = q.summary(TimeRange.last_hours(24), Filters(policy=(policy,)))
    assert _metric(at, "Spend") == kit.money(sh.cost_usd)
    assert not at.exception


def _raw_totals(data_dir: Path, r: TimeRange, source: str | None = None) -> tuple[float, int]:
    """(cost, requests) straight from the raw ledger rows of the range (of one source), not through
    the dashboard's queries or roll-ups: what the tiles must show."""
    L = ledger
    where = [L.c.epoch >= r.start_epoch, L.c.epoch < r.end_epoch] + ([L.c.source == source] if source else [])
    q = sa.select(sa.func.coalesce(sa.func.sum(L.c.cost_usd), 0.0),
                  sa.func.coalesce(sa.func.sum(sa.case((L.c.kind == "chat", 1), else_=0)), 0)).where(*where)
    db = make_engine(f"sqlite:///{data_dir / 'console.db'}")
    try:
        with db.connect() as conn:
            cost, requests = conn.execute(q).one()
    finally:
        db.dispose()
    return float(cost), int(requests)


def test_source_filter_shows_api_traffic_beside_console(seeded) -> None:
    """The seeded ledger has API-key traffic (a third of the users come through one of three keys)
    beside console traffic (and a few system rows): Source = api shows the API rows' totals only."""
    data_dir, q = seeded
    r30 = TimeRange.last_days(30)
    everything, api, console = (_raw_totals(data_dir, r30, s) for s in (None, "api", "console"))
    assert api[1] > 0 and console[1] > 0 and api[1] + console[1] <= everything[1]  # both sources are there
    assert api[0] < everything[0] and console[0] < everything[0]

    at = _page()
    source = at.sidebar.multiselect(key="costs.source")
    assert source.label == "Source" and source.options == ["api", "console", "system"] and source.value == []
    assert _metric(at, "Spend") == kit.money(everything[0])
    assert _metric(at, "Requests") == f"{everything[1]:,}"

    source.set_value(["api"]).run()
    assert not at.exception, at.exception
    assert _metric(at, "Spend") == kit.money(api[0]) != kit.money(everything[0])
    assert _metric(at, "Requests") == f"{api[1]:,}"
    s_api = q.summary(r30, Filters(source=("api",)))
    assert _metric(at, "p95 latency") == kit.duration(s_api.latency_ms[0.95])
    assert _metric(at, "Cost per request") == kit.money(api[0] / api[1])

    # The spend chart stacks by source; with the filter on, its only series is the API's.
    at.segmented_control(key="costs.stack_by").set_value("source").run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)  # opaque to AppTest, but its figure is in the message
    assert [t["name"] for t in figure["data"]] == ["api"]  # one series, in the color "api" always has
    assert figure["data"][0]["marker"]["color"] == costs_view.PALETTE[list(SOURCES).index("api")]
    by_source = q.cost_series(r30, Filters(source=("api",)), by="source")
    assert {x.key for x in by_source} == {"api"}
    assert sum(x.cost_usd for x in by_source) == pytest.approx(api[0])
    all_by_source = q.cost_series(r30, by="source")
    assert {x.key for x in all_by_source} >= {"api", "console"}

    # The latency tab honours the same filter (and lists only API rows when a point is picked).
    at.session_state["costs.tab"] = "⏱️ Latency"
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1
    at.session_state["costs.tab"] = "🧾 Ledger rows"
    at.run()
    rows = at.dataframe[0].value
    assert len(rows) > 0 and set(rows["source"]) == {"api"} and rows["api_key"].notna().all()

    at.sidebar.multiselect(key="costs.source").set_value(["console"]).run()
    assert _metric(at, "Spend") == kit.money(console[0])
    assert _metric(at, "Requests") == f"{console[1]:,}"
    assert set(at.dataframe[0].value["source"]) == {"console"}


def test_sections_budgets_alerts_prices_rows(seeded) -> None:
    _, q = seeded
    at = _page()
    at.session_state["costs.tab"] = "🎯 Budgets"
    at.run()
    assert not at.exception, at.exception
    budget_table = at.dataframe[0].value
    assert set(budget_table["budget"]) == {"monthly total", "user001 daily"}
    at.text_input(key="costs.b.name").set_value("deep policy weekly")
    at.selectbox(key="costs.b.scope").set_value("policy")
    at.selectbox(key="costs.b.value").set_value("deep")
    at.selectbox(key="costs.b.period").set_value("week")
    at.number_input(key="costs.b.limit").set_value(12.5)
    next(b for b in at.button if b.label == "Create the budget").click().run()
    assert not at.exception, at.exception
    assert "deep policy weekly" in set(at.dataframe[0].value["budget"])
    assert any("Budget 'deep policy weekly' created" in s.value for s in at.success)

    at.session_state["costs.tab"] = "🚨 Alerts"
    at.run()
    assert any("errors: 7.5%" in e.value.replace("\\", "") for e in at.error)
    assert "Error rate above 5% (15 min)" in set(at.dataframe[-1].value["name"])

    at.session_state["costs.tab"] = "🏷️ Prices"
    at.run()
    at.text_input(key="costs.p.test").set_value("gpt-4o-mini-2024-07-18").run()
    assert any("`gpt-4o-mini` (prefix)" in i.value.replace("\\", "") for i in at.info)

    at.session_state["costs.tab"] = "🧾 Ledger rows"
    at.run()
    everything = at.dataframe[0].value
    assert len(everything) == 500  # capped
    day = at.selectbox(key="costs.rows.when").options[3]
    at.selectbox(key="costs.rows.when").set_value(day).run()
    one_day = at.dataframe[0].value
    assert 0 < len(one_day) and {str(t)[:10] for t in one_day["ts"]} == {day}

    at.session_state["costs.tab"] = "🔢 Tokens & requests"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 2
    at.session_state["costs.tab"] = "⏱️ Latency"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    at.session_state["costs.tab"] = "🏆 Top users & questions"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 2
