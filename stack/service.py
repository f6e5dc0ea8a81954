"""One local server process: prepare it, launch it, wait until it answers, stop it.

Kafka and ClickHouse differ only in how they are installed, configured,
started and asked "are you there?"; everything about pid files, logs,
timeouts and the start/stop log lines is shared here so that both behave
the same under ``riskstream stack up | down | status``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import ClassVar

from core.settings import Settings
from stack.errors import PortInUse, ServiceDidNotStart
from stack.processes import PidFile, is_alive, tail, terminate

__all__ = [
    "Launch",
    "Listener",
    "LocalService",
    "RunAs",
    "ServiceStatus",
    "port_answers",
    "render_conf",
]

logger = logging.getLogger(__name__)

#: Seconds between two readiness probes while a service starts.
_PROBE_INTERVAL_S = 0.5

#: Seconds one probe may take (connect + request) before it counts as "no answer".
PROBE_TIMEOUT_S = 5.0

#: Lines of a service's log shown when it fails to start.
LOG_TAIL_LINES = 30


def render_conf(name: str, destination: Path, **values: object) -> None:
    """Write the packaged ``stack/conf/<name>`` to ``destination`` with its placeholders filled."""
    template = resources.files("stack").joinpath("conf", name).read_text()
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(
        Template(template).substitute({k: str(v) for k, v in values.items()})
    )


async def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@dataclass(frozen=True)
class Listener:
    """A port a service listens on (always on loopback)."""

    purpose: str
    port: int
    #: The environment variable that moves it.
    variable: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ServiceStatus:
    """What ``riskstream stack status`` reports about one service."""

    name: str
    address: str
    pid: int | None
    answers: bool
    details: str = ""

    @property
    def state(self) -> str:
        """up; down; not answering (our process runs but is mute); up (not ours)."""
        if self.answers:
            return "up" if self.pid is not None else "up (not ours)"
        return "not answering" if self.pid is not None else "down"

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "-"
        return f"{self.name:<16} {self.address:<16} {self.state:<14} {pid:<11} {self.details}".rstrip()


@dataclass(frozen=True)
class RunAs:
    """An account a server process runs as (a server that refuses root)."""

    name: str
    uid: int
    gid: int


@dataclass
class Launch:
    """A service process that is running, possibly not answering yet."""

    pid: int
    #: Set when this call spawned it (its exit code is then known); None if found running.
    process: subprocess.Popen[bytes] | None
    started_at: float

    @property
    def started_now(self) -> bool:
        return self.process is not None

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None (-1 when unknown)."""
        if self.process is not None:
            return self.process.poll()
        return None if is_alive(self.pid) else -1


