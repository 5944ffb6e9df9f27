"""Swap under load: a thread queries through the alias without pause while the alias is
swapped 20 times between two versions. No query may fail, and every answer must come
wholly from the old or the new collection."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from actors import Role, user
from index_support import TOPICS, fresh_services, write_folder

from backend.engine.policy import Policy
from backend.engine.vectorstore import DENSE, chunk_payload

ALIAS = "rag_chunks"
ANN = user("ann", Role.admin)
SWAPPER = user("swapper", Role.admin)
QUESTIONS = [q for _, q in TOPICS.values()]


def test_twenty_alias_swaps_under_continuous_queries(tmp_path: Path) -> None:
    svc = fresh_services(tmp_path / "data")
    try:
        admin = svc.index_admin
        v1 = svc.jobs.wait(admin.start_rebuild(ANN, source=write_folder(tmp_path / "one")), 120).result["collection"]
        two = write_folder(tmp_path / "two", ids=[])
        for doc_id, (text, _) in TOPICS.items():  # same topics, different text: every answer names its version
            (two / f"{doc_id}.md").write_text(f"# {doc_id}\n\n{text} Second edition.\n")
        v2 = svc.jobs.wait(admin.start_rebuild(ANN, source=two), 120).result["collection"]
        admin.promote(ANN, v1)
        texts = {c: {p["text"] for _, p in svc.store.scroll(c)} for c in (v1, v2)}
        assert not texts[v1] & texts[v2]

        stop, errors = threading.Event(), []
        seen: list[tuple[str, str]] = []  # (how, collection that answered)

        def load() -> None:
            i = 0
            while not stop.is_set():
                q = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                try:
                    r = svc.engine.retrieve(q, Policy(top_k=3))  # the engine: resolve the alias, then search
                    owners = {c for c in (v1, v2) if all(s.text in texts[c] for s in r.sources)}
                    assert r.sources and owners == {r.collection}, (r.collection, owners)
                    seen.append(("engine", r.collection))
                    vec = svc.embedder.embed_queries([q])[0].tolist()  # Qdrant itself, queried by the alias name
                    hits = svc.store.client.query_points(ALIAS, query=vec, using=DENSE, limit=3, with_payload=True).points
                    owners = {c for c in (v1, v2) if all(chunk_payload(h.payload)["text"] in texts[c] for h in hits)}
                    assert hits and len(owners) == 1, owners
                    seen.append(("alias", owners.pop()))
                except Exception as exc:  # every failure is a test failure, reported below
                    errors.append(f"{type(exc).__name__}: {exc}")

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        for n in range(20):
            target = v2 if n % 2 == 0 else v1
            change = admin.promote(SWAPPER, target, reason=f"swap {n + 1}")
            assert change.current == target and admin.live() == target
            time.sleep(0.1)
        swap_s = time.perf_counter() - t0
        time.sleep(0.3)
        stop.set()
        worker.join(30)

        assert errors == [], errors[:5]
        assert len(seen) >= 40, f"only {len(seen)} queries ran during the swaps"
        assert {c for _, c in seen} == {v1, v2}  # queries really landed on both sides of the swaps
        assert {how for how, _ in seen} == {"engine", "alias"}
        assert admin.live() == v1  # 20 swaps: back where it started
        assert len([h for h in admin.history(ALIAS) if h.actor == "swapper"]) == 20
        print(f"\n20 swaps in {swap_s:.2f}s with {len(seen)} queries, 0 failed")
    finally:
        svc.close()
