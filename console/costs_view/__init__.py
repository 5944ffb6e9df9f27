"""The cost & latency dashboard (pages/costs.py) and the sidebar's firing alerts, one module per tab.

Every figure comes from a backend query (backend.ledger.queries: SQL over the daily roll-ups or
the raw rows); these modules only turn small result sets into widgets and charts (console.charts).
Widget keys are namespaced "costs.*"; the range, filters and tab are mirrored to the URL. The Source
filter (api, console, system) separates API-key traffic from the console's own.

- `common`: the page's keys, filter labels, CSV downloads, confirmations and the one "enable, disable
  or delete" control of budgets and alert rules;
- `controls`: range and filters, warnings, tiles, and where latency figures come from;
- `spend`, `volume` (tokens & requests), `latency`, `top`, `budgets`, `alerts`, `prices`, `rows`
  (the ledger rows, also under a clicked chart): the tabs; `alerts` also holds the banner of firing
  alerts and the sidebar's list of them."""
from console.costs_view.alerts import alerts_section, firing_banner, sidebar_alerts
from console.costs_view.budgets import budget_bars, budgets_section
from console.costs_view.common import TABS, flash, keys, tabs
from console.costs_view.controls import change, controls, tiles, warnings
from console.costs_view.latency import latency_chart
from console.costs_view.prices import prices_section
from console.costs_view.rows import rows_section
from console.costs_view.spend import PALETTE, series_color, spend_chart
from console.costs_view.top import top_charts
from console.costs_view.volume import requests_chart, tokens_chart

__all__ = ["PALETTE", "TABS", "tabs", "alerts_section", "budget_bars", "budgets_section", "change", "controls", "firing_banner",
           "flash", "keys", "latency_chart", "prices_section", "requests_chart", "rows_section", "series_color",
           "sidebar_alerts", "spend_chart", "tiles", "tokens_chart", "top_charts", "warnings"]
