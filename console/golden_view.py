"""Sections of the golden-set annotator page. Each reads its widgets, calls one backend service
(services.golden, services.engine, services.traces, services.evals) and renders the answer;
checks, history and audit live in the backend. Widget keys are namespaced `golden.*`.

The annotation flow keeps its working state in session state: the last search's result cards,
the chunks ticked as gold (kept across searches, so one item can gather references from
several queries) and the question being written. The chosen set is mirrored to ?set=."""
from __future__ import annotations

import html
import logging
from datetime import datetime
from typing import Any, Callable

import streamlit as st
from pydantic import ValidationError

from backend.engine import SourceChunk
from backend.access import Action
from backend.errors import RagError
from backend.golden import GoldItem, export_csv, export_jsonl, export_ragas, neighbour_chunks, parse_items, ref_from_chunk
from backend.policy import Policy
from backend.services import Services
from console.access_view import need
from console.auth import current_actor
from console.markup import escape_md, highlight, source_card
from console.policy_panel import LIVE
from console.state import describe

log = logging.getLogger(__name__)
NS = "golden"
STATUS_ICONS = {"draft": "📝", "approved": "✅", "rejected": "❌"}
SS = st.session_state


def key(name: str) -> str:
    return f"{NS}.{name}"


def _code(text: str) -> str:
    """Inline code: shown literally, so no Markdown escaping (only backticks could break out)."""
    return f"`{text.replace('`', chr(39))}`"


