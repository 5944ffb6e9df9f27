"""The 📋 Items tab (every item of the set, and one item's history) and the 📈 Progress tab (each
annotator's items per status)."""
from __future__ import annotations


import streamlit as st

from backend.services import Services
from console import kit
from console.golden_view.common import keys, status_name
from console.i18n import N_, t

STATUS_ICONS = {"draft": "📝", "approved": "✅", "rejected": "❌"}
# The tables' columns: English keys (tests and code read them), shown in the session's language.
ITEM_COLUMNS = (N_("id"), N_("status"), N_("question"), N_("references"), N_("reference answer"), N_("tags"),
                N_("author"), N_("reviewer"), N_("comment"), N_("updated"), N_("from trace"))
HISTORY_COLUMNS = (N_("when"), N_("who"), N_("action"), N_("before"), N_("after"))
PROGRESS_COLUMNS = (N_("annotator"), N_("total"), N_("draft"), N_("approved"), N_("rejected"), N_("approved share"))


def items_table(services: Services, set_name: str) -> None:
    rows = services.golden.items(set_name)
    if not rows:
        st.caption(t("No items yet."))
        return
    st.dataframe(
        [{"id": r.id, "status": f"{STATUS_ICONS[r.status]} {status_name(r.status)}", "question": r.question,
          "references": " | ".join(g.doc_id if g.end is None else f"{g.doc_id}:{g.start}-{g.end}" for g in r.references),
          "reference answer": r.reference_answer, "tags": ", ".join(r.tags), "author": r.author,
          "reviewer": r.reviewer or "", "comment": r.review_comment, "updated": kit.when(r.updated_at),
          "from trace": r.source_trace or ""} for r in rows],
        hide_index=True, width="stretch", key=keys("items"),
        column_config=kit.columns(ITEM_COLUMNS) | {"question": st.column_config.TextColumn(t("question"), width="large"),
                                               "id": st.column_config.NumberColumn(t("id"), format="%d")})
    questions = {r.id: r.question for r in rows}
    chosen = st.selectbox(t("History of item"), list(questions), index=None, key=keys("history_item"),
                          placeholder=t("choose an item"), format_func=lambda i: f"#{i} · {questions[i][:80]}")
    if chosen is not None:
        st.dataframe([{"when": f"{h.ts:%Y-%m-%d %H:%M:%S}", "who": h.actor, "action": h.action,
                       "before": h.before, "after": h.after} for h in services.golden.history(chosen)],
                     hide_index=True, width="stretch", key=keys("history"),
                     column_config=kit.columns(HISTORY_COLUMNS) | {"before": st.column_config.JsonColumn(t("before")),
                                                                "after": st.column_config.JsonColumn(t("after"))})


def progress(services: Services, set_name: str) -> None:
    per: dict[str, dict[str, int]] = {}
    for p in services.golden.progress(set_name):
        per.setdefault(p.author, {"draft": 0, "approved": 0, "rejected": 0})[p.status] = p.n
    if not per:
        st.caption(t("No items yet."))
        return
    rows = [{"annotator": a, "total": sum(c.values()), **c,
             "approved share": c["approved"] / max(1, sum(c.values()))} for a, c in sorted(per.items())]
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("progress"),
                 column_config=kit.columns(PROGRESS_COLUMNS) | {"approved share": st.column_config.ProgressColumn(
                     t("approved share"), format="percent", min_value=0, max_value=1)})
