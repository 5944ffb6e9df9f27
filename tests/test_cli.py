"""The command line as CI and users call it: real subprocesses on a fresh data folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from index_support import cli

KEYS = {"recall@5", "recall@10", "ndcg@10", "mrr@10", "recall@100", "p50_ms", "p95_ms", "n_queries"}


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = cli(tmp_path, "--help")
    assert out.returncode == 0
    for command in ("ingest", "query", "evaluate", "index", "policy", "demo"):
        assert command in out.stdout


def test_evaluate_json_contract_and_index_reuse(tmp_path: Path, small_datasets: dict[str, Path]) -> None:
    first = cli(tmp_path, "evaluate", "--dataset", str(small_datasets["cmrc2018"]), "--json")
    assert first.returncode == 0, first.stderr
    metrics = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(metrics) == KEYS
    assert metrics["n_queries"] == 6
    assert metrics["recall@5"] >= 0.8 and 0 < metrics["ndcg@10"] <= 1 and metrics["p95_ms"] >= metrics["p50_ms"] > 0
    second = cli(tmp_path, "evaluate", "--dataset", str(small_datasets["cmrc2018"]), "--json", "--mode", "sparse")
    assert second.returncode == 0, second.stderr
    assert "reused" in second.stdout  # same corpus, same model: the index is not rebuilt
    assert set(json.loads(second.stdout.strip().splitlines()[-1])) == KEYS


def test_ingest_folder_query_and_bad_input(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "qdrant.md").write_text("# Qdrant aliases\n\nAn alias swap in Qdrant is atomic. Queries in flight see the old or the new collection.\n")
    (docs / "redis.html").write_text("<html><title>Redis cache</title><body><p>Redis keeps cached answers for one hour.</p><script>x()</script></body></html>")
    (docs / "broken.txt").write_bytes(b"\xff\xfe\x00bad bytes \x81")
    data = tmp_path / "data"
    ing = cli(data, "ingest", str(docs))
    assert ing.returncode == 0, ing.stderr
    assert "skipped broken.txt" in ing.stderr and "2 documents" in ing.stdout and "alias rag_chunks -> rag_chunks_v1" in ing.stdout
    again = cli(data, "ingest", str(docs))
    assert "unchanged corpus" in again.stdout
    q = cli(data, "query", "Is an alias swap atomic?", "--top-k", "2")
    assert q.returncode == 0, q.stderr
    assert "extractive answer" in q.stdout and "Qdrant aliases" in q.stdout and "atomic" in q.stdout
    as_json = json.loads(cli(data, "query", "How long does Redis keep answers?", "--json").stdout)
    assert as_json["sources"][0]["title"] == "Redis cache" and "x()" not in as_json["sources"][0]["text"]
    empty = cli(data, "query", "  ")
    assert empty.returncode == 2 and "input: the question is empty" in empty.stderr and "Traceback" not in empty.stderr
    (tmp_path / "nothing").mkdir()
    none = cli(data, "ingest", str(tmp_path / "nothing"))
    assert none.returncode == 2 and "no documents with text found" in none.stderr
    listing = cli(data, "index", "list")
    assert "rag_chunks_v1" in listing.stdout and "ready" in listing.stdout


@pytest.mark.parametrize("line", ['{"id": 1}', "not json"])
def test_malformed_corpus_is_refused_with_the_line(tmp_path: Path, line: str) -> None:
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"id": "a", "title": "t", "text": "fine"}\n' + line + "\n")
    out = cli(tmp_path / "data", "ingest", str(bad))
    assert out.returncode == 2 and "line 2" in out.stderr


def test_eval_run_is_a_ci_gate(tmp_path: Path, small_datasets: dict[str, Path]) -> None:
    data = tmp_path / "data"
    ds = small_datasets["cmrc2018"]
    assert cli(data, "evaluate", "--dataset", str(ds)).returncode == 0  # builds the eval_cmrc2018 index
    imp = cli(data, "eval", "import", str(ds / "queries.jsonl"), "--set", "cmrc", "--freeze")
    assert imp.returncode == 0, imp.stderr
    assert "imported 6 items" in imp.stdout and "frozen as version 1" in imp.stdout
    passed = cli(data, "eval", "run", "--set", "cmrc", "--index", "eval_cmrc2018", "--min", "recall@10=0.5", "--json")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    result = json.loads(passed.stdout.strip().splitlines()[-1])
    assert result["passed"] and result["recall@10"] >= 0.5 and "string_presence" in result
    failed = cli(data, "eval", "run", "--set", "cmrc", "--index", "eval_cmrc2018", "--retrieval-only",
                 "--min", "recall@10=1.01", "--baseline", str(result["run_id"]))
    assert failed.returncode == 1 and "GATE FAILED: recall@10" in failed.stdout
    diff = cli(data, "eval", "diff", str(result["run_id"]), str(result["run_id"] + 1))
    assert diff.returncode == 0 and "recall@10" in diff.stdout
    bad = cli(data, "eval", "run", "--set", "nope")
    assert bad.returncode == 2 and "unknown golden set 'nope'" in bad.stderr
