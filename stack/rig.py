"""One run of the pipeline's processes on the local stack, for the end-to-end tests and the bench.

Both start the commands the README runs (``riskstream serve``, ``faust -A
app worker``, ``riskstream datagen``) against names of their own (a run
id in every topic and database), stop what they started on every way
out, and read the result as the stack's admin. This module is that part,
once: :class:`RunRig` holds a run's names and children; the harness
(``tests/e2e/harness.py``) and the bench (``bench/stream.py``) wrap it
with what only they do (the tests' accounting, the bench's timing).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from core.security import kafka_client_options
from core.settings import Settings
from datagen.generator import declare_topic
from stack import postgresql as stack_postgresql
from stack.launch import (
    Child,
    LaunchError,
    faust_worker_argv,
    riskstream_argv,
    spawn,
    wait_http_ok,
)
from stack.warehouse import ADMIN_USER
from tables.sink import Sink
from tables.sinks import build_sink

__all__ = [
    "RunRig",
    "clickhouse_admin_query",
    "get_json",
    "partitions_split",
]

logger = logging.getLogger(__name__)


def clickhouse_admin_query(
    settings: Settings, query: str, timeout_s: float = 60.0
) -> str:
    """Run ``query`` over HTTP as the stack's admin; the answer's text.

    On the cluster topology it asks the first node (DDL there carries
    ``ON CLUSTER``, so one node is enough to reach them all).
    """
    node = settings.topology.clickhouse[0]
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.http_port}/",
        data=query.encode(),
        headers={"X-ClickHouse-User": ADMIN_USER},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        text: str = response.read().decode()
        return text


def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON body (a worker's ``/stats``)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def partitions_split(urls: Sequence[str], partitions: int, ready: bool = True) -> bool:
    """Every worker at ``urls`` owning partitions (and ``ready``, if asked), none shared, all covered."""
    owned: list[int] = []
    for url in urls:
        try:
            local = get_json(f"{url}/stats/local")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if not local["partitions"] or (ready and not local["pipeline"]["ready"]):
            return False
        owned.extend(local["partitions"])
    return sorted(owned) == list(range(partitions))


class RunRig:
    """A run's names (``prefix`` + run id + purpose) and the children it started, stopped in reverse."""

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        repository: Path,
        prefix: str,
        run_id: str | None = None,
        partitions: int = 4,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.repository = repository
        self.prefix = prefix
        self.run_id = run_id or secrets.token_hex(4)
        self.partitions = partitions
        self.start_timeout_s = start_timeout_s
        self.children: list[Child] = []

    # --- names -----------------------------------------------------------------------
    def topic(self, purpose: str) -> str:
        return f"{self.prefix}-{self.run_id}-{purpose}"

    def database(self, purpose: str = "") -> str:
        name = f"{self.prefix}_{self.run_id}" + (f"_{purpose}" if purpose else "")
        return name.replace("-", "_")

    # --- children ----------------------------------------------------------------------
    def spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log: str
    ) -> Child:
        """Start a child whose log is ``log`` in the work folder; it stops with the rig."""
        child = spawn(name, argv, env, self.workdir / log)
        self.children.append(child)
        return child

    def release(self, child: Child, timeout_s: float = 30.0) -> None:
        """Stop ``child`` now and forget it."""
        child.stop(timeout_s=timeout_s)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """Stop every child still running, the last started first."""
        for child in reversed(self.children):
            child.stop(timeout_s=timeout_s)
        self.children.clear()

    def serve(
        self,
        port: int,
        replicas: int = 1,
        served_name: str | None = None,
        pmml: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[Child, list[str]]:
        """``riskstream serve --replicas N`` from ``port``; the process and its URLs once all are ready."""
        model = ["--pmml", str(pmml)] if pmml is not None else []
        child = self.spawn(
            f"model server :{port}" if replicas == 1 else f"{replicas} model server(s)",
            riskstream_argv(
                "serve",
                "--replicas",
                str(replicas),
                "--port",
                str(port),
                "--served-name",
                served_name or self.settings.model_name,
                "--repository",
                str(self.repository),
                *model,
            ),
            env or {},
            f"model-server-{port}.log"
            if replicas == 1
            else f"model-servers-{replicas}.log",
        )
        urls = [f"http://127.0.0.1:{port + i}" for i in range(replicas)]
        try:
            for url in urls:
                wait_http_ok(f"{url}/v2/health/ready", child, self.start_timeout_s)
        except LaunchError:
            self.release(child)
            raise
        return child, urls

    def start_workers(
        self,
        names: Sequence[str],
        ports: Sequence[int],
        env: Mapping[str, str],
        log_level: str = "info",
        logs: Sequence[str] | None = None,
    ) -> list[Child]:
        """``faust -A app worker`` per name on its web port; returned once each answers /stats/local.

        Whether they split the partitions is the caller's wait
        (:func:`partitions_split`): the bench fails differently from a test.
        """
        started = [
            self.spawn(
                name,
                faust_worker_argv("-l", log_level),
                {**env, "RISKSTREAM_WEB_PORT": str(port)},
                log,
            )
            for name, port, log in zip(
                names, ports, logs or [f"{n}.log" for n in names], strict=True
            )
        ]
        for child, port in zip(started, ports, strict=True):
            wait_http_ok(
                f"http://127.0.0.1:{port}/stats/local", child, self.start_timeout_s
            )
        return started

    def generator(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        log: str,
        schema_from: str = "repository",
    ) -> Child:
        """``riskstream datagen ARGS`` in the background, the schema from ``schema_from``."""
        return self.spawn(
            "generator",
            riskstream_argv("datagen", "--schema-from", schema_from, *args),
            env,
            log,
        )

    # --- Kafka -------------------------------------------------------------------------
    def declare(self, topic: str) -> None:
        """Create ``topic`` as the app would: its partitions, the topology's replication and topic configs."""
        asyncio.run(
            declare_topic(
                self.settings.kafka_bootstrap,
                topic,
                self.partitions,
                kafka_client_options(self.settings),
                replication_factor=self.settings.replication_factor,
                config=self.settings.topic_config,
            )
        )

    async def delete_topics(self) -> None:
        """Delete every topic of this run (its name holds the run id: features, dead letters, Faust's)."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap,
            **kafka_client_options(self.settings),
        )
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if self.run_id in t]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()

    # --- the stores --------------------------------------------------------------------
    def clickhouse(self, query: str) -> str:
        """Run ``query`` as the stack's admin (the run's databases are its own)."""
        return clickhouse_admin_query(self.settings, query)

    def sink(self, name: str, database: str) -> Sink:
        """The sink ``name`` on one of the run's databases, as the stack's admin."""
        admin: dict[str, Any] = (
            {
                "host": str(stack_postgresql.socket_dir(self.settings)),
                "user": stack_postgresql.ADMIN_USER,
            }
            if name == "postgresql"
            else {"user": ADMIN_USER}
        )
        return build_sink(name, self.settings, password="", database=database, **admin)

    def drop_database(self, database: str, sinks: Sequence[str]) -> None:
        """Drop ``database`` in ClickHouse and, if used, PostgreSQL (best effort: the figures are taken)."""
        on_cluster = (
            f" ON CLUSTER {self.settings.clickhouse_cluster}"
            if self.settings.clickhouse_cluster
            else ""
        )
        try:
            self.clickhouse(f"DROP DATABASE IF EXISTS {database}{on_cluster}")
            if "postgresql" in sinks:
                asyncio.run(
                    stack_postgresql.admin_execute(
                        self.settings,
                        [f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'],
                    )
                )
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("cannot drop %s: %s", database, exc)

    def worker_env(
        self,
        app_id: str,
        topic: str,
        database: str,
        servers: Sequence[str],
        sinks: Sequence[str],
    ) -> dict[str, str]:
        """A worker's configuration for one run: this stack, its topics, its database as the admin."""
        return {
            # the same stack as the run's (the cluster topology's, say)
            **self.settings.stack_env(),
            "RISKSTREAM_SINKS": ",".join(sinks),
            "RISKSTREAM_POSTGRESQL_HOST": str(
                stack_postgresql.socket_dir(self.settings)
            ),
            "RISKSTREAM_POSTGRESQL_USER": stack_postgresql.ADMIN_USER,
            "RISKSTREAM_POSTGRESQL_DATABASE": database,
            "RISKSTREAM_APP_ID": app_id,
            "RISKSTREAM_FEATURE_TOPIC": topic,
            "RISKSTREAM_TOPIC_PARTITIONS": str(self.partitions),
            "RISKSTREAM_CLICKHOUSE_DATABASE": database,
            # A database of the run's own: the app's user may use its own one only.
            "RISKSTREAM_CLICKHOUSE_USER": ADMIN_USER,
            "RISKSTREAM_CLICKHOUSE_PASSWORD": "",
            "RISKSTREAM_MODEL_SERVERS": ",".join(servers),
            "RISKSTREAM_MODEL_REPOSITORY": str(self.repository),
            "RISKSTREAM_DATA_DIR": str(self.workdir / "data"),
        }
