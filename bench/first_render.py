"""First render of the cost dashboard, the chat tester and the A/B page in headless Chromium, against
the cost page's 2 s target and against bare Streamlit pages drawn in the same run (the floor of the
framework on this machine: a title, 12 metric tiles and one bar chart, nothing of ours). The baseline
draws its bar with Plotly, as the console does (Plotly's script alone costs a new tab ~0.8-0.9 s); a
second bare page draws it with Vega-Lite, for reference. The servers run side by side and their tabs
alternate, so machine noise hits all of them; the ratio to the Plotly baseline is the figure to
compare across machines.

    .venv/bin/python -m bench.first_render                       # seeded ledger (8,000 rows)
    .venv/bin/python -m bench.first_render --rows 1000000        # the issue's scale (~1 min to generate)

Each tab is new (a new Streamlit session) on a warm server, with the browser's cache holding
Streamlit's scripts, as for a user opening the dashboard again. "Drawn" means the page heading and:
for the cost page and the bare pages all 12 tiles and the chart's bars in the DOM (Plotly's bar
paths; Vega's marks); for the chat tester its question box; for the A/B page its two policy pickers.
The console runs with an empty demo corpus, so no first-start build competes for the CPU. Needs
requirements-test.txt (Playwright) and Debian's /usr/bin/chromium.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the suite's seeding and port helpers
RESULTS = ROOT / "bench" / "results"
CHROMIUM = "/usr/bin/chromium"
TARGET_S = 2.0
BARS = """() => document.querySelectorAll('.js-plotly-plot .barlayer .point path').length > 0
  || document.querySelectorAll('[data-testid=stVegaLiteChart] .role-mark path').length > 0"""
BARE_PAGE = '''import pandas as pd
import streamlit as st

st.set_page_config(layout="wide")
st.title("Reference")
for row in range(2):
    for i, col in enumerate(st.columns(6)):
        col.metric(f"tile {6 * row + i}", f"{i * 1.5:.2f}", border=True)
df = pd.DataFrame({"day": [f"2026-11-{d:02d}" for d in range(1, 31)] * 3, "usd": [d % 7 + 1 for d in range(90)],
                   "model": ["a"] * 30 + ["b"] * 30 + ["c"] * 30})
'''
PLOTLY_APP = BARE_PAGE + '''import plotly.express as px
st.plotly_chart(px.bar(df, x="day", y="usd", color="model"), width="stretch")
'''
VEGA_APP = BARE_PAGE + '''import altair as alt
st.altair_chart(alt.Chart(df).mark_bar().encode(x="day:O", y="usd:Q", color="model:N"), width="stretch")
'''


def _start(script: Path, data_dir: Path, log: Path, **extra: str) -> tuple[subprocess.Popen, str]:
    from services import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}  # the embedded stack
    env.update(DATA_DIR=str(data_dir), OPENBLAS_NUM_THREADS="1", **extra)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                             "--server.headless", "true", "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"streamlit did not start, see {log}")
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


TILES = "() => document.querySelectorAll('[data-testid=stMetric]').length >= 12"
CHAT_INPUT = "() => !!document.querySelector('[data-testid=stChatInputTextArea]')"
AB_PICKERS = "() => document.querySelectorAll('[data-testid=stSelectbox]').length >= 2"


def _open(context, url: str, heading: str, steps: list[tuple[str, str]]) -> dict[str, float]:  # noqa: ANN001
    """Seconds from navigation to the heading, then to each step's predicate; 'drawn' is the last."""
    page = context.new_page()
    page.set_default_timeout(120_000)
    t = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name=heading).wait_for()
    out = {"heading": time.perf_counter() - t}
    for name, predicate in steps:
        page.wait_for_function(predicate)
        out[name] = time.perf_counter() - t
    out["drawn"] = time.perf_counter() - t
    page.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8000, help="synthetic ledger rows (30 days when over 100,000)")
    ap.add_argument("--tabs", type=int, default=7, help="timed tabs per page (median reported)")
    ap.add_argument("--data-dir", type=Path, help="a console DATA_DIR to reuse (seeded here when it has no console.db)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from ledger_fixtures import seed_console

    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    data = args.data_dir or work / "data"
    if not (data / "console.db").exists():
        data.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        print(f"seeding a console with {args.rows:,} ledger rows…", flush=True)
        seed_console(data, rows=args.rows, days=30 if args.rows > 100_000 else 40)
        print(f"  {time.perf_counter() - t:.0f} s", flush=True)
    with sqlite3.connect(data / "console.db") as db:
        rows = db.execute("SELECT count(*) FROM ledger").fetchone()[0]
    (work / "bare_plotly.py").write_text(PLOTLY_APP)
    (work / "bare_vega.py").write_text(VEGA_APP)
    (work / "no-corpus").mkdir(exist_ok=True)  # no first-start demo build competing for the CPU
    console, console_url = _start(ROOT / "console" / "app.py", data, work / "console.log", DEMO_CORPUS=str(work / "no-corpus"))
    plotly_ref, plotly_url = _start(work / "bare_plotly.py", work / "ref-data", work / "bare_plotly.log")
    vega_ref, vega_url = _start(work / "bare_vega.py", work / "ref-data", work / "bare_vega.log")
    dashboard = [("tiles", TILES), ("chart", BARS)]
    pages = {"cost dashboard": (f"{console_url}/costs", "💰 Costs & latency", dashboard),
             "chat tester": (f"{console_url}/chat", "💬 Chat tester", [("input", CHAT_INPUT)]),
             "A/B page": (f"{console_url}/ab", "⚖️ A/B comparison & releases", [("pickers", AB_PICKERS)]),
             "bare page, Plotly": (plotly_url, "Reference", dashboard),
             "bare page, Vega-Lite": (vega_url, "Reference", dashboard)}
    times: dict[str, list[dict[str, float]]] = {name: [] for name in pages}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1500, "height": 1200})
            cold = {name: _open(context, *target)["drawn"] for name, target in pages.items()}  # services start, caches fill
            for _ in range(args.tabs):
                for name, target in pages.items():
                    times[name].append(_open(context, *target))
            browser.close()
    finally:
        for proc in (console, plotly_ref, vega_ref):
            _stop(proc)
    load = os.getloadavg()[0]
    med = {name: {k: statistics.median(t[k] for t in ts) for k in ts[0]} for name, ts in times.items()}
    ref = med["bare page, Plotly"]["drawn"]
    print(f"\nFirst render in a new tab, median of {args.tabs} (s); ledger {rows:,} rows; load {load:.1f}")
    print("Drawn: the cost page's 12 tiles and chart bars; the chat tester's question box; the A/B page's pickers.")
    print("| page                      | heading | drawn | drawn / bare Plotly page | first visit (cold) |")
    print("|---------------------------|---------|-------|--------------------------|--------------------|")
    for name, m in med.items():
        print(f"| {name:<25} | {m['heading']:7.2f} | {m['drawn']:5.2f} | {m['drawn'] / ref:24.2f} | {cold[name]:18.2f} |")
    ratios = {name: m["drawn"] / ref for name, m in med.items()}
    ours = med["cost dashboard"]
    ok = ours["drawn"] <= TARGET_S
    print(f"cost dashboard drawn in {ours['drawn']:.2f} s: {'within' if ok else 'OVER'} the {TARGET_S:.0f} s target; "
          f"ratio to the bare Plotly page {ratios['cost dashboard']:.2f} (target <= 1.3)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"first-render-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"rows": rows, "load": load, "median": med, "ratios": ratios, "cold": cold, "tabs": times}, indent=2))
    print(f"written {out.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
