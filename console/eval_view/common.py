"""What the modules of the evaluation page share: its widget keys (`runs.*`, console.kit.PageKeys: one
instance for the page, with its own flash icons)."""
from __future__ import annotations

import streamlit as st

from console import kit

keys = kit.PageKeys("runs", icons={"success": "🏁", "warning": "⏹️"})
SS = st.session_state
