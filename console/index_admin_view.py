"""Sections of the index admin page. Each reads its widgets, calls one backend service
(services.index_admin, services.jobs, services.snapshots) and renders the answer; the
checks and the audit live in the backend. Widget keys are namespaced `index_admin.*` (console.kit).

Job progress is read from the database by fragments that refresh every second, so a reload
or a second tab shows the same bar; when the job ends the fragment reruns the whole page."""
from __future__ import annotations

import streamlit as st

from backend.access import Action, can
from backend.chunking import ChunkingParams
from backend.index_admin import IndexAdmin, StoredGate, VersionInfo
from backend.jobs import DONE, FAILED, Job
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.job_progress import job_progress
from console.markup import escape_md

keys = kit.PageKeys("index_admin")
STATUS_ICONS = {"ready": "🟢", "building": "🏗️", "failed": "🔴", "cancelled": "⏹️", "unregistered": "❔",
                "missing": "⚠️", "deleted": "🗑️"}
UPLOAD_TYPES = ["zip", "gz", "tgz", "tar", "jsonl", "txt", "md", "html", "htm", "pdf"]


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
          "created": kit.when(v.created_at, seconds=True), "by": v.created_by, "error": v.error} for v in versions],
        hide_index=True, width="stretch", key=keys("versions"),
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
        st.markdown(f"Job **{job.id}** by {escape_md(job.actor)} · source {kit.code(str(job.detail.get('source', '')))}")
        job_progress(services.jobs, job.id, _rebuild_text, "⏹️ Cancel rebuild", keys("cancel"),
                     cancelling="⏹️ Cancel requested: the job stops after the current batch.")
        return
    if job is not None:
        _last_rebuild(job)
    with st.form(keys("rebuild_form"), border=True):
        path = st.text_input("Folder or corpus.jsonl on the server", key=keys("source"),
                             placeholder="/data/docs or /data/corpus.jsonl")
        upload = st.file_uploader("…or upload a .zip / .tar.gz archive, a corpus.jsonl or one document",
                                  type=UPLOAD_TYPES, key=keys("upload"))
        c1, c2, c3 = st.columns(3)
        target = c1.number_input("Target chars", 200, 4000, 1000, step=100, key=keys("target_chars"))
        maximum = c2.number_input("Max chars", 300, 6000, 1500, step=100, key=keys("max_chars"))
        overlap = c3.number_input("Overlap", 0.0, 0.5, 0.15, step=0.05, key=keys("overlap"))
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

    kit.run(keys, start, inline=True, rerun=True)


# --- gate, promote, roll back ---------------------------------------------------------------------
def _gate_result(stored: StoredGate) -> None:
    r = stored.result
    verdict = "✅ Gate passed" if r.passed else "❌ Gate failed"
    stale = " · ⚠️ stale: the live version changed since" if stored.stale else ""
    st.markdown(f"**{verdict}** — {r.n_queries} queries on {kit.code(r.dataset)} vs "
                f"`{r.baseline or 'no live version'}` · {kit.when(stored.ts, seconds=True)} by "
                f"{escape_md(stored.actor)}{stale}")
    st.dataframe(r.rows(), hide_index=True, width="stretch", key=keys("gate_table"),
                 column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("live", "candidate", "delta")})
    st.caption(" · ".join(escape_md(x) for x in r.reasons))


def _gate_text(job: Job) -> tuple[float, str]:
    p = job.progress
    total, done = p.get("total") or 0, p.get("done") or 0
    return done / total if total else 0.0, f"Gate: {escape_md(str(p.get('phase', 'queued')))} · {done}/{total}"


def _promote_body(admin: IndexAdmin, candidate: VersionInfo, live: str | None, stored: StoredGate | None) -> bool:
    st.markdown(f"`{admin.family}` will point at **`{candidate.collection}`**" +
                (f" instead of `{live}`" if live else "") + " in one atomic alias update.")
    st.markdown(f"- Queries already running finish on `{live}`; every later query uses `{candidate.collection}`.\n"
                f"- `{candidate.collection}`: {candidate.points or 0:,} points, {escape_md(candidate.embedding_model)}, "
                f"{escape_md(candidate.chunking)}.\n- You can roll back with one click afterwards.")
    override = True
    if not (stored is not None and stored.result.passed and not stored.stale):
        why = "no gate was run" if stored is None else ("the gate is stale" if stored.stale else "the gate failed")
        st.warning(f"Careful: {why} for this version.", icon="⚠️")
        override = st.checkbox("Promote anyway", key=keys("promote_override"))
    st.text_input("Why (recorded in the alias history)", key=keys("promote_reason"))
    return override


def _rollback_body(admin: IndexAdmin, live: str, target: str) -> None:
    st.markdown(f"`{admin.family}` will point back at **`{target}`** instead of `{live}` in one atomic alias update.")
    st.caption(f"`{live}` stays available: you can promote it again later.")
    st.text_input("Why (recorded in the alias history)", key=keys("rollback_reason"))


