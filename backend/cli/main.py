"""The parser of `python -m backend` and the commands that need no group of their own (ingest, query,
evaluate, policy list, demo, serve)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from backend.access import system_actor
from backend.api.replay import add_command as add_replay_command
from backend.cli.access import add_commands as add_access_commands
from backend.cli.common import bar, close_services, ingest_progress, policy_from_args, services
from backend.cli.evals import add_eval_commands
from backend.cli.index import add_commands as add_index_commands
from backend.cli.releases import add_release_commands
from backend.errors import RagError


def cmd_ingest(args) -> int:  # noqa: ANN001
    from backend.ingestion.chunking import ChunkingParams
    from backend.ingestion.sources import load_source

    svc = services()
    loaded = load_source(args.source, limit=args.limit)
    for s in loaded.skipped:
        print(f"skipped {s}", file=sys.stderr)
    params = ChunkingParams(target_chars=args.target_chars, max_chars=max(args.max_chars, args.target_chars), overlap=args.overlap)
    result = svc.ingestor.ingest(loaded.documents, actor=args.user, family=args.family, source=loaded.source,
                                      params=params, promote=not args.no_promote, progress=ingest_progress)
    if result.unchanged:
        print(f"unchanged corpus: {result.collection} already holds these {result.n_chunks} chunks (nothing written)")
    else:
        print(f"{result.collection}: {result.n_docs} documents, {result.n_chunks} chunks ({result.embedded} embedded, "
              f"{result.reused} reused) in {result.seconds:.1f}s ({result.chunks_per_s:.1f} chunks/s)")
    if result.promoted:
        print(f"alias {args.family} -> {result.collection}")
    return 0


def cmd_query(args) -> int:  # noqa: ANN001
    svc = services()
    answer = svc.engine.query(args.question, policy_from_args(args), args.user, retrieval_only=args.retrieval_only)
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 0
    label = {"llm": f"answer ({answer.model})", "extractive": "extractive answer (no LLM configured)",
             "retrieval_only": "retrieval only (no model called)"}[answer.answer_kind]
    print(f"== {label}\n{answer.answer}\n")
    print(f"== sources from {answer.collection} (policy {answer.policy}, fusion {answer.fusion})")
    for s in answer.sources:
        scores = " ".join(f"{k}={v:.4f}" for k, v in s.scores.items() if v is not None)
        print(f"[{s.rank}] {s.title[:70]} (doc {s.doc_id}, chars {s.start}-{s.end}) {scores}")
    lat = " ".join(f"{k}={v:.0f}ms" for k, v in answer.latency_ms.items())
    print(f"\n{lat} | tokens {answer.usage.prompt_tokens}+{answer.usage.completion_tokens} ({answer.usage.method}) | "
          f"cost ${answer.cost_usd:.6f} | cache {'hit' if answer.cache_hit else 'miss'}")
    return 0


def cmd_evaluate(args) -> int:  # noqa: ANN001
    from backend.evaluation.dataset import evaluate_dataset

    svc = services()
    report = evaluate_dataset(svc.ingestor, svc.engine, args.dataset, policy_from_args(args), actor=args.user, limit=args.limit,
                              progress=lambda label, f: bar("evaluate", f, label))
    sys.stderr.write("\n")
    m = report.metrics
    print(f"dataset {report.dataset} | index {report.collection} ({'reused' if report.reused_index else f'built in {report.ingest_seconds:.0f}s'}) "
          f"| policy {report.policy} | {report.n_queries} queries")
    print(f"{'metric':<12}{'value':>8}")
    for k, v in m.items():
        print(f"{k:<12}{v:>8.4f}")
    print(f"{'p50 ms':<12}{report.p50_ms:>8.1f}\n{'p95 ms':<12}{report.p95_ms:>8.1f}")
    if args.json:
        print(json.dumps(report.as_json()))
    return 0


def cmd_policy_list(args) -> int:  # noqa: ANN001
    svc = services()
    for p in svc.policies.list():
        print(f"{p.name:<24}v{p.version:<4}{json.dumps(p.spec)}")
    return 0


def cmd_demo(args) -> int:  # noqa: ANN001
    from backend.ingestion.demo import ensure_demo_index

    svc = services()
    t = time.perf_counter()
    result = ensure_demo_index(svc.ingestor, svc.settings, actor=args.user, progress=ingest_progress)
    print(f"demo index {result.collection}: {result.n_chunks} chunks ({'unchanged' if result.unchanged else f'built in {time.perf_counter() - t:.0f}s'})")
    return 0


def cmd_serve(args) -> int:  # noqa: ANN001
    from backend.api.server import serve

    return serve(args.host, args.port, args.workers)


def build_parser() -> argparse.ArgumentParser:
    from backend.settings import get_settings

    s = get_settings()
    p = argparse.ArgumentParser(prog="python -m backend", description="RAG Ops Console backend: ingest, query and evaluate from the shell.")
    p.add_argument("--user", default=None, help="who is acting, recorded in the audit log (default: the OS user); "
                                            "the command line acts with admin rights")
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="index a folder (.txt/.md/.html/.pdf) or a corpus.jsonl into a new version")
    ing.add_argument("source")
    ing.add_argument("--family", default=s.index_alias, help=f"index family and alias (default {s.index_alias})")
    ing.add_argument("--no-promote", action="store_true", help="build the version without pointing the alias at it")
    ing.add_argument("--limit", type=int, help="only the first N documents")
    ing.add_argument("--target-chars", type=int, default=1000)
    ing.add_argument("--max-chars", type=int, default=1500)
    ing.add_argument("--overlap", type=float, default=0.15)
    ing.set_defaults(func=cmd_ingest)

    def policy_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--policy", default="default", help="saved policy name (default: built-in defaults)")
        sp.add_argument("--top-k", type=int)
        sp.add_argument("--mode", choices=["dense", "sparse", "hybrid"])
        sp.add_argument("--rerank", action="store_true")

    q = sub.add_parser("query", help="answer a question and print the answer and its sources")
    q.add_argument("question")
    q.add_argument("--index", help="alias or collection (default: the policy's, else INDEX_ALIAS)")
    q.add_argument("--retrieval-only", action="store_true", help="retrieve and build the prompt, call no model")
    q.add_argument("--json", action="store_true", help="print the full answer trace as JSON")
    policy_args(q)
    q.set_defaults(func=cmd_query)

    ev = sub.add_parser("evaluate", help="retrieval metrics on a data set folder (corpus.jsonl + queries.jsonl)")
    ev.add_argument("--dataset", required=True)
    ev.add_argument("--json", action="store_true", help="last line: one JSON object with the metrics")
    ev.add_argument("--limit", type=int, help="only the first N queries")
    policy_args(ev)
    ev.set_defaults(func=cmd_evaluate)

    idx = sub.add_parser("index", help="index versions and aliases").add_subparsers(dest="index_command", required=True)
    add_index_commands(idx, s.index_alias)

    pol = sub.add_parser("policy", help="saved policies").add_subparsers(dest="policy_command", required=True)
    pol.add_parser("list", help="latest version of every policy").set_defaults(func=cmd_policy_list)

    sub.add_parser("demo", help="build the first-start demo index (SciFact + CMRC 2018 sample)").set_defaults(func=cmd_demo)
    add_eval_commands(sub)
    add_release_commands(sub)
    add_access_commands(sub)
    sv = sub.add_parser("serve", help="run the HTTP API alone (uvicorn) for the production stack")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="worker processes (more than 1 needs QDRANT_URL)")
    sv.set_defaults(func=cmd_serve)
    add_replay_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.user = system_actor(args.user)  # whoever has the shell and the database is trusted
    try:
        return args.func(args)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        close_services()