class LocalService(abc.ABC):
    """A server the stack runs from its own config under ``<stack_dir>/<name>/``."""

    #: The service's name in ``stack status``, ``stop NAME``; its folder, log and pid file.
    name: str
    #: Start order: every service of a lower wave answers before the next wave starts.
    wave: ClassVar[int] = 1
    #: What asks the server to stop (PostgreSQL wants SIGINT: its SIGTERM waits for clients to leave).
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.home = root / self.name
        self.log_path = root / "logs" / f"{self.name}.log"
        self.timeout_s = settings.stack_timeout_s
        # The rendered config's absolute path is on the process's command
        # line: it is what proves a pid is ours and not a stranger's.
        self.pid_file = PidFile(
            root / "run" / f"{self.name}.pid", marker=str(self.config_path)
        )

    # --- what each service defines ---------------------------------------

    @property
    @abc.abstractmethod
    def config_path(self) -> Path:
        """The config file rendered for this service (given on its command line)."""

    @property
    @abc.abstractmethod
    def listeners(self) -> list[Listener]:
        """Every port the service listens on; the first one is its address."""

    @abc.abstractmethod
    async def prepare(self) -> None:
        """Install what is missing, render the config, initialise the data dir."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line (valid after ``prepare``)."""

    @abc.abstractmethod
    async def answers(self) -> bool:
        """One readiness probe: a real request a client would make."""

    def run_as(self) -> RunAs | None:
        """The unprivileged account the server must run as, or None for the current user."""
        return None

    # --- shared behaviour ------------------------------------------------

    @property
    def address(self) -> str:
        return self.listeners[0].address

    def details(self) -> str:
        """The other listeners, shown by ``status`` after the address."""
        return ", ".join(
            f"{listener.purpose} {listener.address}" for listener in self.listeners[1:]
        )

    async def launch(self) -> Launch:
        """Our running process, or a new one spawned after ``prepare``."""
        pid = self.pid_file.owned_pid()
        if pid is not None:
            return Launch(pid=pid, process=None, started_at=time.monotonic())
        for listener in self.listeners:
            if await port_answers(listener.port):
                raise PortInUse(
                    f"{self.name} cannot start: port {listener.port} ({listener.purpose}) is used by a "
                    f"process this stack did not start; stop that process or set {listener.variable}"
                )
        await self.prepare()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(
                f"==== riskstream stack: starting {self.name} at {self.address}, {stamp} ====\n".encode()
            )
            log.flush()
            account = self.run_as()
            # Not asyncio's subprocess: its transport kills a still-running
            # child when closed, and the server must outlive this command.
            process = subprocess.Popen(  # noqa: ASYNC220
                self.command(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C on `stack up` or the end of `make`
                # does not take the server down with it.
                start_new_session=True,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
            )
        self.pid_file.write(process.pid)
        return Launch(pid=process.pid, process=process, started_at=time.monotonic())

    async def wait_ready(self, launch: Launch) -> None:
        """Return once the service answers; stop it and fail if it exits or times out."""
        deadline = launch.started_at + self.timeout_s
        while True:
            code = launch.exit_code()
            if code is not None:
                self.pid_file.remove()
                raise ServiceDidNotStart(
                    f"{self.name} exited with code {code} while starting (log: {self.log_path})",
                    tail(self.log_path, LOG_TAIL_LINES),
                )
            if await self.answers():
                break
            if time.monotonic() >= deadline:
                # The log's end before stopping it: why it hangs, not how it shut down.
                log_tail = tail(self.log_path, LOG_TAIL_LINES)
                await terminate(launch.pid, self.timeout_s, self.stop_signal)
                self.pid_file.remove()
                raise ServiceDidNotStart(
                    f"{self.name} did not answer at {self.address} within {self.timeout_s:.0f} s "
                    f"(RISKSTREAM_STACK_TIMEOUT_S); stopped it (log: {self.log_path})",
                    log_tail,
                )
            await asyncio.sleep(_PROBE_INTERVAL_S)
        if launch.started_now:
            logger.info(
                "%s started at %s (pid %d, %.1f s, log %s)",
                self.name,
                self.address,
                launch.pid,
                time.monotonic() - launch.started_at,
                self.log_path,
            )
        else:
            logger.info(
                "%s already up at %s (pid %d)", self.name, self.address, launch.pid
            )

    async def stop(self) -> bool:
        """Stop our process if it runs; returns whether there was one to stop."""
        pid = self.pid_file.owned_pid()
        if pid is None:
            logger.info("%s is not running (nothing to stop)", self.name)
            return False
        started = time.monotonic()
        killed = await terminate(pid, self.timeout_s, self.stop_signal)
        self.pid_file.remove()
        logger.info(
            "%s stopped at %s (pid %d, %.1f s%s)",
            self.name,
            self.address,
            pid,
            time.monotonic() - started,
            ", killed after the SIGTERM grace period" if killed else "",
        )
        return True

    async def status(self) -> ServiceStatus:
        return ServiceStatus(
            name=self.name,
            address=self.address,
            pid=self.pid_file.owned_pid(),
            answers=await self.answers(),
            details=self.details(),
        )
