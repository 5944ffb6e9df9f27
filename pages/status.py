"""Status: the live index, every index version, each dependency's health and the stack."""
import streamlit as st

from console import api_view, state, status_view
from console.i18n import t

services = state.get_services()
st.title(t("🩺 Status"))
status_view.live_index(services)
status_view.dependencies(state.health_monitor())
api_view.rate_limiter()  # the HTTP API's rate limiter: degraded (failing open) while its Redis is down
status_view.versions(services)
status_view.stack(services.settings.stack)
