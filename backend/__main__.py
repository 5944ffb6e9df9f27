"""Command line: `python -m backend --help`."""
from __future__ import annotations

import argparse
import json
import sys
import time

from backend.access import system_actor
from backend.errors import RagError


def _bar(label: str, fraction: float, extra: str = "") -> None:
    width = 30
    filled = int(width * max(0.0, min(1.0, fraction)))
    sys.stderr.write(f"\r{label:<10} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {extra}   ")
    sys.stderr.flush()


def _ingest_progress(p) -> None:  # noqa: ANN001 - IngestProgress
    eta = f"ETA {p.eta_s:.0f}s" if p.eta_s is not None else ""
    reused = f" ({p.reused} reused)" if p.reused else ""
    _bar("ingest", p.fraction, f"{p.chunks_done}/{p.chunks_total} chunks{reused} {p.rate:.1f}/s {eta}")
    if p.phase == "done":
        sys.stderr.write("\n")


def _services():
    from backend.services import build_services

    return build_services()


def _policy(services, args):  # noqa: ANN001
    policy = services.policies.get(args.policy)
    overrides = {k: v for k, v in {"top_k": getattr(args, "top_k", None), "retrieval_mode": getattr(args, "mode", None),
                                   "index": getattr(args, "index", None)}.items() if v is not None}
    if getattr(args, "rerank", False):
        overrides["rerank"] = True
    return policy.model_copy(update=overrides) if overrides else policy


def cmd_ingest(args) -> int:  # noqa: ANN001
    from backend.chunking import ChunkingParams
    from backend.sources import load_source

    services = _services()
    loaded = load_source(args.source, limit=args.limit)
    for s in loaded.skipped:
        print(f"skipped {s}", file=sys.stderr)
    params = ChunkingParams(target_chars=args.target_chars, max_chars=max(args.max_chars, args.target_chars), overlap=args.overlap)
    result = services.ingestor.ingest(loaded.documents, actor=args.user, family=args.family, source=loaded.source,
                                      params=params, promote=not args.no_promote, progress=_ingest_progress)
    if result.unchanged:
        print(f"unchanged corpus: {result.collection} already holds these {result.n_chunks} chunks (nothing written)")
    else:
        print(f"{result.collection}: {result.n_docs} documents, {result.n_chunks} chunks ({result.embedded} embedded, "
              f"{result.reused} reused) in {result.seconds:.1f}s ({result.chunks_per_s:.1f} chunks/s)")
    if result.promoted:
        print(f"alias {args.family} -> {result.collection}")
    return 0


def cmd_query(args) -> int:  # noqa: ANN001
    services = _services()
    answer = services.engine.query(args.question, _policy(services, args), args.user, retrieval_only=args.retrieval_only)
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
    from backend.evaluation import evaluate_dataset

    services = _services()
    report = evaluate_dataset(services, args.dataset, _policy(services, args), actor=args.user, limit=args.limit,
                              progress=lambda label, f: _bar("evaluate", f, label))
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


def cmd_index_list(args) -> int:  # noqa: ANN001
    services = _services()
    aliases = services.store.aliases()
    by_collection: dict[str, list[str]] = {}
    for a, c in aliases.items():
        by_collection.setdefault(c, []).append(a)
    rows = services.registry.list(args.family)
    for r in rows:
        live = ",".join(by_collection.get(r["collection"], []))
        print(f"{r['collection']:<28}{r['status']:<10}{r['n_chunks']:>8} chunks  {r['embedding_model']:<24}{live}")
    if not rows:
        print("no index versions yet: run `python -m backend ingest SOURCE`")
    return 0


def cmd_index_promote(args) -> int:  # noqa: ANN001
    change = _services().index_admin.promote(args.user, args.collection, alias=args.alias, reason=args.reason,
                                             require_gate=args.require_gate)
    print(f"alias {change.alias}: {change.previous} -> {change.current}")
    return 0


def cmd_policy_list(args) -> int:  # noqa: ANN001
    services = _services()
    for p in services.policies.list():
        print(f"{p['name']:<24}v{p['version']:<4}{json.dumps(p['spec'])}")
    return 0


def cmd_demo(args) -> int:  # noqa: ANN001
    from backend.demo import ensure_demo_index

    services = _services()
    t = time.perf_counter()
    result = ensure_demo_index(services, actor=args.user, progress=_ingest_progress)
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
    il = idx.add_parser("list", help="every version with status, size, model and aliases")
    il.add_argument("--family")
    il.set_defaults(func=cmd_index_list)
    ip = idx.add_parser("promote", help="point an alias at a ready version (one atomic call)")
    ip.add_argument("collection")
    ip.add_argument("--alias", help="alias to point (default: the version's family)")
    ip.add_argument("--reason", default="", help="why, recorded in the alias history")
    ip.add_argument("--require-gate", action="store_true", help="refuse unless the last gate of this version passed")
    ip.set_defaults(func=cmd_index_promote)
    from backend.index_admin.cli import add_commands

    add_commands(idx, s.index_alias, _services, _bar)

    pol = sub.add_parser("policy", help="saved policies").add_subparsers(dest="policy_command", required=True)
    pol.add_parser("list", help="latest version of every policy").set_defaults(func=cmd_policy_list)

    sub.add_parser("demo", help="build the first-start demo index (SciFact + CMRC 2018 sample)").set_defaults(func=cmd_demo)
    from backend.cli_eval import add_eval_commands

    add_eval_commands(sub)
    from backend.cli_release import add_release_commands

    add_release_commands(sub)
    from backend.access.cli import add_commands as add_access_commands

    add_access_commands(sub)
    sv = sub.add_parser("serve", help="run the HTTP API alone (uvicorn) for the production stack")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="worker processes (more than 1 needs QDRANT_URL)")
    sv.set_defaults(func=cmd_serve)
    from backend.api.replay import add_command as add_replay_command

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


if __name__ == "__main__":
    sys.exit(main())
