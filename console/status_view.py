"""Sections of the status page: the live index, dependency health, index versions, stack."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from backend.services import Services
from console import kit, state
from console.frame import ICONS, health_status
from console.i18n import N_, t
from console.index_admin_view import status_name

CHAT_PAGE = Path(__file__).resolve().parent.parent / "pages" / "chat.py"
# Column headers: the tables keep these names, shown in the session's language.
HEALTH_COLUMNS = (N_("status"), N_("part"), N_("detail"), N_("check ms"))
VERSION_COLUMNS = (N_("live"), N_("collection"), N_("status"), N_("docs"), N_("chunks"), N_("model"), N_("dim"),
                   N_("created"), N_("by"), N_("source"), N_("error"))
STACK_COLUMNS = (N_("part"), N_("engine"))


def live_index(services: Services) -> None:
    info = state.index_info(services)
    st.subheader(t("📚 Live index"))
    if info.error:
        st.error(info.error, icon="🔴")
        return
    if not info.ready:
        st.info(t("The alias `{alias}` does not exist yet — see the first-start notice above.", alias=info.alias),
                icon="📭")
        return
    v = info.version
    st.markdown(f"`{info.alias}` → `{info.collection}`" +
                (t(" · built from {source}", source=v.source) if v and v.source else ""))
    cols = st.columns(4)
    cols[0].metric(t("Points"), f"{info.points:,}")
    cols[1].metric(t("Documents"), f"{v.n_docs if v else 0:,}")
    cols[2].metric(t("Chunks"), f"{v.n_chunks if v else 0:,}")
    cols[3].metric(t("Embedding dim"), v.dim if v else "?", help=v.embedding_model if v else None)
    if v:
        st.caption(t("Embedding model **{model}** · built {when} by {who}", model=v.embedding_model,
                     when=kit.when(v.created_at), who=v.created_by))
    else:
        st.caption(t("No registry entry for this collection (built outside the console's ingestor?)."))
    st.page_link(CHAT_PAGE, label=t("Ask it in the chat tester"), icon="💬")


def dependencies(monitor: state.HealthMonitor) -> None:
    head, button = st.columns([4, 1], vertical_alignment="bottom")
    head.subheader(t("🔌 Dependencies"))
    button.button(t("🔄 Re-check now"), key="status.recheck", on_click=monitor.refresh, width="stretch")
    rows = monitor.rows(wait_s=4.0, fresh=True)  # this page is about health: worth waiting for a bounded check
    if rows is None:
        st.info(t("Checking dependencies…"), icon="⏳")
        return
    st.dataframe(
        [{"status": f"{ICONS[h.status]} {health_status(h.status)}", "part": h.part, "detail": h.detail,
          "check ms": round(h.latency_ms, 1) if h.latency_ms is not None else None} for h in rows],
        hide_index=True, width="stretch",
        column_config=kit.columns(HEALTH_COLUMNS) | {"detail": st.column_config.TextColumn(t("detail"), width="large")},
    )
    st.caption(t("Checked at most every {seconds} s; every check is bounded in time.", seconds=state.HEALTH_TTL_S))


def versions(services: Services) -> None:
    st.subheader(t("🗂️ Index versions"))
    alias = services.settings.index_alias
    try:
        live = services.store.aliases().get(alias)
        rows = services.registry.list(family=alias)
    except Exception as exc:
        st.error(t("Index versions unavailable — {error}", error=state.describe(exc)), icon="🔴")
        return
    if not rows:
        st.caption(t("No index version yet."))
        return
    st.dataframe(
        [{"live": "✅" if r.collection == live else "", "collection": r.collection, "status": status_name(r.status),
          "docs": r.n_docs, "chunks": r.n_chunks, "model": r.embedding_model, "dim": r.dim,
          "created": r.created_at, "by": r.created_by, "source": r.source, "error": r.error}
         for r in sorted(rows, key=lambda r: -r.version)],
        hide_index=True, width="stretch", column_config=kit.columns(VERSION_COLUMNS),
    )


def stack(where: dict[str, str]) -> None:
    st.subheader(t("🧱 Stack"))
    st.dataframe([{"part": k, "engine": v} for k, v in where.items()], hide_index=True, width="stretch",
                 column_config=kit.columns(STACK_COLUMNS))
