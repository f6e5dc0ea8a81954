"""Processes the stack started, known by pid file and proven ours by their command line.

A pid file alone is not proof: after a reboot or a crash the number may
belong to anybody. A pid counts as ours only while ``/proc/<pid>/cmdline``
still contains the service's *marker* (the absolute path of the config file
the stack rendered for it), so ``down`` can never signal a stranger, and
nothing here ever looks processes up by name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from pathlib import Path

from stack.errors import StackError

__all__ = ["PidFile", "is_alive", "owns", "tail", "terminate"]

logger = logging.getLogger(__name__)

#: How often liveness is polled while waiting for a process to exit.
_POLL_S = 0.1

#: How long a SIGKILLed process may take to disappear before we give up.
_KILL_WAIT_S = 10.0


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it is not left a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not a child of this process: its parent (init) reaps it


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the command name, which is in parentheses
    # and may itself contain spaces or parentheses.
    state = stat[stat.rindex(")") + 2 :].split(" ", 1)[0]
    return state not in ("Z", "X")


def owns(pid: int, marker: str) -> bool:
    """Whether ``pid`` is alive and one of its arguments contains ``marker``."""
    if not is_alive(pid):
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return any(marker in arg for arg in raw.decode(errors="replace").split("\0"))


class PidFile:
    """The pid of one service's process, trusted only while the process is ours."""

    def __init__(self, path: Path, marker: str) -> None:
        self.path = path
        self.marker = marker

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def owned_pid(self) -> int | None:
        """The recorded pid if that process is still ours; a stale file is removed.

        Stale means: unreadable, the process is gone, or the number now
        belongs to a process whose command line lacks our marker.
        """
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            pid = int(text)
        except ValueError:
            logger.warning("ignoring unreadable pid file %s (%r)", self.path, text[:40])
            self.remove()
            return None
        if owns(pid, self.marker):
            return pid
        if is_alive(pid):
            logger.warning(
                "pid %d in %s is not ours (its command line lacks %s): leaving it alone",
                pid,
                self.path,
                self.marker,
            )
        self.remove()
        return None


async def terminate(
    pid: int, grace_s: float, signum: signal.Signals = signal.SIGTERM
) -> bool:
    """Stop ``pid`` with ``signum`` (SIGTERM), then SIGKILL after ``grace_s`` seconds; wait for its exit.

    Returns whether SIGKILL was needed. The caller has checked that the pid
    is ours.
    """
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    if await _exited(pid, grace_s):
        return False
    logger.warning(
        "pid %d still running %.0f s after %s: sending SIGKILL",
        pid,
        grace_s,
        signum.name,
    )
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    if not await _exited(pid, _KILL_WAIT_S):
        raise StackError(
            f"pid {pid} survived SIGKILL for {_KILL_WAIT_S:.0f} s (stuck in the kernel?)"
        )
    return True


async def _exited(pid: int, within_s: float) -> bool:
    """Whether ``pid`` exits within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last ``lines`` lines of a log file, without reading it all into memory."""
    try:
        with path.open(errors="replace") as log:
            return [line.rstrip("\n") for line in deque(log, maxlen=lines)]
    except FileNotFoundError:
        return []
