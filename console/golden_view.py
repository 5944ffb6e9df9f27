"""Sections of the golden-set annotator page. Each reads its widgets, calls one backend service
(services.golden, services.engine, services.traces, services.evals) and renders the answer;
checks, history and audit live in the backend. Widget keys are namespaced `golden.*` (console.kit).

The annotation flow keeps its working state in session state: the last search's result cards,
the chunks ticked as gold (kept across searches, so one item can gather references from
several queries) and the question being written. The chosen set is mirrored to ?set=."""
from __future__ import annotations

import html
from typing import Any

import streamlit as st

from backend.engine import SourceChunk
from backend.access import Action
from backend.errors import RagError
from backend.golden import GoldItem, export_csv, export_jsonl, export_ragas, neighbour_chunks, parse_items, ref_from_chunk
from backend.policy import Policy
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.markup import escape_md, highlight, source_card
from console.policy_panel import LIVE

keys = kit.PageKeys("golden")
STATUS_ICONS = {"draft": "📝", "approved": "✅", "rejected": "❌"}
SS = st.session_state


# --- the set ------------------------------------------------------------------------------------
def _on_create(services: Services) -> None:
    name = (SS.get(keys("new_name")) or "").strip()
    created = kit.run(keys, lambda: services.golden.create(name, current_actor(), SS.get(keys("new_desc")) or ""),
                      ok=f"Created the golden set **{escape_md(name)}**: search the index and tick the chunks that "
                         "answer your first question.")
    if created is not None:
        SS[keys("set")] = name
        SS[keys("new_name")] = ""
        SS[keys("new_desc")] = ""
        st.query_params["set"] = name


def _create_form(services: Services) -> None:
    with st.form(keys("new_form"), border=False):
        st.text_input("Name", key=keys("new_name"), max_chars=200, placeholder="e.g. support-faq")
        st.text_input("Description", key=keys("new_desc"), placeholder="what the set covers (optional)")
        st.form_submit_button("➕ Create set", type="primary", key=keys("create"), on_click=_on_create, args=(services,),
                              **need(Action.annotate))


def choose_set(services: Services) -> dict | None:
    """Set picker, 'new set' form, counts and the freeze button; returns the chosen set's row."""
    sets = services.golden.list_sets()
    names = [s["name"] for s in sets]
    kit.from_url(keys("set"), "set", names, names[0] if names else None)  # first visit, or the set is gone
    if not sets:
        st.info("No golden set yet. Create one: name it after what its questions cover.", icon="🏷️")
        with st.container(border=True, width=520):
            _create_form(services)
        return None
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.selectbox("Golden set", names, key=keys("set"), on_change=kit.to_url, args=(keys("set"), "set"), width=320,
                     help="The URL keeps the set (?set=…), so a view can be linked and reloaded.")
        with st.popover("➕ New set"):
            _create_form(services)
    current = next(s for s in sets if s["name"] == SS[keys("set")])
    latest = current["latest_version"]
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.markdown(f"📝 **{current['draft']}** draft · ✅ **{current['approved']}** approved · "
                    f"❌ **{current['rejected']}** rejected · 🧊 frozen: **{f'v{latest}' if latest else 'not yet'}**")
        st.button(f"🧊 Freeze approved items as v{(latest or 0) + 1}", key=keys("freeze"),
                  on_click=_on_freeze, args=(services, current["name"]),
                  **need(Action.review, disabled=current["approved"] == 0,
                         help="Snapshot the approved items as an immutable version: evaluation runs point at a version."))
    if current["description"]:
        st.caption(escape_md(current["description"]))
    return current


def _on_freeze(services: Services, set_name: str) -> None:
    kit.run(keys, lambda: services.golden.freeze(set_name, current_actor()),
            ok=lambda v: f"Frozen **{escape_md(set_name)} v{v}**: open the run viewer to evaluate it.")


