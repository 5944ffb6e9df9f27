"""Documents -> chunks -> dense and sparse vectors -> a versioned Qdrant collection, through
LlamaIndex's `IngestionPipeline`: sources (files, uploads, data sets), span-stable chunking, the
per-chunk embedding cache, the registry of index versions (versions) and the first-start demo index.

May import: the engine (embeddings, vector store, sparse encoders), settings, errors, text, db, access."""
