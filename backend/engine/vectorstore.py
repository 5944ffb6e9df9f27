"""Qdrant behind a small interface: versioned collections with a dense and a sparse (BM25)
vector per chunk, aliases swapped atomically, and dense/sparse queries that keep every score.

Points come in two payload formats, recorded per version in the registry (`index_versions.format`):
`native` (the chunk's fields, `text` included, at the top level: versions built before the ingestion
pipeline) and `llamaindex` (what `QdrantVectorStore` writes: the same fields, the text inside
`_node_content`). `chunk_payload` gives both one shape (`scroll` applies it; a search leaves it to the
hits that survive fusion, as decoding the node's JSON costs ~15 us a hit), so older versions keep serving.

Only qdrant-client calls that local mode and the server share are used, so the same code
runs on `QdrantClient(path=...)` and on a server or cluster."""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qdrant_client import QdrantClient, models

from backend.engine.local_sparse import SparseIndexCache
from backend.errors import DependencyError, NotFoundError
from backend.settings import Settings

if TYPE_CHECKING:
    from llama_index.vector_stores.qdrant import QdrantVectorStore

DENSE = "dense"
SPARSE = "sparse"
NATIVE, LLAMAINDEX = "native", "llamaindex"  # payload formats (see the module docstring)
NODE_CONTENT = "_node_content"
_NODE_BOOKKEEPING = frozenset({NODE_CONTENT, "_node_type", "document_id", "ref_doc_id"})
SparseEncoder = Callable[[list[str]], tuple[list[list[int]], list[list[float]]]]


def chunk_payload(payload: dict) -> dict:
    """A point's payload in one shape for both formats: LlamaIndex's keeps the text in the node's JSON
    (`_node_content`) and its own bookkeeping keys beside our fields; `doc_id` is ours in both."""
    if NODE_CONTENT not in payload:
        return payload
    out = {k: v for k, v in payload.items() if k not in _NODE_BOOKKEEPING}
    out["text"] = json.loads(payload[NODE_CONTENT]).get("text", "")
    return out


@dataclass
class Hit:
    point_id: str
    score: float
    payload: dict  # as stored (either format): `chunk_payload` gives one shape, for the few hits kept


@dataclass
class CollectionShape:
    points: int
    vectors: dict[str, dict]  # name -> {"size", "distance"}
    sparse_vectors: dict[str, dict]  # name -> {"modifier"}

    @property
    def config(self) -> dict:
        return {"vectors": self.vectors, "sparse_vectors": self.sparse_vectors}


def open_client(settings: Settings) -> QdrantClient:
    """Qdrant server when QDRANT_URL is set, else local mode on disk (one process per folder)."""
    try:
        if settings.qdrant_url:
            key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            return QdrantClient(url=settings.qdrant_url, api_key=key, timeout=int(max(1, settings.qdrant_timeout_s)))
        settings.qdrant_path.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as exc:  # local mode: folder locked by another process
        raise DependencyError(
            f"cannot open the local Qdrant store at {settings.qdrant_path}: {exc} "
            "(local mode allows one process at a time: stop the console or set QDRANT_URL)",
            part="vector store",
        ) from exc


def _wrap(exc: Exception, what: str) -> DependencyError:
    return DependencyError(f"{what} failed: {type(exc).__name__}: {exc}", part="vector store")


