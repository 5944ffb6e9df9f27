"""Sections of the index admin page. Each reads its widgets, calls one backend service
(services.index_admin, services.jobs, services.snapshots) and renders the answer; the
checks and the audit live in the backend. Widget keys are namespaced `index_admin.*` (console.kit).

Job progress is read from the database by fragments that refresh every second, so a reload
or a second tab shows the same bar; when the job ends the fragment reruns the whole page."""
from __future__ import annotations

import streamlit as st

from backend.access import Action, can
from backend.background.jobs import DONE, FAILED, Job
from backend.evaluation.metrics import METRICS
from backend.index_admin.gate import GateResult
from backend.index_admin.service import IndexAdmin, StoredGate, VersionInfo
from backend.ingestion.chunking import ChunkingParams
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.i18n import N_, t
from console.job_progress import job_progress
from console.markup import escape_md

keys = kit.PageKeys("index_admin")
STATUS_ICONS = {"ready": "🟢", "building": "🏗️", "failed": "🔴", "cancelled": "⏹️", "unregistered": "❔",
                "missing": "⚠️", "deleted": "🗑️"}
STATUS_NAMES = {"ready": N_("ready"), "building": N_("building"), "failed": N_("failed"), "cancelled": N_("cancelled"),
                "unregistered": N_("unregistered"), "missing": N_("missing"), "deleted": N_("deleted")}
# Column headers: the tables keep these names, shown in the session's language.
VERSION_COLUMNS = (N_("live"), N_("collection"), N_("status"), N_("aliases"), N_("points"), N_("docs"), N_("chunks"),
                   N_("vectors"), N_("model"), N_("chunking"), N_("source"), N_("created"), N_("by"), N_("error"))
GATE_COLUMNS = (N_("metric"), N_("live"), N_("candidate"), N_("delta"))
HISTORY_COLUMNS = (N_("when"), N_("action"), N_("alias"), N_("from"), N_("to"), N_("who"), N_("why"))
AUDIT_COLUMNS = (N_("when"), N_("who"), N_("action"), N_("target"), N_("result"), N_("detail"))
UPLOAD_TYPES = ["zip", "gz", "tgz", "tar", "jsonl", "txt", "md", "html", "htm", "pdf"]


# --- versions -------------------------------------------------------------------------------------
def status_name(status: str) -> str:
    return t(STATUS_NAMES[status]) if status in STATUS_NAMES else status


def alias_map(admin: IndexAdmin, versions: list[VersionInfo]) -> None:
    live = next((v for v in versions if v.live), None)
    if live is None:
        st.warning(t("The alias `{alias}` points at no version yet: rebuild and promote one.", alias=admin.family),
                   icon="📭")
        return
    others = [f"`{a}` → `{v.collection}`" for v in versions for a in v.aliases if a != admin.family]
    st.markdown(t("**Live:** `{alias}` → `{collection}` · {points} points · {model}", alias=admin.family,
                  collection=live.collection, points=f"{live.points or 0:,}", model=escape_md(live.embedding_model))
                + (t(" · also {aliases}", aliases=", ".join(others)) if others else ""))


def versions_table(versions: list[VersionInfo]) -> None:
    st.subheader(t("🗂️ Versions"))
    if not versions:
        st.caption(t("No version of this index family yet."))
        return
    st.dataframe(
        [{"live": "✅" if v.live else "", "collection": v.collection,
          "status": f"{STATUS_ICONS.get(v.status, '')} {status_name(v.status)}",
          "aliases": ", ".join(v.aliases), "points": v.points, "docs": v.n_docs, "chunks": v.n_chunks,
          "vectors": v.vectors, "model": v.embedding_model, "chunking": v.chunking, "source": v.source,
          "created": kit.when(v.created_at, seconds=True), "by": v.created_by, "error": v.error} for v in versions],
        hide_index=True, width="stretch", key=keys("versions"),
        column_config=kit.columns(VERSION_COLUMNS) | {"points": st.column_config.NumberColumn(t("points"), format="%d"),
                                                 "error": st.column_config.TextColumn(t("error"), width="medium")},
    )


