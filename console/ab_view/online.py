"""The 📈 Online tab: the live variants of one experiment (current vs candidate release) from the
ledger, the traces and the pairwise votes, with the tests that say whether a difference is
significant yet. The experiment is in the URL by its id (?experiment=)."""
from __future__ import annotations

import streamlit as st

from backend.releases.online import online_report
from backend.services import Services
from console import kit
from console.ab_view.common import SS, headers, keys
from console.ab_view.rows import comparison_rows, experiment_label, variant_display_rows
from console.i18n import N_, t
from console.markup import escape_md

# Whose live requests the online comparison counts (backend.releases.online.online_report's `source`).
ONLINE_SOURCES = {"all": N_("all traffic"), "api": N_("API keys"), "console": N_("console users")}
# Where the experiment was before it was bound by id: Streamlit's bind="query-params" put its long label there.
LABEL_PARAM = "ab.experiment"


def online(services: Services) -> None:
    releases = services.releases
    experiments = releases.experiments()
    if not experiments:
        st.info(t("No experiment yet: in **🚀 Releases**, make a release current, then set a candidate with a traffic "
                  "share. Live requests (`backend.live.answer_live`) record their variant on every ledger row."), icon="📈")
        return
    by_id = {e.id: e for e in experiments}
    ids = list(by_id)
    kit.from_url(keys("experiment"), "experiment", ids, ids[0])  # the newest unless the link names another
    if LABEL_PARAM in st.query_params:  # a link from before ?experiment=: its label is ignored
        del st.query_params[LABEL_PARAM]
    if st.query_params.get("experiment") != SS[keys("experiment")]:  # a link without it gets it
        kit.to_url(keys("experiment"), "experiment")
    exp = by_id[st.selectbox(t("Experiment"), ids, key=keys("experiment"), format_func=lambda x: experiment_label(by_id[x]),
                             on_change=kit.to_url, args=(keys("experiment"), "experiment"))]
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    source = left.segmented_control(
        t("Traffic"), list(ONLINE_SOURCES), default="all", format_func=lambda s: t(ONLINE_SOURCES[s]),
        key=keys("online_source"),
        help=t("Whose requests to count: those sent with an API key (production), those of console users, or all "
               "(system requests too). Pairwise votes are the console's own, whatever the traffic.")) or "all"
    right.button(t("🔄 Refresh"), key=keys("online_refresh"), help=t("Read the ledger, traces and votes again"))
    report = online_report(services.db, releases, exp, source=source)
    cur, cand = releases.get(exp.current_id), releases.get(exp.candidate_id)
    until = f"{kit.when(exp.ended_at)} ({exp.outcome})" if exp.ended_at else t("now (running)")
    st.markdown(t("**current** {current} vs **candidate** {candidate} · from {start} to {until} · {traffic}",
                  current=escape_md(cur.label), candidate=escape_md(cand.label), start=kit.when(exp.started_at),
                  until=until, traffic=t(ONLINE_SOURCES[source])))
    for trip in exp.trips:
        st.warning(f"{kit.when(trip.ts, seconds=True)} · {trip.reason}", icon="🚨")
    variants = variant_display_rows(report)
    st.dataframe(variants, hide_index=True, width="stretch", key=keys("online_variants"), column_config=headers(variants))
    tests = comparison_rows(report)
    st.dataframe(tests, hide_index=True, width="stretch", key=keys("online_tests"),
                 column_config=headers(tests, **{"significant yet?": st.column_config.TextColumn(width="large")}))
    st.caption(t("Requests, errors and cost from the ledger (one request = its model calls), latency = end to end "
                 "(histogram estimate; order-statistic 95% CI), thumbs from the traces, win rate from the pairwise "
                 "votes between the two releases' policies (ties and 'both bad' left out; exact sign test). Tests: "
                 "two-proportion z, Welch on means; 'more needed' is per variant for 80% power at the observed "
                 "difference."))
