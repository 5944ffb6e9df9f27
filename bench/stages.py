"""What the LlamaIndex layer costs on one retrieval: the engine's stages (`stages.HybridRetriever`,
then `engine.sources_of`) against the same searches and fusion written directly, in one run.

    .venv/bin/python -m bench.stages --data-dir DIR [--family NAME] [--queries N] [--rounds 3] [--formats]

DIR is a data folder that already holds an index (e.g. the one `bench.retrieval --data-dir DIR`
built); its questions come from the dataset the family name points at (scifact or cmrc2018).
Each question is embedded once, untimed; then both paths run on it, interleaved (order rotated per
question, `--rounds` passes), the store's searches timed inside each. Per path: p50/p95 of the whole
retrieval, of everything but the searches (fusion, node or source objects, LlamaIndex's
instrumentation spans and events; their difference is the layer's overhead in ms), and p95 with the
question's own embedding time added (timed once per question, the same for both paths: what a
retrieval through the engine costs).

`--formats` adds a third path: the stages on a copy of the index in the payload format versions had
before ingestion went through LlamaIndex's `QdrantVectorStore` (`native`: the text at the top level,
no `_node_content` to decode); it compares what the payload format costs a retrieval.
Writes bench/results/stages-<timestamp>.json.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
from llama_index.core.schema import QueryBundle  # noqa: E402
from qdrant_client import models  # noqa: E402

from backend.engine.policy import Policy  # noqa: E402
from backend.engine.query_engine import SourceChunk, sources_of  # noqa: E402
from backend.engine.sparse import doc_vector, query_vector  # noqa: E402
from backend.engine.stages import HybridRetriever, dbsf, rrf  # noqa: E402
from backend.engine.vectorstore import DENSE, NATIVE, SPARSE, Hit, VectorStore, chunk_payload  # noqa: E402
from backend.evaluation.metrics import load_queries  # noqa: E402
from backend.ingestion.chunking import Chunk  # noqa: E402
from backend.ingestion.versions import IndexRegistry  # noqa: E402
from backend.services import build_services  # noqa: E402
from backend.settings import PROJECT_ROOT, Settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


class TimedStore:
    """The real store; the time spent in `search` is added up, so it can be taken out."""

    def __init__(self, store: VectorStore):
        self.store, self.search_ms = store, 0.0

    def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
        t = time.perf_counter()
        try:
            return self.store.search(*args, **kwargs)
        finally:
            self.search_ms += (time.perf_counter() - t) * 1000


def direct(store: TimedStore, collection: str, policy: Policy, q: str, qvec: list[float]) -> list[SourceChunk]:
    """The same searches, fusion and sources with no LlamaIndex object in between (the baseline)."""
    n = max(policy.candidates, policy.top_k)
    dense_hits = store.search(collection, qvec, DENSE, n, None)
    sv = query_vector(q)
    sparse_hits = store.search(collection, sv, SPARSE, n, None) if sv.indices else []
    by_id = {h.point_id: h for h in sparse_hits + dense_hits}
    dense = {h.point_id: h.score for h in dense_hits}
    sparse = {h.point_id: h.score for h in sparse_hits}
    fused = rrf([list(dense), list(sparse)]) if policy.fusion == "rrf" else dbsf([dense, sparse])
    dense_rank = {pid: r for r, pid in enumerate(dense, 1)}
    sparse_rank = {pid: r for r, pid in enumerate(sparse, 1)}
    out = []
    for rank, pid in enumerate(sorted(fused, key=lambda p: -fused[p])[: policy.top_k], 1):
        p = chunk_payload(by_id[pid].payload)
        out.append(SourceChunk(
            rank=rank, point_id=pid, chunk_id=p.get("chunk_id", pid), doc_id=str(p.get("doc_id", "")),
            title=p.get("title", ""), section=p.get("section", ""), source=p.get("source", ""),
            start=int(p.get("start", 0)), end=int(p.get("end", 0)), text=p.get("text", ""),
            scores={"dense": dense.get(pid), "sparse": sparse.get(pid), "fused": fused[pid], "rerank": None},
            dense_rank=dense_rank.get(pid), sparse_rank=sparse_rank.get(pid)))
    return out


def staged(store: TimedStore, collection: str, policy: Policy, q: str, qvec: list[float]) -> list[SourceChunk]:
    """The engine's path: HybridRetriever (a LlamaIndex BaseRetriever) and sources_of."""
    retriever = HybridRetriever(store, collection, "hybrid", policy.fusion,  # type: ignore[arg-type]
                                max(policy.candidates, policy.top_k), policy.top_k)
    return sources_of(retriever.retrieve(QueryBundle(q, embedding=qvec)), policy.top_k)


