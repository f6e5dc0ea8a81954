"""The local ClickHouse server: Debian's package, our config, data under the stack folder.

The system service (``/etc/clickhouse-server``, ``/var/lib/clickhouse``)
is never used: the server runs as a plain process with the config that
``stack up`` renders into ``<stack_dir>/clickhouse``, so it needs no root
rights on its files and ``down`` can stop exactly it.

Two users: :data:`ADMIN_USER` (no password, loopback only) for the stack
itself and operators, and the app's (``RISKSTREAM_CLICKHOUSE_USER``), with
the configured password, its own database only and no DDL. ClickHouse
18.16 has no GRANT: a user allowed DDL may also ``SYSTEM SHUTDOWN`` the
server, so the app's user gets ``allow_ddl = 0`` and ``up`` creates the
app's database, table and view as the admin once the server answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from pathlib import Path

from asynch import errors as asynch_errors
from asynch.connection import Connection

from core.settings import Settings
from core.topology import ClickHouseNode, Topology
from stack.errors import StackError
from stack.installer import ensure_program
from stack.service import (
    PROBE_TIMEOUT_S,
    Launch,
    Listener,
    LocalService,
    port_answers,
    render_conf,
)
from tables.predictions import prepare_schema, quote_identifier

__all__ = ["ADMIN_USER", "ClickHouseService", "app_user_xml", "cluster_config_xml"]

logger = logging.getLogger(__name__)

#: The stack's administrative user: no password, answers on loopback only.
ADMIN_USER = "default"

#: A user name that is safe inside the XML element name it becomes.
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def app_user_xml(settings: Settings) -> str:
    """The ``<users>`` entry of the app's user: hashed password, loopback, its database, no DDL."""
    user = settings.clickhouse_user
    if user == ADMIN_USER:
        return ""
    if not _USER_NAME.match(user):
        raise StackError(
            f"RISKSTREAM_CLICKHOUSE_USER {user!r} is not a valid user name "
            "(letters, digits, _ and -, not starting with a digit or -)"
        )
    try:
        quote_identifier(settings.clickhouse_database)
    except ValueError as error:
        raise StackError(f"RISKSTREAM_CLICKHOUSE_DATABASE: {error}") from None
    digest = hashlib.sha256(
        settings.clickhouse_password.get_secret_value().encode()
    ).hexdigest()
    return (
        f"    <{user}>\n"
        f"      <password_sha256_hex>{digest}</password_sha256_hex>\n"
        "      <networks>\n"
        "        <ip>127.0.0.1</ip>\n"
        "        <ip>::1</ip>\n"
        "      </networks>\n"
        "      <profile>app</profile>\n"
        "      <quota>default</quota>\n"
        "      <allow_databases>\n"
        f"        <database>{settings.clickhouse_database}</database>\n"
        "      </allow_databases>\n"
        f"    </{user}>\n"
    )


def cluster_config_xml(node: ClickHouseNode, topology: Topology) -> str:
    """The config a replica of the cluster topology adds: who it is, its peers, ZooKeeper.

    ``macros`` name its shard and replica the way the reference's DDL (and
    :mod:`tables.predictions`) use them in the ZooKeeper path of a
    replicated table; ``remote_servers`` declares every replica of every
    shard as cluster ``riskstream`` (``internal_replication``: a
    Distributed insert writes one replica, replication copies it).
    """
    if topology.kind == "single":
        return ""
    shards: dict[int, list[ClickHouseNode]] = {}
    for server in topology.clickhouse:
        shards.setdefault(server.shard, []).append(server)
    remote = "".join(
        "      <shard>\n        <internal_replication>true</internal_replication>\n"
        + "".join(
            f"        <replica><host>127.0.0.1</host><port>{replica.port}</port></replica>\n"
            for replica in replicas
        )
        + "      </shard>\n"
        for _, replicas in sorted(shards.items())
    )
    zookeepers = "".join(
        f"    <node><host>127.0.0.1</host><port>{zookeeper.port}</port></node>\n"
        for zookeeper in topology.zookeeper
    )
    return (
        f"  <interserver_http_port>{node.interserver_port}</interserver_http_port>\n"
        "  <interserver_http_host>127.0.0.1</interserver_http_host>\n"
        f"  <macros>\n    <shard>{node.shard:02d}</shard>\n"
        f"    <replica>s{node.shard}r{node.replica}</replica>\n  </macros>\n"
        f"  <zookeeper>\n{zookeepers}  </zookeeper>\n"
        "  <distributed_ddl>\n    <path>/clickhouse/task_queue/ddl</path>\n  </distributed_ddl>\n"
        f"  <remote_servers>\n    <{topology.clickhouse_cluster}>\n{remote}"
        f"    </{topology.clickhouse_cluster}>\n  </remote_servers>\n"
    )


