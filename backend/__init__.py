"""RAG Ops Console backend: the query engine and every service, usable without a browser."""