# --- rebuild --------------------------------------------------------------------------------------
def _rebuild_text(job: Job) -> tuple[float, str]:
    p = job.progress
    total, done = p.get("chunks_total") or 0, p.get("chunks_done") or 0
    if job.status == DONE:
        r = job.result or {}
        if r.get("unchanged", r.get("reused") is True):  # jobs before the embedding cache said "reused": True
            return 1.0, t("Unchanged corpus: `{collection}` already holds these {n} chunks",
                          collection=r.get("collection"), n=f"{r.get('n_chunks', 0):,}")
        return 1.0, t("Done: **{done} / {total}** chunks written into `{collection}` in {seconds} s{reuse}",
                      done=f"{done:,}", total=f"{total:,}", collection=r.get("collection"),
                      seconds=f"{job.seconds:.1f}", reuse=_reuse_text(r))
    phase = p.get("phase") or job.status
    if phase in ("queued", "reading", "chunking") or not total:
        what = t("Reading and chunking the documents") if phase != "queued" else t("Queued")
        return 0.0, t("{what}… {seconds} s", what=what, seconds=f"{job.seconds:.0f}")
    eta = t(" · about {seconds} s left", seconds=f"{p['eta_s']:.0f}") if p.get("eta_s") is not None else ""
    return done / total, t("Embedding **{done} / {total}** chunks of {docs} documents into `{collection}` · "
                           "{rate} chunks/s{eta}{reuse}", done=f"{done:,}", total=f"{total:,}",
                           docs=f"{p.get('docs') or 0:,}", collection=p.get("collection", "?"),
                           rate=f"{p.get('rate') or 0:.1f}", eta=eta, reuse=_reuse_text(p))


def _reuse_text(counts: dict) -> str:
    """How many chunks the embedding cache saved, once there are any."""
    reused, embedded = counts.get("reused"), counts.get("embedded")
    if not isinstance(reused, int) or isinstance(reused, bool) or not reused:
        return ""
    return t(" · {embedded} embedded, {reused} reused from earlier builds", embedded=f"{embedded or 0:,}",
             reused=f"{reused:,}")


def _last_rebuild(job: Job) -> None:
    if job.status == DONE:
        fraction, text = _rebuild_text(job)
        st.progress(fraction, text=text)
        r = job.result or {}
        st.success(t("Job {job} built `{collection}` ({docs} documents, {chunks} chunks) — not live yet: gate it "
                     "and promote it.", job=job.id, collection=r.get("collection"), docs=f"{r.get('n_docs', 0):,}",
                     chunks=f"{r.get('n_chunks', 0):,}"), icon="🏁")
        skipped = r.get("skipped") or []
        if skipped:
            with st.expander(t("⚠️ {n} files skipped", n=len(skipped))):
                for s in skipped:
                    st.caption(escape_md(s))
    else:
        partial = (job.progress or {}).get("collection")
        tail = t(" The partial collection `{collection}` is marked {status}; delete it below.", collection=partial,
                 status=status_name(job.status)) if partial else t(" The live alias was not touched.")
        icon = "🔴" if job.status == FAILED else "⏹️"
        st.error(t("Job {job} {status}: {error}.{tail}", job=job.id, status=status_name(job.status),
                   error=escape_md(job.error), tail=tail), icon=icon)


