"""Releases and A/B statistics: sticky assignment, significance calibration, promote/rollback
with an atomic alias swap, guardrails."""
from __future__ import annotations

import random
import threading

import pytest
from actors import VIEWER, Role, system_actor, user

from backend.access.audit import AuditLog
from backend.db import make_engine, migrate
from backend.engine.policy import Policy, PolicyStore
from backend.errors import InputError, NotFoundError
from backend.ingestion.sources import load_source
from backend.releases.ab_stats import compare_means, compare_proportions
from backend.releases.manager import Guardrails, ReleaseManager, WindowStats, bucket
from backend.services import Services

ANN = user("ann", Role.admin)  # sets releases up (setting the current one takes an admin)
BOB = user("bob", Role.admin)  # promotes and rolls back
BUILDER = system_actor("t")  # builds the test index versions


def test_assignment_is_sticky_and_matches_the_share() -> None:
    users = [f"user-{i}" for i in range(10_000)]
    for share in (0.1, 0.5):
        got = sum(bucket(u, "exp-1") < share for u in users) / len(users)
        assert abs(got - share) <= 0.015, (share, got)
    assert [bucket(u, "exp-1") for u in users[:50]] == [bucket(u, "exp-1") for u in users[:50]]
    moved = sum((bucket(u, "exp-1") < 0.5) != (bucket(u, "exp-2") < 0.5) for u in users)
    assert 4000 < moved < 6000  # a new experiment reshuffles independently


def test_significance_finds_a_known_effect_and_holds_its_false_positive_rate() -> None:
    rng = random.Random(7)
    a = sum(rng.random() < 0.10 for _ in range(1500))
    b = sum(rng.random() < 0.16 for _ in range(1500))
    found = compare_proportions("error rate", a, 1500, b, 1500)
    assert found.significant and found.low > 0 and found.more_needed is None
    false_positives = 0
    for seed in range(400):
        r = random.Random(seed)
        x = sum(r.random() < 0.2 for _ in range(400))
        y = sum(r.random() < 0.2 for _ in range(400))
        false_positives += compare_proportions("thumbs up", x, 400, y, 400).significant
    assert 0.02 <= false_positives / 400 <= 0.09, false_positives
    small = compare_proportions("thumbs up", 3, 10, 5, 10)
    assert small.p_value is None and not small.significant and small.more_needed == 10
    undecided = compare_proportions("thumbs up", 40, 200, 48, 200)
    assert not undecided.significant and undecided.more_needed > 100
    lat = compare_means("latency", 100.0, 400.0, 500, 110.0, 400.0, 500)
    assert lat.significant and lat.delta == 10.0


@pytest.fixture
def manager(services: Services, small_datasets, tmp_path) -> tuple[ReleaseManager, str, str]:
    """A manager over its own database (the live configuration is one row per database, and other
    tests use the shared one) and its own index family on the shared store."""
    docs = load_source(small_datasets["cmrc2018"]).documents
    from backend.ingestion.chunking import ChunkingParams

    v1 = services.ingestor.ingest(docs, actor=BUILDER, family="ab_family", source="t", params=ChunkingParams(target_chars=700))
    v2 = services.ingestor.ingest(docs, actor=BUILDER, family="ab_family", source="t", promote=False,
                                  params=ChunkingParams(target_chars=1100))
    services.store.point_alias("ab_family", v1.collection)
    db = make_engine(f"sqlite:///{tmp_path / 'releases.db'}")
    migrate(db)
    audit = AuditLog(db)
    policies = PolicyStore(db, audit)
    policies.save(Policy(name="ab-base", top_k=4), actor=ANN)
    policies.save(Policy(name="ab-sparse", retrieval_mode="sparse", top_k=4), actor=ANN)
    return ReleaseManager(db, audit, policies, services.store, "ab_family"), v1.collection, v2.collection


def test_promote_and_rollback_swap_the_alias_with_the_release(services: Services, manager) -> None:
    releases, v1, v2 = manager
    r1 = releases.create(ANN, "ab-base", index="ab_family")
    r2 = releases.create(ANN, "ab-sparse", index=v2)
    assert (r1.collection, r2.collection) == (v1, v2)
    with pytest.raises(InputError, match="set a current release first"):
        releases.set_candidate(ANN, r2.id, 0.5)
    releases.set_current(ANN, r1.id, "first setup")
    releases.set_candidate(ANN, r2.id, 0.5, "try sparse on the new chunking")
    variants = {releases.policy_for(f"u{i}")[1] for i in range(40)}
    assert variants == {"current", "candidate"}
    policy, variant, release = next(p for p in (releases.policy_for(f"u{i}") for i in range(40)) if p[1] == "candidate")
    assert policy.retrieval_mode == "sparse" and policy.index == v2  # the candidate reads its own version
    assert services.engine.query("问题", policy, VIEWER, retrieval_only=True).collection == v2
    releases.promote(BOB, "better on the golden set")
    assert services.store.aliases()["ab_family"] == v2
    state = releases.state()
    assert state.current.id == r2.id and state.candidate is None
    assert releases.policy_for("anyone")[0].index == "ab_family"  # current release on the live alias
    releases.rollback(BOB, "complaints")
    assert services.store.aliases()["ab_family"] == v1 and releases.state().current.id == r1.id
    with pytest.raises(InputError, match="no earlier release"):
        releases.rollback(BOB)
    actions = [e.action for e in releases.events()]
    assert actions[:3] == ["rollback", "promote", "set_candidate"]
    assert {r.action for r in releases._audit.recent(20)} >= {"release.promote", "release.rollback"}


