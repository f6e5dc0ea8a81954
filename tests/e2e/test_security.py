"""The pipeline with its defences on: TLS to the model servers, secrets from files, a confined ClickHouse user.

One run of the real processes where every secret comes from a file: the
model servers serve HTTPS only and want the token, the worker trusts their
CA and sends the token, the generator reads the schema the same way, and
the worker writes as the app's ClickHouse user with its password (a
ClickHouse of the test's own, set up by the stack's code). Then neither
secret may appear in any log or in anything the worker serves.
"""

from __future__ import annotations

import secrets
import ssl
import urllib.request
from pathlib import Path

import pytest

from stack.launch import Child, riskstream_argv, spawn
from tests.certificates import make_certificates
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    Pipeline,
    get_json,
    produced_by,
    wait_until,
)
from tests.ports import restartable_port
from tests.private_clickhouse import private_clickhouse

pytestmark = pytest.mark.slow


def wait_https_ok(url: str, context: ssl.SSLContext, child: Child) -> None:
    def answers() -> bool:
        assert child.alive(), f"{child.name} exited:\n{child.log_tail()}"
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(answers, 90, f"{url} to answer")


def test_tls_token_and_password_from_files_work_end_to_end_and_leak_nowhere(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    token = "tok-" + secrets.token_hex(12)
    password = "pw-" + secrets.token_hex(12)
    certificates = make_certificates(tmp_path / "tls")
    token_file = tmp_path / "model-token"
    token_file.write_text(token + "\n")
    with private_clickhouse(
        tmp_path / "clickhouse", pipeline.database, password
    ) as warehouse:
        # counts and dead letters read from this ClickHouse
        pipeline.use_settings(warehouse)
        port = restartable_port()
        server = spawn(
            "tls model server",
            riskstream_argv(
                "serve", "--port", str(port), "--served-name", "m",
                "--repository", str(pipeline.repository),
            ),
            {
                "RISKSTREAM_MODEL_TOKEN": "",
                "RISKSTREAM_MODEL_TOKEN_FILE": str(token_file),
                "RISKSTREAM_MODEL_TLS_CERT": str(certificates.cert),
                "RISKSTREAM_MODEL_TLS_KEY": str(certificates.key),
            },
            pipeline.workdir / "tls-model-server.log",
        )  # fmt: skip
        pipeline.children.append(server)
        url = f"https://127.0.0.1:{port}"
        trusted = ssl.create_default_context(cafile=str(certificates.ca))
        wait_https_ok(f"{url}/v2/health/ready", trusted, server)
        clients = {
            "RISKSTREAM_MODEL_SERVERS": url,
            "RISKSTREAM_MODEL_TLS_CA": str(certificates.ca),
            "RISKSTREAM_MODEL_TOKEN": "",
            "RISKSTREAM_MODEL_TOKEN_FILE": str(token_file),
        }
        pipeline.declare_feature_topic()
        worker = pipeline.start_worker(
            "worker",
            RISKSTREAM_CLICKHOUSE_PORT=str(warehouse.clickhouse_port),
            RISKSTREAM_CLICKHOUSE_USER="riskstream",
            RISKSTREAM_CLICKHOUSE_PASSWORD="",
            RISKSTREAM_CLICKHOUSE_PASSWORD_FILE=str(warehouse.clickhouse_password_file),
            **clients,
        )
        generator = spawn(
            "generator",
            riskstream_argv(
                "datagen", "--schema-from", "server", "--count", "2000", "--rate", "1000"
            ),
            pipeline.env(**clients),
            pipeline.workdir / "generator.log",
        )  # fmt: skip
        pipeline.children.append(generator)
        produced = produced_by(generator, timeout_s=120)
        assert f"from model server {url}" in generator.log_path.read_text(), (
            "the schema did not come over TLS"
        )
        wait_until(
            lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
        )
        rows = pipeline.clickhouse(
            f"SELECT DISTINCT model_server FROM {pipeline.database}.predictions"
        ).split()
        assert rows == [url]
        served = {
            path: urllib.request.urlopen(f"{worker.url}{path}", timeout=10)
            .read()
            .decode()
            for path in ("/stats", "/stats/local", "/metrics", "/dashboard")
        }
        servers = get_json(f"{worker.url}/stats/local")["model_servers"]
        assert [(s["url"], s["in_rotation"], s["failures"]) for s in servers] == [
            (url, True, 0)
        ]
        pipeline.account(produced)
        worker.child.stop()
        server.stop()
    logs = {
        path.name: path.read_text(errors="replace")
        for path in [*pipeline.workdir.glob("*.log"), *tmp_path.rglob("logs/*.log")]
    }
    assert "worker.log" in logs and "clickhouse.log" in logs and "generator.log" in logs
    for name, text in {**logs, **served}.items():
        assert token not in text, f"the model token is in {name}"
        assert password not in text, f"the ClickHouse password is in {name}"
    print(
        f"\n[{pipeline.run_id}] over HTTPS with the token and the password from files: "
        f"{produced} stored; neither secret in {len(logs)} logs or {len(served)} pages"
    )
