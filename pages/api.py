"""API: the base URL, copyable examples, the rate limiter, and the latest live requests."""
import streamlit as st

from console import api_view, state
from console.i18n import t

services = state.get_services()
st.title(t("🔌 HTTP API"))
base = api_view.base_url()
api_view.rate_limiter()
api_view.examples(base)
api_view.recent(services)
