"""`python -m backend serve`: the API alone on uvicorn, for the production stack (Qdrant server,
Redis, PostgreSQL), as many replicas and workers as needed behind a load balancer."""
from __future__ import annotations

import sys

from fastapi import FastAPI
from starlette.routing import Mount

from backend.api.app import create_api


def create_server() -> FastAPI:
    """The standalone app (one per worker): the API under /api/v1 and the metrics at /metrics."""
    from starlette.responses import Response

    from backend.services import shared_services

    root = FastAPI(title="RAG Ops Console API server", docs_url=None, redoc_url=None, openapi_url=None)
    root.router.routes.append(Mount("/api/v1", app=create_api(shared_services)))

    @root.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(shared_services().costs.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return root


def serve(host: str, port: int, workers: int) -> int:
    import uvicorn

    from backend.settings import get_settings

    s = get_settings()
    if workers > 1 and not s.qdrant_url:
        print("error: serve: Qdrant local mode allows one process per data folder; run --workers 1, or set QDRANT_URL "
              "to a Qdrant server to run several workers", file=sys.stderr)
        return 2
    uvicorn.run("backend.api.server:create_server", factory=True, host=host, port=port, workers=workers,
                log_level="warning", proxy_headers=True)
    return 0
