"""The cost & latency page in headless Chromium over a seeded ledger: its first render is timed
(target 2 s; the figures go to tests/artifacts/costs-timings.json), changing the range and a filter
redraws the charts (read back from Plotly's drawn SVG: titles, legend entries, bar paths), a click on
a bar drills down to the ledger rows, and every state is screenshotted into tests/artifacts/."""
from __future__ import annotations

import json
import os
import time
from typing import Iterator

import pytest

from ledger_fixtures import seed_console
from browser_kit import ARTIFACTS, start_console

pytestmark = pytest.mark.browser

TIMINGS: dict[str, float] = {}

# Plotly draws SVG: the title (.gtitle), the legend's entries (.legendtext) and one path per bar
# (.barlayer .point path); the plot's div (.js-plotly-plot) holds the figure's data. Read what is
# drawn, not what we hoped to draw.
CHART = """(title) => [...document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')]
  .find(c => [...c.querySelectorAll('.gtitle')].some(t => t.textContent.includes(title)))"""
COST_FIGURE = """() => {
  const c = (%s)('Cost per');
  if (!c) return null;
  const title = c.querySelector('.gtitle').textContent;
  const bars = [...c.querySelectorAll('.barlayer .point path')].filter(p => p.getBBox().height > 0);
  const series = [...c.querySelectorAll('.legend .legendtext')].map(t => t.textContent).sort();
  const days = new Set(c.data.flatMap(t => Array.from(t.x, String))).size;
  return {title, series, days, bars: bars.length};
}""" % CHART
# The center of one drawn bar of a chart (scrolled into view) and the fields its click reports:
# 'tallest' (vertical bars) or the first bar of the first trace (the top row of a ranking).
BAR = """([title, which]) => {
  const c = (%s)(title);
  const paths = which === 'tallest' ? [...c.querySelectorAll('.barlayer .point path')]
                                    : [c.querySelector('.barlayer .trace .point path')];
  let best = null;
  for (const p of paths) {
    const r = p.getBoundingClientRect();
    if (!best || r.height > best.r.height) best = {p, r};
  }
  const point = best.p.closest('.point'), trace = point.closest('.trace');
  const i = [...trace.querySelectorAll('.point')].indexOf(point);
  const t = c.data[[...trace.parentNode.children].indexOf(trace)];
  return {x: best.r.x + best.r.width / 2, y: best.r.y + best.r.height / 2,
          customdata: t.customdata ? t.customdata[i] : null};
}""" % CHART


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("costs-browser")
    seed_console(data_dir)
    c = start_console(data_dir)
    yield c.url
    c.close()


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        (ARTIFACTS / "costs-timings.json").write_text(json.dumps(TIMINGS, indent=2))
        print("\ncost page timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in TIMINGS.items()))


def _open(context, url: str):  # noqa: ANN001, ANN202
    """A new tab on /costs; returns it and the seconds until the tiles and the cost chart are drawn."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    t = time.perf_counter()
    page.goto(f"{url}/costs")
    page.get_by_role("heading", name="💰 Costs & latency").wait_for()
    page.get_by_test_id("stMetric").nth(11).wait_for()
    page.wait_for_function(f"({COST_FIGURE})() && ({COST_FIGURE})().bars > 0")
    return page, time.perf_counter() - t


def _cost_figure(page) -> dict:  # noqa: ANN001
    return page.evaluate(COST_FIGURE)


def _wait_redraw(page, before: dict) -> dict:  # noqa: ANN001
    page.wait_for_function(f"(b) => {{ const f = ({COST_FIGURE})(); return f && f.bars > 0 && "
                           "(f.days !== b.days || f.series.join() !== b.series.join()); }", arg=before)
    page.wait_for_timeout(600)  # let the other charts and tiles settle
    return _cost_figure(page)


def _screenshot(page, name: str) -> None:  # noqa: ANN001
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _click_bar(page, title: str, which: str) -> dict:  # noqa: ANN001
    """Hover, then click a drawn bar of the chart with this title (Plotly picks the clicked point
    from the hover); returns the bar's center and customdata."""
    page.evaluate(f"(t) => ({CHART})(t).scrollIntoView({{block: 'center'}})", title)
    page.wait_for_timeout(300)
    bar = page.evaluate(BAR, [title, which])
    page.mouse.move(bar["x"], bar["y"])
    page.wait_for_timeout(200)
    page.mouse.click(bar["x"], bar["y"])
    return bar


def _pick(page, label: str, option: str) -> None:  # noqa: ANN001
    """Choose an option of a sidebar selectbox or multiselect by its label."""
    box = page.get_by_test_id("stSidebar").locator("[data-testid=stSelectbox], [data-testid=stMultiSelect]") \
        .filter(has=page.get_by_text(label, exact=True))
    box.locator("input").first.click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def test_dashboard_renders_fast_redraws_on_range_and_filter_and_drills_down(browser, console: str) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1500, "height": 1400})
    first_visit, TIMINGS["first_visit_cold_server_s"] = _open(context, console)  # starts the services
    first_visit.close()
    renders = []
    for _ in range(3):  # new sessions on a warm server, the browser's cache holding Streamlit's scripts
        p, seconds = _open(context, console)
        renders.append(seconds)
        p.close()
    TIMINGS["first_render_warm_server_median_s"] = sorted(renders)[1]
    TIMINGS["machine_load_1min"] = os.getloadavg()[0]
    page, _ = _open(context, console)
    first = _cost_figure(page)
    assert first["days"] >= 29 and first["title"].startswith("Cost per day by model")
    metrics = page.get_by_test_id("stMetric")
    spend_30 = metrics.first.inner_text()
    assert page.get_by_text("Models without a price in this range").count() == 1
    assert page.get_by_text("The price table was last checked").count() == 1
    _screenshot(page, "costs-30-days.png")

    t = time.perf_counter()
    _pick(page, "Time range", "Last 7 days")
    week = _wait_redraw(page, first)
    TIMINGS["range_change_redraw_s"] = time.perf_counter() - t
    assert week["days"] == 7 and week["series"] == first["series"]
    assert metrics.first.inner_text() != spend_30
    assert "range=Last+7+days" in page.url or "range=Last%207%20days" in page.url  # the view is in the URL

    t = time.perf_counter()
    _pick(page, "Policy", "deep")
    one = _wait_redraw(page, week)
    TIMINGS["filter_change_redraw_s"] = time.perf_counter() - t
    assert one["series"] == ["gpt-4.1", "rerank-v3.5", "text-embedding-3-small"], one  # the deep policy's models
    _screenshot(page, "costs-7-days-deep-policy.png")

    bar = _click_bar(page, "Cost per", "tallest")
    assert bar["customdata"][1] == "gpt-4.1", bar  # the tallest bar: the deep policy's model
    drill = page.get_by_test_id("stMarkdownContainer").filter(has_text="🔬").first
    drill.wait_for()
    assert "model gpt-4.1" in drill.inner_text() and " rows" in drill.inner_text()  # the tallest bar: the deep model
    page.get_by_test_id("stDataFrame").first.wait_for()
    _screenshot(page, "costs-drill-down.png")

    page.get_by_role("tab", name="🔢 Tokens & requests").click()
    page.wait_for_function(f"() => !!({CHART})('Requests by outcome')")
    _screenshot(page, "costs-tokens-requests.png")
    page.get_by_role("tab", name="⏱️ Latency").click()
    page.wait_for_function(f"() => !!({CHART})('latency per stage')")
    _screenshot(page, "costs-latency.png")
    page.get_by_role("tab", name="🏆 Top users & questions").click()
    page.wait_for_function(f"() => !!({CHART})('Top users by cost')")
    top_user = _click_bar(page, "Top users by cost", "first")["customdata"][0]
    drill = page.get_by_test_id("stMarkdownContainer").filter(has_text="🔬 user").first
    drill.wait_for()
    assert f"user {top_user}" in drill.inner_text()
    _screenshot(page, "costs-top-users-drill-down.png")
    page.wait_for_function(f"() => !!({CHART})('Top questions by cost')")
    _click_bar(page, "Top questions by cost", "first")
    page.get_by_test_id("stMarkdownContainer").filter(has_text="🔬 question:").first.wait_for()
    page.get_by_role("tab", name="🎯 Budgets").click()
    page.get_by_text("monthly total").first.wait_for()
    page.wait_for_timeout(800)
    _screenshot(page, "costs-budgets.png")
    assert page.get_by_text("Traceback").count() == 0
    page.close()
    context.close()
    # Speed is measured, not asserted: the figures go to tests/artifacts/costs-timings.json with the
    # machine load, and into the closing note against the 2 s target.
