"""The stack's services without running them: configs, ids, ports, progress parsing."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from core.settings import Settings
from stack.broker import KafkaService, downloaded_bytes, new_cluster_id
from stack.control import chosen_names
from stack.errors import PortInUse, ServiceDidNotStart, StackError
from stack.postgresql import (
    OUTSIDE_ROOT,
    PostgreSQLService,
    _check_reachable,
    scram_verifier,
    server_dir,
    socket_dir,
)
from stack.service import RunAs, ServiceStatus, render_conf
from stack.warehouse import ClickHouseService


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        stack_dir=tmp_path / "stack",
        kafka_port=19192,
        kafka_controller_port=19193,
        clickhouse_port=19100,
        clickhouse_http_port=19123,
    )


def test_kafka_server_properties_carry_the_configured_ports_and_data_dir(
    tmp_path: Path,
) -> None:
    target = tmp_path / "server.properties"
    render_conf(
        "server.properties",
        target,
        node_id=1,
        voters="1@127.0.0.1:19193",
        port=19192,
        controller_port=19193,
        data_dir=tmp_path / "data",
        replicas=1,
        min_isr=1,
    )
    properties = dict(
        line.split("=", 1)
        for line in target.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert (
        properties["listeners"]
        == "PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    )
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:19193"
    assert properties["log.dirs"] == str(tmp_path / "data")
    assert properties["auto.create.topics.enable"] == "false"


def test_clickhouse_config_is_valid_xml_with_the_configured_ports(
    tmp_path: Path,
) -> None:
    target = tmp_path / "config.xml"
    render_conf(
        "clickhouse-config.xml",
        target,
        port=19100,
        http_port=19123,
        data_dir=tmp_path / "data",
        users_config=tmp_path / "users.xml",
        cluster_config="",
    )
    root = ET.parse(target).getroot()
    assert root.tag == "yandex"  # the root element ClickHouse 18.16 requires
    assert root.findtext("tcp_port") == "19100"
    assert root.findtext("http_port") == "19123"
    assert root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("path") == f"{tmp_path / 'data'}/"


def test_every_packaged_config_renders_without_leftover_placeholders(
    tmp_path: Path,
) -> None:
    values = {
        "port": 1,
        "controller_port": 2,
        "http_port": 3,
        "data_dir": tmp_path,
        "users_config": tmp_path,
        "app_user": "",
        "node_id": 1,
        "voters": "1@127.0.0.1:2",
        "replicas": 1,
        "min_isr": 1,
        "cluster_config": "",
    }
    values.update(
        hba_file=tmp_path, socket_dir=tmp_path, admin="postgres", data_dir=tmp_path
    )
    for name in (
        "server.properties",
        "clickhouse-config.xml",
        "clickhouse-users.xml",
        "postgresql.conf",
        "pg_hba.conf",
        "zoo.cfg",
    ):
        render_conf(name, tmp_path / name, **values)
        assert "${" not in (tmp_path / name).read_text()


def test_cluster_ids_look_like_kafkas() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_maven_download_lines_are_counted_with_their_size() -> None:
    line = "[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/a/b.jar (5.9 MB at 12 MB/s)"
    assert downloaded_bytes(line) == pytest.approx(5.9e6)
    assert (
        downloaded_bytes(
            "[INFO] Downloaded from central: https://x/y.pom (750 B at 3.1 kB/s)"
        )
        == 750
    )
    assert downloaded_bytes("[INFO] Downloading from central: https://x/y.pom") is None


def test_services_live_under_the_stack_dir_and_use_the_configured_ports(
    settings: Settings,
) -> None:
    root = settings.stack_dir.resolve()
    kafka, clickhouse = KafkaService(settings, root), ClickHouseService(settings, root)
    assert kafka.address == "127.0.0.1:19192"
    assert clickhouse.address == "127.0.0.1:19100"
    assert clickhouse.details() == "http 127.0.0.1:19123"
    for service in (kafka, clickhouse):
        assert service.pid_file.marker == str(service.config_path)
        assert service.config_path.is_relative_to(root)
        assert service.log_path == root / "logs" / f"{service.name}.log"


async def test_a_port_taken_by_a_stranger_is_reported_with_the_variable_to_change(
    settings: Settings,
) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        taken = settings.model_copy(update={"clickhouse_http_port": port})
        service = ClickHouseService(taken, taken.stack_dir.resolve())
        with pytest.raises(
            PortInUse, match=f"port {port} \\(http\\).*RISKSTREAM_CLICKHOUSE_HTTP_PORT"
        ):
            await service.launch()
    assert not service.pid_file.path.exists()


def test_a_failed_start_shows_the_end_of_the_log() -> None:
    error = ServiceDidNotStart("kafka exited with code 1", ["first", "last"])
    assert (
        str(error)
        == "kafka exited with code 1\n  last 2 lines of its log:\n    first\n    last"
    )


@pytest.mark.parametrize(
    ("pid", "answers", "state"),
    [
        (12, True, "up"),
        (None, False, "down"),
        (12, False, "not answering"),
        (None, True, "up (not ours)"),
    ],
)
def test_status_states(pid: int | None, answers: bool, state: str) -> None:
    status = ServiceStatus(
        name="kafka", address="127.0.0.1:9092", pid=pid, answers=answers
    )
    assert status.state == state
    assert status.line().split()[:3] == ["kafka", "127.0.0.1:9092", state.split()[0]]


def test_postgresql_listens_on_its_port_with_its_socket_in_its_folder(
    settings: Settings,
) -> None:
    root = settings.stack_dir.resolve()
    settings = settings.model_copy(update={"postgresql_port": 19432})
    service = PostgreSQLService(settings, root)
    assert service.address == "127.0.0.1:19432"
    assert service.socket_dir == socket_dir(settings) == server_dir(settings) / "socket"
    assert service.pid_file.marker == str(service.config_path)
    assert service.config_path.parent == service.data_dir.parent == server_dir(settings)
    assert service.stop_signal == signal.SIGINT  # fast shutdown, not "wait for clients"


def test_the_servers_folder_leaves_a_stack_folder_its_account_cannot_enter(
    tmp_path: Path,
) -> None:
    open_stack = tmp_path / "open"
    open_stack.mkdir()
    tmp_path.chmod(0o755)
    closed = tmp_path / "closed"
    (closed / "stack").mkdir(parents=True)
    closed.chmod(0o700)
    inside = Settings(stack_dir=open_stack / ".stack")
    outside = Settings(stack_dir=closed / "stack" / ".stack")
    if os.geteuid() != 0:  # as a user the server runs as that user: it may enter
        assert server_dir(outside) == closed / "stack" / ".stack" / "postgresql"
        return
    parents_open = all(p.stat().st_mode & 0o001 for p in tmp_path.parents)
    if parents_open:
        assert server_dir(inside) == open_stack / ".stack" / "postgresql"
    assert server_dir(outside).parent == OUTSIDE_ROOT
    assert server_dir(outside) == server_dir(outside)  # the same stack, the same folder
    other = Settings(stack_dir=closed / "stack" / ".other")
    assert server_dir(other) != server_dir(outside)


def test_postgresql_admin_comes_through_the_socket_only(tmp_path: Path) -> None:
    target = tmp_path / "pg_hba.conf"
    render_conf("pg_hba.conf", target, admin="postgres")
    rules = [
        line.split()
        for line in target.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == ["local", "all", "postgres", "trust"]
    assert ["local", "all", "all", "reject"] in rules
    tcp = [rule for rule in rules if rule[0] == "host"]
    assert all(rule[-1] == "reject" for rule in tcp if rule[2] == "postgres")
    assert all(rule[-1] == "scram-sha-256" for rule in tcp if rule[2] != "postgres")


def test_the_base_stack_plus_the_services_asked_for_in_start_order(
    settings: Settings,
) -> None:
    assert chosen_names(settings) == ["kafka", "clickhouse"]
    assert chosen_names(settings, ["postgresql"]) == [
        "kafka",
        "clickhouse",
        "postgresql",
    ]
    extra = settings.model_copy(update={"stack_services": " PostgreSQL, "})
    assert chosen_names(extra) == ["kafka", "clickhouse", "postgresql"]
    with pytest.raises(StackError, match="unknown service mysql"):
        chosen_names(settings, ["mysql"])


def test_the_scram_verifier_is_rfc_7677s_for_its_test_vector() -> None:
    # RFC 7677's example: password "pencil", this salt, 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    assert scram_verifier("pencil", salt) == (
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
        "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
    )
    assert scram_verifier("pencil") != scram_verifier(
        "pencil"
    )  # a fresh salt each time


def test_a_stack_folder_the_server_account_cannot_enter_is_named_with_the_fix() -> None:
    # Not under pytest's tmp_path: its folders are 0700 themselves.
    base = Path(tempfile.mkdtemp(prefix="riskstream-reach-"))
    try:
        base.chmod(0o711)
        locked = base / "locked"
        (locked / "stack" / "postgresql").mkdir(parents=True)
        locked.chmod(0o700)
        stranger = RunAs("riskstream-pg", os.getuid() + 4242, os.getgid() + 4242)
        with pytest.raises(StackError, match=rf"cannot enter {locked} \(mode 0700\)"):
            _check_reachable(locked / "stack" / "postgresql", stranger)
        locked.chmod(0o711)
        _check_reachable(locked / "stack" / "postgresql", stranger)
    finally:
        shutil.rmtree(base)
