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
from backend.access.audit import AuditLog, AuditQuery, AuditRecord, audit_csv
from backend.access.service import AccessStore, KeyInfo, UserInfo
from console import kit
from console.auth import current_actor, role_name
from console.i18n import N_, t
from console.markup import escape_md

keys = kit.PageKeys("access")
SS = st.session_state
ROLES = [r.name for r in Role]
RESULTS = ["any", "ok", "error", "denied", "refused"]
RESULT_NAMES = {"any": N_("any"), "ok": N_("ok"), "error": N_("error"), "denied": N_("denied"), "refused": N_("refused")}
# Column headers: the tables keep these names, shown in the session's language.
USER_COLUMNS = (N_("name"), N_("display name"), N_("role"), N_("source"), N_("status"), N_("created"),
                N_("last login"))
KEY_COLUMNS = (N_("id"), N_("name"), N_("prefix"), N_("role"), N_("budget"), N_("created"), N_("by"), N_("expires"),
               N_("last used"), N_("status"))
AUDIT_COLUMNS = (N_("when"), N_("who"), N_("kind"), N_("role"), N_("action"), N_("target"), N_("result"),
                 N_("detail"))


def role_names() -> dict[str, str]:
    """Each role's name as shown, fixed when drawn (a format_func that read the language later would
    run outside the session: AppTest formats options in the test's thread)."""
    return {r: role_name(r) for r in ROLES}


# --- role gating, for every page -------------------------------------------------------------------
def needs_text(action: Action) -> str:
    """Why a control is off: the role the action needs (the tooltip of a disabled control)."""
    return t("Needs the {role} role (you are {yours})", role=role_name(PERMISSIONS[action]),
             yours=role_name(current_actor().role))


def need(action: Action, *, disabled: bool = False, help: str | None = None) -> dict[str, Any]:
    """Keyword arguments for a button or input: disabled, with the role it needs as its tooltip,
    when the acting role may not do `action`. Comfort only: the backend refuses the call anyway."""
    if can(current_actor(), action):
        return {"disabled": disabled, "help": help}
    return {"disabled": True, "help": needs_text(action)}


def locked(action: Action, what: str) -> bool:
    """For editing sections that are hidden rather than disabled: True (and a one-line reason in
    their place) when the acting role may not do `action`. `what` is a message (marked with N_ where it is
    written, or already translated): it is shown in the session's language."""
    if can(current_actor(), action):
        return False
    st.caption(t("🔒 {what} needs the **{role}** role; you are {yours}.", what=t(what),
                 role=role_name(PERMISSIONS[action]), yours=role_name(current_actor().role)))
    return True


# --- users and roles -------------------------------------------------------------------------------
def user_rows(users: list[UserInfo]) -> list[dict]:
    return [{"name": u.name, "display name": u.display_name, "role": role_name(u.role), "source": u.source,
             "status": t("disabled") if u.disabled else t("active"), "created": kit.when(u.created_at),
             "last login": kit.when(u.last_login_at) or t("never")} for u in users]


def users_section(access: AccessStore) -> None:
    st.subheader(t("👥 Users and roles"))
    users = kit.run(keys, lambda: access.list_users(current_actor()), inline=True)
    if users is None:
        return
    if users:
        st.dataframe(user_rows(users), hide_index=True, width="stretch", key=keys("users"),
                     column_config=kit.columns(USER_COLUMNS))
    else:
        st.caption(t("No accounts yet (OIDC users appear after their first login)."))
    left, right = st.columns(2, gap="large")
    with left:
        _add_user(access)
    with right:
        if users:
            _manage_user(access, users)


def _add_user(access: AccessStore) -> None:
    with st.form(keys("add_user_form"), border=True):
        st.markdown(t("**➕ Add a user**"))
        c = st.columns(2)
        name = c[0].text_input(t("User name"), key=keys("new_user"), placeholder=t("alice"))
        display = c[1].text_input(t("Display name"), key=keys("new_display"), placeholder=t("Alice Martin"))
        c = st.columns(2)
        role = c[0].selectbox(t("Role"), ROLES, key=keys("new_role"), format_func=role_names().get)
        password = c[1].text_input(t("Password (at least 8 characters)"), type="password", key=keys("new_password"))
        submitted = st.form_submit_button(t("Add the user"), type="primary", key=keys("add_user"))
    if submitted:
        kit.run(keys, lambda: access.add_user(current_actor(), name.strip(), Role[role], password,
                                              display_name=display.strip()),
                ok=t("User **{name}** added as {role}.", name=escape_md(name.strip()), role=role_name(role)),
                inline=True, rerun=True)


