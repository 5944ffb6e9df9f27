"""Rebuild cost after a small change (issue 15): wall-clock time of `python -m backend index rebuild
FOLDER --json`, process start included, for

  1. the first build of N documents (fresh data folder, empty embedding cache),
  2. a rebuild after K of them changed (same data folder: the cache holds the first build's vectors),
  3. a build of the changed corpus in a fresh data folder: what every rebuild cost before the cache.

Prints one table and its last line as JSON. Times are noisy on a shared machine: read the ratios.

    .venv/bin/python -m bench.rebuild --dataset scifact --docs 80 --change 1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"


def write_corpus(rows: list[dict], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def rebuild(data_dir: Path, corpus: Path) -> tuple[float, dict]:
    """One CLI rebuild in its own process; (wall seconds, the JSON of its last line)."""
    env = {k: v for k, v in os.environ.items() if k not in
           ("OPENAI_BASE_URL", "REDIS_URL", "DATABASE_URL", "QDRANT_URL", "EMBEDDING_BASE_URL", "RERANK_URL")}
    env.update(DATA_DIR=str(data_dir), DEMO_CORPUS="", INGEST_ROOTS=str(corpus.parent))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "backend", "index", "rebuild", str(corpus), "--family", "bench",
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"rebuild failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact", choices=["scifact", "cmrc2018"])
    ap.add_argument("--docs", type=int, default=80, help="first N documents of the corpus (0: all)")
    ap.add_argument("--change", type=float, default=1,
                    help="documents changed before the rebuild: a count, or a fraction when below 1 (0.01 = 1%%)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders (printed)")
    ap.add_argument("--no-fresh", action="store_true",
                    help="skip run 3 (a second full build); for the full corpus, where each build takes ~an hour")
    args = ap.parse_args()

    rows = [json.loads(line) for line in (DATASETS / args.dataset / "corpus.jsonl").open(encoding="utf-8")]
    rows = rows[:args.docs] if args.docs else rows
    n_change = max(1, round(len(rows) * args.change)) if args.change < 1 else int(args.change)
    work = Path(tempfile.mkdtemp(prefix="bench-rebuild-", dir=ROOT / "data" if (ROOT / "data").is_dir() else None))
    corpus = write_corpus(rows, work / "corpus")
    try:
        first_s, first = rebuild(work / "data", corpus)
        step = max(1, len(rows) // n_change)  # spread the edits over the corpus
        for r in rows[::step][:n_change]:
            r["text"] = r["text"] + " (Revised: this paragraph was edited after the first build.)"
        write_corpus(rows, work / "corpus")
        again_s, again = rebuild(work / "data", corpus)
        fresh_s, fresh = (None, None) if args.no_fresh else rebuild(work / "fresh", corpus)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    table = [("first build", first_s, first), (f"rebuild, {n_change} docs changed", again_s, again)]
    if fresh_s is not None:
        table.append(("same corpus, no cache (before)", fresh_s, fresh))
    print(f"\n{args.dataset}: {len(rows)} documents, {n_change} changed; wall clock of `python -m backend index "
          f"rebuild --json`, process start included\n")
    print(f"{'run':<34} {'seconds':>8} {'chunks':>7} {'embedded':>9} {'reused':>7} {'vs first':>9}")
    for name, s, r in table:
        print(f"{name:<34} {s:>8.1f} {r['n_chunks']:>7} {r['embedded']:>9} {r['reused']:>7} {s / first_s:>8.0%}")
    print(json.dumps({"dataset": args.dataset, "docs": len(rows), "changed": n_change, "first_s": round(first_s, 1),
                      "rebuild_s": round(again_s, 1), "no_cache_s": fresh_s and round(fresh_s, 1),
                      "rebuild_vs_first": round(again_s / first_s, 3),
                      "rebuild_vs_no_cache": fresh_s and round(again_s / fresh_s, 3),
                      "embedded": again["embedded"], "reused": again["reused"]}))


if __name__ == "__main__":
    main()
