"""Sections of the index admin page. Each reads its widgets, calls one backend service
(services.index_admin, services.jobs, services.snapshots) and renders the answer; the
checks and the audit live in the backend. Widget keys are namespaced `index_admin.*`.

Job progress is read from the database by fragments that refresh every second, so a reload
or a second tab shows the same bar; when the job ends the fragment reruns the whole page."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

import streamlit as st

from backend.access import Action, can
from backend.chunking import ChunkingParams
from backend.errors import RagError
from backend.index_admin import IndexAdmin, StoredGate, VersionInfo
from backend.jobs import DONE, FAILED, Job
from backend.services import Services
from backend.snapshots import SnapshotInfo, SnapshotStore
from console.access_view import need
from console.auth import current_actor
from console.job_progress import job_progress
from console.markup import escape_md
from console.state import describe

log = logging.getLogger(__name__)
NS = "index_admin"
STATUS_ICONS = {"ready": "🟢", "building": "🏗️", "failed": "🔴", "cancelled": "⏹️", "unregistered": "❔",
                "missing": "⚠️", "deleted": "🗑️"}
UPLOAD_TYPES = ["zip", "gz", "tgz", "tar", "jsonl", "txt", "md", "html", "htm", "pdf"]


def _ts(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def _code(text: str) -> str:
    """Inline code for paths and names (Markdown escapes would show literally inside backticks)."""
    return f"`{text.replace('`', '')}`"


def _select(label: str, options: list[str], key: str, **kwargs: object) -> str | None:
    """A keyed selectbox whose remembered choice is dropped once it is no longer an option
    (a version promoted, deleted or not built yet when the page first rendered)."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    return st.selectbox(label, options, key=key, **kwargs)  # type: ignore[arg-type]


def _flash(message: str) -> None:
    st.session_state[f"{NS}.flash"] = message


def flash() -> None:
    """The outcome of the last action (kept across the rerun that closed its dialog)."""
    message = st.session_state.pop(f"{NS}.flash", None)
    if message:
        st.success(message, icon="✅")


def _open(kind: str, **args: object) -> None:
    """Open a confirmation dialog. Its state lives in the session, so the dialog survives full
    reruns (timed fragments, AppTest) until it is confirmed or dismissed."""
    st.session_state[f"{NS}.dialog"] = {"kind": kind, **args}


def _close() -> None:
    st.session_state.pop(f"{NS}.dialog", None)


def _done(message: str) -> None:
    _close()
    _flash(message)
    st.rerun()


def _try(action: Callable[[], object]) -> object | None:
    """Run a backend call; a refusal or failure becomes a readable error in place."""
    try:
        return action()
    except RagError as exc:
        st.error(describe(exc), icon="🛑")
    except Exception as exc:  # unexpected: shown briefly, details in the server log
        log.exception("index admin action failed")
        st.error(f"Unexpected error — {describe(exc)}", icon="🛑")
    return None


# --- versions -------------------------------------------------------------------------------------
def alias_map(admin: IndexAdmin, versions: list[VersionInfo]) -> None:
    live = next((v for v in versions if v.live), None)
    if live is None:
        st.warning(f"The alias `{admin.family}` points at no version yet: rebuild and promote one.", icon="📭")
        return
    others = [f"`{a}` → `{v.collection}`" for v in versions for a in v.aliases if a != admin.family]
    st.markdown(f"**Live:** `{admin.family}` → `{live.collection}` · {live.points or 0:,} points · "
                f"{escape_md(live.embedding_model)}" + (" · also " + ", ".join(others) if others else ""))


def versions_table(versions: list[VersionInfo]) -> None:
    st.subheader("🗂️ Versions")
    if not versions:
        st.caption("No version of this index family yet.")
        return
    st.dataframe(
        [{"live": "✅" if v.live else "", "collection": v.collection, "status": f"{STATUS_ICONS.get(v.status, '')} {v.status}",
          "aliases": ", ".join(v.aliases), "points": v.points, "docs": v.n_docs, "chunks": v.n_chunks,
          "vectors": v.vectors, "model": v.embedding_model, "chunking": v.chunking, "source": v.source,
          "created": _ts(v.created_at), "by": v.created_by, "error": v.error} for v in versions],
        hide_index=True, width="stretch", key=f"{NS}.versions",
        column_config={"points": st.column_config.NumberColumn(format="%d"), "error": st.column_config.TextColumn(width="medium")},
    )


