"""`python -m backend index ...`: every index admin operation from the shell, so CI can
rebuild, gate and promote without the console. Errors exit 2 (via RagError); a failed
gate exits 1, so `index gate ... && index promote ...` is a safe pipeline."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from backend.access import system_actor
from backend.background.jobs import DONE, Job
from backend.cli.common import bar, services
from backend.errors import RagError

if TYPE_CHECKING:
    from backend.services import Services



def _follow(svc: Services, job_id: int, label: str, describe: Callable[[dict], tuple[float, str]]) -> Job:
    """Draw the job's stored progress until it ends; Ctrl-C cancels the job."""
    try:
        while True:
            job = svc.jobs.get(job_id)
            fraction, text = describe(job.progress)
            bar(label, fraction, text)
            if not job.active:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        svc.jobs.cancel(job_id, system_actor())
        job = svc.jobs.wait(job_id, timeout=60)
    sys.stderr.write("\n")
    job = svc.jobs.wait(job_id)
    if job.status != DONE:
        raise RagError(f"job {job.id} {job.status}: {job.error}", part=label)
    return job


def _rebuild_progress(p: dict) -> tuple[float, str]:
    total, done = p.get("chunks_total") or 0, p.get("chunks_done") or 0
    eta = f" ETA {p['eta_s']:.0f}s" if p.get("eta_s") is not None else ""
    reused = f" ({p['reused']} reused)" if p.get("reused") else ""
    return (done / total if total else 0.0), f"{p.get('phase', 'queued')} {done}/{total} chunks{reused} {p.get('rate') or 0:.1f}/s{eta}"


def _gate_progress(p: dict) -> tuple[float, str]:
    total, done = p.get("total") or 0, p.get("done") or 0
    return (done / total if total else 0.0), str(p.get("phase", "queued"))