def _moved(change) -> str:  # noqa: ANN001 - backend.index_admin's alias change
    return f"`{change.alias}` → `{change.current}` (was `{change.previous}`)."


def promote(services: Services, versions: list[VersionInfo]) -> None:
    admin = services.index_admin
    st.subheader("🚀 Gate and promote")
    live = next((v.collection for v in versions if v.live), None)
    ready = [v for v in versions if v.status == "ready" and not v.live]
    if not ready:
        st.caption("No ready version besides the live one: rebuild or restore one first.")
    else:
        names = [v.collection for v in ready]
        name = kit.select("Version to promote", names, key=keys("candidate"))
        candidate = ready[names.index(name)] if name in names else ready[0]
        job = admin.gate_job(candidate.collection)
        if job is not None and job.active:
            job_progress(services.jobs, job.id, _gate_text)
        else:
            if job is not None and job.status != DONE:
                st.error(f"Last gate run {job.status}: {escape_md(job.error)}", icon="🛑")
            with st.container(horizontal=True, vertical_alignment="bottom"):
                dataset = st.text_input("Gate data set (folder with queries.jsonl)", key=keys(f"gate_dataset.{name}"),
                                        value=admin.default_gate_dataset(candidate.collection))
                if st.button("🧪 Run gate", key=keys("gate"), **need(Action.run_evaluation)):
                    kit.run(keys, lambda: admin.start_gate(current_actor(), candidate.collection, dataset), inline=True,
                            rerun=True)
        stored = admin.latest_gate(candidate.collection)
        if stored is not None:
            _gate_result(stored)
        elif job is None or job.status == DONE:
            st.caption("No gate run yet for this version.")
        st.button(f"🚀 Promote {candidate.collection}", type="primary", key=keys("promote"), on_click=kit.ask,
                  args=(keys, "promote"), kwargs={"collection": candidate.collection}, **need(Action.promote))
    target = admin.rollback_target() if live else None
    if target:
        st.button(f"↩️ Roll back to {target}", key=keys("rollback"), on_click=kit.ask, args=(keys, "rollback",),
                  kwargs={"collection": target}, **need(Action.rollback))
    elif live:
        st.caption("Nothing to roll back to: no earlier ready version.")


# --- snapshots ------------------------------------------------------------------------------------
def snapshots(services: Services, versions: list[VersionInfo]) -> None:
    store = services.snapshots
    st.subheader("📸 Snapshots")
    kind = "Qdrant server snapshots" if store.server else \
        "portable snapshot files (local mode has no Qdrant snapshots): points, vectors, payloads, metadata, checksum"
    st.caption(f"{kind}. A restore always creates a new version; it never overwrites one.")
    present = [v.collection for v in versions if v.points is not None and v.status != "building"]
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = kit.select("Version", present, key=keys("snapshot_version"), disabled=not present)
        if st.button("📸 Create snapshot", key=keys("snapshot_create"), **need(Action.snapshot_create, disabled=not present)):
            with st.spinner(f"Writing a snapshot of {chosen}…"):
                kit.run(keys, lambda: store.create(current_actor(), chosen), inline=True, rerun=True,
                        ok=lambda snap: f"Snapshot `{snap.name}` written ({snap.n_points:,} points).")
    rows = store.list()
    for snap in rows:
        with st.container(border=True, horizontal=True, vertical_alignment="center"):
            aliases = f" · was live behind {', '.join(snap.aliases)}" if snap.aliases else ""
            st.markdown(f"**{escape_md(snap.name)}**  \n{snap.kind} · `{snap.collection}` · {snap.n_points:,} points · "
                        f"{snap.size / 1024:,.0f} KiB · {kit.when(snap.created_at, seconds=True)} by "
                        f"{escape_md(snap.created_by)}{aliases}")
            st.download_button("⬇️ Download", data=lambda sid=snap.id: store.read_bytes(current_actor(), sid),
                               file_name=snap.name, mime="application/gzip", key=keys(f"download.{snap.id}"),
                               on_click="ignore", **need(Action.snapshot_create))
            st.button("♻️ Restore", key=keys(f"restore.{snap.id}"), on_click=kit.ask, args=(keys, "restore",),
                      kwargs={"snapshot_id": snap.id}, **need(Action.snapshot_restore))
    if not rows:
        st.caption("No snapshots yet.")
    with st.expander("⬆️ Restore from a snapshot file"):
        up = st.file_uploader("Portable snapshot (.ragsnap.jsonl.gz)", type=["gz"], key=keys("snapshot_upload"),
                              disabled=not can(current_actor(), Action.snapshot_restore))
        st.button("♻️ Restore uploaded file", key=keys("snapshot_import"), on_click=kit.ask, args=(keys, "import",),
                  **need(Action.snapshot_restore, disabled=up is None))


