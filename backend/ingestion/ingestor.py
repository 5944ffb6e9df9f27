"""Ingestion: documents -> chunks -> dense + BM25 sparse vectors -> a new versioned collection
behind the family alias, through LlamaIndex's `IngestionPipeline` writing with `QdrantVectorStore`
(the stages are in backend/ingestion/stages.py). An unchanged corpus (same chunks, model and parameters)
is a no-op; in a changed one only chunk texts that no earlier build embedded go through the model
(the others come from backend/ingestion/embedding_cache.py)."""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from backend.access import Action, Actor
from backend.access.audit import AuditLog
from backend.db import utcnow
from backend.engine.embeddings import Embedder
from backend.engine.sparse import doc_length
from backend.engine.vectorstore import LLAMAINDEX, VectorStore
from backend.errors import DependencyError, InputError, RagError
from backend.ingestion.chunking import ChunkingParams, Document
from backend.ingestion.embedding_cache import EmbeddingCache
from backend.ingestion.versions import BUILDING, CANCELLED, FAILED, READY, IndexRegistry
from backend.text import TOKENIZER_VERSION

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode


@dataclass
class IngestProgress:
    """A snapshot for progress bars: phase, counts, rate and time left."""

    collection: str
    phase: str  # chunking | embedding | done
    docs: int
    chunks_total: int
    chunks_done: int = 0
    reused: int = 0  # chunks whose vector came from the embedding cache
    embedded: int = 0  # chunks the model embedded
    rate: float = 0.0  # chunks per second
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return self.chunks_done / self.chunks_total if self.chunks_total else 0.0


@dataclass
class IngestResult:
    collection: str
    version: int
    unchanged: bool  # the corpus was already indexed as is: nothing was written
    promoted: bool
    n_docs: int
    n_chunks: int
    written: int
    seconds: float
    reused: int = 0  # chunks written with a cached vector
    embedded: int = 0  # chunks the model embedded
    skipped_files: list[str] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


class Cancelled(RagError):
    part = "ingest"


def fingerprint(nodes: list["BaseNode"], model: str, params: ChunkingParams) -> str:
    """Names a corpus as chunked and embedded: equal fingerprints hold the same points."""
    h = hashlib.sha256(f"{model}|{params.model_dump_json()}|tokenizer{TOKENIZER_VERSION}".encode())
    for m in sorted((n.metadata for n in nodes), key=lambda m: m["chunk_id"]):
        h.update(f"{m['chunk_id']}:{m['text_hash']}:{m['title']}".encode())
    return h.hexdigest()


class Ingestor:
    """Builds index versions; one instance per process, shared by CLI, console and jobs."""

    def __init__(self, store: VectorStore, embedder: Embedder, registry: IndexRegistry, audit: AuditLog,
                 vectors: EmbeddingCache, batch_size: int = 32):
        self.store, self.embedder, self.registry, self.audit = store, embedder, registry, audit
        self.vectors = vectors
        self.batch_size = batch_size

    def ingest(
        self,
        documents: list[Document],
        *,
        actor: Actor,
        family: str,
        source: str,
        params: ChunkingParams | None = None,
        promote: bool = True,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestResult:
        from llama_index.core.schema import MetadataMode  # LlamaIndex loads when ingesting, not at start

        from backend.ingestion.stages import SpanChunker

        params = params or ChunkingParams()
        t0 = time.perf_counter()
        chunks = SpanChunker(params=params, ingested_at=utcnow().isoformat())(documents)
        if not chunks:
            raise InputError("the documents hold no text to index")
        fp = fingerprint(chunks, self.embedder.name, params)
        with self.audit.action(actor, "index.ingest", family, need=Action.rebuild, source=source, docs=len(documents), chunks=len(chunks)) as extra:
            same = self.registry.find_ready(family, fp)
            if same and same.collection in self.store.collections():
                promoted = False
                if promote and self.store.aliases().get(family) != same.collection:
                    self.store.point_alias(family, same.collection)
                    promoted = True
                extra.update(collection=same.collection, unchanged=True)
                if progress:
                    progress(IngestProgress(same.collection, "done", len(documents), len(chunks), len(chunks)))
                return IngestResult(same.collection, same.version, True, promoted, len(documents), len(chunks), 0, time.perf_counter() - t0)

            name, version = self.store.next_version_name(family)
            if version <= self.registry.max_version(family):  # never reuse a registered (e.g. deleted) name
                version = self.registry.max_version(family) + 1
                name = f"{family}_v{version}"
            extra["collection"] = name
            avgdl = sum(doc_length(c.get_content(MetadataMode.EMBED)) for c in chunks) / len(chunks)
            self.registry.add(
                collection=name, family=family, version=version, status=BUILDING, fingerprint=fp,
                embedding_model=self.embedder.name, dim=self.embedder.dim,
                params={**params.model_dump(), "avgdl": avgdl}, source=source, format=LLAMAINDEX,
                n_docs=len(documents), n_chunks=len(chunks), created_by=actor.id,
            )
            try:
                self.store.create_collection(name, self.embedder.dim)
                state = self._write(name, chunks, avgdl, len(documents), progress, cancel)
            except Cancelled:
                self.registry.update(name, status=CANCELLED, error="cancelled by user")
                raise
            except Exception as exc:
                self.registry.update(name, status=FAILED, error=str(exc)[:2000])
                raise
            self.registry.update(name, status=READY)
            if promote:
                self.store.point_alias(family, name)
            extra.update(reused=state.reused, embedded=state.embedded)
            return IngestResult(name, version, False, promote, len(documents), len(chunks), state.chunks_done,
                                time.perf_counter() - t0, reused=state.reused, embedded=state.embedded)

    def _write(self, name: str, chunks: list["BaseNode"], avgdl: float, n_docs: int,
               progress: Callable[[IngestProgress], None] | None, cancel: threading.Event | None) -> IngestProgress:
        """Runs the pipeline (cached embedding, then the store) one batch at a time, for progress, a
        cancel between batches, and vectors cached before a crash can lose them."""
        from llama_index.core.ingestion import IngestionPipeline

        from backend.ingestion.stages import CachedEmbedding, bm25_documents, bm25_queries

        state = IngestProgress(name, "embedding", n_docs, len(chunks))
        embed = CachedEmbedding.of(self.embedder, self.vectors, self.batch_size)
        store = self.store.node_store(name, bm25_documents(avgdl), bm25_queries, batch_size=self.batch_size)
        pipeline = IngestionPipeline(transformations=[embed], vector_store=store, disable_cache=True)
        if progress:
            progress(state)
        start = time.perf_counter()
        step = min(self.batch_size, max(4, len(chunks) // 10))  # ~10 progress updates on small corpora
        for i in range(0, len(chunks), step):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"ingest into {name} cancelled after {i} of {len(chunks)} chunks")
            batch = chunks[i:i + step]
            try:
                pipeline.run(nodes=batch)
            except RagError:
                raise
            except Exception as exc:  # the store's client errors, as VectorStore reports them
                raise DependencyError(f"writing to {name} failed: {type(exc).__name__}: {exc}", part="vector store") from exc
            finally:
                self.store.changed(name)
            state.chunks_done = i + len(batch)
            state.embedded, state.reused = embed.embedded, embed.reused
            elapsed = time.perf_counter() - start
            state.rate = state.chunks_done / elapsed if elapsed else 0.0
            state.eta_s = (state.chunks_total - state.chunks_done) / state.rate if state.rate else None
            if progress:
                progress(state)
        state.phase = "done"
        if progress:
            progress(state)
        return state
