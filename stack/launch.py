"""Start and stop the pipeline's processes the way the README runs them.

The demo (``riskstream demo``) and the end-to-end tests run the real
commands, ``riskstream serve``, ``faust -A app worker`` and ``riskstream
datagen``, as child processes configured through ``RISKSTREAM_*``
variables. Each child gets its own session (so the terminal's Ctrl-C
reaches only the demo, which then stops the children in order) and its own
log file, whose end is shown when a child fails to come up.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack.errors import StackError
from stack.processes import tail

__all__ = [
    "Child",
    "LaunchError",
    "faust_worker_argv",
    "riskstream_argv",
    "spawn",
    "wait_http_ok",
]

logger = logging.getLogger(__name__)

#: Seconds between two readiness checks.
POLL_S = 0.25


class LaunchError(StackError):
    """A pipeline process did not start, or did not answer in time."""


def riskstream_argv(*args: str) -> list[str]:
    """The ``riskstream`` command of this installation (the venv's console script)."""
    script = Path(sys.executable).with_name("riskstream")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "riskstream", *args]


def faust_worker_argv(*args: str) -> list[str]:
    """``faust -A app worker`` with this interpreter."""
    return [sys.executable, "-m", "faust", "-A", "app", "worker", *args]


@dataclass
class Child:
    """One running pipeline process and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(tail(self.log_path, lines))

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.process.pid, signum)

    def stop(self, timeout_s: float = 30.0, signum: int = signal.SIGTERM) -> int | None:
        """Ask the process to stop; SIGKILL it if it has not exited within ``timeout_s``."""
        if self.alive():
            self.send_signal(signum)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s (pid %d) ignored signal %d; killing it",
                    self.name,
                    self.pid,
                    signum,
                )
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, no goodbye (what a crash looks like to the rest of the system)."""
        if self.alive():
            self.process.kill()
            self.process.wait()


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` in its own session with ``env`` added to this process's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    logger.info("%s started (pid %d), log %s", name, process.pid, log_path)
    return Child(name, process, log_path)


def wait_http_ok(url: str, child: Child, timeout_s: float) -> None:
    """Wait until ``url`` answers HTTP 200; fail early (with the log's end) if ``child`` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise LaunchError(
                f"{child.name} exited with code {child.process.returncode} before {url} "
                f"answered; end of {child.log_path}:\n{child.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_S)
    raise LaunchError(
        f"{child.name} did not answer {url} within {timeout_s:.0f} s; "
        f"end of {child.log_path}:\n{child.log_tail()}"
    )
