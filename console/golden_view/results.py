"""✍️ Annotate, the result cards: tick every chunk that answers the question, or widen a chunk to its
neighbours in the document when the answer runs over a chunk border."""
from __future__ import annotations

import html

import streamlit as st

from backend.access import Action
from backend.engine.query_engine import SourceChunk
from backend.evaluation.golden import neighbour_chunks
from backend.services import Services
from console import kit
from console.access_view import need
from console.golden_view.common import SS, keys, ticked_chunks
from console.i18n import N_, t
from console.markup import escape_md, highlight, source_card


def _on_tick(cid: str) -> None:
    chunk = next((r for r in SS.get(keys("results"), []) if r["chunk_id"] == cid), None)
    if SS.get(keys(f"tick.{cid}")) and chunk is not None:
        ticked_chunks()[cid] = {**chunk, "collection": SS.get(keys("collection"))}
    else:
        ticked_chunks().pop(cid, None)


def _on_widen(services: Services, cid: str) -> None:
    results: list[dict] = SS.get(keys("results"), [])
    chunk = next((r for r in results if r["chunk_id"] == cid), None)
    if chunk is None:
        return
    around = kit.run(keys, lambda: neighbour_chunks(services.store, SS[keys("collection")], chunk["doc_id"],
                                                    chunk["start"]))
    if around is None:
        return
    rows = {r["chunk_id"]: r for r in results}

    def as_row(p: dict, kind: str) -> dict:
        """A neighbour: a search result already on the page moves next to the chunk (keeping its rank)."""
        shown = rows.get(p.get("chunk_id", ""))
        if shown is not None:
            hit_rank = shown["rank"] if shown["kind"] == "hit" else shown.get("hit_rank")
            return {**shown, "kind": kind, "parent": chunk["parent"], "hit_rank": hit_rank}
        return {"rank": chunk["rank"], "point_id": p.get("point_id", ""), "chunk_id": p.get("chunk_id", ""),
                "doc_id": str(p.get("doc_id", "")), "title": p.get("title", ""), "section": p.get("section", ""),
                "source": p.get("source", ""), "start": int(p.get("start", 0)), "end": int(p.get("end", 0)),
                "text": p.get("text", ""), "scores": {}, "kind": kind, "parent": chunk["parent"], "hit_rank": None}

    before = [as_row(p, "before") for p in around.before if p.get("chunk_id") != cid]
    after = [as_row(p, "after") for p in around.after if p.get("chunk_id") != cid]
    chunk["widened"] = True
    if not before and not after:
        chunk["note"] = N_("No other chunk of this document next to it.")  # shown with t()
    moved = {r["chunk_id"] for r in before + after}
    rest = [r for r in results if r["chunk_id"] not in moved]
    i = next(n for n, r in enumerate(rest) if r["chunk_id"] == cid)
    SS[keys("results")] = rest[:i] + before + [chunk] + after + rest[i + 1:]


def _neighbour_card(r: dict, question: str, ticked: bool) -> str:
    e = html.escape
    where = "before" if r["kind"] == "before" else "after"
    found = t("search result #{n}", n=r["hit_rank"]) if r.get("hit_rank") else t("not among the search results")
    side = t("the chunk before #{n}", n=r["parent"]) if where == "before" else t("the chunk after #{n}", n=r["parent"])
    meta = " · ".join([t("doc <code>{doc}</code>", doc=e(r["doc_id"])), t("chunk <code>{chunk}</code>", chunk=e(r["chunk_id"])),
                       t("chars {start}–{end}", start=f"{r['start']:,}", end=f"{r['end']:,}"), side, found])
    title = e(r["title"]) if r["title"] else f"<i>{e(t('untitled'))}</i>"
    return (f'<div class="rag-card{" rag-card-cited" if ticked else ""}"><div class="rag-card-head">'
            f'<span class="rag-num">{r["parent"]}{"↑" if where == "before" else "↓"}</span>'
            f'<span class="rag-title">{title}</span><span class="rag-section">{t("neighbour")}</span></div>'
            f'<div class="rag-meta">{meta}</div><div class="rag-text">{highlight(r["text"], question)}</div></div>')


def results(services: Services) -> None:
    rows: list[dict] = SS.get(keys("results"), [])
    if not rows:
        st.caption(t("Search the index, then tick every chunk that answers the question. ↔️ Widen shows a chunk's "
                     "neighbours in its document when the answer runs over a chunk border."))
        return
    question = SS.get(keys("results_q"), "")
    hits = sum(r["kind"] == "hit" or bool(r.get("hit_rank")) for r in rows)
    st.markdown(t("**{n} results** for “{question}” in `{collection}` — tick the chunks that answer it", n=hits,
                  question=escape_md(question), collection=SS.get(keys("collection"))))
    ticked = ticked_chunks()
    fusion = SS.get(keys("fusion"), "rrf")
    for r in rows:
        cid = r["chunk_id"]
        is_ticked = cid in ticked
        with st.container(key=f"{keys.ns}-card-{r['kind']}-{r['point_id']}"):
            with st.container(horizontal=True, vertical_alignment="center", gap="small"):
                arrow = "↑" if r["kind"] == "before" else "↓"
                label = t("#{n} answers the question", n=r["rank"]) if r["kind"] == "hit" else \
                    t("#{n}{arrow} (neighbour, result #{hit}) answers the question", n=r["parent"], arrow=arrow,
                      hit=r["hit_rank"]) if r.get("hit_rank") else \
                    t("#{n}{arrow} (neighbour) answers the question", n=r["parent"], arrow=arrow)
                st.checkbox(label, value=is_ticked, key=keys(f"tick.{cid}"), on_change=_on_tick, args=(cid,),
                            **need(Action.annotate))
                st.button(t("↔️ Widen"), key=keys(f"widen.{cid}"), disabled=bool(r.get("widened")),
                          on_click=_on_widen, args=(services, cid),
                          help=t("Show the chunks just before and after this one in its document"))
                if r.get("note"):
                    st.caption(t(r["note"]))
            if r["kind"] == "hit":
                src = SourceChunk.model_validate({k: v for k, v in r.items() if k in SourceChunk.model_fields})
                st.html(source_card(src, question, fusion if fusion in ("rrf", "dbsf") else "rrf",
                                    services.engine.reranker.name, is_ticked))
            else:
                st.html(_neighbour_card(r, question, is_ticked))
