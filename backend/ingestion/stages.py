"""The ingestion stages as LlamaIndex components, run by `ingest.Ingestor` through an `IngestionPipeline`
that writes to Qdrant with `QdrantVectorStore` (LlamaIndex's own payload format, `_node_content`).

- `SpanChunker` (a `TransformComponent`): documents to nodes at sentence boundaries
  (backend/ingestion/chunking.py), keeping the span-stable chunk ids golden sets anchor to. A node embeds
  exactly `Chunk.match_text` (title / section, then the text), so either format shares the cache.
- `CachedEmbedding` (a `TransformComponent`): each node's vector from the per-chunk embedding cache
  (backend/ingestion/embedding_cache.py), a `BaseEmbedding` embedding only texts no earlier build embedded.
- `bm25_documents`, `bm25_queries`: the store's sparse encoders, the BM25 weights the native format holds."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import (BaseNode, MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode,
                                     TransformComponent)
from pydantic import ConfigDict, PrivateAttr

from backend.engine.embeddings import Embedder
from backend.engine.sparse import doc_vector, query_vector
from backend.engine.stages import LlamaEmbedding
from backend.ingestion.chunking import Chunk, ChunkingParams, Document, chunk_document
from backend.ingestion.embedding_cache import EmbeddingCache, text_key

EMBEDDED_METADATA = ("title", "section")  # what an embedding sees besides the text, in this order


def chunk_node(chunk: Chunk, ingested_at: str) -> TextNode:
    """A chunk as a node: the point id as node id, the document as its source (so the store's
    `doc_id` is ours), the span and hash as metadata; only a non-empty title and section embed."""
    metadata = {"title": chunk.title, "section": chunk.section, "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id,
                "source": chunk.source, "start": chunk.start, "end": chunk.end, "text_hash": chunk.text_hash,
                "ingested_at": ingested_at}
    shown = [k for k in EMBEDDED_METADATA if metadata[k]]
    hidden = [k for k in metadata if k not in shown]
    return TextNode(id_=chunk.point_id, text=chunk.text, metadata=metadata,
                    excluded_embed_metadata_keys=hidden, excluded_llm_metadata_keys=hidden,
                    metadata_template="{value}", metadata_separator=" / ", text_template="{metadata_str}\n{content}",
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)})


def as_document(node: BaseNode) -> Document:
    """A LlamaIndex document (or any node) as ours: id, text, and title / source / section metadata."""
    meta = node.metadata or {}
    return Document(node.node_id, node.get_content(), str(meta.get("title") or ""), str(meta.get("source") or ""),
                    str(meta.get("section") or ""))


class SpanChunker(TransformComponent):
    """Documents (ours or LlamaIndex's) to chunk nodes with span-stable ids."""

    params: ChunkingParams
    ingested_at: str = ""

    def __call__(self, nodes: Sequence[Any], **kwargs: Any) -> list[BaseNode]:
        return [chunk_node(c, self.ingested_at) for n in nodes
                for c in chunk_document(as_document(n) if isinstance(n, BaseNode) else n, self.params)]


class CachedEmbedding(TransformComponent):
    """Sets each node's embedding from the cache, embedding and caching the texts it misses (once per
    distinct text) through `embed_model`, a LlamaIndex `BaseEmbedding` (so the calls send LlamaIndex's
    embedding events); `cache_key` names its vectors in the cache. Counts what it reused and embedded."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    embed_model: BaseEmbedding
    cache_key: str
    dim: int
    cache: EmbeddingCache
    _reused: int = PrivateAttr(0)
    _embedded: int = PrivateAttr(0)

    @classmethod
    def of(cls, embedder: Embedder, cache: EmbeddingCache, batch_size: int) -> "CachedEmbedding":
        """Our embedder (the local model or an endpoint) as the step's model, `batch_size` texts a call."""
        return cls(embed_model=LlamaEmbedding(embedder, embed_batch_size=batch_size), cache_key=embedder.cache_key,
                   dim=embedder.dim, cache=cache)

    @property
    def reused(self) -> int:
        return self._reused

    @property
    def embedded(self) -> int:
        return self._embedded

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        keys = [text_key(t) for t in texts]
        known = self.cache.lookup(self.cache_key, self.dim, keys)
        missing = {k: t for k, t in zip(keys, texts) if k not in known}
        if missing:
            vectors = self.embed_model.get_text_embedding_batch(list(missing.values()))
            fresh = {k: np.asarray(v, dtype=np.float32) for k, v in zip(missing, vectors)}
            self.cache.store(self.cache_key, fresh)
            known.update(fresh)
        for node, key in zip(nodes, keys):
            node.embedding = known[key].tolist()
        embedded = sum(1 for k in keys if k in missing)
        self._embedded += embedded
        self._reused += len(keys) - embedded
        return nodes


def bm25_documents(avgdl: float) -> Callable[[list[str]], tuple[list[list[int]], list[list[float]]]]:
    """`QdrantVectorStore`'s sparse_doc_fn: BM25 document weights (IDF is Qdrant's modifier) of the
    texts it is given, which are the nodes' embedding texts (title / section, then the text)."""
    def encode(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        vectors = [doc_vector(t, avgdl) for t in texts]
        return [v.indices for v in vectors], [v.values for v in vectors]
    return encode


def bm25_queries(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
    """`QdrantVectorStore`'s sparse_query_fn: the BM25 query terms the engine searches with."""
    vectors = [query_vector(t) for t in texts]
    return [v.indices for v in vectors], [v.values for v in vectors]
