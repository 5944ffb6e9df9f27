"""Accounts, API keys and login sessions in the console database.

Passwords are argon2 hashes (argon2-cffi). API keys and session ids are 32 random bytes, so a
sha256 of them is stored (a fast, exact lookup; nothing to brute-force). A session cookie is the
random id and its expiry signed with AUTH_SECRET; the server-side row lets logout, a disabled
account or a changed role take effect on the next request of every process."""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from backend.access.actor import Actor, Role
from backend.access.audit import AuditLog
from backend.access.permissions import Action
from backend.access.tables import api_keys, auth_sessions, login_failures, user_preferences, users
from backend.db import aware, dialect_insert, utcnow
from backend.errors import InputError, NotFoundError, RagError
from backend.text import check_text, column_length, finite_number, text_problem

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from backend.settings import Settings

USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
KEY_PREFIX = "rok_"
FREE_FAILURES = 5  # failures in a row before an account or an address slows down
MAX_DELAY_S = 300
LAST_USED_EVERY_S = 60  # a key's last-used time is written at most this often
KEY_TTL_S = 0.5  # how long a process trusts a key lookup (revocations hold everywhere within it)
KEY_STALE_S = 300.0  # while the database is unreachable, a key seen this recently still answers
MAX_KEY_DAYS = 3650.0  # a key expires within ten years
LANGUAGES = ("en", "zh")  # the console's catalogs (console/locales): English and Simplified Chinese
MAX_KEY_BUDGET_USD = 10_000_000.0  # the budgets' own ceiling (backend.ledger.budgets.MAX_LIMIT_USD): above is a typo


class LoginRefused(RagError):
    """Wrong name or password, a disabled account, or too many failures: one message for all
    but the last, so a guesser cannot tell which names exist."""

    part = "login"


@dataclass(frozen=True)
class UserInfo:
    name: str
    display_name: str
    role: Role
    source: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    role: Role
    budget_usd: float | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or aware(self.expires_at) > now)


@dataclass(frozen=True)
class NewKey:
    """The secret is in `key` only here, once: the database keeps its hash."""

    info: KeyInfo
    key: str


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_user_name(name: str, what: str = "a user name") -> str:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise InputError(f"{what} is 1-64 letters, digits, '-', '_' or '.'", part="user" if what == "a user name" else "key")
    return name


def check_display_name(display_name: object) -> str:
    """Refused (never cut or stripped) when the column cannot hold it on both databases."""
    return check_text(display_name, "the display name", max_chars=column_length(users.c.display_name))


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InputError(f"a password has at least {MIN_PASSWORD} characters", part="password")
    if len(password) > MAX_PASSWORD or "\x00" in password:
        raise InputError(f"a password has at most {MAX_PASSWORD} characters and no NUL byte", part="password")
    return password


