"""The console's server: `streamlit run console/app.py` from the repo root.

Streamlit picks up this module-level `st.App` and serves the navigation script beside it, plus the
routes of the same process: the HTTP API under /api/v1 and the password login (AUTH_MODE=password). In local mode it refuses to
start on an address other than loopback, where anyone who reaches the port would be admin."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts console/ on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402

from backend.api import create_api  # noqa: E402
from backend.api.server import metrics_endpoint, preload  # noqa: E402
from backend.services import shared_services  # noqa: E402

from backend.settings import get_settings  # noqa: E402
from console.auth import oidc_secrets, refuse_local_off_loopback  # noqa: E402

preload()  # here, before any session's thread runs a page
settings = get_settings()
refuse_local_off_loopback(settings, st.get_option("server.address"))
# The HTTP API on the same port and process (it shares the Qdrant local store with the pages).
routes, middleware = [Mount("/api/v1", app=create_api(shared_services)), Route("/metrics", metrics_endpoint)], []
if settings.auth_mode == "password":
    from backend.access.web import LoginRequired, login_routes

    routes, middleware = routes + login_routes(), [Middleware(LoginRequired)]
app = st.App(Path(__file__).with_name("navigation.py"), routes=routes, middleware=middleware,
             secrets=oidc_secrets(settings))
