"""Status: the live index, every index version, each dependency's health and the stack."""
import streamlit as st

from console import state, status_view

services = state.get_services()
st.title("🩺 Status")
status_view.live_index(services)
status_view.dependencies(state.health_monitor())
status_view.versions(services)
status_view.stack(services.settings.stack)
