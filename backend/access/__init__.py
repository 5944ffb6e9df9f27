"""Who is acting and what they may do: the `Actor`, the one permissions table, accounts, API keys,
login sessions and the folders that may be indexed.

Every backend call that reads protected data or changes state takes an `Actor` and asks
`require(actor, Action.X)` before it does anything; the console only hides what the backend refuses.
Imports only the settings, the database layer and the audit log."""
from backend.access.actor import SYSTEM, Actor, Role, system_actor
from backend.access.permissions import PERMISSIONS, Action, PermissionDenied, can, require

__all__ = ["SYSTEM", "Actor", "Role", "system_actor", "PERMISSIONS", "Action", "PermissionDenied", "can", "require"]
