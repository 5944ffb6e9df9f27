"""Entry script: `streamlit run console/app.py` from the repo root.

It runs on every rerun of every page (direct links included): page config, navigation over
the files in ../pages, then the frame (sidebar status, first-start build), then the page.
Adding a page is one line in PAGES."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts console/ on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from console import frame  # noqa: E402

PAGES_DIR = ROOT / "pages"
# Emoji icons only: `:material/...:` icons are fetched from a CDN that offline machines cannot reach.
PAGES = [
    st.Page(PAGES_DIR / "status.py", title="Status", icon="🩺", default=True),
    st.Page(PAGES_DIR / "chat.py", title="Chat tester", icon="💬"),
    st.Page(PAGES_DIR / "index_admin.py", title="Index admin", icon="🗂️"),
    st.Page(PAGES_DIR / "golden_sets.py", title="Golden sets", icon="🏷️"),
    st.Page(PAGES_DIR / "eval_runs.py", title="Evaluation runs", icon="🧪"),
    st.Page(PAGES_DIR / "costs.py", title="Costs & latency", icon="💰"),
    st.Page(PAGES_DIR / "ab.py", title="A/B & releases", icon="⚖️"),
]

st.set_page_config(page_title="RAG Ops Console", page_icon="🔎", layout="wide", initial_sidebar_state="expanded")
page = st.navigation(PAGES)
services = frame.services_or_error()
if services is not None:
    frame.render(services)
    page.run()
