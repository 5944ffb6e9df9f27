"""Sections of the Access page (users and roles, API keys, the audit log), plus `need` and
`locked`, which every page uses to disable or hide the controls the acting role may not use.

The backend checks every call against the actor's role (services.access, services.audit); this
module only reads widgets, calls it and shows the answer. An API key's secret exists in the
answer of `create_key` only: it is shown once, in the run that created it, and kept nowhere
(not even in the session state). Widget keys are namespaced `access.*`."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable

import streamlit as st

from backend.access import PERMISSIONS, Action, Role, can
from backend.access.service import AccessStore, KeyInfo, UserInfo
from backend.audit import AuditLog, AuditQuery, audit_csv
from backend.errors import RagError
from console.auth import current_actor
from console.markup import escape_md
from console.state import describe

log = logging.getLogger(__name__)
NS = "access"
SS = st.session_state
ROLES = [r.name for r in Role]
RESULTS = ["any", "ok", "error", "denied", "refused"]


def key(name: str) -> str:
    return f"{NS}.{name}"


# --- role gating, for every page -------------------------------------------------------------------
def needs_text(action: Action) -> str:
    """Why a control is off: the role the action needs (the tooltip of a disabled control)."""
    return f"Needs the {PERMISSIONS[action].name} role (you are {current_actor().role.name})"


def need(action: Action, *, disabled: bool = False, help: str | None = None) -> dict[str, Any]:
    """Keyword arguments for a button or input: disabled, with the role it needs as its tooltip,
    when the acting role may not do `action`. Comfort only: the backend refuses the call anyway."""
    if can(current_actor(), action):
        return {"disabled": disabled, "help": help}
    return {"disabled": True, "help": needs_text(action)}


def locked(action: Action, what: str) -> bool:
    """For editing sections that are hidden rather than disabled: True (and a one-line reason in
    their place) when the acting role may not do `action`."""
    if can(current_actor(), action):
        return False
    st.caption(f"🔒 {what} needs the **{PERMISSIONS[action].name}** role; you are {current_actor().role.name}.")
    return True


# --- outcomes --------------------------------------------------------------------------------------
def _flash(message: str) -> None:
    SS[key("flash")] = message


def flash() -> None:
    """The outcome of the last change (kept across the rerun that showed it)."""
    message = SS.pop(key("flash"), None)
    if message:
        st.success(message, icon="✅")


def _try(action: Callable[[], Any]) -> Any:
    """Run a backend call; a refusal or failure becomes one readable error line in place."""
    try:
        return action()
    except RagError as exc:
        st.error(describe(exc), icon="🛑")
    except Exception as exc:  # unexpected: shown briefly, details in the server log
        log.exception("access action failed")
        st.error(f"Unexpected error — {describe(exc)}", icon="🛑")
    return None


def _change(action: Callable[[], Any], ok: str) -> None:
    """A change that, once done, reruns the page so every section shows it."""
    if _try(lambda: action() or True):
        _close()
        _flash(ok)
        st.rerun()


def _ts(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


def _open(kind: str, **args: Any) -> None:
    """Open a confirmation dialog; its state lives in the session until confirmed or dismissed."""
    SS[key("dialog")] = {"kind": kind, **args}


def _close() -> None:
    SS.pop(key("dialog"), None)


# --- users and roles -------------------------------------------------------------------------------
def user_rows(users: list[UserInfo]) -> list[dict]:
    return [{"name": u.name, "display name": u.display_name, "role": u.role.name, "source": u.source,
             "status": "disabled" if u.disabled else "active", "created": _ts(u.created_at),
             "last login": _ts(u.last_login_at) or "never"} for u in users]


def users_section(access: AccessStore) -> None:
    st.subheader("👥 Users and roles")
    users = _try(lambda: access.list_users(current_actor()))
    if users is None:
        return
    if users:
        st.dataframe(user_rows(users), hide_index=True, width="stretch", key=key("users"))
    else:
        st.caption("No accounts yet (OIDC users appear after their first login).")
    left, right = st.columns(2, gap="large")
    with left:
        _add_user(access)
    with right:
        if users:
            _manage_user(access, users)


def _add_user(access: AccessStore) -> None:
    with st.form(key("add_user_form"), border=True):
        st.markdown("**➕ Add a user**")
        c = st.columns(2)
        name = c[0].text_input("User name", key=key("new_user"), placeholder="alice")
        display = c[1].text_input("Display name", key=key("new_display"), placeholder="Alice Martin")
        c = st.columns(2)
        role = c[0].selectbox("Role", ROLES, key=key("new_role"))
        password = c[1].text_input("Password (at least 8 characters)", type="password", key=key("new_password"))
        submitted = st.form_submit_button("Add the user", type="primary", key=key("add_user"))
    if submitted:
        _change(lambda: access.add_user(current_actor(), name.strip(), Role[role], password, display_name=display.strip()),
                f"User **{escape_md(name.strip())}** added as {role}.")


def _manage_user(access: AccessStore, users: list[UserInfo]) -> None:
    by_name = {u.name: u for u in users}
    with st.container(border=True):
        st.markdown("**⚙️ Change a user**")
        pick = st.selectbox("User", list(by_name), key=key("pick_user"))
        u = by_name[pick]
        with st.container(horizontal=True, vertical_alignment="bottom"):
            role = st.selectbox("Role", ROLES, index=ROLES.index(u.role.name), key=key(f"role.{pick}"))
            if st.button("Change role", key=key("set_role"), disabled=role == u.role.name):
                _change(lambda: access.set_role(current_actor(), pick, Role[role]),
                        f"**{escape_md(pick)}** is now {role}.")
            label = "▶️ Enable" if u.disabled else "⏸️ Disable"
            if st.button(label, key=key("toggle_user"),
                         help="A disabled account cannot log in; its open sessions end at once"):
                _change(lambda: access.set_disabled(current_actor(), pick, not u.disabled),
                        f"**{escape_md(pick)}** {'enabled' if u.disabled else 'disabled'}.")
        if u.source != "password":
            st.caption(f"{escape_md(pick)} logs in through {u.source}: no password here.")
            return
        with st.container(horizontal=True, vertical_alignment="bottom"):
            password = st.text_input("New password", type="password", key=key("reset_password"))
            if st.button("Reset password", key=key("reset")):
                _change(lambda: access.reset_password(current_actor(), pick, password),
                        f"Password of **{escape_md(pick)}** reset; their open sessions ended.")


# --- API keys --------------------------------------------------------------------------------------
def key_status(k: KeyInfo) -> str:
    if k.revoked_at is not None:
        return "revoked"
    return "active" if k.active() else "expired"


def key_rows(keys: list[KeyInfo]) -> list[dict]:
    """What the list shows of each key: never its secret, only the first characters to recognise it."""
    return [{"id": k.id, "name": k.name, "prefix": k.prefix + "…", "role": k.role.name,
             "budget": f"${k.budget_usd:,.2f}" if k.budget_usd is not None else "", "created": _ts(k.created_at),
             "by": k.created_by, "expires": _ts(k.expires_at) or "never", "last used": _ts(k.last_used_at) or "never",
             "status": key_status(k)} for k in keys]


def keys_section(access: AccessStore) -> None:
    st.subheader("🔑 API keys")
    st.caption("Clients send a key as `Authorization: Bearer …`; it acts with the key's role, and an "
               "`X-End-User` header names the person it speaks for (budgets and the ledger follow them).")
    _new_key(access)
    keys = _try(lambda: access.list_keys(current_actor()))
    if keys is None:
        return
    if not keys:
        st.caption("No API keys yet.")
        return
    st.dataframe(key_rows(keys), hide_index=True, width="stretch", key=key("keys"))
    active = {f"#{k.id} {k.name} ({k.prefix}…, {k.role.name})": k for k in keys if k.active()}
    if active:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            pick = st.selectbox("Active key", list(active), key=key("pick_key"))
            k = active[pick]
            st.button("🚫 Revoke", key=key("revoke"), on_click=_open, args=("revoke",),
                      kwargs={"key_id": k.id, "name": k.name, "prefix": k.prefix})


def _new_key(access: AccessStore) -> None:
    with st.form(key("key_form"), border=True):
        st.markdown("**➕ Create a key**")
        c = st.columns(4)
        name = c[0].text_input("Name", key=key("key_name"), placeholder="ci-pipeline")
        role = c[1].selectbox("Role", ROLES, key=key("key_role"))
        days = c[2].number_input("Expires in days (0 = never)", min_value=0, max_value=3650, value=90,
                                 key=key("key_days"))
        budget = c[3].number_input("Budget USD (0 = none)", min_value=0.0, value=0.0, step=10.0, key=key("key_budget"))
        submitted = st.form_submit_button("Create the key", type="primary", key=key("create_key"))
    if not submitted:
        return
    made = _try(lambda: access.create_key(current_actor(), name.strip(), Role[role],
                                          expires_days=float(days) or None, budget_usd=float(budget) or None))
    if made is None:
        return
    st.success(f"Key **{escape_md(made.info.name)}** created ({made.info.role.name}).", icon="🔑")
    st.code(made.key, language=None)  # the copy button is in the block's corner
    st.warning("Copy it now: this is the only time the key is shown. Only its hash is stored; "
               "if it is lost, revoke it and create another.", icon="⚠️")


@st.dialog("Revoke this API key?", on_dismiss=_close)
def _confirm_revoke(access: AccessStore, key_id: int, name: str, prefix: str) -> None:
    st.markdown(f"The key **{escape_md(name)}** (`{prefix}…`) stops working at once, on every server: "
                "clients that use it are refused from their next request. This cannot be undone.")
    if st.button("🚫 Revoke now", type="primary", key=key("revoke_confirm")):
        _change(lambda: access.revoke_key(current_actor(), key_id), f"Key **{escape_md(name)}** revoked.")


def dialogs(access: AccessStore) -> None:
    """Draw the confirmation dialog that is open (one per run)."""
    d = SS.get(key("dialog"))
    if d and d["kind"] == "revoke":
        _confirm_revoke(access, d["key_id"], d["name"], d["prefix"])


# --- audit log -------------------------------------------------------------------------------------
def audit_query(who: str, action: str, target: str, days: Any, result: str, limit: int) -> AuditQuery:
    """The filters as the backend's query; days are UTC days, both ends included."""
    picked = tuple(days) if isinstance(days, (tuple, list)) else (days,)
    first, last = (tuple(d for d in picked if d) + (None, None))[:2]
    since = datetime.combine(first, time.min, timezone.utc) if isinstance(first, date) else None
    end = last or first
    until = datetime.combine(end + timedelta(days=1), time.min, timezone.utc) if isinstance(end, date) else None
    return AuditQuery(who=who.strip(), action=action.strip(), target=target.strip(), since=since, until=until,
                      result="" if result == "any" else result, limit=int(limit))


