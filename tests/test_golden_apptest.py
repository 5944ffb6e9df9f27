"""The golden-set annotator and the evaluation run viewer driven through Streamlit's AppTest over a
small real index (the console's own first-start demo build, 12 documents) on the embedded stack.

An annotator creates a set, searches the index and ticks chunks to build items (one picked from
a thumbs-down chat answer, one widened to its neighbours), reviews the drafts, freezes a version,
imports and exports; then runs are started as background jobs, opened, filtered and diffed."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
from actors import user
from apptest_kit import APP, console_config, wait_ready
from judge_script import RELEVANCY, scripted
from streamlit.testing.v1 import AppTest

from backend.engine.policy import Policy
from backend.evaluation.golden import GoldItem, export_ragas
from backend.evaluation.judge import Judge
from backend.settings import Settings
from console import state
from console.auth import LOCAL_ADMIN
from console.eval_view import diff_item_rows, filter_items, metrics_figure, metrics_frame, runs_rows
from console.markup import escape_md

GOLDEN = "../pages/golden_sets.py"
RUNS = "../pages/eval_runs.py"
SET = "demo-gold"
# Questions of the shared data sets whose gold passages the demo sample always includes.
QUESTIONS = [
    "5% of perinatal mortality is due to low birth weight.",
    "How much was invested in the Dalai-Longkou railway?",  # English, about a Chinese passage (BM25 misses it)
    "尚恩·菲南在校时为什么会有“矮冬瓜”这个绰号？",
]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("golden-console")
    with console_config(data_dir, DEMO_DOCS="12"):
        wait_ready(AppTest.from_file(APP, default_timeout=60))
        yield data_dir


def page(path: str, query_params: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query_params or {})
    at.run()
    at.switch_page(path).run()
    ok(at)
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in ("markdown", "caption", "success", "error", "warning", "info")
                     for e in getattr(at, kind))


def table(at: AppTest, *columns: str):  # noqa: ANN201 - pandas.DataFrame
    """The first dataframe with these columns (AppTest exposes no key on read-only dataframes)."""
    for d in at.dataframe:
        df = d.value
        if set(columns) <= set(df.columns):
            return df
    raise AssertionError(f"no table with columns {columns}: {[list(d.value.columns) for d in at.dataframe]}")


def search(at: AppTest, question: str) -> list[dict]:
    at.text_input(key="golden.question").set_value(question)
    ok(at.button(key="golden.search").click().run())
    results = at.session_state["golden.results"]
    assert results, texts(at)
    return results


def tick(at: AppTest, chunk_id: str) -> None:
    ok(at.checkbox(key=f"golden.tick.{chunk_id}").check().run())
    assert chunk_id in at.session_state["golden.ticked"]


def services():  # noqa: ANN201 - the console's own (cached) services
    return state.get_services()


# --- annotator -----------------------------------------------------------------------------------
def test_annotator_builds_reviews_and_freezes_a_set(console: Path) -> None:
    at = page(GOLDEN)
    assert at.title[0].value == "🏷️ Golden sets"
    assert any("No golden set yet" in e.value for e in at.info)
    at.text_input(key="golden.new_name").set_value(SET)
    ok(at.button(key="golden.create").click().run())
    assert at.selectbox(key="golden.set").value == SET
    assert at.query_params.get("set") in (SET, [SET])

    # Item 1: search, tick the first card, write the answer, save and approve.
    results = search(at, QUESTIONS[0])
    assert at.text_input(key="golden.item_question").value == QUESTIONS[0]  # the item's question follows the search
    cards = [e.value for e in at.html if 'class="rag-card' in e.value]
    assert len(cards) == len(results) and "<mark>" in cards[0] and "chars " in cards[0]
    first = results[0]
    tick(at, first["chunk_id"])
    assert any(f"`{first['doc_id']}` chars" in e.value for e in at.markdown)  # listed under gold references
    # Widen it: the chunks around it in its document (a 2,400-character SciFact abstract) join the cards.
    ok(at.button(key=f"golden.widen.{first['chunk_id']}").click().run())
    assert at.button(key=f"golden.widen.{first['chunk_id']}").disabled
    neighbours = [r for r in at.session_state["golden.results"] if r["kind"] in ("before", "after")]
    assert neighbours and all(r["doc_id"] == first["doc_id"] for r in neighbours)
    assert any("(neighbour" in c.label for c in at.checkbox)
    tick(at, neighbours[0]["chunk_id"])
    at.text_area(key="golden.answer").set_value("Low birth weight accounts for a large share of perinatal deaths.")
    at.text_input(key="golden.tags").set_value("english, scifact")
    ok(at.button(key="golden.save_approve").click().run())
    assert any("as **approved** with 2 gold references" in e.value for e in at.success), texts(at)
    assert at.session_state["golden.ticked"] == {} and at.text_input(key="golden.question").value == ""
    item = services().golden.items(SET)[0]
    assert item.status == "approved" and item.tags == ("english", "scifact")
    refs = {(r.doc_id, r.start, r.end): r for r in item.references}  # saved in document order
    assert list(refs) == sorted(refs, key=lambda k: (k[0], k[1]))
    ref = refs[(first["doc_id"], first["start"], first["end"])]
    assert ref.text_hash and ref.quote == first["text"][:300]
    assert (neighbours[0]["doc_id"], neighbours[0]["start"], neighbours[0]["end"]) in refs

    # Item 2 (a Chinese passage), filtered to its document: a one-chunk document has nothing to widen to.
    results = search(at, QUESTIONS[1])
    doc = results[0]["doc_id"]
    at.text_input(key="golden.doc_ids").set_value(doc)
    results = search(at, QUESTIONS[1])
    assert {r["doc_id"] for r in results} == {doc}  # the doc-id filter
    hit = results[0]
    tick(at, hit["chunk_id"])
    ok(at.button(key=f"golden.widen.{hit['chunk_id']}").click().run())
    assert any("No other chunk of this document next to it" in e.value for e in at.caption)
    assert doc == "DEV_3"  # the multilingual embeddings find the Chinese passage
    at.text_area(key="golden.answer").set_value("11.42 billion yuan")
    ok(at.button(key="golden.save_draft").click().run())  # a draft, for the review queue
    assert any("as **draft**" in e.value for e in at.success)
    at.text_input(key="golden.doc_ids").set_value("")

    # Item 3: picked from a thumbs-down chat answer (its search runs at once).
    someone = user("someone")
    answer = services().engine.query(QUESTIONS[2], Policy(), someone)
    services().traces.feedback(answer.request_id, -1, someone, "wrong nickname")
    at = page(GOLDEN, {"set": SET})
    pick = at.selectbox(key="golden.pick")
    assert answer.request_id in pick.options or any("wrong nickname" in o for o in pick.options)
    ok(pick.set_value(answer.request_id).run())
    assert at.text_input(key="golden.question").value == QUESTIONS[2]
    results = at.session_state["golden.results"]
    tick(at, results[0]["chunk_id"])
    at.text_area(key="golden.answer").set_value("因为他个子矮")
    ok(at.button(key="golden.save_draft").click().run())
    # Item 4: saved without a ticked chunk is refused; then a draft to reject.
    search(at, "vCJD carriers")
    ok(at.button(key="golden.save_draft").click().run())
    assert any("tick at least one chunk" in e.value for e in at.error)
    tick(at, at.session_state["golden.results"][0]["chunk_id"])
    ok(at.button(key="golden.save_draft").click().run())

    items = {i.question: i for i in services().golden.items(SET)}
    assert items[QUESTIONS[2]].source_trace == answer.request_id
    assert items[QUESTIONS[1]].status == "draft" and len(items[QUESTIONS[1]].references) == 1

    # Review queue: approve two drafts (one with a comment), reject one.
    drafts = [i.id for i in services().golden.items(SET, status="draft")]
    assert len(drafts) == 3 and any("3 drafts to review" in e.value for e in at.markdown)
    at.text_input(key=f"golden.comment.{drafts[0]}").set_value("spans checked")
    ok(at.button(key=f"golden.approve.{drafts[0]}").click().run())
    ok(at.button(key=f"golden.approve.{drafts[1]}").click().run())
    at.text_input(key=f"golden.comment.{drafts[2]}").set_value("off topic")
    ok(at.button(key=f"golden.reject.{drafts[2]}").click().run())
    assert any(f"Item **#{drafts[2]}** rejected with your comment" in e.value for e in at.success)
    reviewed = {i.id: i for i in services().golden.items(SET)}
    assert reviewed[drafts[0]].review_comment == "spans checked" and reviewed[drafts[0]].reviewer == "local-admin"
    assert reviewed[drafts[2]].status == "rejected"
    assert [h.action for h in services().golden.history(drafts[0])] == ["create", "approved"]

    # Progress per annotator, then freeze.
    progress = table(at, "annotator")
    row = progress[progress["annotator"] == "local-admin"].iloc[0]
    assert (row["approved"], row["draft"], row["rejected"], row["total"]) == (3, 0, 1, 4)
    ok(at.button(key="golden.freeze").click().run())
    assert any(f"Frozen **{SET} v1**" in e.value.replace("\\-", "-") for e in at.success), texts(at)
    version, frozen = services().golden.version_items(SET)
    assert version == 1 and [i.question for i in frozen] == QUESTIONS
    assert at.button(key="golden.freeze").label == "🧊 Freeze approved items as v2"


def test_import_refuses_a_malformed_file_and_exports(console: Path) -> None:
    at = page(GOLDEN, {"set": SET})
    before = len(services().golden.items(SET))
    bad = b'{"question": "ok", "references": [{"doc_id": "1"}]}\n{"question": "q2", "references": []}\n'
    at.get("file_uploader")[0].set_value(("broken.jsonl", bad, "application/jsonl"))
    ok(at.button(key="golden.import").click().run())
    assert [e.value for e in at.error] == ["Nothing imported — input: broken.jsonl line 2: references: "
                                           "List should have at least 1 item after validation, not 0"]
    assert len(services().golden.items(SET)) == before  # nothing half-imported

    good = b"question,gold_context_ids,reference_answer\nWhat is vCJD?,d1|d2:10-20,a prion disease\n"
    at.get("file_uploader")[0].set_value(("more.csv", good, "text/csv"))
    at.radio(key="golden.import_status").set_value("draft")
    ok(at.button(key="golden.import").click().run())
    assert any("Imported **1** items" in e.value for e in at.success)
    assert services().golden.items(SET)[-1].status == "draft"

    # Exports: the three buttons, and the ragas-ready rows with the gold spans' text from the live index.
    labels = [b.label for b in at.get("download_button")]
    assert {"⬇️ CSV", "⬇️ JSONL", "⬇️ ragas JSONL"} <= set(labels)
    gold = services().golden.version_items(SET, 1)[1]
    collection = services().store.resolve(services().settings.index_alias)
    rows = [json.loads(line) for line in export_ragas(gold, services().evals.reference_contexts(collection, gold)).splitlines()]
    assert [r["user_input"] for r in rows] == QUESTIONS
    assert all(r["reference_contexts"] and r["reference_context_ids"] for r in rows)
    assert gold[0].references[0].quote[:80] in rows[0]["reference_contexts"][0]
    from ragas import EvaluationDataset

    assert len(EvaluationDataset.from_list(rows)) == 3
    assert json.loads(export_ragas([GoldItem(question="q", references=[gold[0].references[0]])]).strip())[
        "reference_contexts"] == [gold[0].references[0].quote]


# --- run viewer ------------------------------------------------------------------------------------
def start_and_finish(at: AppTest, policy: str, timeout_s: float = 180) -> int:
    """Start a run from the form, then rerun (AppTest runs no timed fragments) until it is open."""
    at.selectbox(key="runs.set").set_value(SET)
    at.selectbox(key="runs.policy").set_value(policy)
    ok(at.button(key="runs.start").click().run())
    assert any("Started evaluation job" in e.value for e in at.info), texts(at)
    job_id = at.session_state["runs.jobs"][-1]
    assert at.query_params.get("job") in (str(job_id), [str(job_id)])
    deadline = time.monotonic() + timeout_s
    while not any(f"Evaluation job {job_id} finished" in e.value for e in at.success):
        assert time.monotonic() < deadline, texts(at)
        assert not at.error, texts(at)
        time.sleep(0.5)
        ok(at.run())
    run_id = services().jobs.get(job_id).result["run_id"]
    assert at.selectbox(key="runs.run").value == run_id
    assert at.query_params.get("run") in (str(run_id), [str(run_id)]) and "job" not in at.query_params
    return run_id


def test_runs_start_open_filter_and_diff(console: Path) -> None:
    services().policies.save(Policy(name="bm25", retrieval_mode="sparse"), LOCAL_ADMIN, note="BM25 only")
    at = page(RUNS)
    assert at.title[0].value == "🧪 Evaluation runs"
    assert any("No evaluation run yet" in e.value for e in at.info)
    assert "No LLM judge: set `JUDGE_BASE_URL`" in texts(at)
    hybrid = start_and_finish(at, "default")
    run = services().evals.get(hybrid)
    assert run.status == "done" and run.n_items == 3 and run.golden_version == 1

    # The opened run: metrics with CIs, the per-item table, filters and the drill-down.
    metrics = table(at, "metric", "mean", "95% CI", "n")
    assert {"recall@10", "ndcg@10", "mrr@10", "hit@10", "string_similarity"} <= set(metrics["metric"])
    items = table(at, "gold ranks")
    assert len(items) == 3 and set(items["question"]) == set(QUESTIONS)
    ok(at.toggle(key="runs.misses").set_value(True).run())
    per_item = services().evals.items(hybrid)
    misses = [i for i in per_item if i.metrics["hit@10"] == 0]
    assert any(f"{len(misses)} of 3 items" in e.value for e in at.caption)
    ok(at.toggle(key="runs.misses").set_value(False).run())
    ok(at.selectbox(key="runs.low_metric").set_value("string_similarity").run())
    at.slider(key="runs.low_threshold").set_value(1.0).run()
    low = filter_items(per_item, low_metric="string_similarity", threshold=1.0)
    assert any(f"{len(low)} of 3 items" in e.value for e in at.caption)
    ok(at.selectbox(key="runs.low_metric").set_value(None).run())
    ok(at.selectbox(key="runs.item").set_value(0).run())
    gold = table(at, "quote")
    assert list(gold["doc"]) == [g.doc_id for g in per_item[0].gold]
    retrieved = table(at, "gold doc")
    assert list(retrieved["rank"])[:3] == [1, 2, 3] and "✅" in set(retrieved["gold doc"])
    assert any(e.value.startswith("**Answer** (extractive)") for e in at.markdown)
    assert len(at.get("download_button")) >= 2  # run JSON and CSV

    # A second run with the saved sparse policy, then the diff against the first.
    sparse = start_and_finish(at, "bm25")
    assert services().evals.get(sparse).policy == "bm25 v1"
    ok(at.selectbox(key="runs.base").set_value(hybrid).run())
    assert at.query_params.get("base") in (str(hybrid), [str(hybrid)])
    diff = services().evals.diff(hybrid, sparse)
    counts = {m.label: m.value for m in at.metric if m.label.endswith(("Improved", "Regressed", "Unchanged"))}
    assert counts == {"🟢 Improved": str(diff.improved), "🔴 Regressed": str(diff.regressed),
                      "⚪ Unchanged": str(diff.unchanged)}
    deltas = table(at, "verdict")
    assert {"recall@10", "ndcg@10"} <= set(deltas["metric"]) and set(deltas.columns) >= {"delta", "95% CI", "p-value"}
    moves = table(at, "gold moves (baseline → this run)")
    assert len(moves) == 3 and all("rank" in m or "not found" in m or "found at" in m
                                   for m in moves["gold moves (baseline → this run)"])
    # BM25 cannot match the English question to the Chinese passage: a regression, shown per reference.
    assert diff.regressed >= 1
    assert "DEV_3: rank 1 → lost (lost from top 10)" in set(moves["gold moves (baseline → this run)"])
    assert "🔴 regressed" in set(moves["change"])
    ok(at.toggle(key="runs.changed_only").set_value(True).run())
    changed = diff.improved + diff.regressed
    assert len(table(at, "gold moves (baseline → this run)")) == changed == len(diff_item_rows(diff, True))

    # The runs table and the metrics-over-time chart (a Plotly chart is opaque to AppTest: check its data).
    overview = table(at, "unresolved refs")
    assert list(overview["run"]) == [sparse, hybrid]
    assert overview.iloc[0]["recall@10"] == runs_rows([services().evals.get(sparse)])[0]["recall@10"]
    assert " [" in overview.iloc[0]["ndcg@10"]
    points = metrics_frame(services().evals.list(), SET, ["recall@10", "ndcg@10"])
    assert list(dict.fromkeys(points["metric"])) == ["recall@10", "ndcg@10"] and (points["metric"] == "recall@10").sum() == 2
    assert ((points["low"] <= points["mean"]) & (points["mean"] <= points["high"])).all()
    fig = metrics_figure(services().evals.list(), SET, ["recall@10", "ndcg@10"])  # a line per metric, its CI as error bars
    assert [t.name for t in fig.data] == ["recall@10", "ndcg@10"] and len(fig.data[0].y) == 2
    assert list(fig.data[0].error_y.array) == list(points["high"][points["metric"] == "recall@10"]
                                                    - points["mean"][points["metric"] == "recall@10"])
    assert len(at.get("plotly_chart")) == 1

    # A link to ?run=&base= opens the same diff in a new session.
    linked = page(RUNS, {"run": str(sparse), "base": str(hybrid)})
    assert linked.selectbox(key="runs.run").value == sparse and linked.selectbox(key="runs.base").value == hybrid
    assert len(table(linked, "gold moves (baseline → this run)")) == 3


def test_cancelled_run_is_reported(console: Path) -> None:
    at = page(RUNS)
    at.selectbox(key="runs.set").set_value(SET)
    at.selectbox(key="runs.index").set_value("rag_chunks")
    ok(at.button(key="runs.start").click().run())
    job_id = at.session_state["runs.jobs"][-1]
    try:
        services().jobs.cancel(job_id, LOCAL_ADMIN)
    except Exception:  # it finished first: nothing to cancel
        pass
    job = services().jobs.wait(job_id, 60)
    ok(at.run())
    if job.status == "cancelled":
        assert any(f"Evaluation job {job_id} was cancelled" in e.value for e in at.warning), texts(at)
        assert services().evals.list()[0].status in ("cancelled", "done")
    else:
        assert any(f"Evaluation job {job_id} finished" in e.value for e in at.success), texts(at)


def test_judged_run_shows_its_judge_and_why_a_metric_is_missing(console: Path, fault_llm) -> None:
    """The judge is the fault-injection server with scripted verdicts (see tests/test_judge.py for
    why, and for the same path against llama.cpp's real server)."""
    fault_llm.replies.extend(r for r in scripted() if r[0] != (RELEVANCY,))  # relevancy: prose, not JSON
    evals = services().evals
    evals.judge = Judge(Settings(_env_file=None, judge_base_url=fault_llm.base_url, judge_model="judge-scripted"),
                        services().embedder, services().costs.meter)
    try:
        at = page(RUNS)
        assert f"LLM judge: **{escape_md('judge-scripted')}**" in texts(at)
        run_id = start_and_finish(at, "default")
    finally:
        evals.judge = None
    assert f"judged by **{escape_md('judge-scripted')}**" in texts(at)
    assert any("The judge gave no value for some metrics on 3 item(s)" in e.value for e in at.warning), texts(at)
    metrics = table(at, "metric", "mean", "95% CI", "n")
    assert metrics.set_index("metric").loc["faithfulness", "mean"] == pytest.approx(0.5)
    assert any(e.value.startswith("⚖️ no answer_relevancy:") for e in at.caption), texts(at)
    assert runs_rows([services().evals.get(run_id)])[0]["judge"] == "judge-scripted"
