"""The index admin page through Streamlit's AppTest, on the console's own first-start path
(a 6-document demo index from a tiny demo corpus) with the embedded stack: rebuild with
progress, gate, promote and roll back through their confirmation dialogs, snapshot,
restore, delete, and readable refusals. AppTest runs whole reruns only (no timed
fragments): the tests wait on the job in the database, then rerun."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from apptest_kit import demo_console
from index_support import write_dataset
from streamlit.testing.v1 import AppTest

from backend.services import Services
from console import state
from console.auth import LOCAL_ADMIN

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "console" / "navigation.py")
PAGE = "../pages/index_admin.py"  # relative to the entry script


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("index-admin-page")
    with demo_console(root):
        yield root


def services() -> Services:
    return state.get_services()  # the same cached services the AppTest script uses (same process)


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    deadline = time.monotonic() + 300
    while True:  # the first start builds the demo index in the background
        at.run()
        assert not at.exception, at.exception
        if not any("First start" in e.value for e in at.info):
            break
        assert time.monotonic() < deadline, "the demo index was not built in time"
        time.sleep(0.5)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def rerun(target) -> AppTest:  # noqa: ANN001 - the AppTest, or a widget just set or clicked
    at = target.run()
    assert not at.exception, at.exception
    return at


def text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "error", "warning", "info") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def table(at: AppTest, column: str):  # noqa: ANN201 - pandas.DataFrame
    """The first dataframe with this column (AppTest finds dataframes by position only)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def button(at: AppTest, key: str):  # noqa: ANN201
    return at.button(key=f"index_admin.{key}")


def wait_job(job_id: int) -> None:
    job = services().jobs.wait(job_id, timeout=120)
    assert job.status == "done", job.error


def test_versions_rebuild_gate_promote_rollback(console: Path) -> None:
    at = page()
    assert at.title[0].value == "🗂️ Index admin"
    assert "**Live:** `rag_chunks` → `rag_chunks_v1`" in text(at)
    versions = table(at, "vectors")
    assert list(versions["collection"]) == ["rag_chunks_v1"] and versions["live"][0] == "✅" and "dense 384" in versions["vectors"][0]
    assert "Nothing to roll back to" in text(at)
    cached = services().ingestor.vectors.count(services().embedder.cache_key)
    assert cached > 0 and f"{cached} chunk vectors of it cached" in text(at)  # the demo build's

    # Rebuild from a dataset folder on the server; the form names the model and keeps the alias serving.
    data = write_dataset(console / "set")
    at.text_input(key="index_admin.source").set_value(str(data))
    at.number_input(key="index_admin.overlap").set_value(0.2)
    submit = next(b for b in at.button if b.label == "🏗️ Start rebuild")
    rerun(submit.click())
    job = services().index_admin.rebuild_job()
    assert job is not None and job.detail["source"] == str(data)
    if job.active:  # the progress fragment with its cancel button
        assert at.get("progress") and button(at, "cancel") is not None
    wait_job(job.id)
    rerun(at)
    assert "Job" in text(at) and "built `rag_chunks_v2`" in text(at) and "not live yet" in text(at)
    assert at.get("progress")[0].proto.value == 100  # the finished bar
    assert services().index_admin.live() == "rag_chunks_v1"

    # Gate against the live version: the comparison sits next to Promote.
    assert at.selectbox(key="index_admin.candidate").value == "rag_chunks_v2"
    assert at.text_input(key="index_admin.gate_dataset.rag_chunks_v2").value == str(data)
    rerun(button(at, "gate").click())
    wait_job(services().index_admin.gate_job("rag_chunks_v2").id)
    rerun(at)
    assert "✅ Gate passed" in text(at), text(at)[-1500:]  # this setup: the rebuilt version scores as well as the live one
    gate = table(at, "metric")
    assert list(gate["metric"])[:3] == ["recall@5", "recall@10", "ndcg@10"]

    # Promote through the confirmation dialog, which says what will change.
    rerun(button(at, "promote").click())
    said = text(at)
    assert "`rag_chunks` will point at **`rag_chunks_v2`** instead of `rag_chunks_v1`" in said
    assert "Queries already running finish on `rag_chunks_v1`" in said
    at.text_input(key="index_admin.promote_reason").set_value("new corpus")
    confirm = button(at, "promote_confirm")
    if confirm.disabled:  # the gate did not pass on this tiny set: the override is explicit
        at.checkbox(key="index_admin.promote_override").check()
    rerun(button(at, "promote_confirm").click())
    assert "Promoted: `rag_chunks` → `rag_chunks_v2` (was `rag_chunks_v1`)" in text(at)
    assert services().index_admin.live() == "rag_chunks_v2"
    assert "index_admin.dialog" not in at.session_state
    history = table(at, "why")
    assert history["to"][0] == "rag_chunks_v2" and history["why"][0] == "new corpus" and history["who"][0] == "local-admin"

    # Roll back, also confirmed.
    rerun(button(at, "rollback").click())
    assert "will point back at **`rag_chunks_v1`** instead of `rag_chunks_v2`" in text(at)
    rerun(button(at, "rollback_confirm").click())
    assert "Rolled back: `rag_chunks` → `rag_chunks_v1`" in text(at)
    assert services().index_admin.live() == "rag_chunks_v1"
    audit = table(at, "detail")
    assert {"index.rebuild", "index.gate", "index.promote", "index.rollback"} <= set(audit["action"])