# --- annotate: question and search ------------------------------------------------------------
def _trace_options(services: Services) -> dict[str, dict]:
    """Thumbs-down answers first, then the other recent chat traces (request id -> row)."""
    try:
        rows = services.traces.recent(limit=30, feedback=-1) + services.traces.recent(limit=30)
    except Exception:  # the trace table is unavailable: typing a question still works
        return {}
    return {r["request_id"]: r for r in rows}


def _trace_label(row: dict) -> str:
    thumb = "👎 " if row.get("feedback") == -1 else "👍 " if row.get("feedback") == 1 else "💬 "
    comment = f" — “{row['comment']}”" if row.get("comment") else ""
    return f"{thumb}{row['question'][:90]}{comment} · {kit.when(row.get('ts'))}"


def _on_pick(services: Services, options: dict[str, dict]) -> None:
    rid = SS.get(keys("pick"))
    if not rid or rid not in options:
        return
    SS[keys("question")] = options[rid]["question"]
    SS[keys("source_trace")] = rid  # the item remembers the answer it came from
    SS[keys("trace_q")] = options[rid]["question"]
    _on_search(services)


def _on_search(services: Services) -> None:
    question = (SS.get(keys("question")) or "").strip()
    index = SS.get(keys("index"), LIVE)
    policy = Policy(top_k=int(SS.get(keys("top_k"), 10)), retrieval_mode=SS.get(keys("mode"), "hybrid"),
                    index=None if index == LIVE else index)
    filters: dict[str, Any] = {}
    doc_ids = [d.strip() for d in (SS.get(keys("doc_ids")) or "").split(",") if d.strip()]
    if doc_ids:
        filters["doc_id"] = doc_ids
    if (SS.get(keys("source_filter")) or "").strip():
        filters["source"] = SS[keys("source_filter")].strip()
    retrieval = kit.run(keys, lambda: services.engine.retrieve(question, policy, filters=filters or None,
                                                               actor=current_actor()))
    if retrieval is None:
        return
    SS[keys("results")] = [{**s.model_dump(), "kind": "hit", "parent": s.rank} for s in retrieval.sources]
    SS[keys("results_q")] = question
    SS[keys("collection")] = retrieval.collection
    SS[keys("fusion")] = policy.fusion if policy.retrieval_mode == "hybrid" else policy.retrieval_mode
    if not (SS.get(keys("item_question")) or "").strip() or SS.get(keys("item_question")) == SS.get(keys("last_q")):
        SS[keys("item_question")] = question  # the item's question follows the search until edited
    SS[keys("last_q")] = question
    if SS.get(keys("trace_q")) != question:  # typed another question: no longer the picked trace's
        SS[keys("source_trace")] = None


def search_form(services: Services) -> None:
    options = _trace_options(services)
    if options:
        st.selectbox("Pick a question from chat: thumbs-down answers first, then recent traces", list(options),
                     index=None, key=keys("pick"), format_func=lambda rid: _trace_label(options[rid]),
                     placeholder="…or type one below", on_change=_on_pick, args=(services, options))
    try:
        collections = services.store.collections()
    except RagError:
        collections = []
    with st.form(keys("search_form"), border=True):
        st.text_input("Question", key=keys("question"), max_chars=services.settings.max_question_chars,
                      placeholder="Type the question an annotated item should answer — Enter searches")
        c1, c2 = st.columns(2)
        c1.text_input("Filter: doc ids", key=keys("doc_ids"), placeholder="comma separated",
                      help="Only chunks of these documents")
        c2.text_input("Filter: source", key=keys("source_filter"), placeholder="exact source, e.g. scifact",
                      help="Only chunks with this source")
        c1, c2, c3 = st.columns([3, 2, 4], vertical_alignment="bottom")
        c1.selectbox("Retrieval", ["hybrid", "dense", "sparse"], key=keys("mode"),
                     help="hybrid: dense + BM25, fused (RRF) · dense: embeddings · sparse: BM25")
        c2.number_input("Results", 1, 50, 10, key=keys("top_k"))
        c3.selectbox("Index", list(dict.fromkeys([LIVE, *collections])), key=keys("index"),
                     format_func=lambda o: f"{services.settings.index_alias} (live)" if o == LIVE else o)
        st.form_submit_button("🔍 Search", type="primary", key=keys("search"), on_click=_on_search, args=(services,))


