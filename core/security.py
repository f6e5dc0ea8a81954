"""How riskstream's clients authenticate and encrypt, derived from the settings in one place.

The worker (Faust) and the generator (aiokafka) must reach the same Kafka
the same way, so both take their client options from here:
:func:`kafka_credentials` builds Faust's ``broker_credentials`` and
:func:`kafka_client_options` turns those very credentials into aiokafka's
keyword arguments with Faust's own mapping, so the two cannot drift apart.
:func:`model_client_ssl` is what the workers and the generator verify
``https://`` model servers with.

Secrets (the SASL password) are read from the settings, which take them
from the environment or a ``*_FILE``; nothing here logs them.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import CredentialsT

from core.settings import Settings

__all__ = ["kafka_client_options", "kafka_credentials", "model_client_ssl"]


def _kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client context verifying the brokers (the CA file, else the system's), with a client cert if set."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
    )
    if settings.kafka_ssl_certfile is not None:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return context


def kafka_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``RISKSTREAM_KAFKA_SECURITY_PROTOCOL`` (None = PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_kafka_ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=_kafka_ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's security keyword arguments (producer, consumer, admin), as Faust derives them."""
    return dict(credentials_to_aiokafka_auth(kafka_credentials(settings)))


def model_client_ssl(settings: Settings) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl`` argument for model-server calls: the CA file's context, else default verification."""
    if settings.model_tls_ca is None:
        return True
    return ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(settings.model_tls_ca)
    )