# --- rebuild --------------------------------------------------------------------------------------
def _rebuild_text(job: Job) -> tuple[float, str]:
    p = job.progress
    total, done = p.get("chunks_total") or 0, p.get("chunks_done") or 0
    if job.status == DONE:
        r = job.result or {}
        if r.get("unchanged", r.get("reused") is True):  # jobs before the embedding cache said "reused": True
            return 1.0, f"Unchanged corpus: `{r.get('collection')}` already holds these {r.get('n_chunks', 0):,} chunks"
        return 1.0, (f"Done: **{done:,} / {total:,}** chunks written into `{r.get('collection')}` "
                     f"in {job.seconds:.1f} s{_reuse_text(r)}")
    phase = p.get("phase") or job.status
    if phase in ("queued", "reading", "chunking") or not total:
        return 0.0, f"{'Reading and chunking the documents' if phase != 'queued' else 'Queued'}… {job.seconds:.0f} s"
    eta = f" · about {p['eta_s']:.0f} s left" if p.get("eta_s") is not None else ""
    return done / total, (f"Embedding **{done:,} / {total:,}** chunks of {p.get('docs') or 0:,} documents into "
                          f"`{p.get('collection', '?')}` · {p.get('rate') or 0:.1f} chunks/s{eta}{_reuse_text(p)}")


def _reuse_text(counts: dict) -> str:
    """How many chunks the embedding cache saved, once there are any."""
    reused, embedded = counts.get("reused"), counts.get("embedded")
    if not isinstance(reused, int) or isinstance(reused, bool) or not reused:
        return ""
    return f" · {embedded or 0:,} embedded, {reused:,} reused from earlier builds"


def _last_rebuild(job: Job) -> None:
    if job.status == DONE:
        fraction, text = _rebuild_text(job)
        st.progress(fraction, text=text)
        r = job.result or {}
        st.success(f"Job {job.id} built `{r.get('collection')}` ({r.get('n_docs', 0):,} documents, "
                   f"{r.get('n_chunks', 0):,} chunks) — not live yet: gate it and promote it.", icon="🏁")
        skipped = r.get("skipped") or []
        if skipped:
            with st.expander(f"⚠️ {len(skipped)} files skipped"):
                for s in skipped:
                    st.caption(escape_md(s))
    else:
        partial = (job.progress or {}).get("collection")
        tail = f" The partial collection `{partial}` is marked {job.status}; delete it below." if partial else \
            " The live alias was not touched."
        icon = "🔴" if job.status == FAILED else "⏹️"
        st.error(f"Job {job.id} {job.status}: {escape_md(job.error)}.{tail}", icon=icon)


def rebuild(services: Services) -> None:
    admin = services.index_admin
    st.subheader("🏗️ Rebuild")
    st.caption(f"Builds `{admin.family}_vN+1` in the shadow: the live alias keeps serving until you promote.")
    job = admin.rebuild_job()
    if job is not None and job.active:
        st.markdown(f"Job **{job.id}** by {escape_md(job.actor)} · source {_code(str(job.detail.get('source', '')))}")
        job_progress(services.jobs, job.id, _rebuild_text, "⏹️ Cancel rebuild", f"{NS}.cancel",
                     cancelling="⏹️ Cancel requested: the job stops after the current batch.")
        return
    if job is not None:
        _last_rebuild(job)
    with st.form(f"{NS}.rebuild_form", border=True):
        path = st.text_input("Folder or corpus.jsonl on the server", key=f"{NS}.source",
                             placeholder="/data/docs or /data/corpus.jsonl")
        upload = st.file_uploader("…or upload a .zip / .tar.gz archive, a corpus.jsonl or one document",
                                  type=UPLOAD_TYPES, key=f"{NS}.upload")
        c1, c2, c3 = st.columns(3)
        target = c1.number_input("Target chars", 200, 4000, 1000, step=100, key=f"{NS}.target_chars")
        maximum = c2.number_input("Max chars", 300, 6000, 1500, step=100, key=f"{NS}.max_chars")
        overlap = c3.number_input("Overlap", 0.0, 0.5, 0.15, step=0.05, key=f"{NS}.overlap")
        st.caption(f"Embedding model: **{escape_md(services.embedder.name)}** (the one queries use).")
        submitted = st.form_submit_button("🏗️ Start rebuild", type="primary", **need(Action.rebuild))
    if not submitted:
        return
    if bool(path.strip()) == (upload is not None):
        st.error("Give either a path on the server or an uploaded file.", icon="🛑")
        return

    def start() -> int:
        params = ChunkingParams(target_chars=int(target), max_chars=int(maximum), overlap=float(overlap))
        if upload is not None:
            return admin.start_rebuild(current_actor(), upload=(upload.name, upload.getvalue()), params=params)
        return admin.start_rebuild(current_actor(), source=path.strip(), params=params)

    if _try(start) is not None:
        st.rerun()


