"""The cluster topology's services without running them: names, order, each node's config."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from core.settings import Settings
from stack import control
from stack.broker import KafkaService
from stack.errors import StackError
from stack.service import render_conf
from stack.warehouse import ClickHouseService, cluster_config_xml


@pytest.fixture
def cluster(tmp_path: Path) -> Settings:
    return Settings(
        stack_dir=tmp_path / "stack",
        stack_topology="cluster",
        kafka_port=47192,
        kafka_controller_port=47193,
        clickhouse_port=47100,
        clickhouse_http_port=47123,
        clickhouse_interserver_port=47109,
        zookeeper_port=47181,
    )


def test_the_cluster_starts_zookeeper_first_then_brokers_then_replicas(
    cluster: Settings,
) -> None:
    assert control.chosen_names(cluster) == [
        "zookeeper",
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "clickhouse-s1r1",
        "clickhouse-s1r2",
        "clickhouse-s2r1",
        "clickhouse-s2r2",
    ]
    waves = {service.name: service.wave for service in control.services(cluster)}
    assert waves["zookeeper"] < min(w for n, w in waves.items() if n != "zookeeper")
    assert control.chosen_names(cluster, ["postgresql"])[-1] == "postgresql"
    # each node in a folder, log and pid file of its own
    homes = {service.home for service in control.services(cluster)}
    assert len(homes) == len(control.service_names(cluster))


def test_a_single_topology_name_is_refused_on_the_cluster_with_the_known_names(
    cluster: Settings,
) -> None:
    with pytest.raises(
        StackError, match="unknown service kafka in the cluster topology"
    ):
        control.services(cluster, ["kafka"])
    assert control.service_names(Settings()) == ["kafka", "clickhouse", "postgresql"]


def _properties(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    )


def test_each_broker_is_a_voter_of_one_quorum_with_its_own_ports(
    cluster: Settings, tmp_path: Path
) -> None:
    root = cluster.stack_dir.resolve()
    for node in cluster.topology.kafka:
        service = KafkaService(cluster, root, node)
        assert service.libs == root / "kafka" / "libs"  # one copy of the jars
        render_conf(
            "server.properties",
            tmp_path / f"{node.name}.properties",
            node_id=node.node_id,
            voters="1@127.0.0.1:47193,2@127.0.0.1:47293,3@127.0.0.1:47393",
            port=node.port,
            controller_port=node.controller_port,
            data_dir=service.data_dir,
            replicas=3,
            min_isr=2,
        )
        properties = _properties(tmp_path / f"{node.name}.properties")
        assert properties["node.id"] == str(node.node_id)
        assert properties["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        )
        assert properties["min.insync.replicas"] == "2"
        assert properties["offsets.topic.replication.factor"] == "3"


def test_each_replica_names_its_shard_its_peers_and_zookeeper(
    cluster: Settings,
) -> None:
    topology = cluster.topology
    seen = set()
    for node in topology.clickhouse:
        config = ET.fromstring(f"<yandex>{cluster_config_xml(node, topology)}</yandex>")
        macros = (config.findtext("macros/shard"), config.findtext("macros/replica"))
        assert macros == (f"{node.shard:02d}", f"s{node.shard}r{node.replica}")
        seen.add(macros)
        assert config.findtext("interserver_http_port") == str(node.interserver_port)
        assert config.findtext("zookeeper/node/port") == "47181"
        shards = config.findall("remote_servers/riskstream/shard")
        assert [
            [int(replica.findtext("port") or 0) for replica in shard.findall("replica")]
            for shard in shards
        ] == [[47100, 47200], [47300, 47400]]
        assert all(shard.findtext("internal_replication") == "true" for shard in shards)
    assert len(seen) == 4
    single = Settings()
    assert cluster_config_xml(single.topology.clickhouse[0], single.topology) == ""


def test_the_rendered_config_of_a_replica_is_valid_xml_with_its_ports(
    cluster: Settings,
) -> None:
    root = cluster.stack_dir.resolve()
    node = cluster.topology.clickhouse[3]
    service = ClickHouseService(cluster, root, node)
    render_conf(
        "clickhouse-config.xml",
        service.config_path,
        port=node.port,
        http_port=node.http_port,
        data_dir=service.data_dir,
        users_config=service.users_path,
        cluster_config=cluster_config_xml(node, cluster.topology),
    )
    config = ET.parse(service.config_path).getroot()
    assert config.findtext("tcp_port") == "47400"
    assert config.findtext("http_port") == "47423"
    assert config.findtext("macros/replica") == "s2r2"
    assert service.details() == "http 127.0.0.1:47423, interserver 127.0.0.1:47409"


def test_status_of_a_cluster_nobody_started_lists_every_node_down(
    cluster: Settings,
) -> None:
    statuses = asyncio.run(control.status(cluster))
    assert [s.name for s in statuses] == control.chosen_names(cluster)
    assert all(s.state == "down" for s in statuses)