def rebuild(services: Services) -> None:
    admin = services.index_admin
    st.subheader(t("🏗️ Rebuild"))
    st.caption(t("Builds `{family}_vN+1` in the shadow: the live alias keeps serving until you promote.",
                 family=admin.family))
    job = admin.rebuild_job()
    if job is not None and job.active:
        st.markdown(t("Job **{job}** by {who} · source {source}", job=job.id, who=escape_md(job.actor),
                      source=kit.code(str(job.detail.get("source", "")))))
        job_progress(services.jobs, job.id, _rebuild_text, t("⏹️ Cancel rebuild"), keys("cancel"),
                     cancelling=t("⏹️ Cancel requested: the job stops after the current batch."))
        return
    if job is not None:
        _last_rebuild(job)
    with st.form(keys("rebuild_form"), border=True):
        path = st.text_input(t("Folder or corpus.jsonl on the server"), key=keys("source"),
                             placeholder=t("/data/docs or /data/corpus.jsonl"))
        upload = st.file_uploader(t("…or upload a .zip / .tar.gz archive, a corpus.jsonl or one document"),
                                  type=UPLOAD_TYPES, key=keys("upload"))
        c1, c2, c3 = st.columns(3)
        target = c1.number_input(t("Target chars"), 200, 4000, 1000, step=100, key=keys("target_chars"))
        maximum = c2.number_input(t("Max chars"), 300, 6000, 1500, step=100, key=keys("max_chars"))
        overlap = c3.number_input(t("Overlap"), 0.0, 0.5, 0.15, step=0.05, key=keys("overlap"))
        st.caption(t("Embedding model: **{model}** (the one queries use) · {n} chunk vectors of it cached: a rebuild "
                     "embeds only the chunks not among them.", model=escape_md(services.embedder.name),
                     n=kit.count(services.ingestor.vectors.count(services.embedder.cache_key))))
        submitted = st.form_submit_button(t("🏗️ Start rebuild"), type="primary", **need(Action.rebuild))
    if not submitted:
        return
    if bool(path.strip()) == (upload is not None):
        st.error(t("Give either a path on the server or an uploaded file."), icon="🛑")
        return

    def start() -> int:
        params = ChunkingParams(target_chars=int(target), max_chars=int(maximum), overlap=float(overlap))
        if upload is not None:
            return admin.start_rebuild(current_actor(), upload=(upload.name, upload.getvalue()), params=params)
        return admin.start_rebuild(current_actor(), source=path.strip(), params=params)

    kit.run(keys, start, inline=True, rerun=True)


# --- gate, promote, roll back ---------------------------------------------------------------------
def gate_rows(r: GateResult) -> list[dict]:
    """One row per metric: live, candidate and the delta."""
    cand, base = r.metrics["candidate"] or {}, r.metrics.get("baseline") or {}
    rows = []
    for k in (*METRICS, "p50_ms"):
        c, b = cand.get(k), base.get(k)
        rows.append({"metric": k, "live": b, "candidate": c, "delta": (c - b) if c is not None and b is not None else None})
    return rows


def _gate_result(stored: StoredGate) -> None:
    r = stored.result
    verdict = t("✅ Gate passed") if r.passed else t("❌ Gate failed")
    stale = t(" · ⚠️ stale: the live version changed since") if stored.stale else ""
    st.markdown(t("**{verdict}** — {n} queries on {dataset} vs `{baseline}` · {when} by {who}{stale}",
                  verdict=verdict, n=r.n_queries, dataset=kit.code(r.dataset), baseline=r.baseline or t("no live version"),
                  when=kit.when(stored.ts, seconds=True), who=escape_md(stored.actor), stale=stale))
    st.dataframe(gate_rows(r), hide_index=True, width="stretch", key=keys("gate_table"),
                 column_config=kit.columns(GATE_COLUMNS) | {k: st.column_config.NumberColumn(t(k), format="%.4f")
                                                       for k in ("live", "candidate", "delta")})
    st.caption(" · ".join(escape_md(x) for x in r.reasons))


def _gate_text(job: Job) -> tuple[float, str]:
    p = job.progress
    total, done = p.get("total") or 0, p.get("done") or 0
    return done / total if total else 0.0, t("Gate: {phase} · {done}/{total}", phase=escape_md(str(p.get("phase", "queued"))),
                                             done=done, total=total)


