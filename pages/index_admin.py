"""Index admin: versions and aliases, shadow rebuild with live progress, gate → promote,
one-click roll back, snapshots, delete, alias history and the admin audit log."""
import streamlit as st

from console import index_admin_view as view
from console import kit, state
from console.i18n import t

services = state.get_services()
st.title(t("🗂️ Index admin"))
kit.flash(view.keys)
versions = services.index_admin.versions()
view.alias_map(services.index_admin, versions)
view.versions_table(versions)
left, right = st.columns(2, gap="large")
with left:
    view.rebuild(services)
with right:
    view.promote(services, versions)
st.divider()
left, right = st.columns([3, 2], gap="large")
with left:
    view.snapshots(services, versions)
with right:
    view.delete(services, versions)
st.divider()
view.history(services)
view.dialogs(services, versions)