# --- delete ---------------------------------------------------------------------------------------
def delete(services: Services, versions: list[VersionInfo]) -> None:
    st.subheader("🗑️ Delete a version")
    removable = [v.collection for v in versions if not v.aliases and v.status not in ("building", "deleted")]
    if not removable:
        st.caption("Nothing to delete: the live version and builds in progress cannot be deleted.")
        return
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = kit.select("Version (never the live one)", removable, key=keys("delete_version"))
        st.button("🗑️ Delete", key=keys("delete"), on_click=kit.ask, args=(keys, "delete",), kwargs={"collection": chosen},
                  **need(Action.delete_version))


# --- history --------------------------------------------------------------------------------------
def history(services: Services) -> None:
    admin = services.index_admin
    st.subheader("📜 Alias history")
    rows = admin.history(limit=100)
    if rows:
        st.dataframe([{"when": kit.when(h["ts"], seconds=True), "action": h["action"], "alias": h["alias"],
                       "from": h["from_collection"], "to": h["to_collection"], "who": h["actor"], "why": h["reason"]} for h in rows],
                     hide_index=True, width="stretch", key=keys("history"))
    else:
        st.caption("No alias change recorded yet.")
    if not can(current_actor(), Action.read_audit):
        return
    with st.expander("🧾 Audit log of admin actions"):
        st.dataframe([{"when": kit.when(a["ts"], seconds=True), "who": a["actor"], "action": a["action"],
                       "target": a["target"], "result": a["result"], "detail": a["detail"]} for a in admin.audit_log(current_actor(), 200)],
                     hide_index=True, width="stretch", key=keys("audit"),
                     column_config={"detail": st.column_config.JsonColumn(width="large")})


# --- the open dialog ------------------------------------------------------------------------------
def dialogs(services: Services, versions: list[VersionInfo]) -> None:
    """Draw the confirmation dialog that is open, with fresh facts (one dialog per run)."""
    d = kit.asked(keys)
    if not d:
        return
    admin, snapshots, by_name = services.index_admin, services.snapshots, {v.collection: v for v in versions}
    live = next((v.collection for v in versions if v.live), None)
    actor, ss = current_actor(), st.session_state
    if d["kind"] == "promote" and d["collection"] in by_name:
        candidate = by_name[d["collection"]]
        stored = admin.latest_gate(candidate.collection)
        kit.confirm(keys, "Promote this version?", "🚀 Promote now", "promote",
                    lambda: admin.promote(actor, candidate.collection, reason=ss.get(keys("promote_reason"), "")),
                    ok=lambda change: f"Promoted: {_moved(change)}",
                    body=lambda: _promote_body(admin, candidate, live, stored))
    elif d["kind"] == "rollback" and live:
        kit.confirm(keys, "Roll back?", "↩️ Roll back now", "rollback",
                    lambda: admin.rollback(actor, reason=ss.get(keys("rollback_reason"), "")),
                    ok=lambda change: f"Rolled back: {_moved(change)}",
                    body=lambda: _rollback_body(admin, live, d["collection"]))
    elif d["kind"] == "delete":
        collection = d["collection"]
        kit.confirm(keys, "Delete this version?", "🗑️ Delete now", "delete",
                    lambda: admin.delete(actor, collection), ok=f"Deleted `{collection}`.",
                    body=f"The collection **`{collection}`** and its points will be dropped from the vector store. "
                         "Its name stays in the registry as deleted; snapshots of it are kept.")
    elif d["kind"] == "restore" and any(s.id == d["snapshot_id"] for s in snapshots.list()):
        snap = snapshots.get(d["snapshot_id"])
        kit.confirm(keys, "Restore this snapshot?", "♻️ Restore", "restore",
                    lambda: snapshots.restore(actor, snapshot_id=snap.id),
                    ok=lambda r: f"Restored `{snap.name}` into `{r.collection}` ({r.n_points:,} points).",
                    body=f"`{snap.name}` ({snap.n_points:,} points of `{snap.collection}`) will be restored into a "
                         f"**new** version of `{snap.family}`. Nothing live changes: promote the new version afterwards "
                         "if you want it.", spinner="Checking the snapshot and restoring…")
    elif d["kind"] == "import" and ss.get(keys("snapshot_upload")) is not None:
        upload = ss[keys("snapshot_upload")]
        kit.confirm(keys, "Restore the uploaded snapshot file?", "♻️ Restore", "import",
                    lambda: snapshots.import_file(actor, upload.name, upload.getvalue()),
                    ok=lambda r: f"Restored `{upload.name}` into `{r.collection}` ({r.n_points:,} points).",
                    body=f"`{upload.name}` ({upload.size / 1024:,.0f} KiB) will be checked and restored into a **new** "
                         "version of the index family named in the file. Nothing live changes: promote the new version "
                         "afterwards if you want it.", spinner="Checking the file and restoring…")
    else:  # what it was about is gone meanwhile
        kit.close(keys)
