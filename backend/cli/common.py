"""What every command shares: the services (built once per command), progress bars on stderr and
the policy a command's flags ask for."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.engine.policy import Policy
    from backend.ingestion.ingestor import IngestProgress
    from backend.services import Services


_built: list[Services] = []  # the command's services, once built


def services() -> Services:
    """The stack the settings name, built on first use: `--help` and HTTP-only commands open no store."""
    if not _built:
        from backend.services import build_services

        _built.append(build_services())
    return _built[0]


def close_services() -> None:
    """Close what `services` built, before the interpreter shuts down (a Qdrant local client that
    is still open then fails in its finaliser, with a traceback on stderr)."""
    while _built:
        _built.pop().close()


def bar(label: str, fraction: float, extra: str = "") -> None:
    width = 30
    filled = int(width * max(0.0, min(1.0, fraction)))
    sys.stderr.write(f"\r{label:<10} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {extra}   ")
    sys.stderr.flush()


def ingest_progress(p: IngestProgress) -> None:
    eta = f"ETA {p.eta_s:.0f}s" if p.eta_s is not None else ""
    reused = f" ({p.reused} reused)" if p.reused else ""
    bar("ingest", p.fraction, f"{p.chunks_done}/{p.chunks_total} chunks{reused} {p.rate:.1f}/s {eta}")
    if p.phase == "done":
        sys.stderr.write("\n")


def policy_from_args(args: argparse.Namespace) -> Policy:
    """The saved policy `--policy` names, with `--top-k`, `--mode`, `--index` and `--rerank` applied."""
    policy = services().policies.get(args.policy)
    overrides = {k: v for k, v in {"top_k": getattr(args, "top_k", None), "retrieval_mode": getattr(args, "mode", None),
                                   "index": getattr(args, "index", None)}.items() if v is not None}
    if getattr(args, "rerank", False):
        overrides["rerank"] = True
    return policy.model_copy(update=overrides) if overrides else policy
