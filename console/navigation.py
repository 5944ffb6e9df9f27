"""The navigation script that `console/app.py` (the st.App) serves; AppTest runs this file.

It runs on every rerun of every page (direct links included): page config, who is acting (no
page runs without a login outside local mode), navigation over the pages this role may open,
then the frame (sidebar status, first-start build), then the page. Titles and every
string follow the session's language (console.i18n). Adding a page is one line in
PAGES."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts console/ on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from backend.access import Action, can  # noqa: E402
from console import auth, frame  # noqa: E402
from console.i18n import N_, restore_saved, t  # noqa: E402

PAGES_DIR = ROOT / "pages"
# Emoji icons only: `:material/...:` icons are fetched from a CDN that offline machines cannot reach.
# (file, title, icon, the action a role needs to see the page in the navigation)
PAGES = [
    ("status.py", N_("Status"), "🩺", Action.view),
    ("chat.py", N_("Chat tester"), "💬", Action.ask),
    ("index_admin.py", N_("Index admin"), "🗂️", Action.view),
    ("golden_sets.py", N_("Golden sets"), "🏷️", Action.view),
    ("eval_runs.py", N_("Evaluation runs"), "🧪", Action.view),
    ("costs.py", N_("Costs & latency"), "💰", Action.view),
    ("ab.py", N_("A/B & releases"), "⚖️", Action.view),
    ("api.py", N_("API"), "🔌", Action.view),
    ("access.py", N_("Access"), "🔐", Action.manage_users),
]

st.set_page_config(page_title="RAG Ops Console", page_icon="🔎", layout="wide", initial_sidebar_state="expanded")
actor = auth.login_gate()  # draws the login form and stops the run when nobody is logged in
services = frame.services_or_error()
if services is not None:
    restore_saved(services.access, actor)  # the language this user chose last time
# Titles follow the language; URLs come from the file names, the same in every language.
page = st.navigation([st.Page(PAGES_DIR / f, title=t(title), icon=i, default=f == "status.py")
                      for f, title, i, need in PAGES if can(actor, need)])
if services is not None:
    frame.render(services)
    page.run()