def _manage_user(access: AccessStore, users: list[UserInfo]) -> None:
    by_name = {u.name: u for u in users}
    with st.container(border=True):
        st.markdown(t("**⚙️ Change a user**"))
        pick = st.selectbox(t("User"), list(by_name), key=keys("pick_user"))
        u = by_name[pick]
        with st.container(horizontal=True, vertical_alignment="bottom"):
            role = st.selectbox(t("Role"), ROLES, index=ROLES.index(u.role.name), key=keys(f"role.{pick}"),
                                format_func=role_names().get)
            if st.button(t("Change role"), key=keys("set_role"), disabled=role == u.role.name):
                kit.run(keys, lambda: access.set_role(current_actor(), pick, Role[role]),
                        ok=t("**{name}** is now {role}.", name=escape_md(pick), role=role_name(role)), inline=True,
                        rerun=True)
            label = t("▶️ Enable") if u.disabled else t("⏸️ Disable")
            if st.button(label, key=keys("toggle_user"),
                         help=t("A disabled account cannot log in; its open sessions end at once")):
                done = t("**{name}** enabled.") if u.disabled else t("**{name}** disabled.")
                kit.run(keys, lambda: access.set_disabled(current_actor(), pick, not u.disabled),
                        ok=done.format(name=escape_md(pick)), inline=True, rerun=True)
        if u.source != "password":
            st.caption(t("{name} logs in through {source}: no password here.", name=escape_md(pick), source=u.source))
            return
        with st.container(horizontal=True, vertical_alignment="bottom"):
            password = st.text_input(t("New password"), type="password", key=keys("reset_password"))
            if st.button(t("Reset password"), key=keys("reset")):
                kit.run(keys, lambda: access.reset_password(current_actor(), pick, password),
                        ok=t("Password of **{name}** reset; their open sessions ended.", name=escape_md(pick)),
                        inline=True, rerun=True)


# --- API keys --------------------------------------------------------------------------------------
def key_status(k: KeyInfo) -> str:
    if k.revoked_at is not None:
        return t("revoked")
    return t("active") if k.active() else t("expired")


def key_rows(api_keys: list[KeyInfo]) -> list[dict]:
    """What the list shows of each key: never its secret, only the first characters to recognise it."""
    return [{"id": k.id, "name": k.name, "prefix": k.prefix + "…", "role": role_name(k.role),
             "budget": "" if k.budget_usd is None else kit.money(k.budget_usd, 2), "created": kit.when(k.created_at),
             "by": k.created_by, "expires": kit.when(k.expires_at) or t("never"),
             "last used": kit.when(k.last_used_at) or t("never"), "status": key_status(k)} for k in api_keys]


def keys_section(access: AccessStore) -> None:
    st.subheader(t("🔑 API keys"))
    st.caption(t("Clients send a key as `Authorization: Bearer …`; it acts with the key's role, and an "
                 "`X-End-User` header names the person it speaks for (budgets and the ledger follow them)."))
    _new_key(access)
    api_keys = kit.run(keys, lambda: access.list_keys(current_actor()), inline=True)
    if api_keys is None:
        return
    if not api_keys:
        st.caption(t("No API keys yet."))
        return
    st.dataframe(key_rows(api_keys), hide_index=True, width="stretch", key=keys("keys"),
                 column_config=kit.columns(KEY_COLUMNS))
    active = {f"#{k.id} {k.name} ({k.prefix}…, {k.role.name})": k for k in api_keys if k.active()}
    if active:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            pick = st.selectbox(t("Active key"), list(active), key=keys("pick_key"))
            k = active[pick]
            st.button(t("🚫 Revoke"), key=keys("revoke"), on_click=kit.ask, args=(keys, "revoke"),
                      kwargs={"key_id": k.id, "name": k.name, "prefix": k.prefix})


