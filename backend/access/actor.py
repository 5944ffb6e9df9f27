"""The acting party of every protected call: a console user, an API key, or the system."""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

ActorKind = Literal["user", "api_key", "system"]


class Role(IntEnum):
    """Roles, lowest first: each holds everything the roles below it hold."""

    viewer = 1
    annotator = 2
    operator = 3
    admin = 4

    @classmethod
    def parse(cls, name: str) -> "Role":
        try:
            return cls[name.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: one of {', '.join(r.name for r in cls)}") from None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Actor:
    """`id` is what the audit log and the ledger record; `end_user` is the person an API key
    speaks for (X-End-User), so budgets, sticky release assignment and the ledger follow them."""

    id: str
    name: str
    role: Role
    kind: ActorKind = "user"
    end_user: str | None = None

    @property
    def ledger_user(self) -> str:
        return self.end_user or self.id

    def __str__(self) -> str:
        return self.id


def system_actor(user: str | None = None) -> Actor:
    """The command line and background work: whoever has the shell and the database is trusted.
    The audit log records the OS user (or the `--user` given)."""
    who = user or _os_user()
    return Actor(id=who, name=who, role=Role.admin, kind="system")


def _os_user() -> str:
    try:
        return getpass.getuser() or "system"
    except Exception:  # no passwd entry (containers with a bare uid)
        return "system"


SYSTEM = Actor(id="system", name="system", role=Role.admin, kind="system")
