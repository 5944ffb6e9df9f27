"""One JSON error shape for every failure: {"error": {"type", "message", "part"}} plus the
request id; a 5xx never carries internals."""
from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from backend.access import PermissionDenied
from backend.errors import BudgetExceeded, DependencyError, InputError, NotFoundError, RagError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers with its own status (401, 413, 429...)."""

    def __init__(self, status: int, type_: str, message: str, part: str = "api", headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.part, self.headers = status, type_, message, part, headers or {}


def error_response(request: Request, status: int, type_: str, message: str, part: str,
                   headers: dict | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", "")
    return JSONResponse({"error": {"type": type_, "message": message, "part": part, "request_id": rid}},
                        status_code=status, headers={**(headers or {}), "X-Request-Id": rid})


def _rag_status(exc: RagError) -> tuple[int, str]:
    if isinstance(exc, PermissionDenied):
        return 403, "permission_denied"
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, InputError):
        return 422, "invalid_request"
    if isinstance(exc, BudgetExceeded):
        return 402, "budget_exceeded"
    if isinstance(exc, DependencyError):
        return 503, "dependency_unavailable"
    return 502, "upstream_error"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.type, exc.message, exc.part, exc.headers)

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError) -> JSONResponse:
        status, type_ = _rag_status(exc)
        return error_response(request, status, type_, str(exc.args[0]) if exc.args else str(exc), exc.part)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return error_response(request, 422, "invalid_request", msg, "input")

    @app.exception_handler(sa.exc.OperationalError)
    async def _database(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.warning("API request %s: database unreachable: %s", getattr(request.state, "request_id", ""),
                    str(exc).splitlines()[0][:300])
        return error_response(request, 503, "dependency_unavailable",
                              "the database is unreachable and this request needs it; retry shortly", "database",
                              {"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bytes that are not UTF-8 JSON
            return error_response(request, 422, "invalid_request", "the body is not valid JSON (UTF-8)", "input")
        return error_response(request, exc.status_code, "http_error", str(exc.detail), "api")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API request %s failed", getattr(request.state, "request_id", ""))
        return error_response(request, 500, "internal_error",
                              "internal error: quote the request id when you report it", "api")
