"""Access: users and their roles, API keys (the secret shown once), and the audit log with
filters and a CSV export. Admins only: the navigation lists it for them alone, and the backend
refuses every call of anyone else."""
import streamlit as st

from backend.access import Action
from console import access_view as view
from console import kit, state
from console.i18n import N_, t

services = state.get_services()
st.title(t("🔐 Access"))
if view.locked(Action.manage_users, N_("This page")):
    st.stop()
kit.flash(view.keys)
users, keys, audit = st.tabs([t("👥 Users and roles"), t("🔑 API keys"), t("🧾 Audit log")])
with users:
    view.users_section(services.access)
with keys:
    view.keys_section(services.access)
with audit:
    view.audit_section(services.audit)
view.dialogs(services.access)
