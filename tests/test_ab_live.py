"""The live request path against real parts: the small real index (local Qdrant, SQLite ledger)
and the fault-injection OpenAI-compatible server, which answers HTTP 500 for the candidate's
model while the current release's model works.

Simulated users go through `answer_live`: the guardrail trips inside its window, traffic goes
back to the current release, every request is accounted for (answered, or a clear error, and a
ledger row either way), and the trip is an event, an audit record and an alert. Promote and
rollback through the live path swap the index alias atomically while requests keep flowing."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest
from actors import Role, system_actor
from actors import user as person

from backend.engine.answer_cache import MemoryCache
from backend.engine.generation import OpenAIGenerator
from backend.engine.policy import Policy
from backend.engine.query_engine import QueryEngine
from backend.ingestion.chunking import ChunkingParams
from backend.ingestion.sources import load_source
from backend.live import LiveRequestError, answer_live, check_guardrails, guardrail_status, stream_live
from backend.releases.ab_stats import compare_win_rate
from backend.releases.manager import Guardrails, ReleaseManager, policy_diff
from backend.releases.online import compare_variants, online_report, variant_figures, variant_numbers, variant_stats
from backend.services import Services

ANN = person("ann", Role.admin)  # sets releases up (setting the current one takes an admin)
BOB = person("bob", Role.admin)  # promotes and rolls back
BUILDER = system_actor("t")  # builds the test index versions

FAMILY = "live_family"  # our own alias: the session index's rag_chunks is never swapped here
MAX_USERS = 150  # the bound on simulated users before the guardrail must have tripped


def _questions(small_datasets) -> list[str]:  # noqa: ANN001
    path = Path(small_datasets["cmrc2018"]) / "queries.jsonl"
    return [json.loads(line)["question"] for line in path.open(encoding="utf-8") if line.strip()]


@pytest.fixture
def live(services: Services, small_datasets, fault_llm) -> tuple[Services, str, str]:  # noqa: ANN001
    """Services whose engine generates through the fault server, with a release manager on our
    own two-version index family (the same documents chunked two ways)."""
    docs = load_source(small_datasets["cmrc2018"]).documents[:8]
    v1 = services.ingestor.ingest(docs, actor=BUILDER, family=FAMILY, source="t", params=ChunkingParams(target_chars=700))
    v2 = services.ingestor.ingest(docs, actor=BUILDER, family=FAMILY, source="t", promote=False,
                                  params=ChunkingParams(target_chars=1100))
    assert v1.collection != v2.collection
    services.store.point_alias(FAMILY, v1.collection)
    settings = services.settings.model_copy(update={"openai_base_url": fault_llm.base_url, "llm_model": fault_llm.model,
                                                    "llm_max_retries": 0, "llm_timeout_s": 10.0})
    engine = QueryEngine(settings, services.store, services.embedder, OpenAIGenerator(settings), services.engine.reranker,
                         MemoryCache(600, 500), services.costs.meter)
    engine.recorders.append(services.traces.record)
    releases = ReleaseManager(services.db, services.audit, services.policies, services.store, FAMILY,
                              promote_index=services.index_admin.promote, alerts=services.costs.alerts)
    return dataclasses.replace(services, settings=settings, engine=engine, releases=releases), v1.collection, v2.collection


def test_guardrail_trips_on_a_failing_candidate_and_nothing_is_lost(live, fault_llm, small_datasets) -> None:  # noqa: ANN001
    svc, v1, v2 = live
    fault_llm.fail_models.add("broken-model")
    ok = svc.policies.save(Policy(name="live-ok", retrieval_mode="sparse", top_k=3), actor=ANN)
    broken = svc.policies.save(Policy(name="live-broken", retrieval_mode="sparse", top_k=3, model="broken-model"),
                               actor=ANN)
    assert [r.field for r in policy_diff(ok, broken) if r.changed] == ["name", "model"]
    r1 = svc.releases.create(ANN, "live-ok", ok.version, index=v1)
    r2 = svc.releases.create(ANN, "live-broken", broken.version, index=v2, note="new model, new chunking")
    svc.releases.set_current(ANN, r1.id, "baseline")
    window = 5
    svc.releases.set_guardrails(ANN, Guardrails(max_error_rate=0.2, max_p95_ms=30_000, window_minutes=window,
                                                  min_requests=4))
    svc.releases.set_candidate(ANN, r2.id, 0.5, "try the new model")
    started = svc.releases.state().started_at
    assert started is not None
    # The check is throttled: a second call inside the interval does not read the ledger at all.
    reads: list[int] = []
    counting = lambda minutes: reads.append(minutes) or {}  # noqa: E731
    assert svc.releases.maybe_check_guardrails(counting, every_s=60) is None
    assert svc.releases.maybe_check_guardrails(counting, every_s=60) is None
    assert reads == [window]
    assert guardrail_status(svc).state == "waiting"

    questions = _questions(small_datasets)
    answered: list[tuple[str, str]] = []
    failed: list[str] = []
    tripped: str | None = None
    t0 = time.monotonic()
    for i in range(MAX_USERS):
        user = f"user-{i}"
        try:
            got = answer_live(svc, questions[i % len(questions)], person(user), guardrail_every_s=0.3)
        except LiveRequestError as exc:  # the candidate's failure is a clear error, never a silent drop
            assert exc.variant == "candidate" and exc.release.id == r2.id
            assert str(exc).startswith(f"LLM: the candidate release {r2.label} could not answer — LLM: answered HTTP 500")
            failed.append(user)
            tripped = exc.tripped
        else:
            assert got.variant == "current" and got.release.id == r1.id
            assert got.answer.answer_kind == "llm" and got.answer.collection == v1
            answered.append((user, got.answer.request_id))
            tripped = got.tripped
        if tripped:
            break
    seconds = time.monotonic() - t0
    assert tripped, f"no trip after {MAX_USERS} users ({len(failed)} candidate failures)"
    n_sent = len(answered) + len(failed)
    print(f"\nguardrail tripped after {n_sent} users ({len(failed)} candidate failures) in {seconds:.1f} s")
    assert "error rate 100.0% > 20.0%" in tripped and failed

    # Within the window, recorded as an event, audited, alerted; the share is back to 0.
    state = svc.releases.state()
    assert state.share == 0.0 and state.candidate.id == r2.id
    event = svc.releases.events(1)[0]
    assert event.action == "guardrail_trip" and event.from_id == r2.id and event.to_id == r1.id
    assert (event.ts - started).total_seconds() < window * 60
    assert svc.audit.recent(5, action="release.guardrail_trip")[0].result == "tripped"
    firing = [a for a in svc.costs.alerts.firing() if a.key == f"guardrail:{state.experiment_id}"]
    assert firing and firing[0].severity == "critical" and "sent back to 0%" in firing[0].title
    assert svc.releases.experiments(1)[0].trips[0].reason == tripped
    assert guardrail_status(svc).state == "paused"

    # Nothing lost: every request sent has its ledger request, answered or failed.
    numbers = variant_numbers(svc.db, started)
    assert numbers["current"].requests == len(answered) and numbers["current"].errors == 0
    assert numbers["candidate"].requests == len(failed) == numbers["candidate"].errors
    assert variant_stats(svc.db, window, since=started)["candidate"].errors == len(failed)

    # Every later request is answered by the current release, the users who failed included.
    for user in failed + [f"later-{i}" for i in range(20)]:
        got = answer_live(svc, questions[0], person(user), guardrail_every_s=0.3)
        assert got.variant == "current" and got.answer.collection == v1 and got.tripped is None
    # The streaming path routes the same way.
    events = list(stream_live(svc, questions[1], person(failed[0])))
    assert events[-1].collection == v1 and events[-1].answer

    # The online comparison sees it: a significant error-rate difference once both have data.
    report = online_report(svc.db, svc.releases, svc.releases.experiments(1)[0])
    figures = {f.variant: f for f in variant_figures(report)}
    assert figures["candidate"].error_rate.value == 1.0 and figures["current"].error_rate.value == 0.0
    assert 0.0 < figures["candidate"].error_rate.low < 1.0 and figures["candidate"].error_rate.high == pytest.approx(1.0)  # Wilson
    assert figures["current"].requests == len(answered) + len(failed) + 20 + 1
    svc.releases.clear_candidate(ANN, "model is broken")
    assert not [a for a in svc.costs.alerts.firing() if a.key.startswith("guardrail:")]  # acknowledged


def test_promote_and_rollback_through_the_live_path_swap_the_alias_atomically(live, small_datasets) -> None:  # noqa: ANN001
    svc, v1, v2 = live
    ok = svc.policies.save(Policy(name="live-ok", retrieval_mode="sparse", top_k=3), actor=ANN)
    r1 = svc.releases.create(ANN, "live-ok", ok.version, index=v1)
    r3 = svc.releases.create(ANN, "live-ok", ok.version, index=v2, note="same policy on the re-chunked index")
    svc.releases.set_current(ANN, r1.id, "baseline")
    svc.releases.set_guardrails(ANN, Guardrails(max_error_rate=0.5, window_minutes=5, min_requests=50))
    svc.releases.set_candidate(ANN, r3.id, 0.5, "new chunking")
    questions = _questions(small_datasets)
    seen = {}
    for i in range(16):
        got = answer_live(svc, questions[i % len(questions)], person(f"u{i}"))
        seen.setdefault(got.variant, set()).add((got.answer.index, got.answer.collection))
    # The candidate reads its own version pinned; the current release reads through the alias.
    assert seen == {"current": {(FAMILY, v1)}, "candidate": {(v2, v2)}}

    # Requests keep flowing while the alias moves: each one sees one version or the other, none fails.
    stop, outcomes = threading.Event(), []

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            try:
                got = answer_live(svc, questions[i % len(questions)], person(f"bg-{i}"))
                outcomes.append(got.answer.collection)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                outcomes.append(f"error: {exc}")
            i += 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        promoted = svc.releases.promote(BOB, "v2 chunking wins")
        assert promoted.id == r3.id and svc.store.aliases()[FAMILY] == v2
        after_promote = [answer_live(svc, questions[0], person(f"u{i}")) for i in range(8)]
        time.sleep(0.3)
        back = svc.releases.rollback(BOB, "complaints")
        assert back.id == r1.id and svc.store.aliases()[FAMILY] == v1
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(30)
    assert outcomes and all(o in (v1, v2) for o in outcomes), [o for o in outcomes if o not in (v1, v2)][:3]
    assert {(a.variant, a.answer.index, a.answer.collection) for a in after_promote} == {("current", FAMILY, v2)}
    assert {(a.variant, a.answer.collection) for a in
            (answer_live(svc, questions[0], person(f"u{i}")) for i in range(8))} == {("current", v1)}

    # The swaps went through the index admin (one atomic alias call each, with its history).
    history = svc.index_admin.history(FAMILY, limit=2)
    assert [(h.from_collection, h.to_collection) for h in history] == [(v2, v1), (v1, v2)]
    assert history[1].reason == "v2 chunking wins" and history[1].actor == "bob"
    assert [e.action for e in svc.releases.events(3)] == ["rollback", "promote", "set_candidate"]
    assert svc.releases.experiments(1)[0].outcome == "promoted"


def test_online_figures_and_votes(live) -> None:  # noqa: ANN001
    svc, v1, v2 = live
    cur = svc.releases.create(ANN, "default", index=v1)
    svc.policies.save(Policy(name="live-votes", retrieval_mode="sparse", top_k=2), actor=ANN)
    cand = svc.releases.create(ANN, "live-votes", index=v2)
    svc.releases.set_current(ANN, cur.id)
    svc.releases.set_candidate(ANN, cand.id, 0.5)
    for i in range(6):  # the candidate's policy wins 6 of 6 blind votes (stored in either orientation)
        a, b = (cur.policy, cand.policy) if i % 2 else (cand.policy, cur.policy)
        svc.releases.vote(ANN, "q", a, b, f"ra{i}", f"rb{i}", "a", True, "b" if i % 2 else "a")
    svc.releases.vote(ANN, "q", cur.policy, cand.policy, "x", "y", "b", True, "tie")
    report = online_report(svc.db, svc.releases, svc.releases.experiments(1)[0])
    assert report.votes == {"current": 0, "candidate": 6, "tie": 1, "both_bad": 0}
    win = next(c for c in report.comparisons if c.metric == "pairwise win rate")
    assert win.b == 1.0 and win.significant and win.p_value == pytest.approx(2 / 64)
    assert not compare_win_rate("w", 2, 3).significant and compare_win_rate("w", 2, 3).more_needed > 50
    assert {c.metric for c in compare_variants(report.variants["current"], report.variants["candidate"])} == {
        "error rate", "mean latency (ms)", "cost per request (USD)", "thumbs-up rate"}
    svc.releases.clear_candidate(ANN)


def test_every_failure_of_a_live_request_counts_for_the_guardrail(live, small_datasets) -> None:  # noqa: ANN001
    """Issue 14: a candidate at 100% on a collection that was gone failed 30 of 30 requests while the
    guardrail said "0 so far": the NotFound passed as the user's mistake and left no ledger row."""
    svc, v1, v2 = live
    ok = svc.policies.save(Policy(name="live-ok", retrieval_mode="sparse", top_k=3), actor=ANN)
    r1 = svc.releases.create(ANN, "live-ok", ok.version, index=v1)
    r2 = svc.releases.create(ANN, "live-ok", ok.version, index=v2)
    svc.releases.set_current(ANN, r1.id, "baseline")
    svc.releases.set_guardrails(ANN, Guardrails(max_error_rate=0.2, window_minutes=5, min_requests=30))
    svc.releases.set_candidate(ANN, r2.id, 1.0, "all traffic on the re-chunked version")
    started = svc.releases.state().started_at
    svc.store.delete_collection(v2)  # gone under the release (the index admin refuses; Qdrant does not)
    questions = _questions(small_datasets)
    for i in range(30):
        with pytest.raises(LiveRequestError, match=f"candidate release {r2.label} could not answer") as err:
            answer_live(svc, questions[i % len(questions)], person(f"gone-{i}"), guardrail_every_s=3600)
        assert err.value.variant == "candidate" and "unknown index alias or collection" in str(err.value)
    with pytest.raises(LiveRequestError):  # the streaming path too
        list(stream_live(svc, questions[0], person("gone-stream"), guardrail_every_s=3600))
    figures = variant_stats(svc.db, 5, since=started)["candidate"]
    assert (figures.requests, figures.errors) == (31, 31)
    status = guardrail_status(svc)
    assert status.requests == 31 and status.error_rate == 1.0 and status.state == "over"
    assert "error rate 100.0% > 20.0%" in check_guardrails(svc, every_s=0)
    assert svc.releases.state().share == 0.0
    svc.releases.clear_candidate(ANN, "version gone")
