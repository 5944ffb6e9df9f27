"""`python -m backend serve`: the API alone on uvicorn, for the production stack (Qdrant server,
Redis, PostgreSQL), as many replicas and workers as needed behind a load balancer."""
from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from backend.api.app import create_api

log = logging.getLogger(__name__)


def _start_services() -> None:
    from backend.services import shared_services

    try:
        shared_services()
    except Exception:  # the first request builds them (and says what is down)
        log.exception("services could not be built at startup")
        return
    # What startup loaded (modules, the embedding model, the services) lives as long as the worker:
    # frozen out of the garbage collector, a full collection no longer walks it and stalls requests.
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """The worker's services are built at startup, in the background, so its housekeeping runs
    without waiting for a first request; they close (and give the housekeeping lease up) at shutdown."""
    from backend.services import close_shared_services

    threading.Thread(target=_start_services, name="services-start", daemon=True).start()
    yield
    close_shared_services()


def create_server() -> FastAPI:
    """The standalone app (one per worker): the API under /api/v1 and the metrics at /metrics."""
    from backend.services import shared_services

    preload()
    root = FastAPI(title="RAG Ops Console API server", docs_url=None, redoc_url=None, openapi_url=None,
                   lifespan=lifespan)
    root.router.routes.append(Mount("/api/v1", app=create_api(shared_services)))

    root.router.routes.append(Route("/metrics", metrics_endpoint))
    return root


def preload() -> None:
    """Import the retrieval stages (llama-index) and load the token encoding in the server's main
    thread, before it serves: llama-index's circular imports fail ("partially initialized module")
    when two threads import it at once, as a request and a background warm-up would; and the first
    question does not pay the import (0.7 s) and the encoding (0.2 s, every question's budget estimate)."""
    import backend.engine.instrumentation  # noqa: F401
    import backend.engine.stages  # noqa: F401
    from backend.engine.tokens import count_tokens

    count_tokens("")


def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition on the API's own port (the console's too), behind METRICS_TOKEN when it
    is set; METRICS_PORT, when set, serves the same series on a separate port."""
    import hmac

    from prometheus_client import CONTENT_TYPE_LATEST

    from backend.services import shared_services
    from backend.settings import get_settings

    token = get_settings().metrics_token
    if token is not None:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
            return Response("metrics: a bearer token (METRICS_TOKEN) is required\n", status_code=401,
                            headers={"WWW-Authenticate": "Bearer"}, media_type="text/plain")
    return Response(shared_services().costs.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def serve(host: str, port: int, workers: int) -> int:
    import uvicorn

    from backend.settings import get_settings

    s = get_settings()
    if workers > 1 and not s.qdrant_url:
        print("error: serve: Qdrant local mode allows one process per data folder; run --workers 1, or set QDRANT_URL "
              "to a Qdrant server to run several workers", file=sys.stderr)
        return 2
    if workers > 1:  # every worker writes its series to files here; /metrics sums them
        import os
        import shutil

        multiproc = s.data_dir / "prometheus-multiproc"
        shutil.rmtree(multiproc, ignore_errors=True)
        multiproc.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    uvicorn.run("backend.api.server:create_server", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, proxy_headers=True)
    return 0