class AccessStore:
    """Users, keys, sessions. Every change takes the acting `Actor` and is audited."""

    def __init__(self, engine: Engine, audit: AuditLog, secret: str, session_hours: float = 12.0):
        self._engine, self._audit = engine, audit
        self._secret = secret.encode()
        self._session = timedelta(hours=session_hours)
        self._hasher = PasswordHasher()
        # Key lookups of the last KEY_TTL_S, so a busy API does not read the key row per request;
        # a revocation on any process holds everywhere within that time.
        self._keys_lock = threading.Lock()
        self._keys_seen: dict[str, tuple[float, KeyInfo | None]] = {}

    # --- users ---------------------------------------------------------------------------
    def add_user(self, actor: Actor, name: str, role: Role, password: str | None, *, display_name: str = "",
                 source: str = "password") -> UserInfo:
        self._audit.require(actor, Action.manage_users, "user.add", name, role=str(role), source=source)
        with self._audit.action(actor, "user.add", name, role=str(role), source=source, display_name=display_name):
            check_user_name(name)  # inside: a refused name or password is audited as an error
            check_display_name(display_name)
            if source == "password":
                check_password(password or "")
            with self._engine.begin() as conn:
                if conn.execute(sa.select(users.c.name).where(users.c.name == name)).first():
                    raise InputError(f"user {name!r} already exists", part="user")
                conn.execute(users.insert().values(
                    name=name, display_name=display_name, role=role.name, source=source,
                    password_hash=self._hasher.hash(password) if password else None, created_at=utcnow()))
        return self.get_user(name)

    def get_user(self, name: str) -> UserInfo:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no user {name!r}", part="user")
        return _user(row)

    def list_users(self, actor: Actor) -> list[UserInfo]:
        self._audit.require(actor, Action.manage_users, "user.list")
        with self._engine.connect() as conn:
            return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]

    def set_role(self, actor: Actor, name: str, role: Role) -> None:
        self._update_user(actor, name, "user.set_role", role=role.name)

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> None:
        if disabled and actor.kind == "user" and actor.id == name:
            raise InputError("you cannot disable your own account", part="user")
        self._update_user(actor, name, "user.disable" if disabled else "user.enable", disabled=disabled)
        if disabled:
            self._revoke_sessions(name)

    def reset_password(self, actor: Actor, name: str, password: str) -> None:
        check_password(password)
        self._update_user(actor, name, "user.reset_password", password_hash=self._hasher.hash(password))
        self._revoke_sessions(name)

    def _update_user(self, actor: Actor, name: str, action: str, **values: object) -> None:
        detail = {k: v for k, v in values.items() if k != "password_hash"}
        self._audit.require(actor, Action.manage_users, action, name, **detail)
        with self._audit.action(actor, action, name, **detail):
            check_text(name, "the user name", max_chars=column_length(users.c.name))  # OIDC names hold '@'
            with self._engine.begin() as conn:
                if conn.execute(users.update().where(users.c.name == name).values(**values)).rowcount == 0:
                    raise NotFoundError(f"no user {name!r}", part="user")

    def _revoke_sessions(self, name: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(auth_sessions.update().where(auth_sessions.c.user_name == name,
                                                      auth_sessions.c.revoked_at.is_(None)).values(revoked_at=utcnow()))

    # --- preferences -----------------------------------------------------------------------
    def language(self, actor: Actor) -> str | None:
        """The console language this actor chose last (None: never chose; the browser's decides)."""
        with self._engine.connect() as conn:
            return conn.execute(sa.select(user_preferences.c.language)
                                .where(user_preferences.c.user_name == actor.id)).scalar()

    def set_language(self, actor: Actor, language: str) -> None:
        """Remember the actor's console language for every later session, on any browser."""
        with self._audit.action(actor, "preference.language", actor.id, need=Action.view, language=language):
            if language not in LANGUAGES:
                raise InputError(f"language must be one of {', '.join(LANGUAGES)}", part="preferences")
            with self._engine.begin() as conn:
                values = {"language": language, "updated_at": utcnow()}
                conn.execute(dialect_insert(conn, user_preferences).values(user_name=actor.id, **values)
                             .on_conflict_do_update(index_elements=["user_name"], set_=values))

    # --- password login ------------------------------------------------------------------
    def authenticate(self, name: str, password: str, address: str = "") -> Actor:
        """The account's actor, or LoginRefused. Five failures in a row slow down both the
        account and the address (1 s, then doubling, at most 5 minutes between tries)."""
        subjects = [f"user:{name[:64]}", f"addr:{address[:64]}"]
        wait = self._wait_s(subjects)
        if wait > 0:
            self._audit.record(_anonymous(name), "auth.login", name, result="refused", address=address, reason="throttled")
            raise LoginRefused(f"too many failed logins: try again in {wait:.0f} s")
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first() if USER_NAME.fullmatch(name) else None
        if row is None or row.disabled or not row.password_hash or not self._verify(row.password_hash, password):
            self._fail(subjects)
            self._audit.record(_anonymous(name), "auth.login", name, result="refused", address=address)
            raise LoginRefused("wrong user name or password")
        with self._engine.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.subject.in_(subjects)))
            conn.execute(users.update().where(users.c.name == name).values(last_login_at=utcnow()))
        actor = _user_actor(row)
        self._audit.record(actor, "auth.login", name, address=address)
        return actor

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def _wait_s(self, subjects: list[str]) -> float:
        now = utcnow()
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(login_failures).where(login_failures.c.subject.in_(subjects))).all()
        wait = 0.0
        for r in rows:
            if r.failures >= FREE_FAILURES:
                delay = min(2.0 ** (r.failures - FREE_FAILURES), MAX_DELAY_S)
                wait = max(wait, delay - (now - aware(r.last_at)).total_seconds())
        return wait

    def _fail(self, subjects: list[str]) -> None:
        now = utcnow()
        with self._engine.begin() as conn:
            for s in subjects:
                n = conn.execute(login_failures.update().where(login_failures.c.subject == s)
                                 .values(failures=login_failures.c.failures + 1, last_at=now)).rowcount
                if n == 0:
                    conn.execute(login_failures.insert().values(subject=s, failures=1, last_at=now))

    # --- OIDC accounts -------------------------------------------------------------------
    def oidc_actor(self, email: str, display_name: str, role: Role) -> Actor:
        """An OIDC login: the account row is created or its role refreshed from the mapping, so
        the Access page lists who has logged in. A disabled account stays refused."""
        # Refused, not cut: two long addresses with the same first 64 characters were one account.
        for value, field, column in ((email, "e-mail address", users.c.name),
                                     (display_name, "display name", users.c.display_name)):
            problem = text_problem(value, max_chars=column_length(column))
            if problem:
                raise LoginRefused(f"the identity provider's {field} {problem}")
        name = email
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
            if row is None:
                conn.execute(users.insert().values(name=name, display_name=display_name, role=role.name,
                                                   source="oidc", created_at=utcnow(), last_login_at=utcnow()))
            elif row.disabled:
                raise LoginRefused(f"the account {name} is disabled")
            else:
                conn.execute(users.update().where(users.c.name == name)
                             .values(role=role.name, display_name=display_name, last_login_at=utcnow()))
        return Actor(id=name, name=display_name or name, role=role, kind="user")

    # --- sessions (password mode) --------------------------------------------------------
    def open_session(self, actor: Actor, address: str = "") -> str:
        """A signed cookie value for a logged-in user."""
        sid = secrets.token_urlsafe(32)
        expires = utcnow() + self._session
        with self._engine.begin() as conn:
            conn.execute(auth_sessions.insert().values(id=_sha256(sid), user_name=actor.id, created_at=utcnow(),
                                                       expires_at=expires, address=address[:64]))
        payload = f"{sid}.{int(expires.timestamp())}"
        return f"{payload}.{self._sign(payload)}"

    def session_actor(self, token: str | None) -> Actor | None:
        """The user behind a cookie, or None when it is missing, tampered with, expired, logged
        out, or its account is disabled."""
        sid = self._verified_sid(token)
        if sid is None:
            return None
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(users).join(auth_sessions, auth_sessions.c.user_name == users.c.name)
                .where(auth_sessions.c.id == _sha256(sid), auth_sessions.c.revoked_at.is_(None))
                .add_columns(auth_sessions.c.expires_at)
            ).first()
        if row is None or row.disabled or aware(row.expires_at) <= utcnow():
            return None
        return _user_actor(row)

    def close_session(self, token: str | None) -> None:
        sid = self._verified_sid(token)
        if sid is None:
            return
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(auth_sessions.c.user_name).where(auth_sessions.c.id == _sha256(sid))).first()
            conn.execute(auth_sessions.update().where(auth_sessions.c.id == _sha256(sid)).values(revoked_at=utcnow()))
        if row is not None:
            self._audit.record(Actor(id=row.user_name, name=row.user_name, role=Role.viewer), "auth.logout", row.user_name)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def _verified_sid(self, token: str | None) -> str | None:
        if not token or len(token) > 512 or token.count(".") != 2:
            return None
        sid, exp, sig = token.split(".")
        if not hmac.compare_digest(self._sign(f"{sid}.{exp}"), sig):
            return None
        if not exp.isdigit() or int(exp) <= utcnow().timestamp():
            return None
        return sid

    # --- API keys ------------------------------------------------------------------------
    def create_key(self, actor: Actor, name: str, role: Role, *, expires_days: float | None = None,
                   budget_usd: float | None = None) -> NewKey:
        self._audit.require(actor, Action.manage_keys, "key.create", name, role=role.name)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self._audit.action(actor, "key.create", name, role=role.name, expires_days=expires_days,
                                budget_usd=budget_usd) as extra:
            check_user_name(name, "a key name")  # inside: a refused key is audited as an error
            if expires_days is not None:  # inf / NaN / '1e999' would make a key that never expires (or a crash)
                expires_days = finite_number(expires_days, "the key's expiry in days", MAX_KEY_DAYS, " days")
                if expires_days == 0:
                    raise InputError("the key's expiry in days must be more than 0", part="key")
            if budget_usd is not None:
                budget_usd = finite_number(budget_usd, "the key's budget", MAX_KEY_BUDGET_USD, " USD")
            with self._engine.begin() as conn:
                key_id = conn.execute(api_keys.insert().values(
                    name=name, prefix=secret[:12], secret_hash=_sha256(secret), role=role.name, budget_usd=budget_usd,
                    created_at=now, created_by=actor.id,
                    expires_at=now + timedelta(days=expires_days) if expires_days else None)).inserted_primary_key[0]
            extra["key_id"] = key_id
        return NewKey(self._key(key_id), secret)

    def list_keys(self, actor: Actor) -> list[KeyInfo]:
        self._audit.require(actor, Action.manage_keys, "key.list")
        with self._engine.connect() as conn:
            return [_key(r) for r in conn.execute(sa.select(api_keys).order_by(api_keys.c.id))]

    def revoke_key(self, actor: Actor, key_id: int) -> None:
        with self._audit.action(actor, "key.revoke", str(key_id), need=Action.manage_keys):
            with self._engine.begin() as conn:
                n = conn.execute(api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                 .values(revoked_at=utcnow())).rowcount
            if n == 0:
                raise NotFoundError(f"no active API key with id {key_id}", part="key")
        with self._keys_lock:
            self._keys_seen.clear()

    def key_actor(self, secret: str | None, end_user: str | None = None) -> Actor | None:
        """The actor of a bearer key, or None when unknown, revoked or expired. A lookup is trusted
        for KEY_TTL_S, so a revocation holds on every process within half a second."""
        if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        digest = _sha256(secret)
        with self._keys_lock:
            hit = self._keys_seen.get(digest)
        if hit is not None and time.monotonic() - hit[0] < KEY_TTL_S:
            info = hit[1]
        else:
            try:
                with self._engine.connect() as conn:
                    row = conn.execute(sa.select(api_keys).where(api_keys.c.secret_hash == digest)).first()
            except sa.exc.OperationalError:
                # Database down: traffic that needs no database goes on with what this process knew;
                # a revocation made during the outage holds once it is back.
                if hit is None or time.monotonic() - hit[0] > KEY_STALE_S:
                    raise
                log.warning("database unreachable: API key %s checked against a lookup %.0f s old",
                            hit[1].name if hit[1] else "?", time.monotonic() - hit[0])
                return self._actor_of(hit[1], end_user)
            info = _key(row) if row is not None else None
            with self._keys_lock:
                if len(self._keys_seen) > 10_000:
                    self._keys_seen.clear()
                self._keys_seen[digest] = (time.monotonic(), info)
        if info is None or not info.active(utcnow()):
            return None
        now = utcnow()
        if info.last_used_at is None or (now - aware(info.last_used_at)).total_seconds() > LAST_USED_EVERY_S:
            with self._engine.begin() as conn:
                conn.execute(api_keys.update().where(api_keys.c.id == info.id).values(last_used_at=now))
            with self._keys_lock:
                self._keys_seen[digest] = (time.monotonic(), replace(info, last_used_at=now))
        return self._actor_of(info, end_user)

    @staticmethod
    def _actor_of(info: KeyInfo | None, end_user: str | None) -> Actor | None:
        if info is None or not info.active(utcnow()):
            return None
        return Actor(id=f"key:{info.name}", name=info.name, role=info.role, kind="api_key", end_user=end_user or None)

    def _key(self, key_id: int) -> KeyInfo:
        with self._engine.connect() as conn:
            return _key(conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one())


