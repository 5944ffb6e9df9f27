"""`python -m backend users ...` and `keys ...`: accounts and API keys from the shell.

They open only the database, so they work while the console (which holds the Qdrant local
folder) is running. The shell acts as a system actor with admin rights."""
from __future__ import annotations

import argparse
import json
import sys

from backend.access.actor import Role
from backend.access.service import AccessStore, KeyInfo, UserInfo, open_access


def _store() -> AccessStore:
    from backend.settings import get_settings

    return open_access(get_settings())


def _read_password() -> str:
    """One line from standard input, newline stripped (`--password-stdin`)."""
    return sys.stdin.readline().rstrip("\r\n")


def _ts(v) -> str | None:  # noqa: ANN001 - datetime | None
    return v.isoformat() if v else None


def _user_json(u: UserInfo) -> dict:
    return {"name": u.name, "display_name": u.display_name, "role": u.role.name, "source": u.source,
            "disabled": u.disabled, "created_at": _ts(u.created_at), "last_login_at": _ts(u.last_login_at)}


def _key_json(k: KeyInfo) -> dict:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "role": k.role.name, "budget_usd": k.budget_usd,
            "created_at": _ts(k.created_at), "created_by": k.created_by, "expires_at": _ts(k.expires_at),
            "revoked_at": _ts(k.revoked_at), "last_used_at": _ts(k.last_used_at), "active": k.active()}


def cmd_users_add(args: argparse.Namespace) -> int:
    if not args.password_stdin:
        print("error: password: give the password on standard input with --password-stdin", file=sys.stderr)
        return 2
    u = _store().add_user(args.user, args.name, Role.parse(args.role), _read_password(), display_name=args.display_name)
    print(f"user {u.name} added as {u.role}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    rows = _store().list_users(args.user)
    if args.json:
        print(json.dumps([_user_json(u) for u in rows]))
        return 0
    for u in rows:
        state = "disabled" if u.disabled else "active"
        last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
        print(f"{u.name:<32}{u.role.name:<11}{u.source:<10}{state:<10}last login {last}")
    if not rows:
        print("no users yet: python -m backend users add NAME --role admin --password-stdin")
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    _store().set_role(args.user, args.name, Role.parse(args.role))
    print(f"user {args.name} is now {args.role}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    _store().set_disabled(args.user, args.name, True)
    print(f"user {args.name} disabled (logged out everywhere)")
    return 0


def cmd_users_enable(args: argparse.Namespace) -> int:
    _store().set_disabled(args.user, args.name, False)
    print(f"user {args.name} enabled")
    return 0


def cmd_users_reset_password(args: argparse.Namespace) -> int:
    if not args.password_stdin:
        print("error: password: give the new password on standard input with --password-stdin", file=sys.stderr)
        return 2
    _store().reset_password(args.user, args.name, _read_password())
    print(f"password of {args.name} changed (logged out everywhere)")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    new = _store().create_key(args.user, args.name, Role.parse(args.role), expires_days=args.expires,
                              budget_usd=args.budget)
    if args.json:
        print(json.dumps({"id": new.info.id, "key": new.key}))
    else:
        print(f"key {new.info.id} ({new.info.name}, {new.info.role}) — shown once, store it now:\n{new.key}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    rows = _store().list_keys(args.user)
    if args.json:
        print(json.dumps([_key_json(k) for k in rows]))
        return 0
    for k in rows:
        state = "revoked" if k.revoked_at else ("expired" if not k.active() else "active")
        print(f"{k.id:<5}{k.name:<24}{k.prefix + '…':<16}{k.role.name:<11}{state}")
    if not rows:
        print("no API keys yet: python -m backend keys create NAME --role viewer")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    _store().revoke_key(args.user, args.id)
    print(f"key {args.id} revoked")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    roles = [r.name for r in Role]
    users = sub.add_parser("users", help="console accounts (AUTH_MODE=password): add, list, roles, disable")
    us = users.add_subparsers(dest="users_command", required=True)
    a = us.add_parser("add", help="add an account; the password is read from standard input")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=roles)
    a.add_argument("--password-stdin", action="store_true", help="read the password (one line) from standard input")
    a.add_argument("--display-name", default="")
    a.set_defaults(func=cmd_users_add)
    ls = us.add_parser("list", help="every account with its role and last login")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_users_list)
    sr = us.add_parser("set-role", help="change an account's role")
    sr.add_argument("name")
    sr.add_argument("role", choices=roles)
    sr.set_defaults(func=cmd_users_set_role)
    d = us.add_parser("disable", help="refuse an account's logins and end its sessions")
    d.add_argument("name")
    d.set_defaults(func=cmd_users_disable)
    e = us.add_parser("enable", help="allow a disabled account again")
    e.add_argument("name")
    e.set_defaults(func=cmd_users_enable)
    rp = us.add_parser("reset-password", help="set a new password (read from standard input)")
    rp.add_argument("name")
    rp.add_argument("--password-stdin", action="store_true")
    rp.set_defaults(func=cmd_users_reset_password)

    keys = sub.add_parser("keys", help="API keys for the HTTP API: create, list, revoke")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key; its secret is printed once")
    c.add_argument("name")
    c.add_argument("--role", required=True, choices=roles)
    c.add_argument("--expires", type=float, metavar="DAYS", help="days until the key stops working")
    c.add_argument("--budget", type=float, metavar="USD", help="optional spend budget of the key")
    c.add_argument("--json", action="store_true", help='last line: {"id": ..., "key": ...}')
    c.set_defaults(func=cmd_keys_create)
    kl = ks.add_parser("list", help="every key (never the secret)")
    kl.add_argument("--json", action="store_true")
    kl.set_defaults(func=cmd_keys_list)
    kr = ks.add_parser("revoke", help="stop a key at once")
    kr.add_argument("id", type=int)
    kr.set_defaults(func=cmd_keys_revoke)
