"""The RAG HTTP API (FastAPI, no Streamlit): production traffic through the same engine, releases,
budgets, cache, ledger and metrics as the console.

Mounted under /api/v1 by the console's own server (console/app.py) on the embedded stack, or run
alone with `python -m backend serve` on the production stack. Every request is authenticated by
an API key (backend.access) resolved to an `Actor` in one dependency (`actor` in app.py).

May import: `backend.live`, the engine's types, access, settings, errors, text, db; `ready` and
`server` take the built `Services`. `replay` is an HTTP client and opens no store."""
from backend.api.app import create_api

__all__ = ["create_api"]
