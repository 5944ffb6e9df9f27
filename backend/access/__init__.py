"""Who is acting and what they may do: the `Actor`, the one permissions table, accounts, API keys,
login sessions, the folders that may be indexed, and the audit log every state change writes (audit).

Every backend call that reads protected data or changes state takes an `Actor` and asks
`require(actor, Action.X)` before it does anything; the console only hides what the backend refuses.
May import only settings, errors, text, db and exports."""
from backend.access.actor import SYSTEM, Actor, Role, system_actor
from backend.access.permissions import PERMISSIONS, Action, PermissionDenied, can, require

__all__ = ["SYSTEM", "Actor", "Role", "system_actor", "PERMISSIONS", "Action", "PermissionDenied", "can", "require"]
