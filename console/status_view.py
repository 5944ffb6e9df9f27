"""Sections of the status page: the live index, dependency health, index versions, stack."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from backend.services import Services
from console import state
from console.frame import ICONS

CHAT_PAGE = Path(__file__).resolve().parent.parent / "pages" / "chat.py"


def live_index(services: Services) -> None:
    info = state.index_info(services)
    st.subheader("📚 Live index")
    if info.error:
        st.error(info.error, icon="🔴")
        return
    if not info.ready:
        st.info(f"The alias `{info.alias}` does not exist yet — see the first-start notice above.", icon="📭")
        return
    v = info.version or {}
    st.markdown(f"`{info.alias}` → `{info.collection}`" + (f" · built from {v['source']}" if v.get("source") else ""))
    cols = st.columns(4)
    cols[0].metric("Points", f"{info.points:,}")
    cols[1].metric("Documents", f"{v.get('n_docs', 0):,}")
    cols[2].metric("Chunks", f"{v.get('n_chunks', 0):,}")
    cols[3].metric("Embedding dim", v.get("dim", "?"), help=v.get("embedding_model"))
    if v:
        st.caption(f"Embedding model **{v['embedding_model']}** · built {v['created_at']:%Y-%m-%d %H:%M} by {v['created_by']}")
    else:
        st.caption("No registry entry for this collection (built outside the console's ingestor?).")
    st.page_link(CHAT_PAGE, label="Ask it in the chat tester", icon="💬")


def dependencies(monitor: state.HealthMonitor) -> None:
    head, button = st.columns([4, 1], vertical_alignment="bottom")
    head.subheader("🔌 Dependencies")
    button.button("🔄 Re-check now", key="status.recheck", on_click=monitor.refresh, width="stretch")
    rows = monitor.rows(wait_s=4.0)  # this page is about health: worth waiting for a bounded check
    if rows is None:
        st.info("Checking dependencies…", icon="⏳")
        return
    st.dataframe(
        [{"status": f"{ICONS[h.status]} {h.status}", "part": h.part, "detail": h.detail,
          "check ms": round(h.latency_ms, 1) if h.latency_ms is not None else None} for h in rows],
        hide_index=True, width="stretch",
        column_config={"detail": st.column_config.TextColumn(width="large")},
    )
    st.caption(f"Checked at most every {state.HEALTH_TTL_S} s; every check is bounded in time.")


def versions(services: Services) -> None:
    st.subheader("🗂️ Index versions")
    alias = services.settings.index_alias
    try:
        live = services.store.aliases().get(alias)
        rows = services.registry.list(family=alias)
    except Exception as exc:
        st.error(f"Index versions unavailable — {state.describe(exc)}", icon="🔴")
        return
    if not rows:
        st.caption("No index version yet.")
        return
    st.dataframe(
        [{"live": "✅" if r["collection"] == live else "", "collection": r["collection"], "status": r["status"],
          "docs": r["n_docs"], "chunks": r["n_chunks"], "model": r["embedding_model"], "dim": r["dim"],
          "created": r["created_at"], "by": r["created_by"], "source": r["source"], "error": r["error"]}
         for r in sorted(rows, key=lambda r: -r["version"])],
        hide_index=True, width="stretch",
    )


def stack(where: dict[str, str]) -> None:
    st.subheader("🧱 Stack")
    st.dataframe([{"part": k, "engine": v} for k, v in where.items()], hide_index=True, width="stretch")
