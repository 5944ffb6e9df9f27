"""Property tests of the portable snapshot reader (issue 14 #6): whatever bytes arrive as a snapshot
file, `verify_portable` returns a snapshot that restores, or raises the project's SnapshotError (an
InputError) — never another exception, and never more memory than a bounded line costs.

"Restores" is checked for real: every accepted file is written into an in-memory Qdrant collection
built from its header, as `SnapshotStore._restore_portable` does. Inputs: raw bytes, gzip of
arbitrary lines, valid files with parts removed or replaced (checksum recomputed, so the structure
checks are what must refuse them), byte-level damage of a valid file, and long lines."""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient, models

from backend.errors import InputError
from backend.index_admin.snapshots import FORMAT, MAX_LINE_BYTES, SnapshotError, _vector_struct, verify_portable

TRIED: Counter = Counter()  # inputs per property, printed at the end (the report's figures)
FAULTS: Counter = Counter()  # damaged or malformed inputs among them
MEMORY_BOUND = 3 * MAX_LINE_BYTES + 8 * 1024**2
EXAMPLES = int(os.environ.get("SNAPSHOT_PROPERTY_EXAMPLES", "100"))  # more for a longer search
ACCEPTED: Counter = Counter()
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("snapshot-properties")
    print(f"\nsnapshot reader properties: {sum(TRIED.values())} inputs tried {dict(TRIED)}; "
          f"{sum(FAULTS.values())} malformed or damaged {dict(FAULTS)}; accepted and restored {dict(ACCEPTED)}")


def _qdrant_restore(header: dict, path: Path) -> int:
    """What a restore does with an accepted file, into an in-memory Qdrant: must not raise."""
    client = QdrantClient(":memory:")
    config = header["config"]
    client.create_collection(
        "restored",
        vectors_config={k: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"]))
                        for k, v in config["vectors"].items()},
        sparse_vectors_config={k: models.SparseVectorParams(modifier=models.Modifier(v["modifier"]) if v.get("modifier") else None)
                               for k, v in config.get("sparse_vectors", {}).items()})
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][1:-1]
    points = [models.PointStruct(id=r["id"], vector=_vector_struct(r["vector"]), payload=r.get("payload", {})) for r in rows]
    if points:
        client.upsert("restored", points)
    n = client.count("restored").count
    client.close()
    return n


def check(path: Path, data: bytes, kind: str, faulty: bool = True) -> str:
    """The property: a restorable snapshot or a SnapshotError, within the memory bound."""
    path.write_bytes(data)
    TRIED[kind] += 1
    FAULTS[kind] += faulty
    tracemalloc.start()
    try:
        try:
            header, end = verify_portable(path)
        except SnapshotError as exc:
            assert isinstance(exc, InputError) and str(exc)
            return "refused"
        finally:
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak / 1024**2:.1f} MiB"
    assert _qdrant_restore(header, path) <= end["n_points"]  # duplicate ids collapse, nothing else is lost
    ACCEPTED[kind] += 1
    return "accepted"


def portable(header: Any, points: list[Any]) -> bytes:
    return portable_lines([header, *points])


def portable_lines(doc: list[Any]) -> bytes:
    """Lines of any JSON values with a correct end line (count and checksum) after them."""
    lines = [(json.dumps(o) + "\n").encode() for o in doc]
    end = {"end": True, "n_points": max(0, len(doc) - 1), "sha256": hashlib.sha256(b"".join(lines)).hexdigest()}
    return gzip.compress(b"".join(lines) + (json.dumps(end) + "\n").encode(), compresslevel=1)


def valid_header(dim: int = 4) -> dict:
    return {"format": FORMAT, "format_version": 1, "collection": "rag_chunks_v3", "aliases": [],
            "version": {"family": "rag_chunks", "fingerprint": "f", "dim": dim},
            "config": {"vectors": {"dense": {"size": dim, "distance": "Cosine"}},
                       "sparse_vectors": {"sparse": {"modifier": "idf"}}}}


def valid_point(i: int, dim: int = 4) -> dict:
    return {"id": i, "vector": {"dense": [0.5] * dim, "sparse": {"indices": [i, i + 1], "values": [1.0, 0.5]}},
            "payload": {"doc_id": f"d{i}", "text": "t"}}


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                    | st.text(max_size=20), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_any_bytes(folder: Path, data: bytes) -> None:
    check(folder / "raw.gz", data, "raw bytes")


@SETTINGS
@given(lines=st.lists(st.binary(max_size=200), max_size=8), newline=st.booleans())
def test_any_gzip_of_lines(folder: Path, lines: list[bytes], newline: bool) -> None:
    body = b"\n".join(lines) + (b"\n" if newline else b"")
    check(folder / "lines.gz", gzip.compress(body), "gzip of arbitrary lines")


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _edit(obj: Any, path: tuple, value: Any, delete: bool) -> Any:
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@SETTINGS
@given(st.data())
def test_a_valid_file_with_parts_removed_or_replaced(folder: Path, data: st.DataObject) -> None:
    """The checksum is recomputed: only the structure checks stand between these and a restore."""
    n = data.draw(st.integers(0, 3), label="points")
    doc = [valid_header(), *[valid_point(i) for i in range(n)]]
    edits = data.draw(st.integers(0, 3), label="edits")
    for _ in range(edits):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        delete = data.draw(st.booleans(), label="delete")
        value = data.draw(JSON | st.sampled_from([None, 0, -1, 2**64, math.inf, "", "x" * 300,
                                                  str(uuid.uuid4()), [], {}]), label="value")
        doc = _edit(doc, path, value, delete)
    check(folder / "edited.gz", portable_lines(doc), "valid file edited", faulty=edits > 0)


@SETTINGS
@given(st.data())
def test_byte_damage_of_a_valid_file(folder: Path, data: st.DataObject) -> None:
    good = portable(valid_header(), [valid_point(i) for i in range(3)])
    raw = gzip.decompress(good)
    target = data.draw(st.sampled_from(["compressed", "plain"]), label="level")
    buf = bytearray(good if target == "compressed" else raw)
    for _ in range(data.draw(st.integers(1, 4), label="damages")):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]), label="op")
        at = data.draw(st.integers(0, max(0, len(buf) - 1)), label="at")
        if op == "flip" and buf:
            buf[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif op == "cut":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        elif buf:
            del buf[at:at + data.draw(st.integers(1, 16), label="n")]
    out = bytes(buf) if target == "compressed" else gzip.compress(bytes(buf), compresslevel=1)
    check(folder / "damaged.gz", out, "byte damage")


@settings(SETTINGS, max_examples=8)
@given(mib=st.integers(4, 24), newline=st.booleans(), byte=st.sampled_from([b"a", b"[", b"1", b" "]))
def test_long_lines_cost_a_bounded_memory(folder: Path, mib: int, newline: bool, byte: bytes) -> None:
    body = byte * (mib * 1024**2 + 1) + (b"\n" if newline else b"")
    assert check(folder / "long.gz", gzip.compress(body, compresslevel=1), "long line") == "refused"


def test_the_valid_file_is_accepted(folder: Path) -> None:
    """The property's other branch is reachable: a good file passes and restores every point."""
    assert check(folder / "good.gz", portable(valid_header(), [valid_point(i) for i in range(3)]), "valid", False) == "accepted"
