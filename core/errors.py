"""Domain errors that every channel (HTTP, Slack, email) maps to a short message."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: the message is safe to show to the person who acted."""


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class AlreadyDecided(Conflict):
    """Someone decided this suggestion first."""


class CycleRunning(Conflict):
    """Another process is running this bot's cycle."""


class InvalidInput(DomainError):
    """Input that passed parsing but breaks a rule; `field` names what is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
