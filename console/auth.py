"""Who is acting in the console: one `Actor` per run, from the login of the mode in AUTH_MODE.

- local: everyone is the admin `local-admin` (only on a loopback address; a banner says so);
- password: the signed session cookie set by the login routes (backend/access/web.py);
- oidc: Streamlit's st.login with the provider in the OIDC_* settings; the role comes from OIDC_ROLES.
The backend checks every call against the actor's role; pages only hide what it would refuse."""
from __future__ import annotations

import html
import ipaddress
import sys

import streamlit as st

from backend.access import Actor, Role
from backend.access.oidc import role_for
from backend.access.service import LoginRefused
from backend.access.web import LOGIN_PATH, LOGOUT_PATH, SESSION_COOKIE, access_store
from backend.settings import Settings, get_settings
from console.i18n import N_, t

LOCAL_ADMIN = Actor(id="local-admin", name="local-admin", role=Role.admin, kind="user")
ACTOR_KEY = "auth.actor"
ROLE_NAMES = {"viewer": N_("viewer"), "annotator": N_("annotator"), "operator": N_("operator"), "admin": N_("admin")}
# Streamlit's secondary button look, for the plain HTML logout form.
LOGOUT_STYLE = ("font: inherit; font-size: 0.95rem; padding: 0.3rem 0.8rem; border-radius: 0.5rem; cursor: pointer; "
                "border: 1px solid rgba(49, 51, 63, 0.2); background: #fff; color: rgb(49, 51, 63)")


def role_name(role: Role | str) -> str:
    """A role as the user reads it (the role's name in the session's language)."""
    name = role.name if isinstance(role, Role) else role
    return t(ROLE_NAMES[name]) if name in ROLE_NAMES else name


def is_loopback(address: str | None) -> bool:
    if not address:
        return False  # Streamlit binds every interface when no address is given
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def refuse_local_off_loopback(settings: Settings, address: str | None) -> None:
    """Local mode makes every visitor admin: refuse to serve it beyond this machine."""
    if settings.auth_mode == "local" and not is_loopback(address):
        sys.stderr.write(f"refusing to start: AUTH_MODE=local (no login, everyone is admin) on address "
                         f"{address or 'all interfaces'}; bind to 127.0.0.1 or set AUTH_MODE=password or oidc\n")
        raise SystemExit(2)


def oidc_secrets(settings: Settings) -> dict | None:
    """Streamlit's [auth] section for st.login, handed over through st.App(secrets=...)."""
    if settings.auth_mode != "oidc":
        return None
    missing = [n for n, v in (("OIDC_SERVER_METADATA_URL", settings.oidc_server_metadata_url),
                              ("OIDC_CLIENT_ID", settings.oidc_client_id),
                              ("OIDC_CLIENT_SECRET", settings.oidc_client_secret)) if not v]
    if missing:
        sys.stderr.write(f"refusing to start: AUTH_MODE=oidc needs {', '.join(missing)}\n")
        raise SystemExit(2)
    return {"auth": {"redirect_uri": settings.oidc_redirect_uri, "cookie_secret": settings.signing_secret(),
                     "client_id": settings.oidc_client_id,
                     "client_secret": settings.oidc_client_secret.get_secret_value(),  # type: ignore[union-attr]
                     "server_metadata_url": settings.oidc_server_metadata_url}}


def _resolve(settings: Settings) -> Actor | None:
    if settings.auth_mode == "local":
        return LOCAL_ADMIN
    if settings.auth_mode == "password":
        return access_store().session_actor(st.context.cookies.get(SESSION_COOKIE))
    if not st.user.is_logged_in:
        return None
    email = str(st.user.get("email") or "")
    groups = st.user.get(settings.oidc_groups_claim)
    role = role_for(email, groups if isinstance(groups, list) else None, settings.oidc_roles, settings.oidc_unknown_role)
    if role is None or not email:
        raise LoginRefused(t("{who} has no role in this console: ask an admin to add it to OIDC_ROLES",
                             who=email or t("this account")))
    return access_store().oidc_actor(email, str(st.user.get("name") or email), role)


def login_gate() -> Actor:
    """The actor of this run; without a login, draws the login and stops the run. Runs on every
    rerun of every page, so a logout, a disabled account or a changed role applies at once."""
    settings = get_settings()
    if settings.auth_mode == "local" and not is_loopback(st.get_option("server.address")) and st.context.headers:
        st.error(t("AUTH_MODE=local is only served on a loopback address: set AUTH_MODE=password or oidc."), icon="🛑")
        st.stop()
    try:
        actor = _resolve(settings)
    except LoginRefused as exc:
        st.session_state.pop(ACTOR_KEY, None)
        st.error(str(exc.args[0]), icon="🚫")
        st.button(t("Log out"), on_click=st.logout, key="auth.refused_logout")
        st.stop()
    if actor is None:
        st.session_state.pop(ACTOR_KEY, None)
        _login_form(settings)
        st.stop()
    st.session_state[ACTOR_KEY] = actor
    return actor


def current_actor() -> Actor:
    """The actor the entry script resolved for this run (fragments reuse the last full run's)."""
    actor = st.session_state.get(ACTOR_KEY)
    if actor is None:  # a page run without the entry script: never act as anyone
        raise LoginRefused("not logged in")
    return actor


def _login_form(settings: Settings) -> None:
    st.title(t("🔎 RAG Ops Console"))
    if settings.auth_mode == "oidc":
        st.write(t("Log in with your organisation's account to continue."))
        st.button(t("Log in"), type="primary", on_click=st.login, key="auth.oidc_login")
        return
    # Password mode: page loads without a session get the login page from the server itself; this
    # shows when a session ends while the tab is open.
    st.warning(t("You are not logged in (or your session ended)."), icon="🔒")
    st.link_button(t("Log in"), f"{LOGIN_PATH}?next=/{st.context.url.rsplit('/', 1)[-1] if st.context.url else ''}")


def sidebar_identity(actor: Actor) -> None:
    """Who is logged in, the role, and Log out; the local-mode banner."""
    settings = get_settings()
    if settings.auth_mode == "local":
        st.sidebar.info(t("**local mode: no login** — everyone who reaches this address is admin."), icon="🏠")
        return
    st.sidebar.markdown(f"👤 **{actor.name}** · {role_name(actor.role)}")
    if settings.auth_mode == "oidc":
        st.sidebar.button(t("Log out"), on_click=st.logout, key="auth.logout")
    else:  # an HTML form: the cookie is HttpOnly, only the server can end it
        st.sidebar.html(f'<form method="post" action="{LOGOUT_PATH}"><button type="submit" style="{LOGOUT_STYLE}">'
                        f'{html.escape(t("Log out"))}</button></form>')