def _user(row: sa.Row) -> UserInfo:
    return UserInfo(name=row.name, display_name=row.display_name, role=Role[row.role], source=row.source,
                    disabled=bool(row.disabled), created_at=aware(row.created_at),
                    last_login_at=aware(row.last_login_at) if row.last_login_at else None)


def _user_actor(row: sa.Row) -> Actor:
    return Actor(id=row.name, name=row.display_name or row.name, role=Role[row.role], kind="user")


def _anonymous(name: str) -> Actor:
    """Who a refused login is recorded as: the name that was typed, with no rights."""
    return Actor(id=(name or "?")[:64], name=name[:64], role=Role.viewer, kind="user")


def _key(row: sa.Row) -> KeyInfo:
    ts = lambda v: aware(v) if v else None  # noqa: E731
    return KeyInfo(id=row.id, name=row.name, prefix=row.prefix, role=Role[row.role], budget_usd=row.budget_usd,
                   created_at=aware(row.created_at), created_by=row.created_by, expires_at=ts(row.expires_at),
                   revoked_at=ts(row.revoked_at), last_used_at=ts(row.last_used_at))


def open_access(settings: "Settings", engine: Engine | None = None) -> AccessStore:
    """The access store on the console database alone (no vector store): the `users` and `keys`
    commands and the login routes use it while the console holds the Qdrant folder."""
    from backend.db import make_engine, migrate

    if engine is None:
        engine = make_engine(settings.sql_url)
        migrate(engine)
    return AccessStore(engine, AuditLog(engine), settings.signing_secret(), settings.auth_session_hours)
