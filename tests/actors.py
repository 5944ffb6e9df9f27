"""Ready actors for the backend tests (no tests here).

One per role, plus `user()` for a test that needs a particular id (an audit row, a ledger user or
a `created_by` it asserts on). The backend records `actor.id`, so `user("ann", Role.admin)`
shows up as "ann" wherever the old tests passed the string "ann"."""
from __future__ import annotations

from backend.access import SYSTEM, Actor, Role, system_actor

__all__ = ["ADMIN", "ANNOTATOR", "OPERATOR", "SYSTEM", "VIEWER", "Actor", "Role", "api_key", "system_actor", "user"]


def user(name: str, role: Role = Role.viewer) -> Actor:
    """A console user with this id and role (viewer unless told: a person who only asks)."""
    return Actor(id=name, name=name, role=role, kind="user")


def api_key(name: str, role: Role = Role.viewer, end_user: str | None = None) -> Actor:
    """An API key's actor as `AccessStore.key_actor` builds it (id `key:NAME`)."""
    return Actor(id=f"key:{name}", name=name, role=role, kind="api_key", end_user=end_user)


ADMIN = user("alice", Role.admin)
OPERATOR = user("olivia", Role.operator)
ANNOTATOR = user("nora", Role.annotator)
VIEWER = user("victor", Role.viewer)
