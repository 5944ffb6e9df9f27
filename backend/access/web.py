"""Password login over plain HTTP routes of the console's own server (Starlette, no Streamlit).

A widget callback cannot set an HttpOnly cookie, so the login form is an HTML form that POSTs to
/auth/login here; the answer sets a signed, HttpOnly, SameSite=Lax cookie and redirects back to
the page that was asked for. Cross-site posts are refused by an Origin check. The middleware
shows the login page instead of the console to every page load without a valid session, so a
direct link never reaches a page; each page run checks the session again (console/auth.py)."""
from __future__ import annotations

import html
from functools import lru_cache
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.access.service import AccessStore, LoginRefused, open_access
from backend.settings import get_settings

SESSION_COOKIE = "rag_session"
LOGIN_PATH, LOGOUT_PATH = "/auth/login", "/auth/logout"
# Paths a browser needs before it is logged in: Streamlit's own assets and health, and ours.
OPEN_PREFIXES = ("/_stcore/", "/static/", "/media/", "/component/", "/auth/", "/api/", "/metrics", "/favicon",
                 "/robots.txt", "/manifest.json")


@lru_cache(maxsize=1)
def access_store() -> AccessStore:
    """One store per process on the console database (not the vector store)."""
    return open_access(get_settings())


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _safe_next(target: str | None) -> str:
    """Only a path on this server: never an absolute URL (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target if not target.startswith(("/auth/", "/_stcore/")) else "/"


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def login_page(next_path: str = "/", error: str = "", status: int = 200) -> HTMLResponse:
    msg = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Log in · RAG Ops Console</title>
<style>body{{font-family:system-ui,sans-serif;background:#f6f7f9;margin:0;display:flex;min-height:100vh;
align-items:center;justify-content:center}}form{{background:#fff;padding:2rem 2.2rem;border-radius:10px;
box-shadow:0 2px 12px #0002;width:20rem}}h1{{font-size:1.3rem;margin:0 0 1.2rem}}label{{display:block;
font-size:.9rem;margin:.8rem 0 .3rem}}input{{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #bbb;
border-radius:6px;font-size:1rem}}button{{margin-top:1.3rem;width:100%;padding:.6rem;border:0;border-radius:6px;
background:#3b6ea5;color:#fff;font-size:1rem;cursor:pointer}}.err{{color:#b00020;font-size:.9rem}}</style>
</head><body><form method="post" action="{LOGIN_PATH}"><h1>🔎 RAG Ops Console</h1>{msg}
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password"
autocomplete="current-password" required><button type="submit">Log in</button></form></body></html>"""
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def login_get(request: Request) -> Response:
    return login_page(_safe_next(request.query_params.get("next")))


async def login_post(request: Request) -> Response:
    if not _same_origin(request):
        return Response("cross-site login refused", status_code=403)
    form = await request.form()
    name, password = str(form.get("username", ""))[:200], str(form.get("password", ""))[:1024]
    next_path = _safe_next(str(form.get("next", "/")))
    store = access_store()
    try:
        actor = await run_in_threadpool(store.authenticate, name, password, _address(request))
        token = await run_in_threadpool(store.open_session, actor, _address(request))
    except LoginRefused as exc:
        return login_page(next_path, str(exc.args[0]).capitalize() + ".", status=401)
    resp = RedirectResponse(next_path, status_code=303)
    resp.set_cookie(SESSION_COOKIE, token, max_age=int(get_settings().auth_session_hours * 3600), httponly=True,
                    samesite="lax", secure=request.url.scheme == "https", path="/")
    return resp


async def logout_post(request: Request) -> Response:
    if not _same_origin(request):
        return Response("cross-site logout refused", status_code=403)
    await run_in_threadpool(access_store().close_session, request.cookies.get(SESSION_COOKIE))
    resp = RedirectResponse(LOGIN_PATH, status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return resp


def login_routes() -> list[Route]:
    return [Route(LOGIN_PATH, login_get, methods=["GET"]), Route(LOGIN_PATH, login_post, methods=["POST"]),
            Route(LOGOUT_PATH, logout_post, methods=["POST"])]


class LoginRequired:
    """ASGI middleware: a page load without a valid session gets the login page, whatever its path."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and not scope["path"].startswith(OPEN_PREFIXES):
            request = Request(scope)
            actor = await run_in_threadpool(access_store().session_actor, request.cookies.get(SESSION_COOKIE))
            if actor is None:
                target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
                await login_page(_safe_next(target))(scope, receive, send)
                return
        await self.app(scope, receive, send)
