"""Tables of access control (created by migration 0007_access): accounts, API keys, login
sessions and the failed-login counters that slow down guessing; and each user's console
preferences (migration 0014_user_preferences)."""
from __future__ import annotations

import sqlalchemy as sa

from backend.db import metadata

TS = sa.DateTime(timezone=True)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=True),  # None: an OIDC account (no password)
    sa.Column("source", sa.String(20), nullable=False, server_default="password"),  # password | oidc
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_login_at", TS, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),  # shown to recognise a key; not enough to use it
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),  # sha256 of the whole key
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("budget_usd", sa.Float, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("last_used_at", TS, nullable=True),
)

auth_sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the random session id in the cookie
    sa.Column("user_name", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("subject", sa.String(200), primary_key=True),  # "user:NAME" or "addr:IP"
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_at", TS, nullable=False),
)

user_preferences = sa.Table(
    "user_preferences",
    metadata,
    # Any actor id (local-admin, a password account, an OIDC e-mail): not a key into `users`.
    sa.Column("user_name", sa.String(200), primary_key=True),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)
