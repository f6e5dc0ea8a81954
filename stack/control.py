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
from core.topology import TopologyKind, local_topology
from stack.broker import KafkaService
from stack.errors import StackError
from stack.postgresql import PostgreSQLService
from stack.service import Launch, LocalService, ServiceStatus
from stack.warehouse import ClickHouseService
from stack.zookeeper import ZooKeeperService

__all__ = [
    "EXTRA_SERVICES",
    "SERVICE_NAMES",
    "base_names",
    "chosen_names",
    "down",
    "service_names",
    "services",
    "stack_root",
    "status",
    "up",
]


#: What ``up`` starts only when asked (``--with``, ``RISKSTREAM_STACK_SERVICES``).
EXTRA_SERVICES = ("postgresql",)


def _topology_services(settings: Settings, root: Path) -> list[LocalService]:
    """The services of RISKSTREAM_STACK_TOPOLOGY's nodes, in start order, then the extra ones.

    Single: ``kafka``, ``clickhouse``. Cluster: ``zookeeper`` (the
    replicated tables need it from their first query), ``kafka-1`` to
    ``kafka-3`` (one controller quorum), ``clickhouse-s1r1`` to
    ``clickhouse-s2r2``. Then ``postgresql`` on either.
    """
    topology = settings.topology
    return [
        *(ZooKeeperService(settings, root, node) for node in topology.zookeeper),
        *(KafkaService(settings, root, node) for node in topology.kafka),
        *(ClickHouseService(settings, root, node) for node in topology.clickhouse),
        PostgreSQLService(settings, root),
    ]


def service_names(settings: Settings) -> list[str]:
    """Every service of the settings' topology, in start order."""
    return [
        service.name for service in _topology_services(settings, stack_root(settings))
    ]


def base_names(settings: Settings) -> list[str]:
    """What ``up`` always starts: the topology's Kafka and ClickHouse (and ZooKeeper) nodes."""
    return [name for name in service_names(settings) if name not in EXTRA_SERVICES]


def _node_names(kind: TopologyKind) -> list[str]:
    nodes = local_topology(
        kind,
        kafka_port=0,
        kafka_controller_port=0,
        clickhouse_port=0,
        clickhouse_http_port=0,
        clickhouse_interserver_port=0,
        zookeeper_port=0,
    )
    return [
        *(node.name for node in nodes.zookeeper),
        *(node.name for node in nodes.kafka),
        *(node.name for node in nodes.clickhouse),
    ]


#: Every service name of either topology (the CLI's choices).
SERVICE_NAMES = tuple(
    dict.fromkeys([*_node_names("single"), *_node_names("cluster"), *EXTRA_SERVICES])
)


def chosen_names(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """The base services plus ``RISKSTREAM_STACK_SERVICES`` and ``extra``, in start order."""
    wanted = {*base_names(settings), *settings.stack_service_names, *extra}
    known = service_names(settings)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise StackError(
            f"unknown service {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return [name for name in known if name in wanted]


def services(
    settings: Settings, names: Iterable[str] | None = None
) -> list[LocalService]:
    """The named services (all by default), rooted at the absolute stack folder, in start order."""
    everything = _topology_services(settings, stack_root(settings))
    by_name = {service.name: service for service in everything}
    wanted = list(by_name if names is None else names)
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise StackError(
            f"unknown service {', '.join(unknown)} in the {settings.stack_topology} "
            f"topology; known: {', '.join(by_name)}"
        )
    return [by_name[name] for name in wanted]


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
    launches: list[tuple[LocalService, Launch]] = []
    async with _locked(settings):
        try:
            # ZooKeeper answers before the ClickHouse servers that need it start.
            for wave in sorted({service.wave for service in chosen}):
                await _start_together(
                    [service for service in chosen if service.wave == wave], launches
                )
        except BaseException:
            # A failed (or interrupted) up leaves nothing of its own running.
            await asyncio.gather(
                *(s.stop() for s, launch in reversed(launches) if launch.started_now)
            )
            raise
    return [service.name for service, launch in launches if launch.started_now]


async def _start_together(
    chosen: list[LocalService], launches: list[tuple[LocalService, Launch]]
) -> None:
    """Launch each (in order), then wait for all at once: a quorum answers only once its voters run."""
    started: list[tuple[LocalService, Launch]] = []
    for service in chosen:
        started.append((service, await service.launch()))
    launches.extend(started)
    pending = {service.name for service in chosen}

    async def ready(service: LocalService, launch: Launch) -> None:
        try:
            await service.wait_ready(launch)
        finally:
            pending.discard(service.name)

    def describe(elapsed_s: float) -> str:
        return (
            f"  waiting for {', '.join(sorted(pending))} to answer: {elapsed_s:.0f} s"
        )

    async with ticking(describe):
        results = await asyncio.gather(
            *(ready(s, launch) for s, launch in started), return_exceptions=True
        )
    failures = [result for result in results if isinstance(result, BaseException)]
    for failure in failures:
        if not isinstance(failure, StackError):
            raise failure
    if failures:
        raise StackError("\n".join(str(failure) for failure in failures))


async def down(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Stop the services this stack started (all of them by default); returns those that were running."""
    chosen = services(settings, names)
    if not stack_root(settings).exists():
        return []
    stopped: list[str] = []
    async with _locked(settings):
        # The last wave first: ClickHouse ends its ZooKeeper sessions before ZooKeeper goes
        # (sessions left open keep their replicas "active" for 30 s after the next start).
        for wave in sorted({service.wave for service in chosen}, reverse=True):
            in_wave = [service for service in reversed(chosen) if service.wave == wave]
            results = await asyncio.gather(*(service.stop() for service in in_wave))
            stopped += [
                service.name
                for service, was_running in zip(in_wave, results, strict=True)
                if was_running
            ]
    return stopped


async def status(settings: Settings) -> list[ServiceStatus]:
    """Each chosen service (and any other that runs), its address, our pid and whether it answers."""
    chosen = chosen_names(settings)
    shown = [
        service
        for service in services(settings)
        if service.name in chosen or service.pid_file.owned_pid() is not None
    ]
    return list(await asyncio.gather(*(service.status() for service in shown)))