def audit_rows(rows: list[dict]) -> list[dict]:
    return [{"when": f"{r['ts']:%Y-%m-%d %H:%M:%S}", "who": r["actor"], "kind": r.get("actor_kind", ""),
             "role": r.get("actor_role", ""), "action": r["action"], "target": r["target"], "result": r["result"],
             "detail": r["detail"]} for r in rows]


def audit_section(audit: AuditLog) -> None:
    st.subheader("🧾 Audit log")
    today = datetime.now(timezone.utc).date()
    c = st.columns([2, 2, 2, 3, 1, 1], vertical_alignment="bottom")
    who = c[0].text_input("Who (exact)", key=key("a.who"), placeholder="alice or key:ci")
    action = c[1].text_input("Action starts with", key=key("a.action"), placeholder="index. or key.revoke")
    target = c[2].text_input("Target contains", key=key("a.target"))
    days = c[3].date_input("Days (UTC, both included)", value=(today - timedelta(days=29), today), max_value=today,
                           key=key("a.days"))
    result = c[4].selectbox("Result", RESULTS, key=key("a.result"))
    limit = c[5].number_input("Rows", min_value=10, max_value=10_000, value=500, step=100, key=key("a.limit"))
    rows = _try(lambda: audit.search(current_actor(), audit_query(who, action, target, days, result, limit)))
    if rows is None:
        return
    st.caption(f"{len(rows):,} records, newest first" + (f" (the first {int(limit):,})" if len(rows) >= limit else "")
               + ". Actions so far: " + ", ".join(f"`{a}`" for a in _families(audit)))
    if rows:
        st.dataframe(audit_rows(rows), hide_index=True, width="stretch", key=key("audit"),
                     column_config={"detail": st.column_config.JsonColumn(width="large")})
    st.download_button("⬇️ CSV", audit_csv(rows).encode(), file_name=f"audit-{today:%Y%m%d}.csv", mime="text/csv",
                       key=key("audit_csv"), disabled=not rows, on_click="ignore",
                       help="What the table shows, with the filters applied")


def _families(audit: AuditLog) -> list[str]:
    """Action prefixes to filter by (`index.`, `key.`…), from what was recorded."""
    return sorted({a.split(".")[0] + "." for a in audit.actions()})
