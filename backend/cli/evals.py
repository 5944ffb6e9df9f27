"""`python -m backend eval ...`: golden sets and evaluation runs from the shell, usable as a CI
gate (`eval run` exits 1 when a metric is under its minimum or regressed against a baseline)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from backend.cli.common import services
from backend.errors import InputError

if TYPE_CHECKING:
    from backend.evaluation.runs import EvalRun


def cmd_sets(args) -> int:  # noqa: ANN001
    for s in services().golden.list_sets():
        print(f"{s.name:<28}draft {s.draft:<5}approved {s.approved:<5}rejected {s.rejected:<5}"
              f"frozen v{s.latest_version or '-'}")
    return 0


def cmd_import(args) -> int:  # noqa: ANN001
    from backend.evaluation.golden import parse_items

    svc = services()
    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"no file {path}")
    items = parse_items(path.read_bytes(), path.name, svc.settings.max_question_chars)
    # The set is created in the import's own transaction: a refused file leaves no empty set behind.
    n = svc.golden.import_items(args.set, items, actor=args.user, status=args.status, create=True)
    print(f"imported {n} items into {args.set} as {args.status}")
    if args.freeze:
        print(f"{args.set} frozen as version {svc.golden.freeze(args.set, actor=args.user)}")
    return 0


def cmd_freeze(args) -> int:  # noqa: ANN001
    print(f"{args.set} frozen as version {services().golden.freeze(args.set, actor=args.user)}")
    return 0


def _minimums(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--min takes METRIC=VALUE, got '{pair}'") from None
        if not sep:
            raise InputError(f"--min takes METRIC=VALUE, got '{pair}'")
    return out


def cmd_run(args) -> int:  # noqa: ANN001
    svc = services()
    policy = svc.policies.get(args.policy)
    minimums = _minimums(args.min or [])
    run_id = svc.evals.run(args.set, policy, actor=args.user, version=args.version, index=args.index,
                                generate=not args.retrieval_only,
                                progress=lambda done, total: sys.stderr.write(f"\ritem {done}/{total}   "))
    sys.stderr.write("\n")
    run = svc.evals.get(run_id)
    print(f"run {run_id}: {run.golden_set} v{run.golden_version} | policy {run.policy} | {run.collection} | "
          f"{run.n_items} items in {run.seconds:.1f}s | unresolved references {run.unresolved}"
          + (f" | judge {run.judge}" if run.judge else ""))
    unjudged = sum(bool(i.judge_errors) for i in svc.evals.items(run_id))
    if unjudged:
        print(f"the judge gave no value for some metrics on {unjudged} item(s) (see the run viewer)")
    for name, m in run.metrics.items():
        print(f"{name:<22}{m['mean']:.4f}  [{m['low']:.4f}, {m['high']:.4f}]")
    failures = svc.evals.gate(run_id, minimums, baseline=args.baseline, tolerance=args.tolerance)
    for f in failures:
        print(f"GATE FAILED: {f}")
    if args.json:
        print(json.dumps({"run_id": run_id, "passed": not failures, "failures": failures,
                          **{k: round(v["mean"], 4) for k, v in run.metrics.items()}}))
    return 1 if failures else 0


def run_summary(r: EvalRun) -> dict:
    """One run for scripts (JSON): id, status, progress (done/total items), what it ran and why it failed."""
    return {"id": r.id, "status": r.status, "done_items": r.done_items, "n_items": r.n_items,
            "progress": round(r.progress, 4), "golden_set": r.golden_set, "golden_version": r.golden_version,
            "policy": r.policy, "collection": r.collection, "error": r.error}


def cmd_list(args) -> int:  # noqa: ANN001
    runs = services().evals.list()
    for r in runs:
        head = " ".join(f"{k}={r.metrics[k]['mean']:.3f}" for k in ("recall@10", "ndcg@10") if k in r.metrics)
        print(f"{r.id:<5}{r.status:<10}{r.done_items:>4}/{r.n_items:<5}{r.golden_set} v{r.golden_version:<4}"
              f"{r.policy:<20}{r.collection:<24}{head}")
    if args.json:
        print(json.dumps([run_summary(r) for r in runs]))
    return 0


def cmd_diff(args) -> int:  # noqa: ANN001
    from backend.evaluation.runs import describe_moves

    diff = services().evals.diff(args.run_a, args.run_b)
    if args.json:
        print(json.dumps(asdict(diff), default=str))
        return 0
    print(f"run {args.run_a} -> run {args.run_b}: improved {diff.improved}, regressed {diff.regressed}, "
          f"unchanged {diff.unchanged} ({diff.n_items} items, by {diff.primary})")
    for name, d in diff.metrics.items():
        print(f"{name:<22}{d.delta:+.4f}  [{d.low:+.4f}, {d.high:+.4f}]  p={d.p_value:.4f}")
    for row in diff.items:
        if row.change != "unchanged":
            print(f"  {row.change:<10}{row.delta:+.3f}  {row.question[:60]}  | {describe_moves(row.moves)}")
    return 0


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="golden sets and evaluation runs (a CI gate)").add_subparsers(dest="eval_command", required=True)
    ev.add_parser("sets", help="golden sets with item counts").set_defaults(func=cmd_sets)
    imp = ev.add_parser("import", help="import items (JSONL, CSV, or a data set's queries.jsonl) into a set; all or nothing")
    imp.add_argument("file")
    imp.add_argument("--set", required=True)
    imp.add_argument("--status", choices=["draft", "approved"], default="approved")
    imp.add_argument("--freeze", action="store_true", help="freeze the approved items as a new version afterwards")
    imp.set_defaults(func=cmd_import)
    fr = ev.add_parser("freeze", help="snapshot the approved items as the next version")
    fr.add_argument("--set", required=True)
    fr.set_defaults(func=cmd_freeze)
    run = ev.add_parser("run", help="run a set version with a policy on an index; exits 1 when the gate fails")
    run.add_argument("--set", required=True)
    run.add_argument("--version", type=int, help="golden set version (default: latest)")
    run.add_argument("--policy", default="default")
    run.add_argument("--index", help="alias or collection (default: the policy's, else INDEX_ALIAS)")
    run.add_argument("--retrieval-only", action="store_true", help="skip answers and answer metrics")
    run.add_argument("--min", action="append", metavar="METRIC=VALUE", help="fail when the metric's mean is lower (repeatable)")
    run.add_argument("--baseline", type=int, help="fail when a headline metric regressed against this run")
    run.add_argument("--tolerance", type=float, default=0.0, help="allowed regression against --baseline")
    run.add_argument("--json", action="store_true", help="last line: one JSON object with run id, pass/fail and metrics")
    run.set_defaults(func=cmd_run)
    ls = ev.add_parser("list", help="evaluation runs, newest first, with their progress")
    ls.add_argument("--json", action="store_true", help="last line: a JSON list of runs (id, status, progress)")
    ls.set_defaults(func=cmd_list)
    df = ev.add_parser("diff", help="paired comparison of two runs on the same items")
    df.add_argument("run_a", type=int)
    df.add_argument("run_b", type=int)
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=cmd_diff)
