"""What the modules of the golden-set page share: its widget keys (`golden.*`, console.kit.PageKeys:
one instance for the page) and the chunks ticked as gold, kept in session state across searches so
one item can gather references from several queries."""
from __future__ import annotations

import streamlit as st

from console import kit
from console.i18n import N_, t

keys = kit.PageKeys("golden")
SS = st.session_state
STATUS_NAMES = {"draft": N_("draft"), "approved": N_("approved"), "rejected": N_("rejected")}


def ticked_chunks() -> dict[str, dict]:
    return SS.setdefault(keys("ticked"), {})


def in_document_order(ticked: dict[str, dict]) -> list[tuple[str, dict]]:
    """Ticked chunks by document and position, so adjacent spans read (and are saved) in order."""
    return sorted(ticked.items(), key=lambda kv: (kv[1]["doc_id"], kv[1]["start"]))


def status_name(status: str) -> str:
    """An item status as shown (the stored value stays English)."""
    return t(STATUS_NAMES[status]) if status in STATUS_NAMES else status
