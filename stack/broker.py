"""The local Kafka broker: KRaft, one node, from Apache Kafka's jars on Maven Central.

No Kafka distribution is unpacked: ``stack/conf/pom.xml`` names the broker's
artifact and ``mvn dependency:copy-dependencies`` puts it and its
dependencies into ``<stack_dir>/kafka/libs``. Maven's local repository is
``<stack_dir>/maven`` so that everything the stack downloads lives (and is
deleted) with the stack folder; a stamp holding the pom's hash lets a
second ``up`` skip Maven altogether.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import shutil
import time
import uuid
from collections import deque
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from core.progress import Progress
from core.settings import Settings
from core.topology import KafkaNode
from stack.errors import InstallError, StackError
from stack.installer import ensure_program
from stack.service import (
    PROBE_TIMEOUT_S,
    Listener,
    LocalService,
    port_answers,
    render_conf,
)

__all__ = ["KafkaService", "downloaded_bytes", "new_cluster_id"]

logger = logging.getLogger(__name__)

#: JVM options of the broker: a bounded heap for a shared laptop, Kafka's own GC settings.
_JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]

#: Maven's "[INFO] Downloaded from central: URL (5.9 MB at 12 MB/s)" line.
_DOWNLOADED = re.compile(
    r"Downloaded from \S+: \S+ \((?P<size>[\d.]+) (?P<unit>[kMG]?B) at "
)
_UNIT_BYTES = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def downloaded_bytes(maven_line: str) -> float | None:
    """The size of the file a Maven output line reports as downloaded, else None."""
    match = _DOWNLOADED.search(maven_line)
    return None if match is None else float(match["size"]) * _UNIT_BYTES[match["unit"]]


def new_cluster_id() -> str:
    """A KRaft cluster id, as ``kafka-storage random-uuid`` makes it, without starting a JVM.

    Kafka's ids are a random UUID in URL-safe base64 without padding, and
    never start with "-" (it would read as a command-line flag).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class KafkaService(LocalService):
    """One broker+controller JVM: the single topology's ``kafka``, or a node of the cluster's quorum."""

    name = "kafka"

    def __init__(
        self, settings: Settings, root: Path, node: KafkaNode | None = None
    ) -> None:
        topology = settings.topology
        self.node = node if node is not None else topology.kafka[0]
        self.quorum = topology.kafka
        self.name = self.node.name
        super().__init__(settings, root)
        # One copy of the jars for every node.
        self.libs = root / "kafka" / "libs"
        self.data_dir = self.home / "data"
        self.log4j_path = self.home / "log4j2.yaml"
        self.maven_repository = self.root / "maven"
        self.java = "java"

    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def listeners(self) -> list[Listener]:
        return [
            Listener("client", self.node.port, "RISKSTREAM_KAFKA_PORT"),
            Listener(
                "controller",
                self.node.controller_port,
                "RISKSTREAM_KAFKA_CONTROLLER_PORT",
            ),
        ]

    async def prepare(self) -> None:
        # Debian's maven depends on a JRE; Kafka 4 needs Java 17, bookworm's default.
        self.java = await ensure_program("java", ["default-jre-headless"])
        mvn = await ensure_program("mvn", ["maven"])
        await self._fetch_jars(mvn)
        replicas = len(self.quorum)
        render_conf(
            "server.properties",
            self.config_path,
            node_id=self.node.node_id,
            voters=",".join(
                f"{voter.node_id}@127.0.0.1:{voter.controller_port}"
                for voter in self.quorum
            ),
            port=self.node.port,
            controller_port=self.node.controller_port,
            data_dir=self.data_dir,
            replicas=replicas,
            min_isr=replicas // 2 + 1,
        )
        shutil.copyfile(
            str(resources.files("stack").joinpath("conf", "log4j2.yaml")),
            self.log4j_path,
        )
        if not (self.data_dir / "meta.properties").exists():
            await self._format_storage()

    def command(self) -> list[str]:
        return [
            self.java,
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self.libs}/*",
            "kafka.Kafka",
            str(self.config_path),
        ]

    async def answers(self) -> bool:
        """It serves metadata, and knows every broker of its quorum."""
        # A cheap TCP check first: aiokafka logs an ERROR per refused connection.
        if not await port_answers(self.node.port):
            return False
        client = AIOKafkaClient(
            bootstrap_servers=self.address,
            request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
        )
        try:
            await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT_S)
            return len(client.cluster.brokers()) >= len(self.quorum)
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await client.close()

    async def _fetch_jars(self, mvn: str) -> None:
        """Copy Kafka's jars into ``libs`` unless the same pom already put them there."""
        pom_text = resources.files("stack").joinpath("conf", "pom.xml").read_bytes()
        digest = hashlib.sha256(pom_text).hexdigest()
        stamp = self.libs / ".pom-sha256"
        if stamp.exists() and stamp.read_text().strip() == digest:
            return
        shutil.rmtree(self.libs, ignore_errors=True)
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        pom = self.libs.parent / "pom.xml"
        pom.write_bytes(pom_text)
        command = [
            mvn,
            "--batch-mode",
            "-f",
            str(pom),
            f"-Dmaven.repo.local={self.maven_repository}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={self.libs}",
        ]
        logger.info("fetching Kafka's jars from Maven Central into %s", self.libs)
        await self._run_maven(command)
        jars = list(self.libs.glob("*.jar"))
        if not jars:
            raise InstallError(f"mvn finished but left no jars in {self.libs}")
        stamp.write_text(digest + "\n")
        logger.info(
            "Kafka's jars ready: %d jars, %.1f MB",
            len(jars),
            sum(j.stat().st_size for j in jars) / 1e6,
        )

    async def _run_maven(self, command: list[str]) -> None:
        """Run mvn, turning its download lines into one progress line."""
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        progress = Progress()
        recent: deque[str] = deque(maxlen=30)
        files, downloaded, started = 0, 0.0, time.monotonic()
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            recent.append(line)
            size = downloaded_bytes(line)
            if size is not None:
                files += 1
                downloaded += size
            elapsed_s = time.monotonic() - started
            progress.update(
                f"  maven: {files} files, {downloaded / 1e6:.1f} MB downloaded, {elapsed_s:.0f} s"
            )
        code = await process.wait()
        progress.done()
        if code != 0:
            shown = "\n".join(f"    {line}" for line in recent)
            raise InstallError(
                f"mvn failed with code {code} fetching Kafka's jars; its last lines:\n{shown}"
            )

    def _cluster_id(self) -> str:
        """The KRaft cluster id every node of the quorum is formatted with (made once)."""
        path = self.root / "kafka" / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    async def _format_storage(self) -> None:
        """Give the empty data dir its KRaft cluster id (Kafka refuses unformatted storage)."""
        cluster_id = self._cluster_id() if len(self.quorum) > 1 else new_cluster_id()
        process = await asyncio.create_subprocess_exec(
            self.java,
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self.libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise StackError(
                f"formatting Kafka's storage in {self.data_dir} failed (code {process.returncode}):\n"
                + output.decode(errors="replace")
            )
        logger.info(
            "formatted Kafka's storage in %s (cluster id %s)", self.data_dir, cluster_id
        )