# --- annotate: result cards -----------------------------------------------------------------------
def _ticked() -> dict[str, dict]:
    return SS.setdefault(keys("ticked"), {})


def _in_document_order(ticked: dict[str, dict]) -> list[tuple[str, dict]]:
    """Ticked chunks by document and position, so adjacent spans read (and are saved) in order."""
    return sorted(ticked.items(), key=lambda kv: (kv[1]["doc_id"], kv[1]["start"]))


def _on_tick(cid: str) -> None:
    chunk = next((r for r in SS.get(keys("results"), []) if r["chunk_id"] == cid), None)
    if SS.get(keys(f"tick.{cid}")) and chunk is not None:
        _ticked()[cid] = {**chunk, "collection": SS.get(keys("collection"))}
    else:
        _ticked().pop(cid, None)


def _on_untick(cid: str) -> None:
    _ticked().pop(cid, None)
    SS.pop(keys(f"tick.{cid}"), None)  # a shown checkbox redraws unticked


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

    before = [as_row(p, "before") for p in around["before"] if p.get("chunk_id") != cid]
    after = [as_row(p, "after") for p in around["after"] if p.get("chunk_id") != cid]
    chunk["widened"] = True
    if not before and not after:
        chunk["note"] = "No other chunk of this document next to it."
    moved = {r["chunk_id"] for r in before + after}
    rest = [r for r in results if r["chunk_id"] not in moved]
    i = next(n for n, r in enumerate(rest) if r["chunk_id"] == cid)
    SS[keys("results")] = rest[:i] + before + [chunk] + after + rest[i + 1:]


def _neighbour_card(r: dict, question: str, ticked: bool) -> str:
    e = html.escape
    where = "before" if r["kind"] == "before" else "after"
    found = f"search result #{r['hit_rank']}" if r.get("hit_rank") else "not among the search results"
    meta = " · ".join([f"doc <code>{e(r['doc_id'])}</code>", f"chunk <code>{e(r['chunk_id'])}</code>",
                       f"chars {r['start']:,}–{r['end']:,}", f"the chunk {where} #{r['parent']}", found])
    title = e(r["title"]) if r["title"] else "<i>untitled</i>"
    return (f'<div class="rag-card{" rag-card-cited" if ticked else ""}"><div class="rag-card-head">'
            f'<span class="rag-num">{r["parent"]}{"↑" if where == "before" else "↓"}</span>'
            f'<span class="rag-title">{title}</span><span class="rag-section">neighbour</span></div>'
            f'<div class="rag-meta">{meta}</div><div class="rag-text">{highlight(r["text"], question)}</div></div>')


def results(services: Services) -> None:
    rows: list[dict] = SS.get(keys("results"), [])
    if not rows:
        st.caption("Search the index, then tick every chunk that answers the question. ↔️ Widen shows a chunk's "
                   "neighbours in its document when the answer runs over a chunk border.")
        return
    question = SS.get(keys("results_q"), "")
    hits = sum(r["kind"] == "hit" or bool(r.get("hit_rank")) for r in rows)
    st.markdown(f"**{hits} results** for “{escape_md(question)}” in `{SS.get(keys('collection'))}` — tick the chunks "
                "that answer it")
    ticked = _ticked()
    fusion = SS.get(keys("fusion"), "rrf")
    for r in rows:
        cid = r["chunk_id"]
        is_ticked = cid in ticked
        with st.container(key=f"{keys.ns}-card-{r['kind']}-{r['point_id']}"):
            with st.container(horizontal=True, vertical_alignment="center", gap="small"):
                also = f", result #{r['hit_rank']}" if r.get("hit_rank") else ""
                label = f"#{r['rank']} answers the question" if r["kind"] == "hit" else \
                    f"#{r['parent']}{'↑' if r['kind'] == 'before' else '↓'} (neighbour{also}) answers the question"
                st.checkbox(label, value=is_ticked, key=keys(f"tick.{cid}"), on_change=_on_tick, args=(cid,),
                            **need(Action.annotate))
                st.button("↔️ Widen", key=keys(f"widen.{cid}"), disabled=bool(r.get("widened")),
                          on_click=_on_widen, args=(services, cid),
                          help="Show the chunks just before and after this one in its document")
                if r.get("note"):
                    st.caption(r["note"])
            if r["kind"] == "hit":
                src = SourceChunk.model_validate({k: v for k, v in r.items() if k in SourceChunk.model_fields})
                st.html(source_card(src, question, fusion if fusion in ("rrf", "dbsf") else "rrf",
                                    services.engine.reranker.name, is_ticked))
            else:
                st.html(_neighbour_card(r, question, is_ticked))


