"""Sections of the Access page (users and roles, API keys, the audit log), plus `need` and
`locked`, which every page uses to disable or hide the controls the acting role may not use.

The backend checks every call against the actor's role (services.access, services.audit); this
module only reads widgets, calls it and shows the answer. An API key's secret exists in the
answer of `create_key` only: it is shown once, in the run that created it, and kept nowhere
(not even in the session state). Widget keys are namespaced `access.*` (console.kit)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import streamlit as st

from backend.access import PERMISSIONS, Action, Role, can
from backend.access.service import AccessStore, KeyInfo, UserInfo
from backend.audit import AuditLog, AuditQuery, audit_csv
from console import kit
from console.auth import current_actor
from console.markup import escape_md

keys = kit.PageKeys("access")
SS = st.session_state
ROLES = [r.name for r in Role]
RESULTS = ["any", "ok", "error", "denied", "refused"]


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


# --- users and roles -------------------------------------------------------------------------------
def user_rows(users: list[UserInfo]) -> list[dict]:
    return [{"name": u.name, "display name": u.display_name, "role": u.role.name, "source": u.source,
             "status": "disabled" if u.disabled else "active", "created": kit.when(u.created_at),
             "last login": kit.when(u.last_login_at) or "never"} for u in users]


def users_section(access: AccessStore) -> None:
    st.subheader("👥 Users and roles")
    users = kit.run(keys, lambda: access.list_users(current_actor()), inline=True)
    if users is None:
        return
    if users:
        st.dataframe(user_rows(users), hide_index=True, width="stretch", key=keys("users"))
    else:
        st.caption("No accounts yet (OIDC users appear after their first login).")
    left, right = st.columns(2, gap="large")
    with left:
        _add_user(access)
    with right:
        if users:
            _manage_user(access, users)


def _add_user(access: AccessStore) -> None:
    with st.form(keys("add_user_form"), border=True):
        st.markdown("**➕ Add a user**")
        c = st.columns(2)
        name = c[0].text_input("User name", key=keys("new_user"), placeholder="alice")
        display = c[1].text_input("Display name", key=keys("new_display"), placeholder="Alice Martin")
        c = st.columns(2)
        role = c[0].selectbox("Role", ROLES, key=keys("new_role"))
        password = c[1].text_input("Password (at least 8 characters)", type="password", key=keys("new_password"))
        submitted = st.form_submit_button("Add the user", type="primary", key=keys("add_user"))
    if submitted:
        kit.run(keys, lambda: access.add_user(current_actor(), name.strip(), Role[role], password,
                                              display_name=display.strip()),
                ok=f"User **{escape_md(name.strip())}** added as {role}.", inline=True, rerun=True)


def _manage_user(access: AccessStore, users: list[UserInfo]) -> None:
    by_name = {u.name: u for u in users}
    with st.container(border=True):
        st.markdown("**⚙️ Change a user**")
        pick = st.selectbox("User", list(by_name), key=keys("pick_user"))
        u = by_name[pick]
        with st.container(horizontal=True, vertical_alignment="bottom"):
            role = st.selectbox("Role", ROLES, index=ROLES.index(u.role.name), key=keys(f"role.{pick}"))
            if st.button("Change role", key=keys("set_role"), disabled=role == u.role.name):
                kit.run(keys, lambda: access.set_role(current_actor(), pick, Role[role]),
                        ok=f"**{escape_md(pick)}** is now {role}.", inline=True, rerun=True)
            label = "▶️ Enable" if u.disabled else "⏸️ Disable"
            if st.button(label, key=keys("toggle_user"),
                         help="A disabled account cannot log in; its open sessions end at once"):
                kit.run(keys, lambda: access.set_disabled(current_actor(), pick, not u.disabled),
                        ok=f"**{escape_md(pick)}** {'enabled' if u.disabled else 'disabled'}.", inline=True, rerun=True)
        if u.source != "password":
            st.caption(f"{escape_md(pick)} logs in through {u.source}: no password here.")
            return
        with st.container(horizontal=True, vertical_alignment="bottom"):
            password = st.text_input("New password", type="password", key=keys("reset_password"))
            if st.button("Reset password", key=keys("reset")):
                kit.run(keys, lambda: access.reset_password(current_actor(), pick, password),
                        ok=f"Password of **{escape_md(pick)}** reset; their open sessions ended.", inline=True,
                        rerun=True)


# --- API keys --------------------------------------------------------------------------------------
def key_status(k: KeyInfo) -> str:
    if k.revoked_at is not None:
        return "revoked"
    return "active" if k.active() else "expired"


def key_rows(api_keys: list[KeyInfo]) -> list[dict]:
    """What the list shows of each key: never its secret, only the first characters to recognise it."""
    return [{"id": k.id, "name": k.name, "prefix": k.prefix + "…", "role": k.role.name,
             "budget": "" if k.budget_usd is None else kit.money(k.budget_usd, 2), "created": kit.when(k.created_at),
             "by": k.created_by, "expires": kit.when(k.expires_at) or "never", "last used": kit.when(k.last_used_at) or "never",
             "status": key_status(k)} for k in api_keys]


def keys_section(access: AccessStore) -> None:
    st.subheader("🔑 API keys")
    st.caption("Clients send a key as `Authorization: Bearer …`; it acts with the key's role, and an "
               "`X-End-User` header names the person it speaks for (budgets and the ledger follow them).")
    _new_key(access)
    api_keys = kit.run(keys, lambda: access.list_keys(current_actor()), inline=True)
    if api_keys is None:
        return
    if not api_keys:
        st.caption("No API keys yet.")
        return
    st.dataframe(key_rows(api_keys), hide_index=True, width="stretch", key=keys("keys"))
    active = {f"#{k.id} {k.name} ({k.prefix}…, {k.role.name})": k for k in api_keys if k.active()}
    if active:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            pick = st.selectbox("Active key", list(active), key=keys("pick_key"))
            k = active[pick]
            st.button("🚫 Revoke", key=keys("revoke"), on_click=kit.ask, args=(keys, "revoke"),
                      kwargs={"key_id": k.id, "name": k.name, "prefix": k.prefix})


def _new_key(access: AccessStore) -> None:
    with st.form(keys("key_form"), border=True):
        st.markdown("**➕ Create a key**")
        c = st.columns(4)
        name = c[0].text_input("Name", key=keys("key_name"), placeholder="ci-pipeline")
        role = c[1].selectbox("Role", ROLES, key=keys("key_role"))
        days = c[2].number_input("Expires in days (0 = never)", min_value=0, max_value=3650, value=90,
                                 key=keys("key_days"))
        budget = c[3].number_input("Budget USD (0 = none)", min_value=0.0, value=0.0, step=10.0, key=keys("key_budget"))
        submitted = st.form_submit_button("Create the key", type="primary", key=keys("create_key"))
    if not submitted:
        return
    made = kit.run(keys, lambda: access.create_key(current_actor(), name.strip(), Role[role],
                                                   expires_days=float(days) or None, budget_usd=float(budget) or None),
                   inline=True)
    if made is None:
        return
    st.success(f"Key **{escape_md(made.info.name)}** created ({made.info.role.name}).", icon="🔑")
    st.code(made.key, language=None)  # the copy button is in the block's corner
    st.warning("Copy it now: this is the only time the key is shown. Only its hash is stored; "
               "if it is lost, revoke it and create another.", icon="⚠️")


def dialogs(access: AccessStore) -> None:
    """Draw the confirmation dialog that is open (one per run)."""
    d = kit.asked(keys)
    if d and d["kind"] == "revoke":
        name = escape_md(d["name"])
        kit.confirm(keys, "Revoke this API key?", "🚫 Revoke now", "revoke",
                    lambda: access.revoke_key(current_actor(), d["key_id"]), ok=f"Key **{name}** revoked.",
                    body=f"The key **{name}** (`{d['prefix']}…`) stops working at once, on every server: clients that use "
                         "it are refused from their next request. This cannot be undone.")


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
    who = c[0].text_input("Who (exact)", key=keys("a.who"), placeholder="alice or key:ci")
    action = c[1].text_input("Action starts with", key=keys("a.action"), placeholder="index. or key.revoke")
    target = c[2].text_input("Target contains", key=keys("a.target"))
    days = c[3].date_input("Days (UTC, both included)", value=(today - timedelta(days=29), today), max_value=today,
                           key=keys("a.days"))
    result = c[4].selectbox("Result", RESULTS, key=keys("a.result"))
    limit = c[5].number_input("Rows", min_value=10, max_value=10_000, value=500, step=100, key=keys("a.limit"))
    rows = kit.run(keys, lambda: audit.search(current_actor(), audit_query(who, action, target, days, result, limit)),
                   inline=True)
    if rows is None:
        return
    st.caption(f"{len(rows):,} records, newest first" + (f" (the first {int(limit):,})" if len(rows) >= limit else "")
               + ". Actions so far: " + ", ".join(f"`{a}`" for a in _families(audit)))
    if rows:
        st.dataframe(audit_rows(rows), hide_index=True, width="stretch", key=keys("audit"),
                     column_config={"detail": st.column_config.JsonColumn(width="large")})
    st.download_button("⬇️ CSV", audit_csv(rows).encode(), file_name=f"audit-{today:%Y%m%d}.csv", mime="text/csv",
                       key=keys("audit_csv"), disabled=not rows, on_click="ignore",
                       help="What the table shows, with the filters applied")


def _families(audit: AuditLog) -> list[str]:
    """Action prefixes to filter by (`index.`, `key.`…), from what was recorded."""
    return sorted({a.split(".")[0] + "." for a in audit.actions()})