# --- gate, promote, roll back ---------------------------------------------------------------------
def _gate_result(stored: StoredGate) -> None:
    r = stored.result
    verdict = "✅ Gate passed" if r.passed else "❌ Gate failed"
    stale = " · ⚠️ stale: the live version changed since" if stored.stale else ""
    st.markdown(f"**{verdict}** — {r.n_queries} queries on {_code(r.dataset)} vs "
                f"`{r.baseline or 'no live version'}` · {_ts(stored.ts)} by {escape_md(stored.actor)}{stale}")
    st.dataframe(r.rows(), hide_index=True, width="stretch", key=f"{NS}.gate_table",
                 column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("live", "candidate", "delta")})
    st.caption(" · ".join(escape_md(x) for x in r.reasons))


def _gate_text(job: Job) -> tuple[float, str]:
    p = job.progress
    total, done = p.get("total") or 0, p.get("done") or 0
    return done / total if total else 0.0, f"Gate: {escape_md(str(p.get('phase', 'queued')))} · {done}/{total}"


@st.dialog("Promote this version?", on_dismiss=_close)
def _confirm_promote(admin: IndexAdmin, candidate: VersionInfo, live: str | None, stored: StoredGate | None) -> None:
    st.markdown(f"`{admin.family}` will point at **`{candidate.collection}`**" +
                (f" instead of `{live}`" if live else "") + " in one atomic alias update.")
    st.markdown(f"- Queries already running finish on `{live}`; every later query uses `{candidate.collection}`.\n"
                f"- `{candidate.collection}`: {candidate.points or 0:,} points, {escape_md(candidate.embedding_model)}, "
                f"{escape_md(candidate.chunking)}.\n- You can roll back with one click afterwards.")
    ok = stored is not None and stored.result.passed and not stored.stale
    override = True
    if not ok:
        why = "no gate was run" if stored is None else ("the gate is stale" if stored.stale else "the gate failed")
        st.warning(f"Careful: {why} for this version.", icon="⚠️")
        override = st.checkbox("Promote anyway", key=f"{NS}.promote_override")
    reason = st.text_input("Why (recorded in the alias history)", key=f"{NS}.promote_reason")
    if st.button("🚀 Promote now", type="primary", key=f"{NS}.promote_confirm", disabled=not override):
        change = _try(lambda: admin.promote(current_actor(), candidate.collection, reason=reason))
        if change is not None:
            _done(f"Promoted: `{change.alias}` → `{change.current}` (was `{change.previous}`).")  # type: ignore[attr-defined]


@st.dialog("Roll back?", on_dismiss=_close)
def _confirm_rollback(admin: IndexAdmin, live: str, target: str) -> None:
    st.markdown(f"`{admin.family}` will point back at **`{target}`** instead of `{live}` in one atomic alias update.")
    st.caption(f"`{live}` stays available: you can promote it again later.")
    reason = st.text_input("Why (recorded in the alias history)", key=f"{NS}.rollback_reason")
    if st.button("↩️ Roll back now", type="primary", key=f"{NS}.rollback_confirm"):
        change = _try(lambda: admin.rollback(current_actor(), reason=reason))
        if change is not None:
            _done(f"Rolled back: `{change.alias}` → `{change.current}` (was `{change.previous}`).")  # type: ignore[attr-defined]