def _ts(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


def _flash(kind: str, message: str) -> None:
    SS[key("flash")] = (kind, message)


def flash() -> None:
    """The outcome of the last action (set by a callback, shown once). Always a container, even an
    empty one, so the elements below keep their place between reruns."""
    note = SS.pop(key("flash"), None)
    with st.container():
        if note:
            getattr(st, note[0])(note[1], icon={"success": "✅", "error": "🛑", "warning": "⚠️"}.get(note[0]))


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return f"input: {where + ': ' if where else ''}{first['msg']}"
    return describe(exc)


def _attempt(action: Callable[[], Any], done: Callable[[Any], str] | None = None) -> Any:
    """Run a backend call from a callback; the outcome (or the readable error) becomes the flash."""
    try:
        result = action()
    except (RagError, ValidationError) as exc:
        _flash("error", _error_text(exc))
        return None
    except Exception as exc:  # unexpected: shown briefly, details in the server log
        log.exception("golden-set action failed")
        _flash("error", f"Unexpected error — {describe(exc)}")
        return None
    if done is not None:
        _flash("success", done(result))
    return result


# --- the set ------------------------------------------------------------------------------------
def _on_set() -> None:
    name = SS.get(key("set"))
    if name:
        st.query_params["set"] = name
    else:
        st.query_params.pop("set", None)


def _on_create(services: Services) -> None:
    name = (SS.get(key("new_name")) or "").strip()
    created = _attempt(lambda: services.golden.create(name, current_actor(), SS.get(key("new_desc")) or ""),
                       lambda _: f"Created the golden set **{escape_md(name)}**: search the index and tick the chunks "
                                 "that answer your first question.")
    if created is not None:
        SS[key("set")] = name
        SS[key("new_name")] = ""
        SS[key("new_desc")] = ""
        st.query_params["set"] = name


def _create_form(services: Services) -> None:
    with st.form(key("new_form"), border=False):
        st.text_input("Name", key=key("new_name"), max_chars=200, placeholder="e.g. support-faq")
        st.text_input("Description", key=key("new_desc"), placeholder="what the set covers (optional)")
        st.form_submit_button("➕ Create set", type="primary", key=key("create"), on_click=_on_create, args=(services,),
                              **need(Action.annotate))


def choose_set(services: Services) -> dict | None:
    """Set picker, 'new set' form, counts and the freeze button; returns the chosen set's row."""
    sets = services.golden.list_sets()
    names = [s["name"] for s in sets]
    if key("set") not in SS or SS[key("set")] not in names:  # first visit, or the set is gone: the URL's, else the first
        wanted = st.query_params.get("set")
        SS[key("set")] = wanted if wanted in names else (names[0] if names else None)
        _on_set()
    if not sets:
        st.info("No golden set yet. Create one: name it after what its questions cover.", icon="🏷️")
        with st.container(border=True, width=520):
            _create_form(services)
        return None
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.selectbox("Golden set", names, key=key("set"), on_change=_on_set, width=320,
                     help="The URL keeps the set (?set=…), so a view can be linked and reloaded.")
        with st.popover("➕ New set"):
            _create_form(services)
    current = next(s for s in sets if s["name"] == SS[key("set")])
    latest = current["latest_version"]
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.markdown(f"📝 **{current['draft']}** draft · ✅ **{current['approved']}** approved · "
                    f"❌ **{current['rejected']}** rejected · 🧊 frozen: **{f'v{latest}' if latest else 'not yet'}**")
        st.button(f"🧊 Freeze approved items as v{(latest or 0) + 1}", key=key("freeze"),
                  on_click=_on_freeze, args=(services, current["name"]),
                  **need(Action.review, disabled=current["approved"] == 0,
                         help="Snapshot the approved items as an immutable version: evaluation runs point at a version."))
    if current["description"]:
        st.caption(escape_md(current["description"]))
    return current


def _on_freeze(services: Services, set_name: str) -> None:
    _attempt(lambda: services.golden.freeze(set_name, current_actor()),
             lambda v: f"Frozen **{escape_md(set_name)} v{v}**: open the run viewer to evaluate it.")


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
    return f"{thumb}{row['question'][:90]}{comment} · {_ts(row.get('ts'))}"


def _on_pick(services: Services, options: dict[str, dict]) -> None:
    rid = SS.get(key("pick"))
    if not rid or rid not in options:
        return
    SS[key("question")] = options[rid]["question"]
    SS[key("source_trace")] = rid  # the item remembers the answer it came from
    SS[key("trace_q")] = options[rid]["question"]
    _on_search(services)


def _on_search(services: Services) -> None:
    question = (SS.get(key("question")) or "").strip()
    index = SS.get(key("index"), LIVE)
    policy = Policy(top_k=int(SS.get(key("top_k"), 10)), retrieval_mode=SS.get(key("mode"), "hybrid"),
                    index=None if index == LIVE else index)
    filters: dict[str, Any] = {}
    doc_ids = [d.strip() for d in (SS.get(key("doc_ids")) or "").split(",") if d.strip()]
    if doc_ids:
        filters["doc_id"] = doc_ids
    if (SS.get(key("source_filter")) or "").strip():
        filters["source"] = SS[key("source_filter")].strip()
    retrieval = _attempt(lambda: services.engine.retrieve(question, policy, filters=filters or None, actor=current_actor()))
    if retrieval is None:
        return
    SS[key("results")] = [{**s.model_dump(), "kind": "hit", "parent": s.rank} for s in retrieval.sources]
    SS[key("results_q")] = question
    SS[key("collection")] = retrieval.collection
    SS[key("fusion")] = policy.fusion if policy.retrieval_mode == "hybrid" else policy.retrieval_mode
    if not (SS.get(key("item_question")) or "").strip() or SS.get(key("item_question")) == SS.get(key("last_q")):
        SS[key("item_question")] = question  # the item's question follows the search until edited
    SS[key("last_q")] = question
    if SS.get(key("trace_q")) != question:  # typed another question: no longer the picked trace's
        SS[key("source_trace")] = None


def search_form(services: Services) -> None:
    options = _trace_options(services)
    if options:
        st.selectbox("Pick a question from chat: thumbs-down answers first, then recent traces", list(options),
                     index=None, key=key("pick"), format_func=lambda rid: _trace_label(options[rid]),
                     placeholder="…or type one below", on_change=_on_pick, args=(services, options))
    try:
        collections = services.store.collections()
    except RagError:
        collections = []
    with st.form(key("search_form"), border=True):
        st.text_input("Question", key=key("question"), max_chars=services.settings.max_question_chars,
                      placeholder="Type the question an annotated item should answer — Enter searches")
        c1, c2 = st.columns(2)
        c1.text_input("Filter: doc ids", key=key("doc_ids"), placeholder="comma separated",
                      help="Only chunks of these documents")
        c2.text_input("Filter: source", key=key("source_filter"), placeholder="exact source, e.g. scifact",
                      help="Only chunks with this source")
        c1, c2, c3 = st.columns([3, 2, 4], vertical_alignment="bottom")
        c1.selectbox("Retrieval", ["hybrid", "dense", "sparse"], key=key("mode"),
                     help="hybrid: dense + BM25, fused (RRF) · dense: embeddings · sparse: BM25")
        c2.number_input("Results", 1, 50, 10, key=key("top_k"))
        c3.selectbox("Index", list(dict.fromkeys([LIVE, *collections])), key=key("index"),
                     format_func=lambda o: f"{services.settings.index_alias} (live)" if o == LIVE else o)
        st.form_submit_button("🔍 Search", type="primary", key=key("search"), on_click=_on_search, args=(services,))


# --- annotate: result cards -----------------------------------------------------------------------
def _ticked() -> dict[str, dict]:
    return SS.setdefault(key("ticked"), {})


def _in_document_order(ticked: dict[str, dict]) -> list[tuple[str, dict]]:
    """Ticked chunks by document and position, so adjacent spans read (and are saved) in order."""
    return sorted(ticked.items(), key=lambda kv: (kv[1]["doc_id"], kv[1]["start"]))


def _on_tick(cid: str) -> None:
    chunk = next((r for r in SS.get(key("results"), []) if r["chunk_id"] == cid), None)
    if SS.get(key(f"tick.{cid}")) and chunk is not None:
        _ticked()[cid] = {**chunk, "collection": SS.get(key("collection"))}
    else:
        _ticked().pop(cid, None)


def _on_untick(cid: str) -> None:
    _ticked().pop(cid, None)
    SS.pop(key(f"tick.{cid}"), None)  # a shown checkbox redraws unticked


def _on_widen(services: Services, cid: str) -> None:
    results: list[dict] = SS.get(key("results"), [])
    chunk = next((r for r in results if r["chunk_id"] == cid), None)
    if chunk is None:
        return
    around = _attempt(lambda: neighbour_chunks(services.store, SS[key("collection")], chunk["doc_id"], chunk["start"]))
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
    SS[key("results")] = rest[:i] + before + [chunk] + after + rest[i + 1:]


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
    rows: list[dict] = SS.get(key("results"), [])
    if not rows:
        st.caption("Search the index, then tick every chunk that answers the question. ↔️ Widen shows a chunk's "
                   "neighbours in its document when the answer runs over a chunk border.")
        return
    question = SS.get(key("results_q"), "")
    hits = sum(r["kind"] == "hit" or bool(r.get("hit_rank")) for r in rows)
    st.markdown(f"**{hits} results** for “{escape_md(question)}” in `{SS.get(key('collection'))}` — tick the chunks "
                "that answer it")
    ticked = _ticked()
    fusion = SS.get(key("fusion"), "rrf")
    for r in rows:
        cid = r["chunk_id"]
        is_ticked = cid in ticked
        with st.container(key=f"{NS}-card-{r['kind']}-{r['point_id']}"):
            with st.container(horizontal=True, vertical_alignment="center", gap="small"):
                also = f", result #{r['hit_rank']}" if r.get("hit_rank") else ""
                label = f"#{r['rank']} answers the question" if r["kind"] == "hit" else \
                    f"#{r['parent']}{'↑' if r['kind'] == 'before' else '↓'} (neighbour{also}) answers the question"
                st.checkbox(label, value=is_ticked, key=key(f"tick.{cid}"), on_change=_on_tick, args=(cid,),
                            **need(Action.annotate))
                st.button("↔️ Widen", key=key(f"widen.{cid}"), disabled=bool(r.get("widened")),
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
        SS.pop(key(f"tick.{cid}"), None)
    SS[key("ticked")] = {}
    SS[key("results")] = []
    for name in ("question", "item_question", "answer", "tags", "last_q"):
        SS[key(name)] = ""
    SS[key("source_trace")] = SS[key("trace_q")] = None
    SS[key("pick")] = None


def _on_save(services: Services, set_name: str, status: str) -> None:
    ticked = _ticked()
    if not ticked:
        _flash("error", "input: tick at least one chunk that answers the question (search the index above)")
        return
    refs = [ref_from_chunk(c["doc_id"], c["start"], c["end"], c["text"]) for _, c in _in_document_order(ticked)]
    tags = [t.strip() for t in (SS.get(key("tags")) or "").split(",") if t.strip()]

    def save() -> int:
        item = GoldItem(question=SS.get(key("item_question")) or "", references=refs,
                        reference_answer=(SS.get(key("answer")) or "").strip(), tags=tags)
        return services.golden.add_item(set_name, item, current_actor(), status=status,  # type: ignore[arg-type]
                                        source_trace=SS.get(key("source_trace")))

    item_id = _attempt(save, lambda i: f"Saved item **#{i}** as **{status}** with {len(refs)} gold reference"
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
            st.markdown(f"{_code(c['doc_id'])} chars {c['start']:,}–{c['end']:,} · **{escape_md(c['title'] or 'untitled')}**")
            st.caption(escape_md(c["text"][:120]) + "…")
            st.button("🗑️ Remove", key=key(f"untick.{cid}"), on_click=_on_untick, args=(cid,), type="tertiary",
                      help="Untick this chunk")
    with st.form(key("item_form"), border=True):
        st.text_input("Question of the item", key=key("item_question"),
                      help="Follows the search box until you edit it")
        st.text_area("Reference answer", key=key("answer"), height=100,
                     placeholder="The answer a good system gives (used by answer metrics: similarity, ROUGE, exact match)")
        st.text_input("Tags", key=key("tags"), placeholder="comma separated, e.g. dosage, multi-hop")
        with st.container(horizontal=True, gap="small"):
            st.form_submit_button("💾 Save draft", key=key("save_draft"), on_click=_on_save,
                                  args=(services, set_name, "draft"),
                                  **need(Action.annotate, help="Enter in a text box saves a draft"))
            st.form_submit_button("✅ Save and approve", type="primary", key=key("save_approve"), on_click=_on_save,
                                  args=(services, set_name, "approved"), **need(Action.review))


# --- review ----------------------------------------------------------------------------------------
def _refs_md(refs: list[dict]) -> str:
    lines = []
    for r in refs:
        span = "whole document" if r.get("end") is None else f"chars {r['start']:,}–{r['end']:,}"
        quote = f" — {escape_md(r['quote'][:200])}…" if r.get("quote") else ""
        lines.append(f"- {_code(r['doc_id'])} {span}{quote}")
    return "\n".join(lines)


def _on_review(services: Services, item_id: int, approve: bool) -> None:
    comment = (SS.get(key(f"comment.{item_id}")) or "").strip()
    verdict = "approved" if approve else "rejected"
    _attempt(lambda: services.golden.review(item_id, current_actor(), approve=approve, comment=comment),
             lambda _: f"Item **#{item_id}** {verdict}" + (" with your comment." if comment else "."))


def review_queue(services: Services, set_name: str) -> None:
    drafts = services.golden.items(set_name, status="draft")
    st.markdown(f"**{len(drafts)} draft{'s' if len(drafts) != 1 else ''} to review**")
    if not drafts:
        st.caption("Nothing to review: drafts saved in ✍️ Annotate (or imported as drafts) appear here.")
    for d in drafts:
        with st.container(border=True):
            st.markdown(f"**#{d['id']}** {escape_md(d['question'])}")
            tags = f" · tags {escape_md(', '.join(d['tags']))}" if d["tags"] else ""
            st.caption(f"by {escape_md(d['author'])} · {_ts(d['updated_at'])}{tags}")
            st.markdown(_refs_md(d["references"]))
            if d["reference_answer"]:
                st.markdown(f"**Reference answer:** {escape_md(d['reference_answer'])}")
            with st.form(key(f"review_form.{d['id']}"), border=False, enter_to_submit=False):
                st.text_input("Comment", key=key(f"comment.{d['id']}"), placeholder="why (kept in the item's history)")
                with st.container(horizontal=True, gap="small"):
                    st.form_submit_button("✅ Approve", type="primary", key=key(f"approve.{d['id']}"),
                                          on_click=_on_review, args=(services, d["id"], True), **need(Action.review))
                    st.form_submit_button("❌ Reject", key=key(f"reject.{d['id']}"),
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
          "reviewer": r["reviewer"] or "", "comment": r["review_comment"], "updated": _ts(r["updated_at"]),
          "from trace": r["source_trace"] or ""} for r in rows],
        hide_index=True, width="stretch", key=key("items"),
        column_config={"question": st.column_config.TextColumn(width="large"), "id": st.column_config.NumberColumn(format="%d")})
    ids = [r["id"] for r in rows]
    chosen = st.selectbox("History of item", ids, index=None, key=key("history_item"), placeholder="choose an item",
                          format_func=lambda i: f"#{i} · {next(r['question'] for r in rows if r['id'] == i)[:80]}")
    if chosen is not None:
        st.dataframe([{"when": f"{h['ts']:%Y-%m-%d %H:%M:%S}", "who": h["actor"], "action": h["action"],
                       "before": h["before"], "after": h["after"]} for h in services.golden.history(chosen)],
                     hide_index=True, width="stretch", key=key("history"),
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
    st.dataframe(rows, hide_index=True, width="stretch", key=key("progress"),
                 column_config={"approved share": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})


# --- import / export -------------------------------------------------------------------------------
def import_section(services: Services, set_name: str) -> None:
    st.markdown("**⬆️ Import**")
    st.caption("JSONL (one item per line: question, references, reference_answer, tags), a shared data set's "
               "`queries.jsonl` (question, gold_ids, answer), or CSV with `question | gold_context_ids | "
               "reference_answer` columns (ids `doc` or `doc:start-end`, separated by `|`). A malformed file is refused "
               "with its line and reason, and nothing is imported.")
    with st.form(key("import_form"), border=True):
        upload = st.file_uploader("File", type=["jsonl", "csv"], key=key("upload"))
        status = st.radio("Import as", ["approved", "draft"], key=key("import_status"), horizontal=True)
        submitted = st.form_submit_button("⬆️ Import", key=key("import"), **need(Action.annotate))
    if submitted:
        if upload is None:
            st.error("Choose a file first.", icon="🛑")
            return
        try:
            items = parse_items(upload.getvalue(), upload.name)
            n = services.golden.import_items(set_name, items, current_actor(), status=status)
        except RagError as exc:
            st.error(f"Nothing imported — {describe(exc)}", icon="🛑")
            return
        st.success(f"Imported **{n}** items into **{escape_md(set_name)}** as {status}.", icon="✅")


def _export_choices(latest: int | None) -> list[str]:
    return ["approved", "all"] + [f"v{v}" for v in range(latest or 0, 0, -1)]


def export_section(services: Services, current: dict) -> None:
    st.markdown("**⬇️ Export**")
    set_name = current["name"]
    what = st.selectbox("Items", _export_choices(current["latest_version"]), key=key("export_what"),
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
                           key=key("export_csv"), on_click="ignore", **need(Action.export, disabled=not items))
        st.download_button("⬇️ JSONL", data=export_jsonl(items) if items else "", file_name=f"{stem}.jsonl",
                           mime="application/jsonl", key=key("export_jsonl"), on_click="ignore",
                           **need(Action.export, disabled=not items))
        st.download_button("⬇️ ragas JSONL", data=ragas if items else "", file_name=f"{stem}.ragas.jsonl",
                           mime="application/jsonl", key=key("export_ragas"), on_click="ignore",
                           **need(Action.export, disabled=not items,
                                  help="user_input, reference, reference_contexts (the gold spans' text on the live "
                                       "index), reference_context_ids — loads with ragas.EvaluationDataset.from_jsonl"))
    st.caption(f"{len(items)} item{'s' if len(items) != 1 else ''}")