# --- annotate: the item ---------------------------------------------------------------------------
def _reset_item() -> None:
    for cid in list(_ticked()):
        SS.pop(keys(f"tick.{cid}"), None)
    SS[keys("ticked")] = {}
    SS[keys("results")] = []
    for name in ("question", "item_question", "answer", "tags", "last_q"):
        SS[keys(name)] = ""
    SS[keys("source_trace")] = SS[keys("trace_q")] = None
    SS[keys("pick")] = None


def _on_save(services: Services, set_name: str, status: str) -> None:
    ticked = _ticked()
    if not ticked:
        kit.note(keys, "input: tick at least one chunk that answers the question (search the index above)", "error")
        return
    refs = [ref_from_chunk(c["doc_id"], c["start"], c["end"], c["text"]) for _, c in _in_document_order(ticked)]
    tags = [t.strip() for t in (SS.get(keys("tags")) or "").split(",") if t.strip()]

    def save() -> int:
        item = GoldItem(question=SS.get(keys("item_question")) or "", references=refs,
                        reference_answer=(SS.get(keys("answer")) or "").strip(), tags=tags)
        return services.golden.add_item(set_name, item, current_actor(), status=status,  # type: ignore[arg-type]
                                        source_trace=SS.get(keys("source_trace")))

    item_id = kit.run(keys, save, ok=lambda i: f"Saved item **#{i}** as **{status}** with {len(refs)} gold reference"
                                               f"{'s' if len(refs) != 1 else ''}. Next question?")
    if item_id is not None:
        _reset_item()


def item_form(services: Services, set_name: str) -> None:
    ticked = _ticked()
    st.markdown(f"**Gold references ({len(ticked)})**")
    if not ticked:
        st.caption("None yet: tick the result cards that answer the question.")
    for cid, c in _in_document_order(ticked):
        with st.container(border=True, gap="small"):
            st.markdown(f"{kit.code(c['doc_id'])} chars {c['start']:,}–{c['end']:,} · **{escape_md(c['title'] or 'untitled')}**")
            st.caption(escape_md(c["text"][:120]) + "…")
            st.button("🗑️ Remove", key=keys(f"untick.{cid}"), on_click=_on_untick, args=(cid,), type="tertiary",
                      help="Untick this chunk")
    with st.form(keys("item_form"), border=True):
        st.text_input("Question of the item", key=keys("item_question"),
                      help="Follows the search box until you edit it")
        st.text_area("Reference answer", key=keys("answer"), height=100,
                     placeholder="The answer a good system gives (used by answer metrics: similarity, ROUGE, exact match)")
        st.text_input("Tags", key=keys("tags"), placeholder="comma separated, e.g. dosage, multi-hop")
        with st.container(horizontal=True, gap="small"):
            st.form_submit_button("💾 Save draft", key=keys("save_draft"), on_click=_on_save,
                                  args=(services, set_name, "draft"),
                                  **need(Action.annotate, help="Enter in a text box saves a draft"))
            st.form_submit_button("✅ Save and approve", type="primary", key=keys("save_approve"), on_click=_on_save,
                                  args=(services, set_name, "approved"), **need(Action.review))