def promote(services: Services, versions: list[VersionInfo]) -> None:
    admin = services.index_admin
    st.subheader("🚀 Gate and promote")
    live = next((v.collection for v in versions if v.live), None)
    ready = [v for v in versions if v.status == "ready" and not v.live]
    if not ready:
        st.caption("No ready version besides the live one: rebuild or restore one first.")
    else:
        names = [v.collection for v in ready]
        name = _select("Version to promote", names, key=f"{NS}.candidate")
        candidate = ready[names.index(name)] if name in names else ready[0]
        job = admin.gate_job(candidate.collection)
        if job is not None and job.active:
            job_progress(services.jobs, job.id, _gate_text)
        else:
            if job is not None and job.status != DONE:
                st.error(f"Last gate run {job.status}: {escape_md(job.error)}", icon="🛑")
            with st.container(horizontal=True, vertical_alignment="bottom"):
                dataset = st.text_input("Gate data set (folder with queries.jsonl)", key=f"{NS}.gate_dataset.{name}",
                                        value=admin.default_gate_dataset(candidate.collection))
                if st.button("🧪 Run gate", key=f"{NS}.gate", **need(Action.run_evaluation)):
                    if _try(lambda: admin.start_gate(current_actor(), candidate.collection, dataset)) is not None:
                        st.rerun()
        stored = admin.latest_gate(candidate.collection)
        if stored is not None:
            _gate_result(stored)
        elif job is None or job.status == DONE:
            st.caption("No gate run yet for this version.")
        st.button(f"🚀 Promote {candidate.collection}", type="primary", key=f"{NS}.promote", on_click=_open,
                  args=("promote",), kwargs={"collection": candidate.collection}, **need(Action.promote))
    target = admin.rollback_target() if live else None
    if target:
        st.button(f"↩️ Roll back to {target}", key=f"{NS}.rollback", on_click=_open, args=("rollback",),
                  kwargs={"collection": target}, **need(Action.rollback))
    elif live:
        st.caption("Nothing to roll back to: no earlier ready version.")


# --- snapshots ------------------------------------------------------------------------------------
@st.dialog("Restore this snapshot?", on_dismiss=_close)
def _confirm_restore(snapshots: SnapshotStore, snap: SnapshotInfo) -> None:
    st.markdown(f"`{snap.name}` ({snap.n_points:,} points of `{snap.collection}`) will be restored into a **new** "
                f"version of `{snap.family}`. Nothing live changes: promote the new version afterwards if you want it.")
    if st.button("♻️ Restore", type="primary", key=f"{NS}.restore_confirm"):
        with st.spinner("Checking the snapshot and restoring…"):
            result = _try(lambda: snapshots.restore(current_actor(), snapshot_id=snap.id))
        if result is not None:
            _done(f"Restored `{snap.name}` into `{result.collection}` ({result.n_points:,} points).")  # type: ignore[attr-defined]


@st.dialog("Restore the uploaded snapshot file?", on_dismiss=_close)
def _confirm_import(snapshots: SnapshotStore, upload) -> None:  # noqa: ANN001 - UploadedFile
    st.markdown(f"`{upload.name}` ({upload.size / 1024:,.0f} KiB) will be checked and restored into a **new** version "
                "of the index family named in the file. Nothing live changes: promote the new version afterwards if "
                "you want it.")
    if st.button("♻️ Restore", type="primary", key=f"{NS}.import_confirm"):
        with st.spinner("Checking the file and restoring…"):
            result = _try(lambda: snapshots.import_file(current_actor(), upload.name, upload.getvalue()))
        if result is not None:
            _done(f"Restored `{upload.name}` into `{result.collection}` ({result.n_points:,} points).")  # type: ignore[attr-defined]


def snapshots(services: Services, versions: list[VersionInfo]) -> None:
    store = services.snapshots
    st.subheader("📸 Snapshots")
    kind = "Qdrant server snapshots" if store.server else \
        "portable snapshot files (local mode has no Qdrant snapshots): points, vectors, payloads, metadata, checksum"
    st.caption(f"{kind}. A restore always creates a new version; it never overwrites one.")
    present = [v.collection for v in versions if v.points is not None and v.status != "building"]
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = _select("Version", present, key=f"{NS}.snapshot_version", disabled=not present)
        if st.button("📸 Create snapshot", key=f"{NS}.snapshot_create", **need(Action.snapshot_create, disabled=not present)):
            with st.spinner(f"Writing a snapshot of {chosen}…"):
                snap = _try(lambda: store.create(current_actor(), chosen))
            if snap is not None:
                _flash(f"Snapshot `{snap.name}` written ({snap.n_points:,} points).")  # type: ignore[attr-defined]
                st.rerun()
    rows = store.list()
    for snap in rows:
        with st.container(border=True, horizontal=True, vertical_alignment="center"):
            aliases = f" · was live behind {', '.join(snap.aliases)}" if snap.aliases else ""
            st.markdown(f"**{escape_md(snap.name)}**  \n{snap.kind} · `{snap.collection}` · {snap.n_points:,} points · "
                        f"{snap.size / 1024:,.0f} KiB · {_ts(snap.created_at)} by {escape_md(snap.created_by)}{aliases}")
            st.download_button("⬇️ Download", data=lambda sid=snap.id: store.read_bytes(current_actor(), sid),
                               file_name=snap.name, mime="application/gzip", key=f"{NS}.download.{snap.id}",
                               on_click="ignore", **need(Action.snapshot_create))
            st.button("♻️ Restore", key=f"{NS}.restore.{snap.id}", on_click=_open, args=("restore",),
                      kwargs={"snapshot_id": snap.id}, **need(Action.snapshot_restore))
    if not rows:
        st.caption("No snapshots yet.")
    with st.expander("⬆️ Restore from a snapshot file"):
        up = st.file_uploader("Portable snapshot (.ragsnap.jsonl.gz)", type=["gz"], key=f"{NS}.snapshot_upload",
                              disabled=not can(current_actor(), Action.snapshot_restore))
        st.button("♻️ Restore uploaded file", key=f"{NS}.snapshot_import", on_click=_open, args=("import",),
                  **need(Action.snapshot_restore, disabled=up is None))