def _new_key(access: AccessStore) -> None:
    with st.form(keys("key_form"), border=True):
        st.markdown(t("**➕ Create a key**"))
        c = st.columns(4)
        name = c[0].text_input(t("Name"), key=keys("key_name"), placeholder=t("ci-pipeline"))
        role = c[1].selectbox(t("Role"), ROLES, key=keys("key_role"), format_func=role_names().get)
        days = c[2].number_input(t("Expires in days (0 = never)"), min_value=0, max_value=3650, value=90,
                                 key=keys("key_days"))
        budget = c[3].number_input(t("Budget USD (0 = none)"), min_value=0.0, value=0.0, step=10.0,
                                   key=keys("key_budget"))
        submitted = st.form_submit_button(t("Create the key"), type="primary", key=keys("create_key"))
    if not submitted:
        return
    made = kit.run(keys, lambda: access.create_key(current_actor(), name.strip(), Role[role],
                                                   expires_days=float(days) or None, budget_usd=float(budget) or None),
                   inline=True)
    if made is None:
        return
    st.success(t("Key **{name}** created ({role}).", name=escape_md(made.info.name), role=role_name(made.info.role)),
               icon="🔑")
    st.code(made.key, language=None)  # the copy button is in the block's corner
    st.warning(t("Copy it now: this is the only time the key is shown. Only its hash is stored; "
                 "if it is lost, revoke it and create another."), icon="⚠️")


def dialogs(access: AccessStore) -> None:
    """Draw the confirmation dialog that is open (one per run)."""
    d = kit.asked(keys)
    if d and d["kind"] == "revoke":
        name = escape_md(d["name"])
        kit.confirm(keys, t("Revoke this API key?"), t("🚫 Revoke now"), "revoke",
                    lambda: access.revoke_key(current_actor(), d["key_id"]), ok=t("Key **{name}** revoked.", name=name),
                    body=t("The key **{name}** (`{prefix}…`) stops working at once, on every server: clients that use "
                           "it are refused from their next request. This cannot be undone.", name=name,
                           prefix=d["prefix"]))


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


def audit_rows(rows: list[AuditRecord]) -> list[dict]:
    return [{"when": kit.when(r.ts, seconds=True), "who": r.actor, "kind": r.actor_kind, "role": r.actor_role,
             "action": r.action, "target": r.target, "result": r.result, "detail": r.detail} for r in rows]


def audit_section(audit: AuditLog) -> None:
    st.subheader(t("🧾 Audit log"))
    today = datetime.now(timezone.utc).date()
    c = st.columns([2, 2, 2, 3, 1, 1], vertical_alignment="bottom")
    who = c[0].text_input(t("Who (exact)"), key=keys("a.who"), placeholder=t("alice or key:ci"))
    action = c[1].text_input(t("Action starts with"), key=keys("a.action"), placeholder=t("index. or key.revoke"))
    target = c[2].text_input(t("Target contains"), key=keys("a.target"))
    days = c[3].date_input(t("Days (UTC, both included)"), value=(today - timedelta(days=29), today), max_value=today,
                           key=keys("a.days"))
    result = c[4].selectbox(t("Result"), RESULTS, key=keys("a.result"),
                            format_func={r: t(n) for r, n in RESULT_NAMES.items()}.get)
    limit = c[5].number_input(t("Rows"), min_value=10, max_value=10_000, value=500, step=100, key=keys("a.limit"))
    rows = kit.run(keys, lambda: audit.search(current_actor(), audit_query(who, action, target, days, result, limit)),
                   inline=True)
    if rows is None:
        return
    families = ", ".join(f"`{a}`" for a in _families(audit))
    if len(rows) >= limit:
        st.caption(t("{n} records, newest first (the first {limit}). Actions so far: {actions}", n=f"{len(rows):,}",
                     limit=f"{int(limit):,}", actions=families))
    else:
        st.caption(t("{n} records, newest first. Actions so far: {actions}", n=f"{len(rows):,}", actions=families))
    if rows:
        st.dataframe(audit_rows(rows), hide_index=True, width="stretch", key=keys("audit"),
                     column_config=kit.columns(AUDIT_COLUMNS) | {"detail": st.column_config.JsonColumn(t("detail"),
                                                                                                  width="large")})
    st.download_button(t("⬇️ CSV"), audit_csv(rows).encode(), file_name=f"audit-{today:%Y%m%d}.csv", mime="text/csv",
                       key=keys("audit_csv"), disabled=not rows, on_click="ignore",
                       help=t("What the table shows, with the filters applied"))


def _families(audit: AuditLog) -> list[str]:
    """Action prefixes to filter by (`index.`, `key.`…), from what was recorded."""
    return sorted({a.split(".")[0] + "." for a in audit.actions()})
