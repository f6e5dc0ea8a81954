"""The local ZooKeeper of the cluster topology: Debian's package, our config, data under the stack folder.

ClickHouse's replicated tables keep their replication log and the
distributed DDL queue in ZooKeeper; Kafka needs none (KRaft). One node
is enough on one machine: the issue of losing it is tested as such
(ZooKeeper stopped: replicated tables turn read-only, the writer waits).
Like the other services it runs as a plain process with the config
``stack up`` renders into ``<stack_dir>/zookeeper``, never as the system
service.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from core.settings import Settings
from core.topology import ZooKeeperNode
from stack.installer import ensure_program
from stack.service import PROBE_TIMEOUT_S, Listener, LocalService, render_conf

__all__ = ["ZooKeeperService"]

#: Debian's jars: the server (its manifest names its dependencies) and a logger that writes to stderr.
_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

_JVM_OPTIONS = ["-Xms64m", "-Xmx256m", "-Djava.awt.headless=true"]


class ZooKeeperService(LocalService):
    """One ZooKeeper server on ``127.0.0.1:<zookeeper_port>``."""

    name = "zookeeper"
    wave = 0

    def __init__(self, settings: Settings, root: Path, node: ZooKeeperNode) -> None:
        self.node = node
        self.name = node.name
        super().__init__(settings, root)
        self.data_dir = self.home / "data"
        self.java = "java"

    @property
    def config_path(self) -> Path:
        return self.home / "zoo.cfg"

    @property
    def listeners(self) -> list[Listener]:
        return [Listener("client", self.node.port, "RISKSTREAM_ZOOKEEPER_PORT")]

    async def prepare(self) -> None:
        self.java = await ensure_program("java", ["default-jre-headless"])
        await ensure_program(
            "zkServer.sh", ["zookeeper", "libslf4j-java"], ["/usr/share/zookeeper/bin"]
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        render_conf(
            "zoo.cfg", self.config_path, port=self.node.port, data_dir=self.data_dir
        )

    def command(self) -> list[str]:
        return [
            self.java,
            *_JVM_OPTIONS,
            "-cp",
            _CLASSPATH,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.config_path),
        ]

    async def answers(self) -> bool:
        """ZooKeeper serves sessions: ``srvr`` names its mode (``ruok`` says imok before it does)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.node.port
                )
                try:
                    writer.write(b"srvr")
                    await writer.drain()
                    return b"Mode: " in await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError):
            return False
