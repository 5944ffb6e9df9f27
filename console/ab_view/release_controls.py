"""The controls of the 🚀 Releases tab: traffic (candidate and its share, make current, stop, promote,
roll back), the create and guardrail forms, and the two confirmations (promote, roll back). Each
button calls one backend.releases.manager method through console.kit.run, with the acting user."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.errors import RagError
from backend.releases.manager import Guardrails
from backend.services import Services
from console import kit
from console.ab_view.common import SS, keys, option_label, parse_option, policy_options
from console.access_view import need
from console.auth import current_actor
from console.i18n import t
from console.markup import escape_md
from console.state import describe

POLICY_INDEX = "__policy__"


def _promote_body(services: Services) -> None:
    state = services.releases.state()
    if state.candidate is None:
        kit.close(keys)
        st.rerun()
    cand, cur = state.candidate, state.current
    alias = services.releases.alias
    live = services.store.aliases().get(alias)
    if cur:
        st.markdown(t("**{candidate}** becomes the current release instead of {current}; every user gets it.",
                      candidate=escape_md(cand.label), current=escape_md(cur.label)))
    else:
        st.markdown(t("**{candidate}** becomes the current release; every user gets it.",
                      candidate=escape_md(cand.label)))
    if cand.collection != live:
        st.markdown(t("`{alias}` will point at **`{collection}`** instead of `{live}` in the same step (one atomic "
                      "alias update, recorded in the alias history).", alias=alias, collection=cand.collection,
                      live=live))
    st.text_input(t("Why (recorded with the release event)"), key=keys("promote_reason"))


def _rollback_body(services: Services) -> None:
    target = services.releases.rollback_target()
    state = services.releases.state()
    if target is None or state.current is None:
        kit.close(keys)
        st.rerun()
    back = dict(target=escape_md(target.label), current=escape_md(state.current.label))
    st.markdown(t("Back to **{target}** instead of {current} (the candidate is cleared).", **back) if state.candidate
                else t("Back to **{target}** instead of {current}.", **back))
    if target.collection != state.current.collection:
        st.markdown(t("`{alias}` will point back at **`{collection}`** in the same step.", alias=services.releases.alias,
                      collection=target.collection))
    st.text_input(t("Why (recorded with the release event)"), key=keys("rollback_reason"))


def dialogs(services: Services) -> None:
    """Draw the confirmation dialog that is open (one per run)."""
    d, releases = kit.asked(keys), services.releases
    if d and d["kind"] == "promote":
        kit.confirm(keys, t("Promote the candidate?"), t("🚀 Promote now"), "promote",
                    lambda: releases.promote(current_actor(), SS.get(keys("promote_reason"), "")),
                    ok=lambda done: t("Promoted {release}: it is now the current release.", release=done.label),
                    failed=t("Not promoted"),
                    body=lambda: _promote_body(services))
    elif d and d["kind"] == "rollback":
        kit.confirm(keys, t("Roll back?"), t("↩️ Roll back now"), "rollback",
                    lambda: releases.rollback(current_actor(), SS.get(keys("rollback_reason"), "")),
                    ok=lambda done: t("Rolled back to {release}.", release=done.label), failed=t("Not rolled back"),
                    body=lambda: _rollback_body(services))


def _on_create(services: Services) -> None:
    name, version = parse_option(SS[keys("new_policy")])
    index = SS.get(keys("new_index"))
    r = kit.run(keys, lambda: services.releases.create(current_actor(), name, version,
                                                       index=None if index == POLICY_INDEX else index,
                                                       note=SS.get(keys("new_note"), "")),
                failed=t("Release not created"), ok=lambda r: t("Created release {release}.", release=r.label))
    if r is not None:
        SS[keys("pick")] = r.id


def _on_make_current(services: Services) -> None:
    rid = SS.get(keys("pick"))
    if kit.run(keys, lambda: services.releases.set_current(current_actor(), rid, SS.get(keys("reason"), "")) or True,
               failed=t("Not made current"), ok=t("Release #{id} is now current.", id=rid)):
        SS[keys("reason")] = ""


def _on_set_candidate(services: Services) -> None:
    rid, share = SS.get(keys("pick")), SS[keys("share")] / 100
    if kit.run(keys, lambda: services.releases.set_candidate(current_actor(), rid, share, SS.get(keys("reason"), "")),
               failed=t("Candidate not set"),
               ok=lambda exp: t("Release #{id} is the candidate for {share} of users (experiment {experiment}).", id=rid,
                                share=f"{share:.0%}", experiment=exp)):
        SS[keys("reason")] = ""


def _on_share(services: Services) -> None:
    share = SS[keys("new_share")] / 100
    if kit.run(keys, lambda: services.releases.set_share(current_actor(), share, SS.get(keys("reason"), "")) or True,
               failed=t("Share not changed"), ok=t("Candidate share set to {share}.", share=f"{share:.0%}")):
        SS[keys("reason")] = ""


def _on_clear(services: Services) -> None:
    if kit.run(keys, lambda: services.releases.clear_candidate(current_actor(), SS.get(keys("reason"), "")) or True,
               failed=t("Candidate not cleared"), ok=t("Experiment stopped: every user gets the current release.")):
        SS[keys("reason")] = ""


def _on_guardrails(services: Services) -> None:
    g = Guardrails(max_error_rate=SS[keys("g_error")] / 100, max_p95_ms=SS[keys("g_p95")],
                   window_minutes=SS[keys("g_window")], min_requests=SS[keys("g_min")])
    kit.run(keys, lambda: services.releases.set_guardrails(current_actor(), g), failed=t("Guardrails not saved"),
            ok=t("Guardrails saved."))


def controls(services: Services) -> None:
    releases = services.releases
    state = releases.state()
    rows = releases.list()
    by_id = {r.id: r for r in rows}
    st.markdown(t("**🎛️ Traffic**"))
    if rows:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            pick = kit.select(t("Release"), list(by_id), keys("pick"), format_func=lambda i: by_id[i].label, width=380)
            st.number_input(t("Candidate share (%)"), 1, 100, 10, step=5, key=keys("share"), width=170,
                            help=t("Share of users (sticky per user) who get the candidate"))
            st.text_input(t("Why"), key=keys("reason"), placeholder=t("recorded with the event"), width=260)
        with st.container(horizontal=True):
            is_current = state.current is not None and pick == state.current.id
            st.button(t("🧪 Set as candidate"), type="primary", key=keys("set_candidate"), on_click=_on_set_candidate,
                      args=(services,), **need(Action.set_traffic_share, disabled=state.current is None or is_current,
                                               help=t("Needs a current release") if state.current is None else None))
            st.button(t("📌 Make current"), key=keys("make_current"), on_click=_on_make_current, args=(services,),
                      **need(Action.promote, disabled=is_current,
                             help=t("First setup, or a direct switch (prefer candidate → promote)")))
    else:
        st.caption(t("No release yet: create one below."))
    if state.candidate:
        share = int(round(state.share * 100))
        if SS.get(keys("share_seen")) != (state.experiment_id, share):  # follow changes made elsewhere (a trip, the CLI)
            SS[keys("new_share")], SS[keys("share_seen")] = share, (state.experiment_id, share)
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.number_input(t("Candidate share now (%)"), 0, 100, step=5, key=keys("new_share"), width=190,
                            help=t("0 pauses the experiment (the guardrail does this when it trips)"))
            st.button(t("🎚️ Apply share"), key=keys("apply_share"), on_click=_on_share, args=(services,),
                      **need(Action.set_traffic_share))
            st.button(t("⏹️ Stop experiment"), key=keys("clear"), on_click=_on_clear, args=(services,),
                      **need(Action.set_traffic_share))
            st.button(t("🚀 Promote candidate"), type="primary", key=keys("promote"), on_click=kit.ask, args=(keys, "promote"),
                      **need(Action.promote))
    target = releases.rollback_target()
    if target is not None:
        st.button(t("↩️ Roll back to {release}", release=target.label), key=keys("rollback"), on_click=kit.ask, args=(keys, "rollback"),
                  **need(Action.rollback))


def create_form(services: Services) -> None:
    # Open on a first visit without releases, and stays as it was: a changing `expanded` would redraw it closed.
    open_ = SS.setdefault(keys("create_open"), not services.releases.list())
    with st.expander(t("➕ Create a release (policy version × index version)"), expanded=open_):
        try:
            options = policy_options(services)
            collections = services.store.collections()
        except RagError as exc:
            st.error(describe(exc), icon="🛑")
            return
        alias = services.releases.alias
        with st.form(keys("create_form"), border=False):
            c1, c2, c3 = st.columns([2, 2, 2])
            c1.selectbox(t("Policy version"), options, key=keys("new_policy"), format_func=option_label)
            c2.selectbox(t("Index version"), [POLICY_INDEX, alias, *collections], key=keys("new_index"),
                         format_func=lambda o: t("the policy's index (else the live alias)") if o == POLICY_INDEX
                         else t("{alias} (live alias, resolved now)", alias=o) if o == alias else o)
            c3.text_input(t("Note"), key=keys("new_note"), placeholder=t("what this release changes"))
            st.form_submit_button(t("➕ Create release"), key=keys("create"), on_click=_on_create, args=(services,),
                                  **need(Action.experiment))


def guardrail_form(services: Services) -> None:
    g = services.releases.state().guardrails
    with st.expander(t("🛡️ Guardrail settings")):
        with st.form(keys("guardrail_form"), border=False):
            c1, c2, c3, c4 = st.columns(4)
            c1.number_input(t("Max error rate (%)"), 0.0, 100.0, g.max_error_rate * 100, step=1.0, key=keys("g_error"))
            c2.number_input(t("Max p95 (ms)"), 1.0, 600_000.0, float(g.max_p95_ms), step=500.0, key=keys("g_p95"))
            c3.number_input(t("Window (minutes)"), 1, 1440, g.window_minutes, key=keys("g_window"))
            c4.number_input(t("Min requests"), 1, 100_000, g.min_requests, key=keys("g_min"))
            st.form_submit_button(t("💾 Save guardrails"), key=keys("save_guardrails"), on_click=_on_guardrails,
                                  args=(services,), **need(Action.experiment))
        st.caption(t("Checked on the live path at most every few seconds, over the candidate's ledger rows in the "
                     "window (not before the experiment started). Crossing a limit sets the share to 0%, records the "
                     "event and fires an alert."))
