"""Where each node of the local stack listens, for the single and the cluster topology.

Both sides need the same answer: ``riskstream stack`` starts a process on
each of these ports, and a worker, a generator or the bench started with
``RISKSTREAM_STACK_TOPOLOGY=cluster`` must find the three brokers and four
ClickHouse servers without being told each address. So the addresses are
derived here, in the bottom layer, from the base ports the settings hold;
how each node is configured and started lives in ``stack/``.

The cluster topology shifts every base port by 100 per node: broker ``i``
(1-3) listens on ``kafka_port + 100 * (i - 1)``; ClickHouse shard ``s``
replica ``r`` (1-2 each) is node ``k = 2 * (s - 1) + (r - 1)`` and listens
on each of its base ports ``+ 100 * k``. The defaults thus give brokers on
9092, 9192, 9292 and ClickHouse on 9000, 9100, 9200, 9300 (HTTP 8123,
8223, 8323, 8423).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLUSTER_NAME",
    "ClickHouseNode",
    "KafkaNode",
    "Node",
    "Topology",
    "TopologyKind",
    "ZooKeeperNode",
    "local_topology",
]

TopologyKind = Literal["single", "cluster"]

#: The ClickHouse cluster the cluster topology declares in ``remote_servers``.
CLUSTER_NAME = "riskstream"

#: Port step between two nodes of the same kind.
_STEP = 100

_BROKERS = 3
_SHARDS = 2
_REPLICAS = 2


@dataclass(frozen=True, kw_only=True)
class Node:
    """A server on loopback: its service name and the port its clients use."""

    name: str
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ZooKeeperNode(Node):
    """The ZooKeeper server the replicated ClickHouse tables coordinate through."""


@dataclass(frozen=True, kw_only=True)
class KafkaNode(Node):
    """One KRaft broker (broker and controller in one process)."""

    node_id: int
    controller_port: int


@dataclass(frozen=True, kw_only=True)
class ClickHouseNode(Node):
    """One ClickHouse server: a replica of a shard (1 and 1 when there is one server)."""

    shard: int
    replica: int
    http_port: int
    interserver_port: int


@dataclass(frozen=True)
class Topology:
    """The nodes of one local stack layout."""

    kind: TopologyKind
    kafka: tuple[KafkaNode, ...]
    clickhouse: tuple[ClickHouseNode, ...]
    zookeeper: tuple[ZooKeeperNode, ...]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(node.address for node in self.kafka)

    @property
    def clickhouse_hosts(self) -> str:
        return ",".join(node.address for node in self.clickhouse)

    @property
    def clickhouse_cluster(self) -> str:
        """The cluster name DDL runs ``ON``; empty for one server."""
        return CLUSTER_NAME if self.kind == "cluster" else ""

    @property
    def replication_factor(self) -> int:
        """Copies of every topic partition: one per broker."""
        return len(self.kafka)


def local_topology(
    kind: TopologyKind,
    *,
    kafka_port: int,
    kafka_controller_port: int,
    clickhouse_port: int,
    clickhouse_http_port: int,
    clickhouse_interserver_port: int,
    zookeeper_port: int,
) -> Topology:
    """The nodes of ``kind`` on loopback, from the base ports (see the module's docstring)."""
    if kind == "single":
        return Topology(
            kind=kind,
            kafka=(
                KafkaNode(
                    name="kafka",
                    node_id=1,
                    port=kafka_port,
                    controller_port=kafka_controller_port,
                ),
            ),
            clickhouse=(
                ClickHouseNode(
                    name="clickhouse",
                    shard=1,
                    replica=1,
                    port=clickhouse_port,
                    http_port=clickhouse_http_port,
                    interserver_port=clickhouse_interserver_port,
                ),
            ),
            zookeeper=(),
        )
    brokers = tuple(
        KafkaNode(
            name=f"kafka-{i}",
            node_id=i,
            port=kafka_port + _STEP * (i - 1),
            controller_port=kafka_controller_port + _STEP * (i - 1),
        )
        for i in range(1, _BROKERS + 1)
    )
    servers = []
    for shard in range(1, _SHARDS + 1):
        for replica in range(1, _REPLICAS + 1):
            shift = _STEP * ((shard - 1) * _REPLICAS + (replica - 1))
            servers.append(
                ClickHouseNode(
                    name=f"clickhouse-s{shard}r{replica}",
                    shard=shard,
                    replica=replica,
                    port=clickhouse_port + shift,
                    http_port=clickhouse_http_port + shift,
                    interserver_port=clickhouse_interserver_port + shift,
                )
            )
    return Topology(
        kind=kind,
        kafka=brokers,
        clickhouse=tuple(servers),
        zookeeper=(ZooKeeperNode(name="zookeeper", port=zookeeper_port),),
    )