class ClickHouseService(LocalService):
    """One ``clickhouse-server``: the single topology's, or a replica of a shard of the cluster's."""

    name = "clickhouse"

    def __init__(
        self, settings: Settings, root: Path, node: ClickHouseNode | None = None
    ) -> None:
        self.topology = settings.topology
        self.node = node if node is not None else self.topology.clickhouse[0]
        self.name = self.node.name
        super().__init__(settings, root)
        self.data_dir = self.home / "data"
        self.users_path = self.home / "users.xml"
        self.server = "clickhouse-server"

    @property
    def config_path(self) -> Path:
        return self.home / "config.xml"

    @property
    def listeners(self) -> list[Listener]:
        return [
            Listener("native", self.node.port, "RISKSTREAM_CLICKHOUSE_PORT"),
            Listener("http", self.node.http_port, "RISKSTREAM_CLICKHOUSE_HTTP_PORT"),
            *(
                [
                    Listener(
                        "interserver",
                        self.node.interserver_port,
                        "RISKSTREAM_CLICKHOUSE_INTERSERVER_PORT",
                    )
                ]
                if self.topology.kind == "cluster"
                else []
            ),
        ]

    async def prepare(self) -> None:
        self.server = await ensure_program(
            "clickhouse-server", ["clickhouse-server", "clickhouse-client"]
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        render_conf(
            "clickhouse-users.xml",
            self.users_path,
            app_user=app_user_xml(self.settings),
        )
        self.users_path.chmod(0o600)
        render_conf(
            "clickhouse-config.xml",
            self.config_path,
            port=self.node.port,
            http_port=self.node.http_port,
            data_dir=self.data_dir,
            users_config=self.users_path,
            cluster_config=cluster_config_xml(self.node, self.topology),
        )

    def command(self) -> list[str]:
        return [self.server, f"--config-file={self.config_path}"]

    async def wait_ready(self, launch: Launch) -> None:
        """Once it answers, create the app's database, tables and views (its user may not).

        On the cluster the first replica does it for all, ``ON CLUSTER``
        (the DDL queue waits for the other servers to come up).
        """
        await super().wait_ready(launch)
        if self.node != self.topology.clickhouse[0]:
            return
        cluster = self.topology.clickhouse_cluster
        connection = self._admin_connection()
        try:
            await connection.connect()
            async with connection.cursor() as cursor:
                for statement in await prepare_schema(
                    cursor, self.settings.clickhouse_database, cluster
                ):
                    logger.info("clickhouse: %s", statement.splitlines()[0])
        except (asynch_errors.Error, OSError, EOFError) as error:
            raise StackError(
                f"clickhouse answers but the app's schema could not be created "
                f"in {self.settings.clickhouse_database}: {error}"
            ) from None
        finally:
            with contextlib.suppress(asynch_errors.Error, OSError):
                await connection.close()
        logger.info(
            "clickhouse: database %s ready for user %s",
            self.settings.clickhouse_database,
            self.settings.clickhouse_user,
        )

    def _admin_connection(self) -> Connection:
        return Connection(host="127.0.0.1", port=self.node.port, user=ADMIN_USER)

    async def answers(self) -> bool:
        if not await port_answers(self.node.port):
            return False
        connection = self._admin_connection()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await connection.connect()
                async with connection.cursor() as cursor:
                    await cursor.execute("SELECT 1")
                    return bool(await cursor.fetchone() == (1,))
        except (asynch_errors.Error, OSError, EOFError, TimeoutError) as error:
            logger.debug("clickhouse probe failed: %r", error)
            return False
        finally:
            with contextlib.suppress(asynch_errors.Error, OSError):
                await connection.close()