# --- delete ---------------------------------------------------------------------------------------
@st.dialog("Delete this version?", on_dismiss=_close)
def _confirm_delete(admin: IndexAdmin, collection: str) -> None:
    st.markdown(f"The collection **`{collection}`** and its points will be dropped from the vector store. "
                "Its name stays in the registry as deleted; snapshots of it are kept.")
    if st.button("🗑️ Delete now", type="primary", key=f"{NS}.delete_confirm"):
        if _try(lambda: admin.delete(current_actor(), collection) or True):
            _done(f"Deleted `{collection}`.")


def delete(services: Services, versions: list[VersionInfo]) -> None:
    st.subheader("🗑️ Delete a version")
    removable = [v.collection for v in versions if not v.aliases and v.status not in ("building", "deleted")]
    if not removable:
        st.caption("Nothing to delete: the live version and builds in progress cannot be deleted.")
        return
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = _select("Version (never the live one)", removable, key=f"{NS}.delete_version")
        st.button("🗑️ Delete", key=f"{NS}.delete", on_click=_open, args=("delete",), kwargs={"collection": chosen},
                  **need(Action.delete_version))


# --- history --------------------------------------------------------------------------------------
def history(services: Services) -> None:
    admin = services.index_admin
    st.subheader("📜 Alias history")
    rows = admin.history(limit=100)
    if rows:
        st.dataframe([{"when": _ts(h["ts"]), "action": h["action"], "alias": h["alias"], "from": h["from_collection"],
                       "to": h["to_collection"], "who": h["actor"], "why": h["reason"]} for h in rows],
                     hide_index=True, width="stretch", key=f"{NS}.history")
    else:
        st.caption("No alias change recorded yet.")
    if not can(current_actor(), Action.read_audit):
        return
    with st.expander("🧾 Audit log of admin actions"):
        st.dataframe([{"when": _ts(a["ts"]), "who": a["actor"], "action": a["action"], "target": a["target"],
                       "result": a["result"], "detail": a["detail"]} for a in admin.audit_log(current_actor(), 200)],
                     hide_index=True, width="stretch", key=f"{NS}.audit",
                     column_config={"detail": st.column_config.JsonColumn(width="large")})


# --- the open dialog ------------------------------------------------------------------------------
def dialogs(services: Services, versions: list[VersionInfo]) -> None:
    """Draw the confirmation dialog that is open, with fresh facts (one dialog per run)."""
    d = st.session_state.get(f"{NS}.dialog")
    if not d:
        return
    admin, by_name = services.index_admin, {v.collection: v for v in versions}
    live = next((v.collection for v in versions if v.live), None)
    if d["kind"] == "promote" and d["collection"] in by_name:
        _confirm_promote(admin, by_name[d["collection"]], live, admin.latest_gate(d["collection"]))
    elif d["kind"] == "rollback" and live:
        _confirm_rollback(admin, live, d["collection"])
    elif d["kind"] == "delete":
        _confirm_delete(admin, d["collection"])
    elif d["kind"] == "restore" and any(s.id == d["snapshot_id"] for s in services.snapshots.list()):
        _confirm_restore(services.snapshots, services.snapshots.get(d["snapshot_id"]))
    elif d["kind"] == "import" and st.session_state.get(f"{NS}.snapshot_upload") is not None:
        _confirm_import(services.snapshots, st.session_state[f"{NS}.snapshot_upload"])
    else:  # what it was about is gone meanwhile
        _close()
