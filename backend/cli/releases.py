"""`python -m backend release ...`: releases (policy version x index version) and the live
configuration from the shell — create, make current, start a candidate with a traffic share,
change the share, guardrails, promote, roll back, status. Every change is audited with --user."""
from __future__ import annotations

import argparse
import json

from typing import TYPE_CHECKING

from backend.cli.common import services

if TYPE_CHECKING:
    from backend.live import GuardrailStatus
    from backend.releases.manager import Release


def _label(r: Release | None) -> str:
    return r.label if r else "-"


def _guardrail_state(g: GuardrailStatus) -> str:
    """The guardrail's state in words."""
    if g.state == "waiting":
        return (f"armed — waiting for {g.guardrails.min_requests} candidate requests in the window "
                f"({g.requests} so far)")
    return {"no candidate": "no candidate", "paused": "paused (0% share)",
            "over": "over a threshold — trips at the next check", "armed": "armed — within thresholds"}[g.state]


def cmd_list(args) -> int:  # noqa: ANN001
    svc = services()
    state = svc.releases.state()
    live = {state.current.id if state.current else None: "current",
            state.candidate.id if state.candidate else None: f"candidate {state.share:.0%}"}
    for r in svc.releases.list():
        print(f"#{r.id:<4}{r.policy:<24}{r.collection:<28}{live.get(r.id, ''):<16}"
              f"{r.created_at:%Y-%m-%d %H:%M} {r.created_by}  {r.note}")
    return 0


def cmd_create(args) -> int:  # noqa: ANN001
    r = services().releases.create(args.user, args.policy, args.policy_version, index=args.index, note=args.note)
    print(f"created release {r.label}")
    return 0


def cmd_set_current(args) -> int:  # noqa: ANN001
    svc = services()
    svc.releases.set_current(args.user, args.release, args.reason)
    print(f"current release: {_label(svc.releases.state().current)}")
    return 0


def _share(value: str) -> float:
    try:
        share = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share is 0.1 or 10%, got '{value}'") from None
    return share


def cmd_set_candidate(args) -> int:  # noqa: ANN001
    svc = services()
    experiment = svc.releases.set_candidate(args.user, args.release, args.share, args.reason)
    print(f"candidate {_label(svc.releases.get(args.release))} at {args.share:.0%} (experiment {experiment})")
    return 0


def cmd_set_share(args) -> int:  # noqa: ANN001
    svc = services()
    svc.releases.set_share(args.user, args.share, args.reason)
    print(f"candidate share: {args.share:.0%}")
    return 0


def cmd_clear(args) -> int:  # noqa: ANN001
    services().releases.clear_candidate(args.user, args.reason)
    print("candidate cleared: every request goes to the current release")
    return 0


def cmd_guardrails(args) -> int:  # noqa: ANN001
    from backend.releases.manager import Guardrails

    svc = services()
    values = svc.releases.state().guardrails.model_dump()
    values.update({k: v for k, v in {"max_error_rate": args.max_error_rate, "max_p95_ms": args.max_p95_ms,
                                     "window_minutes": args.window_minutes, "min_requests": args.min_requests}.items()
                   if v is not None})
    svc.releases.set_guardrails(args.user, Guardrails(**values))
    print(json.dumps(values))
    return 0


def _switch(args, verb: str, switch) -> int:  # noqa: ANN001
    """Promote or roll back, then say what the live alias now points at when it moved."""
    svc = services()
    before = svc.store.aliases().get(svc.releases.alias)
    r = switch(svc.releases)(args.user, args.reason)
    after = svc.store.aliases().get(svc.releases.alias)
    print(f"{verb} {r.label}" + (f"; alias {svc.releases.alias}: {before} -> {after}" if before != after else ""))
    return 0


def cmd_promote(args) -> int:  # noqa: ANN001
    return _switch(args, "promoted", lambda releases: releases.promote)


def cmd_rollback(args) -> int:  # noqa: ANN001
    return _switch(args, "rolled back to", lambda releases: releases.rollback)


def cmd_status(args) -> int:  # noqa: ANN001
    from backend.live import guardrail_status

    svc = services()
    state = svc.releases.state()
    g = guardrail_status(svc)
    print(f"current   {_label(state.current)}")
    print(f"candidate {_label(state.candidate)}" + (f" at {state.share:.0%} (experiment {state.experiment_id})"
                                                    if state.candidate else ""))
    gr = state.guardrails
    print(f"guardrail {_guardrail_state(g)}: error rate <= {gr.max_error_rate:.1%}, p95 <= {gr.max_p95_ms:,.0f} ms over "
          f"{gr.window_minutes} min, from {gr.min_requests} requests")
    for v, f in sorted(g.figures.items()):
        rate = f.errors / f.requests if f.requests else 0
        print(f"  {v:<10}{f.requests:>6} requests  error rate {rate:.1%}  p95 {f.p95_ms:,.0f} ms")
    for e in svc.releases.events(args.events):
        print(f"{e.ts:%Y-%m-%d %H:%M:%S}  {e.action:<16}{e.from_id or '-'!s:>4} -> {e.to_id or '-'!s:<4} "
              f"{e.actor:<14}{e.reason}")
    return 0


def add_release_commands(sub: argparse._SubParsersAction) -> None:
    rel = sub.add_parser("release", help="releases (policy version x index version), traffic split, promote, rollback") \
        .add_subparsers(dest="release_command", required=True)
    rel.add_parser("list", help="every release, newest first, with its live role").set_defaults(func=cmd_list)
    cr = rel.add_parser("create", help="bind a policy version to an index version")
    cr.add_argument("policy")
    cr.add_argument("--policy-version", type=int, help="default: the latest version")
    cr.add_argument("--index", help="alias or collection (default: the policy's index, else the live alias)")
    cr.add_argument("--note", default="")
    cr.set_defaults(func=cmd_create)

    def reason(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reason", default="", help="why, recorded with the event")

    sc = rel.add_parser("set-current", help="make a release current (first setup; swaps the alias if needed)")
    sc.add_argument("release", type=int)
    reason(sc)
    sc.set_defaults(func=cmd_set_current)
    sca = rel.add_parser("set-candidate", help="start an experiment: SHARE of users (sticky) get this release")
    sca.add_argument("release", type=int)
    sca.add_argument("share", type=_share, help="0.1 or 10%%")
    reason(sca)
    sca.set_defaults(func=cmd_set_candidate)
    ss = rel.add_parser("set-share", help="change the candidate's traffic share (0 pauses it)")
    ss.add_argument("share", type=_share)
    reason(ss)
    ss.set_defaults(func=cmd_set_share)
    cl = rel.add_parser("clear-candidate", help="end the experiment without promoting")
    reason(cl)
    cl.set_defaults(func=cmd_clear)
    gr = rel.add_parser("guardrails", help="thresholds that send the candidate back to 0%%")
    gr.add_argument("--max-error-rate", type=float)
    gr.add_argument("--max-p95-ms", type=float)
    gr.add_argument("--window-minutes", type=int)
    gr.add_argument("--min-requests", type=int)
    gr.set_defaults(func=cmd_guardrails)
    pr = rel.add_parser("promote", help="the candidate becomes current (alias swapped when its index differs)")
    reason(pr)
    pr.set_defaults(func=cmd_promote)
    rb = rel.add_parser("rollback", help="back to the previous current release (alias swapped back if needed)")
    reason(rb)
    rb.set_defaults(func=cmd_rollback)
    st = rel.add_parser("status", help="live configuration, guardrail figures and the latest events")
    st.add_argument("--events", type=int, default=10)
    st.set_defaults(func=cmd_status)

