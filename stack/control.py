"""``up``, ``down``, ``status``: the local stack as a whole.

The CLI, ``make test`` and the pytest fixtures all go through these
functions, so "the stack is up" means the same thing everywhere. Calls are
serialised by a lock file in the stack folder: two ``up`` at once (a shell
and a test session) cannot start a service twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from core.progress import ticking
from core.settings import Settings
from stack.broker import KafkaService
from stack.errors import StackError
from stack.postgresql import PostgreSQLService
from stack.service import Launch, LocalService, ServiceStatus
from stack.warehouse import ClickHouseService

__all__ = [
    "BASE_SERVICES",
    "EXTRA_SERVICES",
    "SERVICE_NAMES",
    "chosen_names",
    "down",
    "services",
    "stack_root",
    "status",
    "up",
]


_CLASSES: dict[str, type[LocalService]] = {
    "kafka": KafkaService,
    "clickhouse": ClickHouseService,
    "postgresql": PostgreSQLService,
}

#: Every service, in start order.
SERVICE_NAMES = tuple(_CLASSES)

#: What ``up`` always starts.
BASE_SERVICES = ("kafka", "clickhouse")

#: What ``up`` starts only when asked (``--with``, ``RISKSTREAM_STACK_SERVICES``).
EXTRA_SERVICES = tuple(name for name in SERVICE_NAMES if name not in BASE_SERVICES)


def chosen_names(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """The base services plus ``RISKSTREAM_STACK_SERVICES`` and ``extra``, in start order."""
    wanted = {*BASE_SERVICES, *settings.stack_service_names, *extra}
    unknown = sorted(wanted - set(SERVICE_NAMES))
    if unknown:
        raise StackError(
            f"unknown service {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}"
        )
    return [name for name in SERVICE_NAMES if name in wanted]


def services(
    settings: Settings, names: Iterable[str] | None = None
) -> list[LocalService]:
    """The named services (all by default), rooted at the absolute stack folder."""
    root = stack_root(settings)
    wanted = list(SERVICE_NAMES if names is None else names)
    unknown = [name for name in wanted if name not in _CLASSES]
    if unknown:
        raise StackError(
            f"unknown service {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}"
        )
    return [_CLASSES[name](settings, root) for name in wanted]


def stack_root(settings: Settings) -> Path:
    """The absolute stack folder (a relative setting is relative to the current directory)."""
    return settings.stack_dir.resolve()


@contextlib.asynccontextmanager
async def _locked(settings: Settings) -> AsyncIterator[None]:
    """Hold the stack folder's lock (waiting in a thread, not on the event loop)."""
    root = stack_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("w") as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


async def up(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Start the services that are not running and wait until every one answers.

    ``names`` defaults to :func:`chosen_names` (the base services and
    ``RISKSTREAM_STACK_SERVICES``). Returns the names of the services this
    call started (empty when all were already up), so that a caller can
    later stop just those.
    """
    chosen = services(settings, chosen_names(settings) if names is None else names)
    async with _locked(settings):
        launches: list[tuple[LocalService, Launch]] = []
        for service in chosen:
            launches.append((service, await service.launch()))
        pending = {service.name for service in chosen}

        async def ready(service: LocalService, launch: Launch) -> None:
            try:
                await service.wait_ready(launch)
            finally:
                pending.discard(service.name)

        def describe(elapsed_s: float) -> str:
            return f"  waiting for {', '.join(sorted(pending))} to answer: {elapsed_s:.0f} s"

        async with ticking(describe):
            results = await asyncio.gather(
                *(ready(s, launch) for s, launch in launches), return_exceptions=True
            )
    failures = [result for result in results if isinstance(result, BaseException)]
    for failure in failures:
        if not isinstance(failure, StackError):
            raise failure
    if failures:
        raise StackError("\n".join(str(failure) for failure in failures))
    return [service.name for service, launch in launches if launch.started_now]


async def down(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Stop the services this stack started (all of them by default); returns those that were running."""
    chosen = services(settings, names)
    if not stack_root(settings).exists():
        return []
    async with _locked(settings):
        stopped = await asyncio.gather(
            *(service.stop() for service in reversed(chosen))
        )
    return [
        service.name
        for service, was_running in zip(reversed(chosen), stopped, strict=True)
        if was_running
    ]


async def status(settings: Settings) -> list[ServiceStatus]:
    """Each chosen service (and any other that runs), its address, our pid and whether it answers."""
    chosen = chosen_names(settings)
    shown = [
        service
        for service in services(settings)
        if service.name in chosen or service.pid_file.owned_pid() is not None
    ]
    return list(await asyncio.gather(*(service.status() for service in shown)))
