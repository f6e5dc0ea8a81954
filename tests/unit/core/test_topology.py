"""The local topologies' addresses, and the client defaults they set."""

from __future__ import annotations

import pytest

from core.settings import Settings


def test_single_topology_keeps_todays_addresses() -> None:
    settings = Settings(kafka_port=19092, clickhouse_port=19000)
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.clickhouse_addresses == [("127.0.0.1", 19000)]
    assert settings.clickhouse_cluster == ""
    assert (settings.topic_replication_factor, settings.min_insync_replicas) == (1, 1)
    assert [node.name for node in settings.topology.clickhouse] == ["clickhouse"]
    assert settings.topology.zookeeper == ()


def test_cluster_topology_gives_every_node_its_own_ports() -> None:
    settings = Settings(
        stack_topology="cluster",
        kafka_port=19092,
        kafka_controller_port=19093,
        clickhouse_port=19000,
        clickhouse_http_port=19123,
        clickhouse_interserver_port=19009,
    )
    topology = settings.topology
    assert [node.name for node in topology.kafka] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [node.name for node in topology.clickhouse] == [
        "clickhouse-s1r1",
        "clickhouse-s1r2",
        "clickhouse-s2r1",
        "clickhouse-s2r2",
    ]
    ports = (
        [port for node in topology.kafka for port in (node.port, node.controller_port)]
        + [
            port
            for node in topology.clickhouse
            for port in (node.port, node.http_port, node.interserver_port)
        ]
        + [node.port for node in topology.zookeeper]
    )
    assert len(ports) == len(set(ports)), "two nodes share a port"
    assert settings.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292"
    assert settings.clickhouse_addresses[2] == ("127.0.0.1", 19200)
    assert settings.clickhouse_cluster == "riskstream"
    assert (settings.topic_replication_factor, settings.min_insync_replicas) == (3, 2)


def test_explicit_client_settings_win_over_the_topology() -> None:
    settings = Settings(
        stack_topology="cluster",
        kafka_bootstrap="broker.example:9094",
        clickhouse_hosts="ch-a.example:9440,ch-b.example:9440",
        clickhouse_cluster="",
        topic_replication_factor=2,
    )
    assert settings.kafka_bootstrap == "broker.example:9094"
    assert settings.clickhouse_addresses == [
        ("ch-a.example", 9440),
        ("ch-b.example", 9440),
    ]
    assert settings.clickhouse_cluster == ""
    assert settings.min_insync_replicas == 2


@pytest.mark.parametrize("hosts", ["ch.example", "ch.example:port", ":", "a:1,b"])
def test_a_host_without_a_port_is_refused_with_the_entry(hosts: str) -> None:
    with pytest.raises(ValueError, match="not host:port"):
        Settings(clickhouse_hosts=hosts)


def test_replication_factor_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Settings(topic_replication_factor=0)


def _ports(settings: Settings) -> set[int]:
    topology = settings.topology
    return {
        *(p for node in topology.kafka for p in (node.port, node.controller_port)),
        *(
            p
            for node in topology.clickhouse
            for p in (node.port, node.http_port, node.interserver_port)
        ),
        *(node.port for node in topology.zookeeper),
    }


def test_a_cluster_beside_the_single_stack_shares_no_port_and_no_folder() -> None:
    single = Settings()
    cluster = single.cluster_beside()
    assert cluster.stack_topology == "cluster"
    assert cluster.stack_dir == single.stack_dir / "cluster"
    assert not _ports(single) & _ports(cluster)
    assert len(_ports(cluster)) == 3 * 2 + 4 * 3 + 1


def test_a_child_given_the_stack_env_sees_the_same_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Settings().cluster_beside()
    for name, value in cluster.stack_env().items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.topology == cluster.topology
    assert child.kafka_bootstrap == cluster.kafka_bootstrap
    assert child.clickhouse_addresses == cluster.clickhouse_addresses