class VectorStore:
    def __init__(self, client: QdrantClient, local: bool = False):
        """`local`: the client is Qdrant local mode, whose sparse scoring is a Python loop over
        every point; unfiltered sparse queries then go to an in-process inverted index instead.
        Every write must go through this class (or, for `node_store`, be followed by `changed`) so
        that index is dropped when its data changes."""
        self.client = client
        self._lock = threading.Lock()  # serialises alias changes made from this process
        self._sparse = SparseIndexCache(self._sparse_points) if local else None

    # --- collections and aliases -------------------------------------------------------
    def collections(self) -> list[str]:
        try:
            return sorted(c.name for c in self.client.get_collections().collections)
        except Exception as exc:
            raise _wrap(exc, "listing collections") from exc

    def aliases(self) -> dict[str, str]:
        """alias -> collection."""
        try:
            return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}
        except Exception as exc:
            raise _wrap(exc, "listing aliases") from exc

    def resolve(self, name: str) -> str:
        """The physical collection behind an alias, or the collection itself."""
        aliases = self.aliases()
        if name in aliases:
            return aliases[name]
        if name in self.collections():
            return name
        raise NotFoundError(f"unknown index alias or collection '{name}'")

    def next_version_name(self, family: str) -> tuple[str, int]:
        pattern = re.compile(rf"^{re.escape(family)}_v(\d+)$")
        versions = [int(m.group(1)) for c in self.collections() if (m := pattern.match(c))]
        n = max(versions, default=0) + 1
        return f"{family}_v{n}", n

    def create_collection(self, name: str, dim: int) -> None:
        """A collection as ingestion writes it: cosine `dense` vectors of `dim`, BM25 `sparse` with IDF."""
        self.create_configured(name, {"vectors": {DENSE: {"size": dim, "distance": models.Distance.COSINE.value}},
                                      "sparse_vectors": {SPARSE: {"modifier": models.Modifier.IDF.value}}})

    def create_configured(self, name: str, config: dict) -> None:
        """A collection from a vector configuration as `describe` gives it (a snapshot's header holds one)."""
        try:
            self.client.create_collection(
                name,
                vectors_config={k: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"]))
                                for k, v in config["vectors"].items()},
                sparse_vectors_config={k: models.SparseVectorParams(
                    modifier=models.Modifier(v["modifier"]) if v.get("modifier") else None)
                    for k, v in config.get("sparse_vectors", {}).items()},
            )
        except Exception as exc:
            raise _wrap(exc, f"creating collection {name}") from exc

    def describe(self, collection: str) -> CollectionShape:
        """Point count and vector configuration, as plain JSON values."""
        try:
            info = self.client.get_collection(collection)
        except Exception as exc:
            raise _wrap(exc, f"reading the configuration of {collection}") from exc
        params = info.config.params
        dense = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
        return CollectionShape(
            points=info.points_count or 0,
            vectors={k: {"size": v.size, "distance": getattr(v.distance, "value", v.distance)}
                     for k, v in dense.items() if v},
            sparse_vectors={k: {"modifier": getattr(v.modifier, "value", v.modifier)}
                            for k, v in (params.sparse_vectors or {}).items()})

    def delete_collection(self, name: str) -> None:
        try:
            self.client.delete_collection(name)
        except Exception as exc:
            raise _wrap(exc, f"deleting {name}") from exc
        finally:
            self.changed(name)

    def point_alias(self, alias: str, collection: str) -> str | None:
        """Point `alias` at `collection` in one atomic request; returns the previous target."""
        with self._lock:
            previous = self.aliases().get(alias)
            ops: list = []
            if previous is not None:
                ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
            try:
                self.client.update_collection_aliases(change_aliases_operations=ops)
            except Exception as exc:
                raise _wrap(exc, f"pointing alias {alias} at {collection}") from exc
            return previous

    def count(self, collection: str) -> int:
        try:
            return self.client.count(collection, exact=True).count
        except Exception as exc:
            raise _wrap(exc, f"counting {collection}") from exc

    # --- points ---------------------------------------------------------------------------
    def upsert(self, collection: str, points: list[models.PointStruct]) -> None:
        try:
            self.client.upsert(collection, points=points, wait=True)
        except Exception as exc:
            raise _wrap(exc, f"writing to {collection}") from exc
        finally:  # also after a failed write (it may be partial); the generation bump keeps a load begun meanwhile from being kept
            self.changed(collection)

    def changed(self, collection: str) -> None:
        """Drops what this process derived from the collection's points (call after any write)."""
        if self._sparse is not None:
            self._sparse.invalidate(collection)

    def node_store(self, collection: str, sparse_doc: SparseEncoder, sparse_query: SparseEncoder,
                   batch_size: int = 64) -> "QdrantVectorStore":
        """LlamaIndex's Qdrant store on this client for one collection (or alias), with our vector names
        and BM25 encoders, so what it writes and what it queries match what this class searches. The
        caller calls `changed(collection)` after writing through it."""
        from llama_index.vector_stores.qdrant import QdrantVectorStore  # ~1 s of imports: only when used

        return QdrantVectorStore(collection_name=collection, client=self.client, enable_hybrid=True,
                                 sparse_doc_fn=sparse_doc, sparse_query_fn=sparse_query,
                                 dense_vector_name=DENSE, sparse_vector_name=SPARSE, batch_size=batch_size)

    def records(self, collection: str, batch: int = 256) -> Iterator[models.Record]:
        """Every point as stored (id, every vector, payload in its own format), page by page: what a
        portable snapshot copies."""
        return self._pages(collection, batch, with_payload=True, with_vectors=True)

    def _pages(self, collection: str, batch: int, **query: object) -> Iterator[models.Record]:
        """The one paged walk through a collection (`query`: scroll_filter, with_payload, with_vectors)."""
        offset = None
        while True:
            try:
                recs, offset = self.client.scroll(collection, limit=batch, offset=offset, **query)  # type: ignore[arg-type]
            except Exception as exc:
                raise _wrap(exc, f"reading {collection}") from exc
            yield from recs
            if offset is None:
                return

    def _sparse_points(self, collection: str, using: str) -> Iterator[models.Record]:
        """The points with their `using` vector only: what the in-process BM25 index is built from."""
        return self._pages(collection, 2048, with_payload=False, with_vectors=[using])

    def create_snapshot(self, collection: str) -> models.SnapshotDescription:
        """A Qdrant snapshot of the collection (a server: local mode has none)."""
        try:
            desc = self.client.create_snapshot(collection, wait=True)
        except Exception as exc:
            raise _wrap(exc, f"creating a snapshot of {collection}") from exc
        assert desc is not None  # wait=True returns the description
        return desc

    def delete_snapshot(self, collection: str, name: str) -> None:
        try:
            self.client.delete_snapshot(collection, name, wait=True)
        except Exception as exc:
            raise _wrap(exc, f"deleting snapshot {name} of {collection}") from exc

    def close(self) -> None:
        self.client.close()

    def scroll(self, collection: str, query_filter: models.Filter | None = None, fields: list[str] | None = None,
               batch: int = 512) -> Iterator[tuple[str, dict]]:
        """(point id, payload as `chunk_payload` gives it) of every point matching the filter, page by
        page; `fields` limits the payload to those keys (None: all of it)."""
        want: bool | list[str] = True if fields is None else [*fields, NODE_CONTENT] if "text" in fields else fields
        for r in self._pages(collection, batch, scroll_filter=query_filter, with_payload=want, with_vectors=False):
            yield str(r.id), chunk_payload(r.payload or {})

    def existing(self, collection: str, point_ids: list[str]) -> dict[str, str]:
        """point id -> stored text hash, for the ids that are already in the collection."""
        try:
            recs = self.client.retrieve(collection, ids=point_ids, with_payload=["text_hash"], with_vectors=False)
        except Exception as exc:
            raise _wrap(exc, f"reading {collection}") from exc
        return {str(r.id): (r.payload or {}).get("text_hash", "") for r in recs}

    def vectors(self, collection: str, point_ids: list[str]) -> dict[str, list[float]]:
        try:
            recs = self.client.retrieve(collection, ids=point_ids, with_payload=False, with_vectors=[DENSE])
        except Exception as exc:
            raise _wrap(exc, f"reading vectors of {collection}") from exc
        return {str(r.id): r.vector[DENSE] for r in recs}  # type: ignore[index]

    def search(
        self,
        collection: str,
        query: list[float] | models.SparseVector,
        using: str,
        limit: int,
        query_filter: models.Filter | None = None,
    ) -> list[Hit]:
        try:
            if self._sparse is not None and isinstance(query, models.SparseVector) and query_filter is None:
                return self._local_sparse_search(collection, query, using, limit)
            res = self.client.query_points(
                collection, query=query, using=using, limit=limit, query_filter=query_filter, with_payload=True
            )
        except Exception as exc:
            raise _wrap(exc, f"{using} search in {collection}") from exc
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in res.points]

    def _local_sparse_search(self, collection: str, query: models.SparseVector, using: str, limit: int) -> list[Hit]:
        """Same ranking and scores as local mode's own sparse search, from the in-process index."""
        assert self._sparse is not None
        scored = self._sparse.get(collection, using).search(query, limit)
        recs = self.client.retrieve(collection, ids=[pid for pid, _ in scored], with_payload=True, with_vectors=False)
        payloads = {str(r.id): r.payload or {} for r in recs}
        return [Hit(pid, score, payloads[pid]) for pid, score in scored if pid in payloads]


def payload_filter(filters: dict | None) -> models.Filter | None:
    """Exact-match filters on payload keys, e.g. {"doc_id": "123"} or {"source": ["a", "b"]}."""
    if not filters:
        return None
    must = []
    for key, value in filters.items():
        if isinstance(value, (list, tuple, set)):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(value))))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=must)
