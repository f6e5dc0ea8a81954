"""What can go wrong with the local stack, each with a message a user can act on."""

from __future__ import annotations

__all__ = ["InstallError", "PortInUse", "ServiceDidNotStart", "StackError"]


class StackError(Exception):
    """Base of every local-stack failure; ``str()`` is the message for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InstallError(StackError):
    """A program the stack needs is missing and could not be installed."""


class PortInUse(StackError):
    """A port of a service is taken by a process this stack did not start."""


class ServiceDidNotStart(StackError):
    """A service exited or did not answer in time; carries the end of its log."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        self.log_tail = log_tail
        shown = "\n".join(f"    {line}" for line in log_tail) or "    (empty)"
        super().__init__(
            f"{message}\n  last {len(log_tail)} lines of its log:\n{shown}"
        )