def write_native_copy(store: VectorStore, registry: IndexRegistry, source: str, name: str) -> None:
    """The points of `source` as versions before the LlamaIndex ingestion stored them: every field, the
    text included, at the top level, and BM25 weights of the chunk's match text. Registered as `native`."""
    row = registry.get(source)
    assert row is not None, f"{source} is not a registered version"
    store.create_collection(name, row.dim)
    points = list(store.scroll(source))
    for i in range(0, len(points), 256):
        part = points[i:i + 256]
        dense = store.vectors(source, [pid for pid, _ in part])
        store.upsert(name, [models.PointStruct(id=pid, payload=p, vector={
            DENSE: dense[pid],
            SPARSE: doc_vector(Chunk(p["doc_id"], p["start"], p["end"], p["text"], p["title"], p["source"],
                                     p["section"]).match_text, row.params["avgdl"])}) for pid, p in part])
    registry.add(**{**asdict(row), "collection": name, "version": registry.max_version(row.family) + 1, "format": NATIVE})


def same_sources(a: list[SourceChunk], b: list[SourceChunk]) -> bool:
    """Equal sources; scores equal to 1e-9 (numpy's dot may differ in the last bit with the memory
    alignment of its operands on AVX-512 machines, so two searches of one vector can too)."""
    def scores(s: SourceChunk) -> list[float]:
        return [v if v is not None else float("nan") for v in s.scores.values()]

    return len(a) == len(b) and all(
        x.model_dump(exclude={"scores"}) == y.model_dump(exclude={"scores"}) and x.scores.keys() == y.scores.keys()
        and np.allclose(scores(x), scores(y), rtol=1e-9, atol=0, equal_nan=True) for x, y in zip(a, b))


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="a DATA_DIR that holds an index")
    ap.add_argument("--family", help="index family (alias); default: the only one in the folder")
    ap.add_argument("--queries", type=int, default=300, help="questions used, at most")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the questions")
    ap.add_argument("--formats", action="store_true",
                    help="also time the stages on a native-format copy of the index (made once, kept)")
    args = ap.parse_args(argv)

    services = build_services(Settings(data_dir=args.data_dir.resolve()), record_traces=False)
    aliases = services.store.aliases()
    family = args.family or (next(iter(aliases)) if len(aliases) == 1 else None)
    if family is None:
        raise SystemExit(f"--family is needed: the folder holds {sorted(aliases)}")
    collection = services.store.resolve(family)
    dataset = "cmrc2018" if "cmrc" in family else "scifact"
    questions = [q.question for q in load_queries(DATASETS / dataset / "queries.jsonl")][: args.queries]
    policy = Policy(index=family, top_k=10)
    vecs, embed_ms = [], []
    for q in questions:  # one at a time, as the engine embeds a question: the same cost for both paths
        t = time.perf_counter()
        vecs.append(services.embedder.embed_queries([q])[0].tolist())
        embed_ms.append((time.perf_counter() - t) * 1000)
    store = TimedStore(services.store)
    paths: dict[str, Callable] = {"direct (no LlamaIndex)": direct, "LlamaIndex stages": staged}
    if args.formats:
        native = f"{collection}_native"
        if native not in services.store.collections():
            write_native_copy(services.store, services.registry, collection, native)
        paths["stages, native payload"] = lambda st, _c, pol, q, v: staged(st, native, pol, q, v)
    total: dict[str, list[float]] = {n: [] for n in paths}
    rest: dict[str, list[float]] = {n: [] for n in paths}
    with_embed: dict[str, list[float]] = {n: [] for n in paths}
    same = 0
    load = os.getloadavg()[0]
    for _ in range(3):  # warm-up
        for fn in paths.values():
            fn(store, collection, policy, questions[0], vecs[0])
    for r in range(args.rounds):
        for i, (q, v) in enumerate(zip(questions, vecs)):
            names = list(paths)
            results = {}
            turn = (i + r) % len(names)
            for name in names[turn:] + names[:turn]:
                store.search_ms = 0.0
                t = time.perf_counter()
                results[name] = paths[name](store, collection, policy, q, v)
                ms = (time.perf_counter() - t) * 1000
                total[name].append(ms)
                with_embed[name].append(ms + embed_ms[i])
                rest[name].append(ms - store.search_ms)
            a, *others = results.values()
            same += all(same_sources(a, b) for b in others)
    services.close()

    rows = [{"path": n, "retrievals": len(total[n]), "p50_ms": pct(total[n], 50), "p95_ms": pct(total[n], 95),
             "non_search_p50_ms": pct(rest[n], 50), "non_search_p95_ms": pct(rest[n], 95),
             "with_embedding_p95_ms": pct(with_embed[n], 95)} for n in paths]
    base, ours = rows[:2]
    overhead_p50 = ours["non_search_p50_ms"] - base["non_search_p50_ms"]
    ratio_p95 = ours["p95_ms"] / base["p95_ms"]
    ratio_embed_p95 = ours["with_embedding_p95_ms"] / base["with_embedding_p95_ms"]
    print(f"\n## LlamaIndex layer on one retrieval: {family} ({collection}), {len(questions)} questions x "
          f"{args.rounds} rounds, hybrid {policy.fusion}, top_k {policy.top_k}, {policy.candidates} candidates; "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}\n")
    print("| path | retrievals | p50 ms | p95 ms | all but search p50 ms | all but search p95 ms | "
          "p95 ms with the query's embedding |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['path']} | {row['retrievals']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
              f"{row['non_search_p50_ms']:.3f} | {row['non_search_p95_ms']:.3f} | {row['with_embedding_p95_ms']:.2f} |")
    print(f"\n- overhead of the LlamaIndex layer (all but search, p50 difference): {overhead_p50:.3f} ms")
    print(f"- retrieval p95, stages / direct: {ratio_p95:.3f} without the query's embedding, "
          f"{ratio_embed_p95:.3f} with it (as the engine retrieves; target <= 1.1)")
    ratio_format = rows[1]["p95_ms"] / rows[2]["p95_ms"] if args.formats else None
    if ratio_format is not None:
        print(f"- retrieval p95, LlamaIndex payload / native payload: {ratio_format:.3f} "
              f"(all but search p50: {rows[1]['non_search_p50_ms']:.3f} vs {rows[2]['non_search_p50_ms']:.3f} ms)")
    print(f"- identical sources (scores to 1e-9) on {same} of {args.rounds * len(questions)} retrievals (every path)")
    out = RESULTS / f"stages-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"family": family, "collection": collection, "questions": len(questions),
                               "rounds": args.rounds, "rows": rows, "overhead_p50_ms": overhead_p50,
                               "ratio_p95": ratio_p95, "ratio_with_embedding_p95": ratio_embed_p95, "ratio_format_p95": ratio_format,
                               "embed_p50_ms": pct(embed_ms, 50), "identical": same}, indent=2), encoding="utf-8")
    print(f"- wrote {out}")


if __name__ == "__main__":
    main()