# --- review ----------------------------------------------------------------------------------------
def _refs_md(refs: list[dict]) -> str:
    lines = []
    for r in refs:
        span = "whole document" if r.get("end") is None else f"chars {r['start']:,}–{r['end']:,}"
        quote = f" — {escape_md(r['quote'][:200])}…" if r.get("quote") else ""
        lines.append(f"- {kit.code(r['doc_id'])} {span}{quote}")
    return "\n".join(lines)


def _on_review(services: Services, item_id: int, approve: bool) -> None:
    comment = (SS.get(keys(f"comment.{item_id}")) or "").strip()
    verdict = "approved" if approve else "rejected"
    kit.run(keys, lambda: services.golden.review(item_id, current_actor(), approve=approve, comment=comment),
            ok=f"Item **#{item_id}** {verdict}" + (" with your comment." if comment else "."))


def review_queue(services: Services, set_name: str) -> None:
    drafts = services.golden.items(set_name, status="draft")
    st.markdown(f"**{len(drafts)} draft{'s' if len(drafts) != 1 else ''} to review**")
    if not drafts:
        st.caption("Nothing to review: drafts saved in ✍️ Annotate (or imported as drafts) appear here.")
    for d in drafts:
        with st.container(border=True):
            st.markdown(f"**#{d['id']}** {escape_md(d['question'])}")
            tags = f" · tags {escape_md(', '.join(d['tags']))}" if d["tags"] else ""
            st.caption(f"by {escape_md(d['author'])} · {kit.when(d['updated_at'])}{tags}")
            st.markdown(_refs_md(d["references"]))
            if d["reference_answer"]:
                st.markdown(f"**Reference answer:** {escape_md(d['reference_answer'])}")
            with st.form(keys(f"review_form.{d['id']}"), border=False, enter_to_submit=False):
                st.text_input("Comment", key=keys(f"comment.{d['id']}"), placeholder="why (kept in the item's history)")
                with st.container(horizontal=True, gap="small"):
                    st.form_submit_button("✅ Approve", type="primary", key=keys(f"approve.{d['id']}"),
                                          on_click=_on_review, args=(services, d["id"], True), **need(Action.review))
                    st.form_submit_button("❌ Reject", key=keys(f"reject.{d['id']}"),
                                          on_click=_on_review, args=(services, d["id"], False), **need(Action.review))


# --- items, history and progress ---------------------------------------------------------------
def items_table(services: Services, set_name: str) -> None:
    rows = services.golden.items(set_name)
    if not rows:
        st.caption("No items yet.")
        return
    st.dataframe(
        [{"id": r["id"], "status": f"{STATUS_ICONS[r['status']]} {r['status']}", "question": r["question"],
          "references": " | ".join(r["doc_id"] if r.get("end") is None else f"{r['doc_id']}:{r['start']}-{r['end']}"
                                   for r in r["references"]),
          "reference answer": r["reference_answer"], "tags": ", ".join(r["tags"]), "author": r["author"],
          "reviewer": r["reviewer"] or "", "comment": r["review_comment"], "updated": kit.when(r["updated_at"]),
          "from trace": r["source_trace"] or ""} for r in rows],
        hide_index=True, width="stretch", key=keys("items"),
        column_config={"question": st.column_config.TextColumn(width="large"), "id": st.column_config.NumberColumn(format="%d")})
    ids = [r["id"] for r in rows]
    chosen = st.selectbox("History of item", ids, index=None, key=keys("history_item"), placeholder="choose an item",
                          format_func=lambda i: f"#{i} · {next(r['question'] for r in rows if r['id'] == i)[:80]}")
    if chosen is not None:
        st.dataframe([{"when": f"{h['ts']:%Y-%m-%d %H:%M:%S}", "who": h["actor"], "action": h["action"],
                       "before": h["before"], "after": h["after"]} for h in services.golden.history(chosen)],
                     hide_index=True, width="stretch", key=keys("history"),
                     column_config={"before": st.column_config.JsonColumn(), "after": st.column_config.JsonColumn()})


