"""A/B comparison and releases: what changed between two policies, their answers side by side
(blind votes), offline over a golden set, online per live variant, and the release controls."""
import streamlit as st

from console import ab_view as view
from console import kit, state
from console.i18n import t

services = state.get_services()
st.title(t("⚖️ A/B comparison & releases"))
kit.flash(view.keys)
a, b = view.pickers(services)
diff, side, offline, online, releases = st.tabs(
    [t("🧾 Policy diff"), t("🆚 Side by side"), t("🧪 Offline"), t("📈 Online"), t("🚀 Releases")])
with diff:
    view.policy_diff_view(a, b)
with side:
    view.side_by_side(services, a, b)
with offline:
    view.offline(services, a, b)
with online:
    view.online(services)
with releases:
    view.releases_tab(services)
view.dialogs(services)