def _promote_body(admin: IndexAdmin, candidate: VersionInfo, live: str | None, stored: StoredGate | None) -> bool:
    if live:
        st.markdown(t("`{alias}` will point at **`{collection}`** instead of `{live}` in one atomic alias update.",
                      alias=admin.family, collection=candidate.collection, live=live))
    else:
        st.markdown(t("`{alias}` will point at **`{collection}`** in one atomic alias update.", alias=admin.family,
                      collection=candidate.collection))
    st.markdown(t("- Queries already running finish on `{live}`; every later query uses `{collection}`.\n"
                  "- `{collection}`: {points} points, {model}, {chunking}.\n- You can roll back with one click afterwards.",
                  live=live, collection=candidate.collection, points=f"{candidate.points or 0:,}",
                  model=escape_md(candidate.embedding_model), chunking=escape_md(candidate.chunking)))
    override = True
    if not (stored is not None and stored.result.passed and not stored.stale):
        if stored is None:
            st.warning(t("Careful: no gate was run for this version."), icon="⚠️")
        elif stored.stale:
            st.warning(t("Careful: the gate is stale for this version."), icon="⚠️")
        else:
            st.warning(t("Careful: the gate failed for this version."), icon="⚠️")
        override = st.checkbox(t("Promote anyway"), key=keys("promote_override"))
    st.text_input(t("Why (recorded in the alias history)"), key=keys("promote_reason"))
    return override


def _rollback_body(admin: IndexAdmin, live: str, target: str) -> None:
    st.markdown(t("`{alias}` will point back at **`{target}`** instead of `{live}` in one atomic alias update.",
                  alias=admin.family, target=target, live=live))
    st.caption(t("`{live}` stays available: you can promote it again later.", live=live))
    st.text_input(t("Why (recorded in the alias history)"), key=keys("rollback_reason"))


def _moved(change) -> str:  # noqa: ANN001 - backend.index_admin's alias change
    return t("`{alias}` → `{current}` (was `{previous}`).", alias=change.alias, current=change.current,
             previous=change.previous)


def promote(services: Services, versions: list[VersionInfo]) -> None:
    admin = services.index_admin
    st.subheader(t("🚀 Gate and promote"))
    live = next((v.collection for v in versions if v.live), None)
    ready = [v for v in versions if v.status == "ready" and not v.live]
    if not ready:
        st.caption(t("No ready version besides the live one: rebuild or restore one first."))
    else:
        names = [v.collection for v in ready]
        name = kit.select(t("Version to promote"), names, key=keys("candidate"))
        candidate = ready[names.index(name)] if name in names else ready[0]
        job = admin.gate_job(candidate.collection)
        if job is not None and job.active:
            job_progress(services.jobs, job.id, _gate_text)
        else:
            if job is not None and job.status != DONE:
                st.error(t("Last gate run {status}: {error}", status=status_name(job.status),
                           error=escape_md(job.error)), icon="🛑")
            with st.container(horizontal=True, vertical_alignment="bottom"):
                dataset = st.text_input(t("Gate data set (folder with queries.jsonl)"), key=keys(f"gate_dataset.{name}"),
                                        value=admin.default_gate_dataset(candidate.collection))
                if st.button(t("🧪 Run gate"), key=keys("gate"), **need(Action.run_evaluation)):
                    kit.run(keys, lambda: admin.start_gate(current_actor(), candidate.collection, dataset), inline=True,
                            rerun=True)
        stored = admin.latest_gate(candidate.collection)
        if stored is not None:
            _gate_result(stored)
        elif job is None or job.status == DONE:
            st.caption(t("No gate run yet for this version."))
        st.button(t("🚀 Promote {collection}", collection=candidate.collection), type="primary", key=keys("promote"), on_click=kit.ask,
                  args=(keys, "promote"), kwargs={"collection": candidate.collection}, **need(Action.promote))
    target = admin.rollback_target() if live else None
    if target:
        st.button(t("↩️ Roll back to {collection}", collection=target), key=keys("rollback"), on_click=kit.ask, args=(keys, "rollback",),
                  kwargs={"collection": target}, **need(Action.rollback))
    elif live:
        st.caption(t("Nothing to roll back to: no earlier ready version."))


