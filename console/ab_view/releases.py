"""The 🚀 Releases tab: which release is live (current, candidate and its share, the guardrail), the
controls (console.ab_view.release_controls), the releases and their history, and a probe of the live
path as a given user."""
from __future__ import annotations

import dataclasses

import streamlit as st

from backend.live import answer_live, guardrail_status
from backend.services import Services
from console import answer_view, kit
from console.ab_view.common import SS, headers, keys
from console.ab_view.release_controls import controls, create_form, guardrail_form
from console.ab_view.rows import event_rows, guardrail_state, release_rows
from console.auth import current_actor
from console.i18n import t
from console.markup import escape_md


def releases_tab(services: Services) -> None:
    live_status(services)
    controls(services)
    tables(services)
    create_form(services)
    guardrail_form(services)
    live_probe(services)


def live_status(services: Services) -> None:
    state = services.releases.state()
    left, right = st.columns(2)
    with left, st.container(border=True):
        st.markdown(t("**📌 Current release**"))
        if state.current:
            st.markdown(f"**{escape_md(state.current.label)}**")
            st.caption(t("{share} of users · policy {policy} · index `{index}`", share=f"{100 - state.share * 100:.0f}%",
                         policy=escape_md(state.current.policy), index=state.current.collection))
        else:
            st.caption(t("None yet: live requests use the built-in default policy on the live alias. Create a release "
                         "below and make it current."))
    with right, st.container(border=True):
        st.markdown(t("**🧪 Candidate release**"))
        if state.candidate:
            st.markdown(t("**{release}** · **{share}** of users", release=escape_md(state.candidate.label),
                          share=f"{state.share:.0%}"))
            started = kit.when(state.started_at) if state.started_at else "?"
            st.caption(t("experiment `{experiment}` since {started} · sticky per user", experiment=state.experiment_id,
                         started=started))
        else:
            st.caption(t("No experiment running."))
    g = guardrail_status(services)
    gr = g.guardrails
    icon = {"over": "🚨", "paused": "⏸️"}.get(g.state, "🛡️")
    figures = ""
    if g.requests:
        figures = t(" · candidate: {n} requests, error rate {rate}, p95 {p95}", n=g.requests,
                    rate=f"{g.error_rate:.1%}", p95=kit.duration(g.p95_ms))
    st.markdown(t("{icon} **Guardrail:** {state}{figures} · limits: error rate ≤ {rate}, p95 ≤ {p95} over {window} min, "
                  "from {n} requests", icon=icon, state=escape_md(guardrail_state(g)), figures=figures,
                  rate=f"{gr.max_error_rate:.0%}", p95=kit.duration(gr.max_p95_ms), window=gr.window_minutes,
                  n=gr.min_requests))


def tables(services: Services) -> None:
    state = services.releases.state()
    rows = services.releases.list()
    if rows:
        st.markdown(t("**📦 Releases**"))
        shown = release_rows(rows, state.current.id if state.current else None,
                             state.candidate.id if state.candidate else None, state.share)
        st.dataframe(shown, hide_index=True, width="stretch", key=keys("releases"), column_config=headers(shown))
    events = services.releases.events(100)
    if events:
        st.markdown(t("**🕘 History**"))
        history = event_rows(events)
        st.dataframe(history, hide_index=True, width="stretch", key=keys("history"),
                     **({"height": 250} if len(events) > 6 else {}),
                     column_config=headers(history, why=st.column_config.TextColumn(width="large"),
                                           **{"from": {"label": t("from release")}, "to": {"label": t("to release")}}))


def live_probe(services: Services) -> None:
    with st.expander(t("🎯 Try the live path as a user")):
        with st.form(keys("probe_form"), border=False):
            c1, c2, c3 = st.columns([1, 3, 1], vertical_alignment="bottom")
            c1.text_input(t("User id"), key=keys("probe_user"), value="user-1")
            c2.text_input(t("Question for the live path"), key=keys("probe_question"))
            asked = c3.form_submit_button(t("Send"), key=keys("probe"), width="stretch")
        if asked and not (SS.get(keys("probe_question")) or "").strip():
            st.warning(t("Type a question first: nothing was sent."), icon="✍️")
        elif asked:
            probe_actor = dataclasses.replace(current_actor(), end_user=SS[keys("probe_user")].strip() or "user")
            got = kit.run(keys, lambda: answer_live(services, SS[keys("probe_question")].strip(), probe_actor), inline=True)
            if got is None:
                return
            where = t("the **{variant}** release {release}", variant=t(got.variant),
                      release=escape_md(got.release.label)) if got.release else \
                t("the built-in default policy (no release configured)")
            st.markdown(t("**{user}** is served by {where}", user=escape_md(SS[keys("probe_user")]), where=where))
            answer_view.answer_text(got.answer)
            st.caption(answer_view.summary(got.answer))
            if got.tripped:
                st.warning(got.tripped, icon="🚨")
