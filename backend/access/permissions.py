"""The one permissions table: each action and the lowest role that may do it.

Services call `require(actor, Action.X)` before they read protected data or change anything;
`can` is for the console, which hides or disables what the role cannot use (comfort only)."""
from __future__ import annotations

from enum import Enum

from backend.access.actor import Actor, Role
from backend.errors import RagError


class Action(str, Enum):
    view = "view dashboards and runs"
    ask = "ask"
    export = "export"
    annotate = "annotate golden sets"
    review = "review golden-set items"
    save_policy = "save a policy"
    run_evaluation = "run an evaluation"
    cancel_job = "cancel a job"
    rebuild = "rebuild an index"
    snapshot_create = "create or download a snapshot"
    snapshot_restore = "restore a snapshot"
    snapshot_delete = "delete a snapshot"
    experiment = "run experiments and releases"
    set_traffic_share = "set the traffic share"
    promote = "promote"
    rollback = "roll back"
    delete_version = "delete an index version"
    edit_prices = "edit prices"
    budgets = "manage budgets"
    alert_rules = "manage alert rules"
    manage_users = "manage users"
    manage_keys = "manage API keys"
    read_audit = "read the audit log"


PERMISSIONS: dict[Action, Role] = {
    Action.view: Role.viewer,
    Action.ask: Role.viewer,
    Action.export: Role.annotator,
    Action.annotate: Role.annotator,
    Action.review: Role.annotator,
    Action.save_policy: Role.operator,
    Action.run_evaluation: Role.operator,
    Action.cancel_job: Role.operator,
    Action.rebuild: Role.operator,
    Action.snapshot_create: Role.operator,
    Action.experiment: Role.operator,
    Action.set_traffic_share: Role.operator,
    Action.snapshot_restore: Role.admin,
    Action.snapshot_delete: Role.admin,
    Action.promote: Role.admin,
    Action.rollback: Role.admin,
    Action.delete_version: Role.admin,
    Action.edit_prices: Role.admin,
    Action.budgets: Role.admin,
    Action.alert_rules: Role.admin,
    Action.manage_users: Role.admin,
    Action.manage_keys: Role.admin,
    Action.read_audit: Role.admin,
}


class PermissionDenied(RagError):
    """The actor's role is below the one the action needs."""

    part = "access"

    def __init__(self, actor: Actor, action: Action):
        self.actor, self.action, self.needed = actor, action, PERMISSIONS[action]
        super().__init__(f"{actor.name} ({actor.role}) may not {action.value}: it needs the {self.needed} role or higher")


def can(actor: Actor | None, action: Action) -> bool:
    return actor is not None and actor.role >= PERMISSIONS[action]


def require(actor: Actor, action: Action) -> None:
    if not isinstance(actor, Actor):  # a bare user string from old code must never pass as anyone
        raise TypeError(f"an Actor is required for {action.value}, got {type(actor).__name__}")
    if actor.role < PERMISSIONS[action]:
        raise PermissionDenied(actor, action)