# --- snapshots ------------------------------------------------------------------------------------
def snapshots(services: Services, versions: list[VersionInfo]) -> None:
    store = services.snapshots
    st.subheader(t("📸 Snapshots"))
    if store.server:
        st.caption(t("Qdrant server snapshots. A restore always creates a new version; it never overwrites one."))
    else:
        st.caption(t("portable snapshot files (local mode has no Qdrant snapshots): points, vectors, payloads, metadata, "
                     "checksum. A restore always creates a new version; it never overwrites one."))
    present = [v.collection for v in versions if v.points is not None and v.status != "building"]
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = kit.select(t("Version"), present, key=keys("snapshot_version"), disabled=not present)
        if st.button(t("📸 Create snapshot"), key=keys("snapshot_create"),
                     **need(Action.snapshot_create, disabled=not present)):
            with st.spinner(t("Writing a snapshot of {collection}…", collection=chosen)):
                kit.run(keys, lambda: store.create(current_actor(), chosen), inline=True, rerun=True,
                        ok=lambda snap: t("Snapshot `{name}` written ({points} points).", name=snap.name,
                                          points=f"{snap.n_points:,}"))
    rows = store.list()
    for snap in rows:
        with st.container(border=True, horizontal=True, vertical_alignment="center"):
            aliases = t(" · was live behind {aliases}", aliases=", ".join(snap.aliases)) if snap.aliases else ""
            st.markdown(t("**{name}**  \n{kind} · `{collection}` · {points} points · {size} KiB · {when} by {who}{aliases}",
                          name=escape_md(snap.name), kind=snap.kind, collection=snap.collection,
                          points=f"{snap.n_points:,}", size=f"{snap.size / 1024:,.0f}",
                          when=kit.when(snap.created_at, seconds=True), who=escape_md(snap.created_by), aliases=aliases))
            st.download_button(t("⬇️ Download"), data=lambda sid=snap.id: store.read_bytes(current_actor(), sid),
                               file_name=snap.name, mime="application/gzip", key=keys(f"download.{snap.id}"),
                               on_click="ignore", **need(Action.snapshot_create))
            st.button(t("♻️ Restore"), key=keys(f"restore.{snap.id}"), on_click=kit.ask, args=(keys, "restore",),
                      kwargs={"snapshot_id": snap.id}, **need(Action.snapshot_restore))
    if not rows:
        st.caption(t("No snapshots yet."))
    with st.expander(t("⬆️ Restore from a snapshot file")):
        up = st.file_uploader(t("Portable snapshot (.ragsnap.jsonl.gz)"), type=["gz"], key=keys("snapshot_upload"),
                              disabled=not can(current_actor(), Action.snapshot_restore))
        st.button(t("♻️ Restore uploaded file"), key=keys("snapshot_import"), on_click=kit.ask, args=(keys, "import",),
                  **need(Action.snapshot_restore, disabled=up is None))


# --- delete ---------------------------------------------------------------------------------------
def delete(services: Services, versions: list[VersionInfo]) -> None:
    st.subheader(t("🗑️ Delete a version"))
    removable = [v.collection for v in versions if not v.aliases and v.status not in ("building", "deleted")]
    if not removable:
        st.caption(t("Nothing to delete: the live version and builds in progress cannot be deleted."))
        return
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = kit.select(t("Version (never the live one)"), removable, key=keys("delete_version"))
        st.button(t("🗑️ Delete"), key=keys("delete"), on_click=kit.ask, args=(keys, "delete",), kwargs={"collection": chosen},
                  **need(Action.delete_version))


