"""The golden set: the picker (mirrored to ?set=), the 'new set' form, the counts per status and the
freeze button (an immutable version that evaluation runs point at)."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.evaluation.golden import GoldenSet
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.golden_view.common import SS, keys
from console.i18n import t
from console.markup import escape_md


def _on_create(services: Services) -> None:
    name = (SS.get(keys("new_name")) or "").strip()
    created = kit.run(keys, lambda: services.golden.create(name, current_actor(), SS.get(keys("new_desc")) or ""),
                      ok=t("Created the golden set **{name}**: search the index and tick the chunks that answer your "
                           "first question.", name=escape_md(name)))
    if created is not None:
        SS[keys("set")] = name
        SS[keys("new_name")] = ""
        SS[keys("new_desc")] = ""
        st.query_params["set"] = name


def _create_form(services: Services) -> None:
    with st.form(keys("new_form"), border=False):
        st.text_input(t("Name"), key=keys("new_name"), max_chars=200, placeholder=t("e.g. support-faq"))
        st.text_input(t("Description"), key=keys("new_desc"), placeholder=t("what the set covers (optional)"))
        st.form_submit_button(t("➕ Create set"), type="primary", key=keys("create"), on_click=_on_create, args=(services,),
                              **need(Action.annotate))


def choose_set(services: Services) -> GoldenSet | None:
    """Set picker, 'new set' form, counts and the freeze button; returns the chosen set."""
    sets = services.golden.list_sets()
    names = [s.name for s in sets]
    kit.from_url(keys("set"), "set", names, names[0] if names else None)  # first visit, or the set is gone
    if not sets:
        st.info(t("No golden set yet. Create one: name it after what its questions cover."), icon="🏷️")
        with st.container(border=True, width=520):
            _create_form(services)
        return None
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.selectbox(t("Golden set"), names, key=keys("set"), on_change=kit.to_url, args=(keys("set"), "set"), width=320,
                     help=t("The URL keeps the set (?set=…), so a view can be linked and reloaded."))
        with st.popover(t("➕ New set")):
            _create_form(services)
    current = next(s for s in sets if s.name == SS[keys("set")])
    latest = current.latest_version
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.markdown(t("📝 **{draft}** draft · ✅ **{approved}** approved · ❌ **{rejected}** rejected · 🧊 frozen: "
                      "**{frozen}**", draft=current.draft, approved=current.approved,
                      rejected=current.rejected, frozen=f"v{latest}" if latest else t("not yet")))
        st.button(t("🧊 Freeze approved items as v{n}", n=(latest or 0) + 1), key=keys("freeze"),
                  on_click=_on_freeze, args=(services, current.name),
                  **need(Action.review, disabled=current.approved == 0,
                         help=t("Snapshot the approved items as an immutable version: evaluation runs point at a "
                                "version.")))
    if current.description:
        st.caption(escape_md(current.description))
    return current


def _on_freeze(services: Services, set_name: str) -> None:
    kit.run(keys, lambda: services.golden.freeze(set_name, current_actor()),
            ok=lambda v: t("Frozen **{name} v{v}**: open the run viewer to evaluate it.", name=escape_md(set_name), v=v))
