"""The 📥 Review queue tab: each draft with its references, approved or rejected with a comment (kept in
the item's history)."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.evaluation.golden import GoldRef
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.golden_view.common import SS, keys
from console.i18n import t
from console.markup import escape_md


def _refs_md(refs: tuple[GoldRef, ...]) -> str:
    lines = []
    for r in refs:
        span = t("whole document") if r.end is None else \
            t("chars {start}–{end}", start=f"{r.start:,}", end=f"{r.end:,}")
        quote = f" — {escape_md(r.quote[:200])}…" if r.quote else ""
        lines.append(f"- {kit.code(r.doc_id)} {span}{quote}")
    return "\n".join(lines)


def _on_review(services: Services, item_id: int, approve: bool) -> None:
    comment = (SS.get(keys(f"comment.{item_id}")) or "").strip()
    if approve:
        ok = t("Item **#{id}** approved with your comment.", id=item_id) if comment else \
            t("Item **#{id}** approved.", id=item_id)
    else:
        ok = t("Item **#{id}** rejected with your comment.", id=item_id) if comment else \
            t("Item **#{id}** rejected.", id=item_id)
    kit.run(keys, lambda: services.golden.review(item_id, current_actor(), approve=approve, comment=comment), ok=ok)


def review_queue(services: Services, set_name: str) -> None:
    drafts = services.golden.items(set_name, status="draft")
    st.markdown(t("**1 draft to review**") if len(drafts) == 1 else t("**{n} drafts to review**", n=len(drafts)))
    if not drafts:
        st.caption(t("Nothing to review: drafts saved in ✍️ Annotate (or imported as drafts) appear here."))
    for d in drafts:
        with st.container(border=True):
            st.markdown(f"**#{d.id}** {escape_md(d.question)}")
            tags = t(" · tags {tags}", tags=escape_md(", ".join(d.tags))) if d.tags else ""
            st.caption(t("by {author} · {when}", author=escape_md(d.author), when=kit.when(d.updated_at)) + tags)
            st.markdown(_refs_md(d.references))
            if d.reference_answer:
                st.markdown(t("**Reference answer:** {answer}", answer=escape_md(d.reference_answer)))
            with st.form(keys(f"review_form.{d.id}"), border=False, enter_to_submit=False):
                st.text_input(t("Comment"), key=keys(f"comment.{d.id}"),
                              placeholder=t("why (kept in the item's history)"))
                with st.container(horizontal=True, gap="small"):
                    st.form_submit_button(t("✅ Approve"), type="primary", key=keys(f"approve.{d.id}"),
                                          on_click=_on_review, args=(services, d.id, True), **need(Action.review))
                    st.form_submit_button(t("❌ Reject"), key=keys(f"reject.{d.id}"),
                                          on_click=_on_review, args=(services, d.id, False), **need(Action.review))
