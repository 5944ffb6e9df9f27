"""The frame around every page, drawn by the entry script before the page runs: styles, the
sidebar status (live index, dependency health, stack) and the first-start build banner."""
from __future__ import annotations

import logging

import streamlit as st

from backend.access import Action
from backend.services import Services
from console import costs_view, kit, state
from console.access_view import need
from console.auth import current_actor, sidebar_identity
from console.i18n import N_, t
from console.i18n import switch as language_switch
from console.markup import escape_md
from console.state import BuildStatus, IndexInfo, describe
from console.styles import CSS

log = logging.getLogger(__name__)

ICONS = {"up": "🟢", "down": "🔴", "not configured": "⚪"}
HEALTH = {"up": N_("up"), "down": N_("down"), "not configured": N_("not configured")}  # shown as


def health_status(status: str) -> str:
    """A dependency's status in the session's language (an unknown one as it is)."""
    return t(HEALTH[status]) if status in HEALTH else status


def services_or_error() -> Services | None:
    """The services, or a readable reason and a retry: no page runs without them."""
    try:
        with st.spinner(t("Starting services…")):
            return state.get_services()
    except Exception as exc:
        log.exception("starting services failed")
        st.error(t("The console could not start its services — {error}", error=describe(exc)), icon="🛑")
        st.caption(t("Fix the setting or start the dependency, then retry. Settings come from environment variables "
                     "or a .env file in the working directory."))
        st.button(t("🔁 Retry"), key="frame.retry_services", on_click=state.reset)
        return None


def render(services: Services) -> None:
    st.html(CSS)
    sidebar_identity(current_actor())
    with st.sidebar:
        language_switch(services.access, current_actor())
    info, build = state.ensure_live_index(services)
    with st.sidebar:
        _index(info, build)
        _health()
        costs_view.sidebar_alerts(services.costs)  # firing alerts (cost, errors, latency, budgets)
        _stack(services)
    _build_banner(info, build)


# --- sidebar ---------------------------------------------------------------------------------
def _index(info: IndexInfo, build: BuildStatus) -> None:
    st.markdown(t("**📚 Live index**"))
    if info.error:
        st.error(info.error, icon="🔴")
    elif info.ready:
        st.markdown(t("`{alias}` → `{collection}` · **{points}** points", alias=info.alias, collection=info.collection,
                      points=f"{info.points:,}"))
        v = info.version
        if v:
            st.caption(t("{model} · {docs} docs · {chunks} chunks · built {when} by {who}",
                         model=escape_md(v.embedding_model), docs=f"{v.n_docs:,}", chunks=f"{v.n_chunks:,}",
                         when=kit.when(v.created_at), who=escape_md(v.created_by)))
    elif build.state == "running":
        pct = f" {build.progress.fraction:.0%}" if build.progress else ""
        st.caption(t("`{alias}`: building…{pct}", alias=info.alias, pct=pct))
    else:
        st.caption(t("`{alias}` does not exist yet", alias=info.alias))


@st.fragment(run_every=30)  # rarely: a timed rerun can close a dropdown the user has open
def _health() -> None:
    """Redraws itself from the monitor's latest snapshot; never waits for a check to finish."""
    rows = state.health_monitor().rows(wait_s=1.0 if _first_draw() else 0.0)
    if rows is None:
        st.caption(t("⏳ Checking dependencies…"))
        return
    down = [h.part for h in rows if h.status == "down"]
    label = t("🔴 Down: {parts}", parts=", ".join(down)) if down else t("🟢 Dependencies up")
    with st.expander(label, expanded=bool(down)):
        for h in rows:
            st.markdown(f"{ICONS[h.status]} **{h.part}** · {health_status(h.status)}")
            st.caption(escape_md(h.detail))


def _first_draw() -> bool:
    """A healthy local stack answers in well under a second: wait that long once per session,
    so the first page shows real statuses instead of 'checking'."""
    first = "frame.health_seen" not in st.session_state
    st.session_state["frame.health_seen"] = True
    return first


def _stack(services: Services) -> None:
    with st.expander(t("🧱 Stack in use")):
        for part, where in services.settings.stack.items():
            st.caption(f"**{part}** · {escape_md(where)}")


# --- first-start build -----------------------------------------------------------------------
def _build_banner(info: IndexInfo, build: BuildStatus) -> None:
    if info.ready or info.error:
        return
    if build.state == "running":
        st.info(t("**First start:** building a small demo index (a SciFact and CMRC 2018 sample) so you can ask "
                  "right away. Questions open when it is ready; this page updates by itself."), icon="🏗️")
        _progress()
    elif build.state == "failed":
        st.error(t("Building the demo index failed — {error}", error=build.error), icon="🛑")
        st.caption(t("Or ingest your own documents: `python -m backend ingest <folder>` (in local mode, stop the "
                     "console first: the local vector store allows one process at a time)."))
        st.button(t("🔁 Retry the demo build"), key="frame.retry_build", on_click=state.demo_build().start,
                  args=(current_actor(),), **need(Action.rebuild))
    else:
        st.warning(t("The live index alias `{alias}` does not exist.", alias=info.alias), icon="📭")
        st.button(t("🏗️ Build the demo index"), key="frame.build", on_click=state.demo_build().start,
                  args=(current_actor(),), **need(Action.rebuild))


@st.fragment(run_every=1)
def _progress() -> None:
    """Redraws itself every second; reruns the whole app when the build ends (enables chat)."""
    status = state.demo_build().status()
    if status.state != "running":
        state.health_monitor().refresh(wait_s=0)  # the vector store's row names the new alias
        st.rerun()
    p = status.progress
    if p is None or p.chunks_total == 0:
        st.progress(0.0, text=t("Reading and chunking the demo documents… {seconds} s", seconds=f"{status.seconds:.0f}"))
        return
    if p.rate:
        speed = t(" · {rate} chunks/s", rate=f"{p.rate:.1f}") + \
            (t(" · about {seconds} s left", seconds=f"{p.eta_s:.0f}") if p.eta_s is not None else "")
    else:
        speed = t(" · first batch, {seconds} s", seconds=f"{status.seconds:.0f}")
    reused = t(" · {n} reused from earlier builds", n=f"{p.reused:,}") if p.reused else ""
    st.progress(p.fraction, text=t("Embedding **{done} / {total}** chunks into `{collection}`{speed}{reused}",
                                   done=f"{p.chunks_done:,}", total=f"{p.chunks_total:,}", collection=p.collection,
                                   speed=speed, reused=reused))
