"""Secrets from the environment or a file, never echoed; Kafka and model-server client security from the settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr, ValidationError

from core.security import kafka_client_options, kafka_credentials, model_client_ssl
from core.settings import Settings
from tests.certificates import Certificates, make_certificates

SECRET = "s3cr3t-Ω-value"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the session's RISKSTREAM_* secrets stay out."""
    for name in (
        "MODEL_TOKEN",
        "CLICKHOUSE_PASSWORD",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SECURITY_PROTOCOL",
    ):
        monkeypatch.delenv(f"RISKSTREAM_{name}", raising=False)
        monkeypatch.delenv(f"RISKSTREAM_{name}_FILE", raising=False)


@pytest.mark.parametrize(
    ("secret", "variable"),
    [
        ("model_token", "RISKSTREAM_MODEL_TOKEN"),
        ("clickhouse_password", "RISKSTREAM_CLICKHOUSE_PASSWORD"),
        ("kafka_sasl_password", "RISKSTREAM_KAFKA_SASL_PASSWORD"),
    ],
)
def test_a_secret_comes_from_its_variable_or_from_the_file_its_file_variable_names(
    secret: str, variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, SECRET)
    assert getattr(Settings(), secret).get_secret_value() == SECRET
    monkeypatch.delenv(variable)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n", encoding="utf-8")  # as `echo` writes it
    monkeypatch.setenv(f"{variable}_FILE", str(path))
    settings = Settings()
    assert getattr(settings, secret).get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_both_the_variable_and_the_file_is_an_error_that_shows_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text("from-file")
    monkeypatch.setenv("RISKSTREAM_MODEL_TOKEN", SECRET)
    monkeypatch.setenv("RISKSTREAM_MODEL_TOKEN_FILE", str(path))
    with pytest.raises(ValidationError) as error:
        Settings()
    message = str(error.value)
    assert (
        "set RISKSTREAM_MODEL_TOKEN or RISKSTREAM_MODEL_TOKEN_FILE, not both" in message
    )
    assert SECRET not in message and "from-file" not in message


def test_an_unreadable_secret_file_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKSTREAM_CLICKHOUSE_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(
        ValidationError, match="RISKSTREAM_CLICKHOUSE_PASSWORD_FILE: cannot read"
    ):
        Settings()


def test_a_settings_error_does_not_echo_the_secrets_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RISKSTREAM_MODEL_TOKEN", SECRET)
    monkeypatch.setenv("RISKSTREAM_WEB_PORT", "not-a-port")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert SECRET not in str(error.value)


def test_clients_send_the_first_of_several_tokens() -> None:
    settings = Settings(model_token=SecretStr(" new-token , old-token"))
    assert settings.model_client_token == "new-token"


def test_plaintext_kafka_needs_no_credentials() -> None:
    settings = Settings()
    assert kafka_credentials(settings) is None
    assert kafka_client_options(settings) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_maps_to_the_same_options_for_faust_and_aiokafka(
    certificates: Certificates, tmp_path: Path
) -> None:
    password = tmp_path / "sasl"
    password.write_text(SECRET)
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="worker",
        kafka_sasl_password_file=password,
        kafka_ssl_cafile=certificates.ca,
    )
    credentials = kafka_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert SECRET not in repr(credentials)
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "worker"
    assert options["sasl_plain_password"] == SECRET
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "riskstream test CA"),),)
    ]
    # The worker's Faust App gets these very credentials (app/application.py).
    app = faust.App("t", broker="kafka://127.0.0.1:1", broker_credentials=credentials)
    assert app.conf.broker_credentials is credentials


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl(
    certificates: Certificates,
) -> None:
    sasl = kafka_client_options(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="u",
            kafka_sasl_password=SecretStr("p"),
        )
    )
    assert sasl["security_protocol"] == "SASL_PLAINTEXT"
    assert sasl["sasl_mechanism"] == "PLAIN" and sasl["ssl_context"] is None
    mutual = kafka_client_options(
        Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=certificates.ca,
            kafka_ssl_certfile=certificates.cert,
            kafka_ssl_keyfile=certificates.key,
        )
    )
    assert mutual["security_protocol"] == "SSL"
    assert isinstance(mutual["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in mutual


def test_model_servers_are_verified_with_the_configured_ca_else_the_systems(
    certificates: Certificates,
) -> None:
    assert model_client_ssl(Settings()) is True
    context = model_client_ssl(Settings(model_tls_ca=certificates.ca))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_server_certificate_needs_its_key(certificates: Certificates) -> None:
    with pytest.raises(
        ValidationError, match="RISKSTREAM_MODEL_TLS_CERT and RISKSTREAM_MODEL_TLS_KEY"
    ):
        Settings(model_tls_cert=certificates.cert)
