"""`python -m backend index ...` as CI calls it (real subprocesses, fresh data folder):
rebuild → gate (exit 1 when worse) → promote --require-gate → rollback → snapshot → restore.
Refusals (live delete, failed gate) are covered in-process by test_index_admin.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from index_support import TOPICS, cli, write_dataset


@pytest.mark.slow  # a dozen CLI processes, each loading the stack (~5 s apiece on 2 busy cores)
def test_ci_pipeline_rebuild_gate_promote_rollback_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    full = write_dataset(tmp_path / "full")
    half = write_dataset(tmp_path / "half", ids=list(TOPICS)[:5], query_ids=list(TOPICS))

    out = cli(data, "--user", "ci", "index", "rebuild", str(full), "--json")
    assert out.returncode == 0, out.stderr
    assert "rag_chunks_v1: 10 documents, 10 chunks" in out.stdout and "not live" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1])["collection"] == "rag_chunks_v1"
    assert cli(data, "index", "promote", "rag_chunks_v1", "--reason", "first").returncode == 0

    assert cli(data, "index", "rebuild", str(half)).returncode == 0
    worse = cli(data, "index", "gate", "rag_chunks_v2")  # default data set: the version's own source folder
    assert worse.returncode == 1, worse.stderr
    assert "FAILED: " in worse.stdout and "recall@10 drops 0.500" in worse.stdout and f"on {half}" in worse.stdout

    assert cli(data, "index", "rebuild", str(full), "--overlap", "0.3").returncode == 0
    better = cli(data, "index", "gate", "rag_chunks_v3", "--dataset", str(full), "--json")
    assert better.returncode == 0 and json.loads(better.stdout.strip().splitlines()[-1])["passed"] is True
    promoted = cli(data, "index", "promote", "rag_chunks_v3", "--require-gate", "--reason", "gate passed")
    assert promoted.returncode == 0 and "alias rag_chunks: rag_chunks_v1 -> rag_chunks_v3" in promoted.stdout

    back = cli(data, "--user", "oncall", "index", "rollback", "--reason", "latency")
    assert back.returncode == 0 and "rag_chunks_v3 -> rag_chunks_v1 (rolled back)" in back.stdout

    snap = cli(data, "index", "snapshot", "create", "rag_chunks_v3")
    assert snap.returncode == 0 and "snapshot 1: rag_chunks_v3-" in snap.stdout and "10 points" in snap.stdout
    assert cli(data, "index", "delete", "rag_chunks_v3").returncode == 0
    restored = cli(data, "index", "snapshot", "restore", "1")
    assert restored.returncode == 0 and "into rag_chunks_v4: 10 points" in restored.stdout
    history = cli(data, "index", "history").stdout.splitlines()
    assert "rollback" in history[0] and "oncall" in history[0] and "latency" in history[0]
