"""Errors that name the part that failed, so every caller can show a readable message."""
from __future__ import annotations


class RagError(Exception):
    """Base error: `part` names the failing component (input, vector store, LLM, ...)."""

    part = "engine"

    def __init__(self, message: str, part: str | None = None):
        super().__init__(message)
        if part:
            self.part = part

    def __str__(self) -> str:
        return f"{self.part}: {self.args[0]}"


class InputError(RagError):
    """Bad input from the user: refused before any model call."""

    part = "input"


class NotFoundError(InputError):
    """An unknown policy, alias, collection or dataset."""


def root_cause_name(exc: BaseException) -> str:
    """The root cause's class (e.g. APITimeoutError behind a DependencyError), for ledger rows."""
    return type(exc.__cause__ or exc).__name__


class DependencyError(RagError):
    """A service the engine needs is down, slow or answered with an error."""


class BudgetExceeded(RagError):
    part = "budget"
