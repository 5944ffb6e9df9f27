"""`python -m backend index ...` as CI calls it (real subprocesses, fresh data folder):
rebuild → gate (exit 1 when worse) → promote --require-gate → rollback → snapshot → restore.
Refusals (live delete, failed gate) are covered in-process by test_index_admin.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from index_support import TOPICS, run, write_dataset


@pytest.mark.slow  # a dozen CLI processes, each loading the stack (~5 s apiece on 2 busy cores)
def test_ci_pipeline_rebuild_gate_promote_rollback_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    full = write_dataset(tmp_path / "full")
    half = write_dataset(tmp_path / "half", ids=list(TOPICS)[:5], query_ids=list(TOPICS))

    out = run(["--user", "ci", "index", "rebuild", str(full), "--json"], data)
    assert out.returncode == 0, out.stderr
    assert "rag_chunks_v1: 10 documents, 10 chunks" in out.stdout and "not live" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1])["collection"] == "rag_chunks_v1"
    assert run(["index", "promote", "rag_chunks_v1", "--reason", "first"], data).returncode == 0

    assert run(["index", "rebuild", str(half)], data).returncode == 0
    worse = run(["index", "gate", "rag_chunks_v2"], data)  # default data set: the version's own source folder
    assert worse.returncode == 1, worse.stderr
    assert "FAILED: " in worse.stdout and "recall@10 drops 0.500" in worse.stdout and f"on {half}" in worse.stdout

    assert run(["index", "rebuild", str(full), "--overlap", "0.3"], data).returncode == 0
    better = run(["index", "gate", "rag_chunks_v3", "--dataset", str(full), "--json"], data)
    assert better.returncode == 0 and json.loads(better.stdout.strip().splitlines()[-1])["passed"] is True
    promoted = run(["index", "promote", "rag_chunks_v3", "--require-gate", "--reason", "gate passed"], data)
    assert promoted.returncode == 0 and "alias rag_chunks: rag_chunks_v1 -> rag_chunks_v3" in promoted.stdout

    back = run(["--user", "oncall", "index", "rollback", "--reason", "latency"], data)
    assert back.returncode == 0 and "rag_chunks_v3 -> rag_chunks_v1 (rolled back)" in back.stdout

    snap = run(["index", "snapshot", "create", "rag_chunks_v3"], data)
    assert snap.returncode == 0 and "snapshot 1: rag_chunks_v3-" in snap.stdout and "10 points" in snap.stdout
    assert run(["index", "delete", "rag_chunks_v3"], data).returncode == 0
    restored = run(["index", "snapshot", "restore", "1"], data)
    assert restored.returncode == 0 and "into rag_chunks_v4: 10 points" in restored.stdout
    history = run(["index", "history"], data).stdout.splitlines()
    assert "rollback" in history[0] and "oncall" in history[0] and "latency" in history[0]