def test_guardrail_sends_traffic_back_and_records_why(services: Services, manager) -> None:
    releases, v1, v2 = manager
    r1 = releases.create(ANN, "ab-base")
    r2 = releases.create(ANN, "ab-sparse", index=v2)
    releases.set_current(ANN, r1.id)
    releases.set_candidate(ANN, r2.id, 0.3)
    releases.set_guardrails(ANN, Guardrails(max_error_rate=0.1, max_p95_ms=2000, window_minutes=5, min_requests=10))
    healthy = lambda minutes: {"candidate": WindowStats(requests=50, errors=2, p95_ms=800)}  # noqa: E731
    assert releases.check_guardrails(healthy) is None and releases.state().share == 0.3
    few = lambda minutes: {"candidate": WindowStats(requests=5, errors=5, p95_ms=900)}  # noqa: E731
    assert releases.check_guardrails(few) is None  # not enough requests to judge
    failing = lambda minutes: {"candidate": WindowStats(requests=40, errors=12, p95_ms=2500)}  # noqa: E731
    reason = releases.check_guardrails(failing)
    assert reason and "error rate 30.0% > 10.0%" in reason and "p95 2500 ms > 2000 ms" in reason
    assert releases.state().share == 0.0
    assert all(releases.assign(f"u{i}")[0] == "current" for i in range(200))
    assert releases.events(1)[0].action == "guardrail_trip"


def test_a_request_routed_while_a_change_commits_does_not_keep_the_old_configuration(services: Services, manager,
                                                                                      monkeypatch) -> None:
    """Routing is cached per process; a request routed by another thread while promote's transaction was still
    open used to cache the old configuration after the cache was dropped (CI then served the promoted candidate's
    users as "candidate" for another second)."""
    releases, v1, v2 = manager
    r1 = releases.create(ANN, "ab-base")
    r2 = releases.create(ANN, "ab-sparse", index=v2)
    releases.set_current(ANN, r1.id)
    releases.set_candidate(ANN, r2.id, 0.5)
    assert {releases.assign(f"u{i}")[0] for i in range(40)} == {"current", "candidate"}
    recorded = releases._event

    def routed_mid_change(conn, *args, **kwargs) -> None:  # noqa: ANN001 - inside the open transaction
        recorded(conn, *args, **kwargs)
        other = threading.Thread(target=releases.assign, args=("someone",))
        other.start()
        other.join()

    monkeypatch.setattr(releases, "_event", routed_mid_change)
    releases.promote(BOB, "wins")
    assert {releases.assign(f"u{i}")[0] for i in range(40)} == {"current"}
    assert releases.assign("u1")[1].id == r2.id


def test_votes_are_counted(services: Services) -> None:
    releases = ReleaseManager(services.db, services.audit, services.policies, services.store, "rag_chunks")
    for v in ("a", "a", "b", "tie"):
        releases.vote(ANN, "q", "p1", "p2", "r1", "r2", "b", True, v)
    assert releases.vote_counts("p1", "p2") == {"a": 2, "b": 1, "tie": 1, "both_bad": 0}
    with pytest.raises(InputError):
        releases.vote(ANN, "q", "p1", "p2", "r1", "r2", "a", True, "maybe")


def test_a_release_on_a_version_gone_from_the_store_cannot_go_live(services: Services, manager) -> None:
    """Issue 14: a candidate on a dropped collection failed every request it was sent; now refused up front."""
    releases, v1, v2 = manager
    r1 = releases.create(ANN, "ab-base")
    r2 = releases.create(ANN, "ab-sparse", index=v2)
    releases.set_current(ANN, r1.id)
    assert releases.uses(v2) == [] and releases.uses(v1) == [f"current release {r1.label}"]
    services.store.delete_collection(v2)
    with pytest.raises(NotFoundError, match=rf"release #{r2.id} .* reads {v2}, which is no longer in the vector store"):
        releases.set_candidate(ANN, r2.id, 0.5)
    with pytest.raises(NotFoundError, match="no longer in the vector store"):
        releases.set_current(ANN, r2.id)
    assert releases.state().candidate is None and releases.state().current.id == r1.id
