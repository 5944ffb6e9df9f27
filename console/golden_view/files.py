"""The ⇅ Import / export tab: import JSONL or CSV (a malformed file is refused whole), export the
working copy or a frozen version as CSV, JSONL or ragas JSONL."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.errors import RagError
from backend.evaluation.golden import GoldenSet, GoldItem, SetItem, export_csv, export_jsonl, export_ragas, parse_items
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.golden_view.common import keys, status_name
from console.i18n import t
from console.markup import escape_md


def import_section(services: Services, set_name: str) -> None:
    st.markdown(t("**⬆️ Import**"))
    st.caption(t("JSONL (one item per line: question, references, reference_answer, tags), a shared data set's "
               "`queries.jsonl` (question, gold_ids, answer), or CSV with `question | gold_context_ids | "
               "reference_answer` columns (ids `doc` or `doc:start-end`, separated by `|`). A malformed file is refused "
               "with its line and reason, and nothing is imported."))
    with st.form(keys("import_form"), border=True):
        upload = st.file_uploader(t("File"), type=["jsonl", "csv"], key=keys("upload"))
        names = {s: status_name(s) for s in ("approved", "draft")}
        status = st.radio(t("Import as"), list(names), key=keys("import_status"), horizontal=True,
                          format_func=names.__getitem__)
        submitted = st.form_submit_button(t("⬆️ Import"), key=keys("import"), **need(Action.annotate))
    if submitted:
        if upload is None:
            st.error(t("Choose a file first."), icon="🛑")
            return
        n = kit.run(keys, lambda: services.golden.import_items(set_name, parse_items(upload.getvalue(), upload.name),
                                                               current_actor(), status=status),
                    failed=t("Nothing imported"), inline=True)
        if n is not None:
            st.success(t("Imported **{n}** items into **{name}** as {status}.", n=n, name=escape_md(set_name),
                         status=status_name(status)), icon="✅")


def _export_choices(latest: int | None) -> list[str]:
    return ["approved", "all"] + [f"v{v}" for v in range(latest or 0, 0, -1)]


def export_section(services: Services, current: GoldenSet) -> None:
    st.markdown(t("**⬇️ Export**"))
    set_name = current.name
    choices = _export_choices(current.latest_version)
    names = {"approved": t("approved items (working copy)"), "all": t("all items")} | {
        w: t("frozen version {v}", v=w[1:]) for w in choices if w.startswith("v")}
    what = st.selectbox(t("Items"), choices, key=keys("export_what"), format_func=names.__getitem__)
    items: list[GoldItem] | list[SetItem]
    if what.startswith("v"):
        items = services.golden.version_items(set_name, int(what[1:]))[1]
    else:
        items = services.golden.items(set_name, status="approved" if what == "approved" else None)
    stem = f"{set_name}-{what}"

    def ragas() -> str:
        """The gold spans' text as the live index holds it; each reference's stored quote without an index."""
        gold = [i if isinstance(i, GoldItem) else i.gold() for i in items]
        try:
            contexts = services.evals.reference_contexts(services.store.resolve(services.settings.index_alias), gold)
        except RagError:
            contexts = None
        return export_ragas(gold, contexts)

    with st.container(horizontal=True, gap="small"):
        st.download_button(t("⬇️ CSV"), data=export_csv(items) if items else "", file_name=f"{stem}.csv", mime="text/csv",
                           key=keys("export_csv"), on_click="ignore", **need(Action.export, disabled=not items))
        st.download_button(t("⬇️ JSONL"), data=export_jsonl(items) if items else "", file_name=f"{stem}.jsonl",
                           mime="application/jsonl", key=keys("export_jsonl"), on_click="ignore",
                           **need(Action.export, disabled=not items))
        st.download_button(t("⬇️ ragas JSONL"), data=ragas if items else "", file_name=f"{stem}.ragas.jsonl",
                           mime="application/jsonl", key=keys("export_ragas"), on_click="ignore",
                           **need(Action.export, disabled=not items,
                                  help=t("user_input, reference, reference_contexts (the gold spans' text on the live "
                                         "index), reference_context_ids — loads with ragas.EvaluationDataset.from_jsonl")))
    st.caption(t("{n} item", n=len(items)) if len(items) == 1 else t("{n} items", n=len(items)))
