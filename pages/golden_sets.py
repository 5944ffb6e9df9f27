"""Golden sets: annotate questions with the chunks that answer them (search, tick, widen), review
drafts, follow each annotator's progress, freeze versions for evaluation runs, import and export."""
import streamlit as st

from console import golden_view as view
from console import kit, state
from console.i18n import t

services = state.get_services()
st.title(t("🏷️ Golden sets"))
kit.flash(view.keys)
current = view.choose_set(services)
if current is not None:
    name = current.name
    annotate, review, items, progress, files = st.tabs(
        [t("✍️ Annotate"), t("📥 Review queue"), t("📋 Items"), t("📈 Progress"), t("⇅ Import / export")])
    with annotate:
        search, item = st.columns([3, 2], gap="large")
        with search:
            view.search_form(services)
            view.results(services)
        with item:
            view.item_form(services, name)
    with review:
        view.review_queue(services, name)
    with items:
        view.items_table(services, name)
    with progress:
        view.progress(services, name)
    with files:
        left, right = st.columns(2, gap="large")
        with left:
            view.import_section(services, name)
        with right:
            view.export_section(services, current)
