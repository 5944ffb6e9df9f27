"""Golden sets and evaluation runs on a real index: metrics, imports, re-chunk survival, diffs."""
from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest
from actors import Role, system_actor, user

from backend.cli import evals as cli_eval
from backend.engine.policy import Policy
from backend.engine.query_engine import SourceChunk
from backend.errors import InputError
from backend.evaluation.dataset import evaluate_dataset
from backend.evaluation.golden import GoldItem, GoldRef, export_csv, export_jsonl, parse_items, ref_from_chunk
from backend.evaluation.runs import describe_move, retrieval_metrics
from backend.evaluation.stats import bootstrap_ci, paired_bootstrap
from backend.ingestion.chunking import ChunkingParams
from backend.ingestion.sources import load_source
from backend.services import Services

ANN = user("ann", Role.operator)  # writes golden sets and runs evaluations
BOB = user("bob", Role.annotator)  # reviews and freezes
BUILDER = system_actor("t")  # builds the test index versions


def _chunk(rank: int, doc: str, start: int = 0, end: int = 100) -> SourceChunk:
    return SourceChunk(rank=rank, point_id=f"p{rank}", chunk_id=f"{doc}:{start}-{end}", doc_id=doc, start=start, end=end,
                       text="t", scores={})


def test_retrieval_metrics_by_hand() -> None:
    # Ranked docs: a, b (two chunks), c, d. Gold: b (whole doc) and d:500-600 (a span d's chunk misses).
    chunks = [_chunk(1, "a"), _chunk(2, "b"), _chunk(3, "b", 100, 200), _chunk(4, "c"), _chunk(5, "d", 0, 100)]
    gold = [GoldRef(doc_id="b"), GoldRef(doc_id="d", start=500, end=600)]
    m, ranks = retrieval_metrics(gold, chunks)
    assert ranks == {"b": 2, "d:500-600": None}
    assert m["recall@5"] == 0.5 and m["recall@10"] == 0.5
    assert m["mrr@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx((1 / 1.5849625) / (1 + 1 / 1.5849625), rel=1e-6)  # 1/log2(3) / (1 + 1/log2(3))
    assert m["precision@5"] == 0.2 and m["hit@10"] == 1.0
    m2, ranks2 = retrieval_metrics([GoldRef(doc_id="d", start=50, end=60)], chunks)
    assert ranks2 == {"d:50-60": 4} and m2["mrr@10"] == 0.25


def test_statistics_find_a_real_effect_and_not_a_null_one() -> None:
    mean, low, high = bootstrap_ci([0, 1] * 50)
    assert mean == 0.5 and low < 0.5 < high and high - low < 0.3
    a = [0.5] * 60
    assert paired_bootstrap(a, [0.7] * 40 + [0.5] * 20)["p_value"] < 0.01
    noisy_a = [0.2, 0.8, 0.5, 0.4, 0.6, 0.3, 0.7] * 8
    noisy_b = noisy_a[1:] + noisy_a[:1]  # same values, shuffled pairing: no systematic effect
    assert paired_bootstrap(noisy_a, noisy_b)["p_value"] > 0.2
    assert describe_move(2, 11) == "rank 2 → 11 (lost from top 10)"
    assert describe_move(None, 3) == "found at rank 3 (new in top 10)"
    assert describe_move(4, None) == "rank 4 → lost (lost from top 10)"


def test_malformed_imports_are_refused_with_line_and_nothing_half_imported(services: Services) -> None:
    services.golden.create("imports", actor=ANN)
    good = b'{"question": "q1", "references": [{"doc_id": "1"}]}\n'
    with pytest.raises(InputError, match="line 2: not JSON"):
        parse_items(good + b"{oops\n", "set.jsonl")
    with pytest.raises(InputError, match="line 3: references: List should have at least 1 item"):
        parse_items(good + good + b'{"question": "q3", "references": []}\n', "set.jsonl")
    with pytest.raises(InputError, match="line 2: question: question is empty"):
        parse_items(good + b'{"question": " ", "references": [{"doc_id": "1"}]}\n', "set.jsonl")
    with pytest.raises(InputError, match="header needs columns"):
        parse_items(b"q,ids\nx,y\n", "set.csv")
    assert services.golden.items("imports") == []
    csv_items = parse_items(b"question,gold_context_ids,reference_answer\nWhat?,d1|d2:10-20,yes\n", "set.csv")
    assert csv_items[0].references[1] == GoldRef(doc_id="d2", start=10, end=20)
    assert services.golden.import_items("imports", csv_items, actor=ANN) == 1
    assert "d1|d2:10-20" in export_csv(services.golden.items("imports"))


def _jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


GOOD = {"question": "q1", "gold_ids": ["d1"]}


@pytest.mark.parametrize(("row", "reason"), [
    ({"question": "q", "gold_ids": None}, "gold_ids: expected a list of document ids, got null"),
    ({"question": "q", "gold_ids": 12}, "gold_ids: expected a list of document ids, got a number"),
    ({"question": "q", "gold_ids": "doc12"}, "gold_ids: expected a list of document ids, got text"),
    ({"question": "q", "gold_ids": [{"doc": 1}]}, r"gold_ids: expected document ids \(text or whole numbers\), got an object"),
    ({"question": "q", "gold_ids": ["d:20-10"]}, "references.0: the span end 10 is not after its start 20"),
    ({"question": "q", "references": [{"doc_id": "d", "start": 5, "end": 5}]}, "references.0: the span end 5 is not after its start 5"),
    ({"question": "x" * 4001, "gold_ids": ["d"]}, "question: has 4,001 characters; the limit is 4,000"),
    ({"question": "q", "gold_ids": ["d"], "id": None}, "id: expected text or a whole number, got null"),
    ({"question": "q\u0000", "gold_ids": ["d"]}, r"question: holds a control character \(U\+0000\)"),
])
def test_bad_jsonl_rows_are_refused_with_their_line_and_reason(row: dict, reason: str) -> None:
    with pytest.raises(InputError, match=f"set.jsonl line 2: {reason}"):
        parse_items(_jsonl(GOOD, row), "set.jsonl")


def test_gold_ids_take_the_span_form_and_numbers() -> None:
    [item] = parse_items(_jsonl({"question": "q", "gold_ids": ["doc12", "d2:10-20", 7], "id": 3}), "queries.jsonl")
    assert item.references == [GoldRef(doc_id="doc12"), GoldRef(doc_id="d2", start=10, end=20), GoldRef(doc_id="7")]
    assert item.external_id == "3"
    # a question may hold U+2028 (JSON allows it raw): the line is not split there
    [item] = parse_items(export_jsonl([GoldItem(question="a\u2028b\x85c", references=[GoldRef(doc_id="d")])]).encode(), "x.jsonl")
    assert item.question == "a\u2028b\x85c"


@pytest.mark.parametrize(("body", "reason"), [
    ("ok,d1\n" + '"' + "a" * 140_000 + '",d2\n', "row 3: a field is longer than 131,072 characters"),
    ("ok,d1\nq,d:9-3\n", "row 3: references.0: the span end 3 is not after its start 9"),
    ("ok,d1\n" + "x" * 4001 + ",d\n", "row 3: question: has 4,001 characters; the limit is 4,000"),
    ("ok,d1\nq,d:" + "9" * 5000 + "-1\n", "row 3: a span offset of 'd' has over 15 digits"),
])
def test_bad_csv_rows_are_refused_with_their_row_and_reason(body: str, reason: str) -> None:
    with pytest.raises(InputError, match=f"set.csv {reason}"):
        parse_items(("question,gold_context_ids\n" + body).encode(), "set.csv")


def test_cli_import_refused_leaves_no_new_set(services: Services, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(cli_eval, "services", lambda: services)
    bad, good = tmp_path / "bad.jsonl", tmp_path / "good.jsonl"
    bad.write_bytes(_jsonl(GOOD, {"question": "q", "gold_ids": None}))
    good.write_bytes(_jsonl(GOOD))
    args = argparse.Namespace(file=str(bad), set="cli-new", status="approved", freeze=False, user=ANN)
    with pytest.raises(InputError, match="line 2: gold_ids"):
        cli_eval.cmd_import(args)
    assert "cli-new" not in {s.name for s in services.golden.list_sets()}
    assert cli_eval.cmd_import(argparse.Namespace(**{**vars(args), "file": str(good)})) == 0
    assert [i.question for i in services.golden.items("cli-new")] == ["q1"]


def test_annotation_review_history_and_freeze(services: Services) -> None:
    services.golden.create("review", actor=ANN)
    hit = services.engine.retrieve("ADMP and BMP signals in embryos", Policy(top_k=3)).sources[0]
    ref = ref_from_chunk(hit.doc_id, hit.start, hit.end, hit.text)
    item_id = services.golden.add_item("review", GoldItem(question="What signals set up embryo poles?", references=[ref]),
                                       actor=ANN)
    services.golden.update_item(item_id, ANN, reference_answer="ADMP and BMP2/4/7")
    with pytest.raises(InputError, match="no approved items"):
        services.golden.freeze("review", BOB)
    services.golden.review(item_id, BOB, approve=True, comment="good")
    assert services.golden.freeze("review", BOB) == 1
    version, items = services.golden.version_items("review")
    assert version == 1 and items[0].reference_answer == "ADMP and BMP2/4/7"
    assert [h.action for h in services.golden.history(item_id)] == ["create", "edit", "approved"]
    assert {(p.author, p.status, p.n) for p in services.golden.progress("review")} == {("ann", "approved", 1)}


def test_span_references_survive_a_rechunked_rebuild(services: Services, small_datasets) -> None:
    docs = load_source(small_datasets["scifact"]).documents
    v1 = services.ingestor.ingest(docs, actor=BUILDER, family="rechunk", source="t", params=ChunkingParams(target_chars=1200))
    hit = services.engine.retrieve(docs[0].title, Policy(index=v1.collection, top_k=1)).sources[0]
    items = [GoldItem(question="q", references=[ref_from_chunk(hit.doc_id, hit.start, hit.end, hit.text),
                                                GoldRef(doc_id="no-such-doc")])]
    v2 = services.ingestor.ingest(docs, actor=BUILDER, family="rechunk", source="t", params=ChunkingParams(target_chars=500, max_chars=700))
    assert v2.n_chunks > v1.n_chunks
    for collection in (v1.collection, v2.collection):
        resolved = services.evals.resolve_references(collection, items)
        key = f"{hit.doc_id}:{hit.start}-{hit.end}"
        assert resolved[key] and any(hit.text[:80] in t for t in resolved[key])
        assert resolved["no-such-doc"] == []


def test_run_matches_cli_evaluate_and_diffs_against_another_policy(services: Services, small_datasets) -> None:
    report = evaluate_dataset(services.ingestor, services.engine, small_datasets["scifact"], Policy())
    services.golden.create("scifact-small", actor=ANN)
    items = parse_items((small_datasets["scifact"] / "queries.jsonl").read_bytes(), "queries.jsonl")
    services.golden.import_items("scifact-small", items, actor=ANN)
    services.golden.freeze("scifact-small", actor=ANN)
    seen = []
    hybrid = services.evals.run("scifact-small", Policy(), actor=ANN, index=report.collection,
                                progress=lambda done, total: seen.append((done, total)))
    run = services.evals.get(hybrid)
    assert run.status == "done" and seen[-1] == (len(items), len(items))
    for metric in ("recall@10", "ndcg@10", "recall@5", "mrr@10"):
        assert run.metrics[metric]["mean"] == pytest.approx(report.metrics[metric], abs=1e-9), metric
        assert run.metrics[metric]["low"] <= run.metrics[metric]["mean"] <= run.metrics[metric]["high"]
    per_item = services.evals.items(hybrid)
    assert per_item[0].answer_kind == "extractive" and "context_recall" in per_item[0].metrics
    sparse = services.evals.run("scifact-small", Policy(name="bm25", retrieval_mode="sparse"), actor=ANN, index=report.collection)
    diff = services.evals.diff(hybrid, sparse)
    assert diff.n_items == len(items) and diff.improved + diff.regressed + diff.unchanged == len(items)
    assert {f.name for f in fields(diff.metrics["ndcg@10"])} == {"delta", "low", "high", "p_value"}
    moves = [describe_move(m.before, m.after) for r in diff.items for m in r.moves]
    assert all(r.moves for r in diff.items) and all("rank" in m or "not found" in m for m in moves)
    assert services.evals.gate(hybrid, {"recall@10": 1.01}) == [f"recall@10 = {run.metrics['recall@10']['mean']:.4f} < minimum 1.0100"]
    assert services.evals.gate(hybrid, {"recall@10": 0.0}, baseline=hybrid) == []