def test_snapshot_restore_and_delete(console: Path) -> None:
    at = page()
    at.selectbox(key="index_admin.snapshot_version").set_value("rag_chunks_v2")
    rerun(button(at, "snapshot_create").click())
    assert "Snapshot `rag_chunks_v2-" in text(at)
    snap = services().snapshots.list()[0]
    assert at.get("download_button") and button(at, f"restore.{snap.id}") is not None

    rerun(button(at, f"restore.{snap.id}").click())
    assert "will be restored into a **new** version" in text(at)
    rerun(button(at, "restore_confirm").click())
    assert "into `rag_chunks_v3`" in text(at)
    assert "rag_chunks_v3" in list(table(at, "vectors")["collection"])

    # The live version is never offered for deletion; a shadow version is, behind a dialog.
    assert "rag_chunks_v1" not in at.selectbox(key="index_admin.delete_version").options
    at.selectbox(key="index_admin.delete_version").set_value("rag_chunks_v2")
    rerun(button(at, "delete").click())
    assert "The collection **`rag_chunks_v2`** and its points will be dropped" in text(at)
    rerun(button(at, "delete_confirm").click())
    assert "Deleted `rag_chunks_v2`." in text(at)
    assert "rag_chunks_v2" not in services().store.collections()


def test_refusals_are_readable(console: Path) -> None:
    at = page()
    (console / "empty").mkdir(exist_ok=True)
    at.text_input(key="index_admin.source").set_value(str(console / "empty"))
    rerun(next(b for b in at.button if b.label == "🏗️ Start rebuild").click())
    assert any("no .txt/.md/.html/.pdf files or corpus.jsonl found" in e.value for e in at.error)
    at.text_input(key="index_admin.source").set_value("")
    rerun(next(b for b in at.button if b.label == "🏗️ Start rebuild").click())
    assert any("Give either a path on the server or an uploaded file" in e.value for e in at.error)
    # A gate data set without queries is refused in place, nothing crashes.
    at.text_input(key=f"index_admin.gate_dataset.{at.selectbox(key='index_admin.candidate').value}").set_value(str(console / "empty"))
    rerun(button(at, "gate").click())
    assert any("no queries.jsonl" in e.value for e in at.error)


def test_cancel_from_the_progress_panel(console: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from index_support import ControlledEmbedder

    from backend.ingestion.chunking import ChunkingParams

    svc = services()
    svc.ingestor.vectors.clear()  # these chunk texts were embedded before: without this nothing would be embedded
    ctl = ControlledEmbedder(svc.embedder.embed_passages, pause_after=1)
    monkeypatch.setattr(svc.embedder, "embed_passages", ctl)
    source = write_dataset(console / "set")
    job_id = svc.index_admin.start_rebuild(LOCAL_ADMIN, source=source, params=ChunkingParams(overlap=0.4))
    assert ctl.started.wait(60)
    at = page()
    assert "Embedding **2 / 10** chunks of 10 documents" in at.get("progress")[0].proto.text
    rerun(button(at, "cancel").click())
    assert "Cancel requested" in text(at)
    ctl.release.set()
    job = svc.jobs.wait(job_id, timeout=60)
    assert job.status == "cancelled"
    rerun(at)
    assert any(f"Job {job_id} cancelled" in e.value and "marked cancelled" in e.value for e in at.error)
    assert svc.index_admin.live() == "rag_chunks_v1"
