"""✍️ Annotate, the item: the ticked gold references, the item's question, reference answer and tags,
saved as a draft or approved at once; then the form is reset for the next question."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.evaluation.golden import GoldItem, ref_from_chunk
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.golden_view.common import SS, in_document_order, keys, status_name, ticked_chunks
from console.i18n import t
from console.markup import escape_md


def _on_untick(cid: str) -> None:
    ticked_chunks().pop(cid, None)
    SS.pop(keys(f"tick.{cid}"), None)  # a shown checkbox redraws unticked


def _reset_item() -> None:
    for cid in list(ticked_chunks()):
        SS.pop(keys(f"tick.{cid}"), None)
    SS[keys("ticked")] = {}
    SS[keys("results")] = []
    for name in ("question", "item_question", "answer", "tags", "last_q"):
        SS[keys(name)] = ""
    SS[keys("source_trace")] = SS[keys("trace_q")] = None
    SS[keys("pick")] = None


def _on_save(services: Services, set_name: str, status: str) -> None:
    ticked = ticked_chunks()
    if not ticked:
        kit.note(keys, t("input: tick at least one chunk that answers the question (search the index above)"), "error")
        return
    refs = [ref_from_chunk(c["doc_id"], c["start"], c["end"], c["text"]) for _, c in in_document_order(ticked)]
    tags = [tag.strip() for tag in (SS.get(keys("tags")) or "").split(",") if tag.strip()]

    def save() -> int:
        item = GoldItem(question=SS.get(keys("item_question")) or "", references=refs,
                        reference_answer=(SS.get(keys("answer")) or "").strip(), tags=tags)
        return services.golden.add_item(set_name, item, current_actor(), status=status,  # type: ignore[arg-type]
                                        source_trace=SS.get(keys("source_trace")))

    def saved(i: int) -> str:
        if len(refs) == 1:
            return t("Saved item **#{id}** as **{status}** with 1 gold reference. Next question?", id=i,
                     status=status_name(status))
        return t("Saved item **#{id}** as **{status}** with {n} gold references. Next question?", id=i,
                 status=status_name(status), n=len(refs))

    item_id = kit.run(keys, save, ok=saved)
    if item_id is not None:
        _reset_item()


def item_form(services: Services, set_name: str) -> None:
    ticked = ticked_chunks()
    st.markdown(t("**Gold references ({n})**", n=len(ticked)))
    if not ticked:
        st.caption(t("None yet: tick the result cards that answer the question."))
    for cid, c in in_document_order(ticked):
        with st.container(border=True, gap="small"):
            st.markdown(t("{doc} chars {start}–{end} · **{title}**", doc=kit.code(c["doc_id"]), start=f"{c['start']:,}",
                          end=f"{c['end']:,}", title=escape_md(c["title"]) if c["title"] else t("untitled")))
            st.caption(escape_md(c["text"][:120]) + "…")
            st.button(t("🗑️ Remove"), key=keys(f"untick.{cid}"), on_click=_on_untick, args=(cid,), type="tertiary",
                      help=t("Untick this chunk"))
    with st.form(keys("item_form"), border=True):
        st.text_input(t("Question of the item"), key=keys("item_question"),
                      help=t("Follows the search box until you edit it"))
        st.text_area(t("Reference answer"), key=keys("answer"), height=100,
                     placeholder=t("The answer a good system gives (used by answer metrics: similarity, ROUGE, exact match)"))
        st.text_input(t("Tags"), key=keys("tags"), placeholder=t("comma separated, e.g. dosage, multi-hop"))
        with st.container(horizontal=True, gap="small"):
            st.form_submit_button(t("💾 Save draft"), key=keys("save_draft"), on_click=_on_save,
                                  args=(services, set_name, "draft"),
                                  **need(Action.annotate, help=t("Enter in a text box saves a draft")))
            st.form_submit_button(t("✅ Save and approve"), type="primary", key=keys("save_approve"), on_click=_on_save,
                                  args=(services, set_name, "approved"), **need(Action.review))
