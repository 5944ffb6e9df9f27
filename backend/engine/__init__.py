"""The query engine and its stages (LlamaIndex components): embedding, the vector store and BM25,
hybrid retrieval and fusion, reranking, prompt and generation, the answer cache, policies, a team's
own pipelines, and the instrumentation that times and meters every stage.

Owns: `QueryEngine` (query_engine), `Policy` and its store (policy), the Qdrant data path
(vectorstore, local_sparse, sparse). May import: settings, errors, text, db, access and the ledger's
call types (`backend.ledger.calls`; `backend.ledger.store` for the width of a model name); nothing
that builds services."""