# --- history --------------------------------------------------------------------------------------
def history(services: Services) -> None:
    admin = services.index_admin
    st.subheader(t("📜 Alias history"))
    rows = admin.history(limit=100)
    if rows:
        st.dataframe([{"when": kit.when(h.ts, seconds=True), "action": h.action, "alias": h.alias,
                       "from": h.from_collection, "to": h.to_collection, "who": h.actor, "why": h.reason} for h in rows],
                     hide_index=True, width="stretch", key=keys("history"), column_config=kit.columns(HISTORY_COLUMNS))
    else:
        st.caption(t("No alias change recorded yet."))
    if not can(current_actor(), Action.read_audit):
        return
    with st.expander(t("🧾 Audit log of admin actions")):
        st.dataframe([{"when": kit.when(a.ts, seconds=True), "who": a.actor, "action": a.action,
                       "target": a.target, "result": a.result, "detail": a.detail} for a in admin.audit_log(current_actor(), 200)],
                     hide_index=True, width="stretch", key=keys("audit"),
                     column_config=kit.columns(AUDIT_COLUMNS) | {"detail": st.column_config.JsonColumn(t("detail"),
                                                                                                  width="large")})


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
        kit.confirm(keys, t("Promote this version?"), t("🚀 Promote now"), "promote",
                    lambda: admin.promote(actor, candidate.collection, reason=ss.get(keys("promote_reason"), "")),
                    ok=lambda change: t("Promoted: {change}", change=_moved(change)),
                    body=lambda: _promote_body(admin, candidate, live, stored))
    elif d["kind"] == "rollback" and live:
        kit.confirm(keys, t("Roll back?"), t("↩️ Roll back now"), "rollback",
                    lambda: admin.rollback(actor, reason=ss.get(keys("rollback_reason"), "")),
                    ok=lambda change: t("Rolled back: {change}", change=_moved(change)),
                    body=lambda: _rollback_body(admin, live, d["collection"]))
    elif d["kind"] == "delete":
        collection = d["collection"]
        kit.confirm(keys, t("Delete this version?"), t("🗑️ Delete now"), "delete",
                    lambda: admin.delete(actor, collection), ok=t("Deleted `{collection}`.", collection=collection),
                    body=t("The collection **`{collection}`** and its points will be dropped from the vector store. "
                           "Its name stays in the registry as deleted; snapshots of it are kept.", collection=collection))
    elif d["kind"] == "restore" and any(s.id == d["snapshot_id"] for s in snapshots.list()):
        snap = snapshots.get(d["snapshot_id"])
        kit.confirm(keys, t("Restore this snapshot?"), t("♻️ Restore"), "restore",
                    lambda: snapshots.restore(actor, snapshot_id=snap.id),
                    ok=lambda r: t("Restored `{name}` into `{collection}` ({points} points).", name=snap.name,
                                   collection=r.collection, points=f"{r.n_points:,}"),
                    body=t("`{name}` ({points} points of `{collection}`) will be restored into a **new** version of "
                           "`{family}`. Nothing live changes: promote the new version afterwards if you want it.",
                           name=snap.name, points=f"{snap.n_points:,}", collection=snap.collection, family=snap.family),
                    spinner=t("Checking the snapshot and restoring…"))
    elif d["kind"] == "import" and ss.get(keys("snapshot_upload")) is not None:
        upload = ss[keys("snapshot_upload")]
        kit.confirm(keys, t("Restore the uploaded snapshot file?"), t("♻️ Restore"), "import",
                    lambda: snapshots.import_file(actor, upload.name, upload.getvalue()),
                    ok=lambda r: t("Restored `{name}` into `{collection}` ({points} points).", name=upload.name,
                                   collection=r.collection, points=f"{r.n_points:,}"),
                    body=t("`{name}` ({size} KiB) will be checked and restored into a **new** version of the index "
                           "family named in the file. Nothing live changes: promote the new version afterwards if you "
                           "want it.", name=upload.name, size=f"{upload.size / 1024:,.0f}"),
                    spinner=t("Checking the file and restoring…"))
    else:  # what it was about is gone meanwhile
        kit.close(keys)