def add_commands(idx: argparse._SubParsersAction, family: str) -> None:
    """Register every `index` sub-command; `family` is the default alias (INDEX_ALIAS)."""

    def cmd_list(args: argparse.Namespace) -> int:
        svc = services()
        by_collection: dict[str, list[str]] = {}
        for a, c in svc.store.aliases().items():
            by_collection.setdefault(c, []).append(a)
        rows = svc.registry.list(args.family)
        for r in rows:
            live = ",".join(by_collection.get(r.collection, []))
            print(f"{r.collection:<28}{r.status:<10}{r.n_chunks:>8} chunks  {r.embedding_model:<24}{live}")
        if not rows:
            print("no index versions yet: run `python -m backend ingest SOURCE`")
        return 0

    def cmd_promote(args: argparse.Namespace) -> int:
        change = services().index_admin.promote(args.user, args.collection, alias=args.alias, reason=args.reason,
                                                require_gate=args.require_gate)
        print(f"alias {change.alias}: {change.previous} -> {change.current}")
        return 0

    def cmd_rebuild(args: argparse.Namespace) -> int:
        from backend.ingestion.chunking import ChunkingParams

        svc = services()
        params = ChunkingParams(target_chars=args.target_chars, max_chars=max(args.max_chars, args.target_chars),
                                overlap=args.overlap)
        job_id = svc.index_admin.start_rebuild(args.user, source=args.source, family=args.family, params=params,
                                               limit=args.limit)
        job = _follow(svc, job_id, "rebuild", _rebuild_progress)
        r = job.result or {}
        for s in r.get("skipped", []):
            print(f"skipped {s}", file=sys.stderr)
        if r.get("unchanged"):
            print(f"unchanged corpus: {r['collection']} already holds these {r['n_chunks']} chunks (nothing written)")
        else:
            print(f"{r['collection']}: {r['n_docs']} documents, {r['n_chunks']} chunks ({r['embedded']} embedded, "
                  f"{r['reused']} reused) in {r['seconds']:.1f}s (not live: gate it with `index gate {r['collection']}`, then `index promote {r['collection']}`)")
        if args.json:
            print(json.dumps({k: v for k, v in r.items() if k != "summary"}))
        return 0

    def cmd_gate(args: argparse.Namespace) -> int:
        svc = services()
        dataset = args.dataset or svc.index_admin.default_gate_dataset(args.collection)
        if not dataset:
            raise RagError("no gate data set: pass --dataset FOLDER (corpus.jsonl + queries.jsonl)", part="input")
        job_id = svc.index_admin.start_gate(args.user, args.collection, dataset, limit=args.limit,
                                            max_drop=args.max_drop, policy=args.policy)
        r = _follow(svc, job_id, "gate", _gate_progress).result or {}
        base, cand = r["metrics"].get("baseline") or {}, r["metrics"]["candidate"]
        print(f"gate {r['candidate']} vs {r['baseline'] or '(no live version)'} on {r['dataset']}: "
              f"{r['n_queries']} queries ({r['skipped']} without gold documents in either version skipped)")
        print(f"{'metric':<12}{'live':>8}{'new':>8}{'delta':>8}")
        for k, c in cand.items():
            b = base.get(k)
            print(f"{k:<12}{'' if b is None else f'{b:.4f}':>8}{c:>8.4f}{'' if b is None else f'{c - b:+.4f}':>8}")
        print(("PASSED: " if r["passed"] else "FAILED: ") + "; ".join(r["reasons"]))
        if args.json:
            print(json.dumps({k: v for k, v in r.items() if k != "summary"}))
        return 0 if r["passed"] else 1

    def cmd_rollback(args: argparse.Namespace) -> int:
        change = services().index_admin.rollback(args.user, alias=args.alias, reason=args.reason)
        print(f"alias {change.alias}: {change.previous} -> {change.current} (rolled back)")
        return 0

    def cmd_delete(args: argparse.Namespace) -> int:
        services().index_admin.delete(args.user, args.collection)
        print(f"deleted {args.collection}")
        return 0

    def cmd_history(args: argparse.Namespace) -> int:
        for h in services().index_admin.history(args.alias, limit=args.limit):
            print(f"{h.ts:%Y-%m-%d %H:%M:%S}  {h.action:<9}{h.alias:<16}{h.from_collection or '-':<20}-> "
                  f"{h.to_collection:<20}{h.actor:<14}{h.reason}")
        return 0

    def cmd_jobs(args: argparse.Namespace) -> int:
        for j in services().jobs.list(args.kind, limit=args.limit):
            print(f"{j.id:>5} {j.kind:<16}{j.target:<22}{j.status:<10}{j.actor:<14}{j.created_at:%Y-%m-%d %H:%M} "
                  f"{j.error[:80]}")
        return 0

    def cmd_cancel(args: argparse.Namespace) -> int:
        job = services().jobs.cancel(args.job_id, args.user)
        print(f"job {job.id}: cancel requested ({job.status})")
        return 0

    def cmd_cache(args: argparse.Namespace) -> int:
        cache = services().ingestor.vectors
        rows = cache.stats()
        for r in rows:
            last = f"{r.last_used:%Y-%m-%d %H:%M}" if r.last_used else "-"
            print(f"{r.model:<40}{r.vectors:>10,} vectors {r.bytes / 1e6:>10.1f} MB  last used {last}  "
                  f"{r.unused:,} unused for {cache.keep_days} days")
        if not rows:
            print("the embedding cache is empty")
        if args.json:
            print(json.dumps([{**asdict(r), "last_used": r.last_used.isoformat() if r.last_used else None}
                              for r in rows]))
        return 0

    def cmd_snap_create(args: argparse.Namespace) -> int:
        snap = services().snapshots.create(args.user, args.collection, kind=args.kind)
        print(f"snapshot {snap.id}: {snap.name} ({snap.kind}, {snap.n_points} points, {snap.size:,} bytes)")
        return 0

    def cmd_snap_list(args: argparse.Namespace) -> int:
        for s in services().snapshots.list(args.collection):
            print(f"{s.id:>4} {s.name:<60}{s.kind:<10}{s.n_points:>8} points {s.size:>12,} B  "
                  f"{s.created_at:%Y-%m-%d %H:%M} {s.created_by} aliases={','.join(s.aliases) or '-'}")
        return 0

    def cmd_snap_restore(args: argparse.Namespace) -> int:
        svc = services()
        if (args.id is None) == (args.file is None):
            raise RagError("give a snapshot id or --file PATH", part="input")
        if args.file:
            r = svc.snapshots.import_file(args.user, Path(args.file).name, Path(args.file).read_bytes(), family=args.family)
        else:
            r = svc.snapshots.restore(args.user, snapshot_id=args.id, family=args.family)
        print(f"restored {r.snapshot} ({r.source_collection}) into {r.collection}: {r.n_points} points "
              f"(not live: `index promote {r.collection}`)")
        return 0

    def cmd_snap_download(args: argparse.Namespace) -> int:
        name, fh = services().snapshots.open(args.id)
        out = Path(args.out) if args.out else Path(name)
        with fh, out.open("wb") as dst:
            while block := fh.read(1 << 20):
                dst.write(block)
        print(f"wrote {out}")
        return 0

    il = idx.add_parser("list", help="every version with status, size, model and aliases")
    il.add_argument("--family")
    il.set_defaults(func=cmd_list)
    ip = idx.add_parser("promote", help="point an alias at a ready version (one atomic call)")
    ip.add_argument("collection")
    ip.add_argument("--alias", help="alias to point (default: the version's family)")
    ip.add_argument("--reason", default="", help="why, recorded in the alias history")
    ip.add_argument("--require-gate", action="store_true", help="refuse unless the last gate of this version passed")
    ip.set_defaults(func=cmd_promote)

    rb = idx.add_parser("rebuild", help="shadow-build a new version <family>_vN+1 (the live alias keeps serving)")
    rb.add_argument("source", help="folder of .txt/.md/.html/.pdf, a corpus.jsonl or a folder holding one")
    rb.add_argument("--family", default=family)
    rb.add_argument("--limit", type=int, help="only the first N documents")
    rb.add_argument("--target-chars", type=int, default=1000)
    rb.add_argument("--max-chars", type=int, default=1500)
    rb.add_argument("--overlap", type=float, default=0.15)
    rb.add_argument("--json", action="store_true", help="last line: the job result as JSON")
    rb.set_defaults(func=cmd_rebuild)

    gt = idx.add_parser("gate", help="score a version against the live one; exit 1 when it is worse")
    gt.add_argument("collection")
    gt.add_argument("--dataset", help="folder with queries.jsonl (gold_ids); default: the version's source or the demo SciFact")
    gt.add_argument("--limit", type=int, default=50, help="first N queries (default 50)")
    gt.add_argument("--max-drop", type=float, default=0.02, help="allowed drop of nDCG@10 and Recall@10")
    gt.add_argument("--policy", default="default")
    gt.add_argument("--json", action="store_true")
    gt.set_defaults(func=cmd_gate)

    rl = idx.add_parser("rollback", help="point the alias back at the previous version (one atomic call)")
    rl.add_argument("--alias", default=family)
    rl.add_argument("--reason", default="")
    rl.set_defaults(func=cmd_rollback)

    dl = idx.add_parser("delete", help="drop a version that no alias points at")
    dl.add_argument("collection")
    dl.set_defaults(func=cmd_delete)

    hi = idx.add_parser("history", help="alias changes: who, when, from, to, why")
    hi.add_argument("--alias")
    hi.add_argument("--limit", type=int, default=50)
    hi.set_defaults(func=cmd_history)

    jb = idx.add_parser("jobs", help="background jobs (rebuilds, gates) with their status")
    jb.add_argument("--kind")
    jb.add_argument("--limit", type=int, default=20)
    jb.set_defaults(func=cmd_jobs)
    cj = idx.add_parser("cancel", help="ask a running job to stop")
    cj.add_argument("job_id", type=int)
    cj.set_defaults(func=cmd_cancel)

    ca = idx.add_parser("cache", help="the embedding cache per model: vectors, size, last use, what housekeeping "
                                      "forgets (EMBEDDING_CACHE_DAYS)")
    ca.add_argument("--json", action="store_true", help="last line: the figures as JSON")
    ca.set_defaults(func=cmd_cache)

    sn = idx.add_parser("snapshot", help="snapshots of versions").add_subparsers(dest="snapshot_command", required=True)
    sc = sn.add_parser("create", help="snapshot a version (portable file in local mode, native on a server)")
    sc.add_argument("collection")
    sc.add_argument("--kind", choices=["auto", "portable", "native"], default="auto")
    sc.set_defaults(func=cmd_snap_create)
    sl = sn.add_parser("list", help="every snapshot")
    sl.add_argument("--collection")
    sl.set_defaults(func=cmd_snap_list)
    sr = sn.add_parser("restore", help="restore into a new version (never over a live one)")
    sr.add_argument("id", type=int, nargs="?", help="snapshot id from `index snapshot list`")
    sr.add_argument("--file", help="a portable snapshot file (.ragsnap.jsonl.gz)")
    sr.add_argument("--family", help="family of the new version (default: the snapshot's)")
    sr.set_defaults(func=cmd_snap_restore)
    sd = sn.add_parser("download", help="copy a snapshot file out")
    sd.add_argument("id", type=int)
    sd.add_argument("--out")
    sd.set_defaults(func=cmd_snap_download)
