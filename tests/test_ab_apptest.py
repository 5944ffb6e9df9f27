"""The A/B page (pages/ab.py) driven through Streamlit's AppTest over the console's own first-start
demo index (12 documents) on the embedded stack (extractive answers, local Qdrant, SQLite).

Two policies are diffed and asked side by side, blind votes are mapped back to the true
policies, an offline comparison runs over a small SciFact golden set as one background job,
releases are created, a 50% candidate is set, live traffic fills the online comparison, and the
candidate is promoted and rolled back through the confirmation dialogs."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from actors import Actor, api_key, user
from apptest_kit import APP, console_config, wait_ready
from corpus import cut_dataset
from streamlit.testing.v1 import AppTest

from backend.access import Role
from backend.engine.policy import Policy
from backend.evaluation.golden import parse_items
from backend.live import answer_live
from backend.releases.ab_stats import MIN_N
from console import state
from console.ab_view import diff_rows, offline_metric_rows

PAGE = "../pages/ab.py"
SET = "scifact-small"
ENGLISH_Q = "5% of perinatal mortality is due to low birth weight."
ANN = user("ann", Role.operator)  # saves policies, builds and freezes golden sets


def live_user(end_user: str) -> Actor:
    """A client of the live path: an API key speaking for one end user (sticky assignment follows them)."""
    return api_key("app", end_user=end_user)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("ab-console")
    with console_config(data_dir, DEMO_DOCS="12"):
        wait_ready(AppTest.from_file(APP, default_timeout=60))
        svc = state.get_services()
        svc.policies.save(Policy(name="bm25", retrieval_mode="sparse", top_k=5), actor=ANN, note="BM25 only")
        yield data_dir


def services():  # noqa: ANN201 - the console's own (cached) services
    return state.get_services()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    return at


def page(query_params: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params.update(query_params or {})
    at.run()
    at.switch_page(PAGE).run()
    return ok(at)


def texts(at) -> str:  # noqa: ANN001 - the AppTest or one of its blocks (a tab)
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "error", "warning", "info")
                     for e in getattr(at, kind))


def table(at: AppTest, *columns: str):  # noqa: ANN201 - pandas.DataFrame
    for d in at.dataframe:
        if set(columns) <= set(d.value.columns):
            return d.value
    raise AssertionError(f"no table with {columns}: {[list(d.value.columns) for d in at.dataframe]}")


def test_diff_and_side_by_side_with_blind_votes(console: Path) -> None:
    at = page({"a": "default:", "b": "bm25:1"})
    assert at.title[0].value == "⚖️ A/B comparison & releases"
    assert at.selectbox(key="ab.a").value == "default:" and at.selectbox(key="ab.b").value == "bm25:1"
    # What changed: retrieval mode and top_k (name and version listed, not counted).
    assert "differs from **default** in **2** fields: `top_k`, `retrieval_mode`" in texts(at)
    ok(at.toggle(key="ab.diff_changed_only").set_value(True).run())
    diff = table(at, "field", "A", "B")
    assert list(diff["field"]) == ["top_k", "retrieval_mode"] and list(diff["B"]) == ["5", "sparse"]

    # Side by side, open: A on the left, B on the right, each with sources, scores, latency, tokens, cost.
    at.text_input(key="ab.question").set_value(ENGLISH_Q)
    ok(at.button(key="ab.ask").click().run())
    pair = at.session_state["ab.pair"]
    assert pair["order"] == ["a", "b"] and not pair["blind"] and not pair["errors"]
    assert pair["answers"]["a"].policy == "default" and pair["answers"]["b"].policy == "bm25 v1"
    said = texts(at)
    assert "#### A · default" in said and "#### B · bm25 v1" in said
    assert said.count("⏱ ") >= 2 and "policy **bm25 v1**" in said and "\\$0.000000" in said
    cards = [e.value for e in at.html if 'class="rag-card' in e.value]
    assert len(cards) == 2 and cards[1].count('id="src-') == 5  # B's top_k
    assert "BM25" in cards[0] and "cosine similarity" in cards[0]
    ok(at.button(key="ab.vote_right").click().run())
    assert at.session_state["ab.pair"]["vote"] == "b" and at.button(key="ab.vote_left").disabled
    assert "Vote saved: B \\(bm25 v1\\) better" in texts(at)

    # Blind: names hidden until the vote, order random; a vote for the shown side maps back to the policy.
    ok(at.toggle(key="ab.blind").set_value(True).run())
    orders, votes = [], []
    for shown in ("left", "left", "right", "tie", "both_bad", "left"):
        ok(at.button(key="ab.ask").click().run())
        pair = at.session_state["ab.pair"]
        assert pair["blind"] and pair["vote"] is None
        said = "\n".join(line for line in texts(at.tabs[1]).splitlines()  # the side-by-side tab but the tally
                         if "Votes so far" not in line)
        assert "Left answer" in said and "Right answer" in said
        assert "bm25" not in said and "default" not in said and "policy **" not in said  # nothing names them
        ok(at.button(key=f"ab.vote_{shown}").click().run())
        true = {"left": pair["order"][0], "right": pair["order"][1]}.get(shown, shown)
        assert at.session_state["ab.pair"]["vote"] == true
        assert f"Left was {pair['order'][0].upper()} · " in texts(at)  # revealed after the vote
        orders.append(tuple(pair["order"]))
        votes.append(true)
    stored = services().releases.pair_votes("default", "bm25 v1")
    assert stored["x"] == votes.count("a") and stored["y"] == votes.count("b") + 1  # + the open vote
    assert stored["tie"] == 1 and stored["both_bad"] == 1
    assert f"A won **{stored['x']}**, B won **{stored['y']}**" in texts(at)
    blind_rows = [v for v in services().audit.recent(20, action="ab.vote") if v.detail["blind"]]
    assert len(blind_rows) == 6
    print(f"\nblind orders seen: {orders}")


def test_offline_comparison_over_a_small_scifact_golden_set(console: Path, tmp_path: Path) -> None:
    svc = services()
    data = cut_dataset("scifact", 5, 0, tmp_path / "scifact")
    svc.golden.create(SET, actor=ANN)
    svc.golden.import_items(SET, parse_items((data / "queries.jsonl").read_bytes(), "queries.jsonl"), actor=ANN)
    assert svc.golden.freeze(SET, actor=ANN) == 1
    at = page({"a": "default:", "b": "bm25:1"})
    assert at.selectbox(key="ab.set").value == SET
    ok(at.toggle(key="ab.generate").set_value(False).run())
    ok(at.button(key="ab.offline_start").click().run())
    job_id = at.session_state["ab.offline_job"]
    t = time.perf_counter()
    job = svc.jobs.wait(job_id, timeout=180)
    assert job.status == "done", job.error
    print(f"\noffline comparison job: {time.perf_counter() - t:.1f} s")
    ok(at.run())
    assert at.selectbox(key="ab.offline_pick").value == job_id
    metrics = table(at, "metric", "delta (B − A)", "95% CI", "p-value")
    assert {"recall@10", "ndcg@10", "mrr@10", "hit@10"} <= set(metrics["metric"])
    costs = table(at, "per item", "delta (B − A)")
    assert list(costs["per item"]) == ["retrieval latency (ms)", "tokens per item", "cost per item (USD)"]
    items = table(at, "change", "question", "gold moves (A → B)")
    assert len(items) == 5
    run_a, run_b = svc.evals.get(job.result["run_a"]), svc.evals.get(job.result["run_b"])
    assert (run_a.policy, run_b.policy) == ("default", "bm25 v1")
    assert run_a.golden_version == run_b.golden_version == 1
    from backend.releases.online import offline_diff

    rows = offline_metric_rows(offline_diff(svc.evals, run_a.id, run_b.id), run_a, run_b)
    assert all(r["verdict"] for r in rows)
    assert "🟢 Improved" in [m.label for m in at.metric]


def test_releases_candidate_online_promote_and_rollback(console: Path) -> None:
    svc = services()
    at = page({"a": "default:", "b": "bm25:1"})
    assert "No experiment yet" in texts(at)
    # Create two releases on the live alias: the built-in policy and bm25 v1.
    for option in ("default:", "bm25:1"):
        at.selectbox(key="ab.new_policy").set_value(option)
        at.text_input(key="ab.new_note").set_value(f"release of {option}")
        ok(at.button(key="ab.create").click().run())
    r1, r2 = sorted(svc.releases.list(), key=lambda r: r.id)
    assert "Created release" in texts(at) and r2.policy == "bm25 v1"
    collection = svc.store.aliases()["rag_chunks"]
    assert r1.collection == r2.collection == collection
    # The first one becomes current; the second the candidate for 50% of users.
    ok(at.selectbox(key="ab.pick").set_value(r1.id).run())
    ok(at.button(key="ab.make_current").click().run())
    assert svc.releases.state().current.id == r1.id
    ok(at.selectbox(key="ab.pick").set_value(r2.id).run())
    at.number_input(key="ab.share").set_value(50)
    at.text_input(key="ab.reason").set_value("try BM25")
    ok(at.button(key="ab.set_candidate").click().run())
    live = svc.releases.state()
    assert live.candidate.id == r2.id and live.share == 0.5
    assert f"is the candidate for 50% of users (experiment {live.experiment_id})" in texts(at)
    assert at.number_input(key="ab.new_share").value == 50

    # Live traffic: sticky, about half each; thumbs on a few answers.
    seen = {}
    for i in range(40):
        got = answer_live(svc, ENGLISH_Q if i % 2 else "大莱龙铁路一共投资多少亿元？", live_user(f"user-{i}"))
        seen[f"user-{i}"] = got.variant
        if i < 20:
            svc.traces.feedback(got.answer.request_id, 1 if got.variant == "candidate" or i % 3 else -1, ANN)
    assert set(seen.values()) == {"current", "candidate"}
    assert all(answer_live(svc, ENGLISH_Q, live_user(u)).variant == v for u, v in list(seen.items())[:6])  # sticky
    ok(at.run())
    variants = table(at, "variant", "requests", "error rate [95% CI]", "p95 ms [95% CI]", "thumbs up [95% CI]")
    n = dict(zip(variants["variant"], variants["requests"]))
    assert n["current"] + n["candidate"] == 46 and min(n.values()) >= 8
    assert list(variants["error rate [95% CI]"])[0].startswith("0.0% [0.0%, ")
    assert all(" of " in t for t in variants["thumbs up [95% CI]"])  # 20 answers were rated

    # Console users on the live path too: "all" counts them, the API-only view does not.
    for i in range(5):
        answer_live(svc, ENGLISH_Q, user(f"console-{i}"))
    ok(at.run())
    assert at.segmented_control(key="ab.online_source").value == "all"
    n = dict(zip(*(table(at, "variant", "requests")[c] for c in ("variant", "requests"))))
    assert n["current"] + n["candidate"] == 51
    ok(at.segmented_control(key="ab.online_source").set_value("api").run())
    assert "· API keys" in texts(at)
    n = dict(zip(*(table(at, "variant", "requests")[c] for c in ("variant", "requests"))))
    assert n["current"] + n["candidate"] == 46  # only the API key's requests
    ok(at.segmented_control(key="ab.online_source").set_value("console").run())
    n = dict(zip(*(table(at, "variant", "requests")[c] for c in ("variant", "requests"))))
    assert n["current"] + n["candidate"] == 5
    ok(at.segmented_control(key="ab.online_source").set_value("api").run())
    tests = table(at, "figure", "significant yet?", "p-value")
    p_values = dict(zip(tests["figure"], tests["p-value"]))
    assert p_values["pairwise win rate"] == "—"  # no votes: a dash, as in the CI column (it showed "None")
    assert all(p == "—" or 0 <= float(p) <= 1 for p in p_values.values()), p_values
    assert list(tests["figure"]) == ["error rate", "mean latency (ms)", "cost per request (USD)", "thumbs-up rate",
                                     "pairwise win rate"]
    verdicts = dict(zip(tests["figure"], tests["significant yet?"]))
    n = dict(zip(*(table(at, "variant", "requests")[c] for c in ("variant", "requests"))))  # the API-only view
    short = MIN_N - min(n.values())  # the sticky split varies with the release ids, the rule does not
    same = f"⏳ not enough data: {short} more requests per variant" if short > 0 else "≈ no difference seen"
    assert verdicts["error rate"] == verdicts["cost per request (USD)"] == same, verdicts  # no errors, no cost
    assert verdicts["thumbs-up rate"].startswith("⏳ not enough data: "), verdicts  # 20 rated over two variants
    assert verdicts["pairwise win rate"] == "⏳ no data yet"  # no judge ran; latency is measured noise: not asserted
    assert "armed" in texts(at)

    # Probe the live path from the page; sent without a question it says so (it used to do nothing).
    at.text_input(key="ab.probe_user").set_value("user-3")
    ok(at.button(key="ab.probe").click().run())
    assert any("nothing was sent" in w.value for w in at.warning)
    at.text_input(key="ab.probe_question").set_value(ENGLISH_Q)
    ok(at.button(key="ab.probe").click().run())
    assert f"**user\\-3** is served by the **{seen['user-3']}** release" in texts(at)

    # Promote through its dialog, then roll back through its dialog.
    ok(at.button(key="ab.promote").click().run())
    assert "becomes the current release" in texts(at)
    at.text_input(key="ab.promote_reason").set_value("BM25 wins")
    ok(at.button(key="ab.promote_confirm").click().run())
    assert f"Promoted {r2.label}" in texts(at) and "ab.dialog" not in at.session_state
    assert svc.releases.state().current.id == r2.id and svc.releases.state().candidate is None
    ok(at.button(key="ab.rollback").click().run())
    at.text_input(key="ab.rollback_reason").set_value("complaints")
    ok(at.button(key="ab.rollback_confirm").click().run())
    assert f"Rolled back to {r1.label}" in texts(at)
    assert svc.releases.state().current.id == r1.id
    history = table(at, "event", "who", "why")
    assert list(history["event"])[:4] == ["↩️ rollback", "🚀 promote", "🧪 set_candidate", "📌 set_current"]
    assert list(history["why"])[:3] == ["complaints", "BM25 wins", "try BM25"]
    assert set(history["who"][:4]) == {"local-admin"}
    assert svc.store.aliases()["rag_chunks"] == collection  # same index version: the alias never moved
    # The ended experiment stays readable in the online tab.
    assert "promoted" in at.selectbox(key="ab.experiment").format_func(at.selectbox(key="ab.experiment").value)
    # The URL names the experiment by its id; a link from before, with its label, opens the newest one.
    exp_id = at.selectbox(key="ab.experiment").value
    assert at.query_params.get("experiment") == exp_id
    assert ok(page({"experiment": exp_id})).selectbox(key="ab.experiment").value == exp_id
    old = ok(page({"ab.experiment": at.selectbox(key="ab.experiment").format_func(exp_id)}))
    assert old.selectbox(key="ab.experiment").value == svc.releases.experiments()[0].id
    assert "ab.experiment" not in old.query_params


def test_pure_builders() -> None:
    a, b = Policy(), Policy(name="x", version=2, rerank=True, model=None)
    rows = diff_rows(a, b)
    assert {r["field"]: r["change"] for r in rows}["rerank"] == "✏️ changed"
    assert {r["field"]: r["B"] for r in rows}["model"] == "(the LLM_MODEL setting)"
    assert [r["field"] for r in diff_rows(a, b, changed_only=True)] == ["rerank"]


def test_every_page_renders_in_chinese(console: Path) -> None:
    """Each page in Chinese (the session's language set as the sidebar switch sets it): no exception,
    no error box, the heading and the page's texts in Chinese."""
    import re

    from console.i18n import KEY, catalog

    cjk, zh = re.compile(r"[\u4e00-\u9fff]"), catalog("zh")
    for file in sorted(p.name for p in (Path(APP).parent.parent / "pages").glob("*.py")):
        at = AppTest.from_file(APP, default_timeout=90)
        at.session_state[KEY] = "zh"
        at.run()
        ok(at.switch_page(f"../pages/{file}").run())
        heading = at.title[0].value
        assert cjk.search(heading) or heading in zh.values(), (file, heading)  # "🔌 HTTP API" is both
        shown = "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "subheader")
                          for e in getattr(at, kind))
        assert len(cjk.findall(shown)) >= 20, (file, shown[:300])