def progress(services: Services, set_name: str) -> None:
    per: dict[str, dict[str, int]] = {}
    for p in services.golden.progress(set_name):
        per.setdefault(p["author"], {"draft": 0, "approved": 0, "rejected": 0})[p["status"]] = p["n"]
    if not per:
        st.caption("No items yet.")
        return
    rows = [{"annotator": a, "total": sum(c.values()), **c,
             "approved share": c["approved"] / max(1, sum(c.values()))} for a, c in sorted(per.items())]
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("progress"),
                 column_config={"approved share": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})


# --- import / export -------------------------------------------------------------------------------
def import_section(services: Services, set_name: str) -> None:
    st.markdown("**⬆️ Import**")
    st.caption("JSONL (one item per line: question, references, reference_answer, tags), a shared data set's "
               "`queries.jsonl` (question, gold_ids, answer), or CSV with `question | gold_context_ids | "
               "reference_answer` columns (ids `doc` or `doc:start-end`, separated by `|`). A malformed file is refused "
               "with its line and reason, and nothing is imported.")
    with st.form(keys("import_form"), border=True):
        upload = st.file_uploader("File", type=["jsonl", "csv"], key=keys("upload"))
        status = st.radio("Import as", ["approved", "draft"], key=keys("import_status"), horizontal=True)
        submitted = st.form_submit_button("⬆️ Import", key=keys("import"), **need(Action.annotate))
    if submitted:
        if upload is None:
            st.error("Choose a file first.", icon="🛑")
            return
        n = kit.run(keys, lambda: services.golden.import_items(set_name, parse_items(upload.getvalue(), upload.name),
                                                               current_actor(), status=status),
                    failed="Nothing imported", inline=True)
        if n is not None:
            st.success(f"Imported **{n}** items into **{escape_md(set_name)}** as {status}.", icon="✅")


def _export_choices(latest: int | None) -> list[str]:
    return ["approved", "all"] + [f"v{v}" for v in range(latest or 0, 0, -1)]


def export_section(services: Services, current: dict) -> None:
    st.markdown("**⬇️ Export**")
    set_name = current["name"]
    what = st.selectbox("Items", _export_choices(current["latest_version"]), key=keys("export_what"),
                        format_func=lambda w: {"approved": "approved items (working copy)", "all": "all items"}.get(
                            w, f"frozen version {w[1:]}"))
    items: list[Any]
    if what.startswith("v"):
        items = services.golden.version_items(set_name, int(what[1:]))[1]
    else:
        items = services.golden.items(set_name, status="approved" if what == "approved" else None)
    stem = f"{set_name}-{what}"

    def ragas() -> str:
        """The gold spans' text as the live index holds it; each reference's stored quote without an index."""
        gold = [i if isinstance(i, GoldItem) else GoldItem.model_validate(i) for i in items]
        try:
            contexts = services.evals.reference_contexts(services.store.resolve(services.settings.index_alias), gold)
        except RagError:
            contexts = None
        return export_ragas(gold, contexts)

    with st.container(horizontal=True, gap="small"):
        st.download_button("⬇️ CSV", data=export_csv(items) if items else "", file_name=f"{stem}.csv", mime="text/csv",
                           key=keys("export_csv"), on_click="ignore", **need(Action.export, disabled=not items))
        st.download_button("⬇️ JSONL", data=export_jsonl(items) if items else "", file_name=f"{stem}.jsonl",
                           mime="application/jsonl", key=keys("export_jsonl"), on_click="ignore",
                           **need(Action.export, disabled=not items))
        st.download_button("⬇️ ragas JSONL", data=ragas if items else "", file_name=f"{stem}.ragas.jsonl",
                           mime="application/jsonl", key=keys("export_ragas"), on_click="ignore",
                           **need(Action.export, disabled=not items,
                                  help="user_input, reference, reference_contexts (the gold spans' text on the live "
                                       "index), reference_context_ids — loads with ragas.EvaluationDataset.from_jsonl"))
    st.caption(f"{len(items)} item{'s' if len(items) != 1 else ''}")
