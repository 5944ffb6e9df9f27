"""The 🏷️ Prices tab: the price table, which price applies to a model, export and import as CSV, adding
a price (or a price change: a new row with a later date) and deleting a row (confirmed first)."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.ledger.costs import Costs
from backend.ledger.pricing import MATCH_ORDER, MAX_PER_CALL_USD, MAX_USD_PER_M
from backend.ledger.queries import TimeRange
from console import kit
from console.access_view import locked, need
from console.auth import current_actor
from console.costs_view.common import dialog, frame, keys
from console.i18n import N_, t
from console.markup import escape_md


def prices_section(costs: Costs, r: TimeRange) -> None:
    rows = costs.prices.list()
    age = costs.prices.age_days()
    c = st.columns([3, 1], vertical_alignment="bottom")
    c[0].caption(t("{n} price rows · USD per million tokens · last checked {days} days ago", n=len(rows),
                   days=f"{age:,.0f}") if age is not None else t("empty"))
    if c[1].button(t("✅ Mark checked today"), key=keys("p.checked"),
                   **need(Action.edit_prices, help=t("You compared the table with the providers' price lists today"))):
        kit.run(keys, lambda: costs.prices.mark_checked(current_actor()), ok=t("Price table marked as checked today"),
                inline=True, rerun=True)
    df = frame(rows)
    if not df.empty:
        df = df[["id", N_("pattern"), N_("match"), "input_per_m", "output_per_m", "cached_input_per_m", "per_call_usd",
                 "effective_from", "checked_at", N_("note")]]
        st.dataframe(df, hide_index=True, key=keys("prices_table"), height=320, column_config=kit.columns(
            ["pattern", "match", "note"],
            input_per_m=st.column_config.NumberColumn(t("input $/M"), format="%.3f"),
            output_per_m=st.column_config.NumberColumn(t("output $/M"), format="%.3f"),
            cached_input_per_m=st.column_config.NumberColumn(t("cached input $/M"), format="%.4f"),
            per_call_usd=st.column_config.NumberColumn(t("per call $"), format="%.4f"),
            effective_from=st.column_config.DatetimeColumn(t("effective from"), format="YYYY-MM-DD HH:mm"),
            checked_at=st.column_config.DatetimeColumn(t("checked"), format="YYYY-MM-DD")))
    st.caption(t("The most specific pattern wins (exact, then the longest prefix, then a regex); of its rows, the one "
                 "in effect at the call's time. A change is a new row with a later date: past ledger rows keep their "
                 "cost."))
    test = st.text_input(t("Which price applies to a model?"), key=keys("p.test"),
                         placeholder=t("e.g. gpt-4o-mini-2024-07-18"))
    if test.strip():
        p = costs.prices.price(test.strip())
        if p is None:
            st.warning(t("No price matches {model}: its calls are recorded at \\$0.", model=kit.code(test.strip())),
                       icon="🏷️")
        else:
            st.info(t("{pattern} ({match}) since {date}: 1M input + 1M output tokens cost {cost}",
                      pattern=kit.code(p.pattern), match=p.match, date=f"{p.effective_from:%Y-%m-%d}",
                      cost=kit.money(p.cost(1_000_000, 1_000_000))), icon="🏷️")
    left, right = st.columns(2)
    with right:
        with st.expander(t("📤 Export CSV")):
            st.download_button(t("📤 Export the price table"), costs.prices.export_csv().encode(), "prices.csv",
                               mime="text/csv", key=keys("p.export"))
    if locked(Action.edit_prices, N_("Adding, importing or deleting prices")):
        return
    with left:
        with st.expander(t("➕ Add a price (or a price change)")):
            with st.form(keys("price_form"), border=False):
                c = st.columns(2)
                pattern = c[0].text_input(t("Model pattern"), key=keys("p.pattern"))
                match = c[1].selectbox(t("Match"), list(MATCH_ORDER), key=keys("p.match"))
                c = st.columns(4)
                pin = c[0].number_input(t("Input $/M"), min_value=0.0, max_value=MAX_USD_PER_M, format="%.4f",
                                        key=keys("p.in"))
                pout = c[1].number_input(t("Output $/M"), min_value=0.0, max_value=MAX_USD_PER_M, format="%.4f",
                                         key=keys("p.out"))
                pcached = c[2].text_input(t("Cached input $/M"), placeholder=t("as input"), key=keys("p.cached"))
                pcall = c[3].number_input(t("Per call $"), min_value=0.0, max_value=MAX_PER_CALL_USD, format="%.4f",
                                          key=keys("p.call"))
                c = st.columns(2)
                eff = c[0].date_input(t("Effective from (UTC)"), key=keys("p.eff"))
                note = c[1].text_input(t("Note"), key=keys("p.note"))
                if st.form_submit_button(t("Add the price"), type="primary"):
                    kit.run(keys, lambda: costs.prices.add(current_actor(), pattern, match, pin, pout, pcached or None,
                                                           pcall, eff, note),
                            ok=t("Price for '{pattern}' added", pattern=pattern), inline=True, rerun=True)
    with right:
        with st.expander(t("📥 Import CSV")):
            up = st.file_uploader(t("CSV with the export's columns"), type=["csv"], key=keys("p.upload"))
            if up is not None and st.button(t("📥 Import"), key=keys("p.import")):
                csv = up.getvalue().decode("utf-8", errors="replace")
                kit.run(keys, lambda: costs.prices.import_csv(current_actor(), csv),
                        ok=lambda res: t("Imported: {added} rows added, {skipped} already present", added=res.added,
                                         skipped=res.skipped),
                        inline=True, rerun=True)
        if rows:
            with st.expander(t("🗑️ Delete a price row")):
                labels = {x.id: t("#{id} {pattern} ({match}) from {date}", id=x.id, pattern=x.pattern,
                                  match=x.match, date=f"{x.effective_from:%Y-%m-%d}") for x in rows}
                pick = kit.select(t("Row"), list(labels), keys("p.pick"), format_func=labels.get)
                st.button(t("Delete this row"), key=keys("p.delete"), on_click=kit.ask, args=(keys, "price.delete"),
                          kwargs=dict(id=pick, name=labels[pick], what=t(
                              "The price row **{row}** is deleted. Ledger rows keep the cost they were written with; "
                              "calls from now on use the next matching row, or cost \\$0 when none matches.",
                              row=escape_md(labels[pick]))))
    dialog(costs, "price.")
