"""The wiring: the Faust transport named ``riskstream`` and the App class it goes with.

Faust builds its transports from the broker URL's scheme, looking the
scheme up in its transport registry, which takes plug-ins from the
``faust.transports`` entry point (``setup.cfg`` registers
``riskstream = transport.driver:Transport``). A broker list written with
:func:`broker_url` therefore runs on this transport without overriding any
of the App's own factories.
"""

from __future__ import annotations

from aiokafka import AIOKafkaClient
from faust.exceptions import NotReady
from faust.transport.drivers import aiokafka as kafka_driver
from mode import Service

from transport.consumer import BatchGuardConsumer
from transport.overhead import LeanApp, LeanProducer
from transport.shutdown import BoundedStopApp, BoundedStopProducer

__all__ = ["SCHEME", "RiskstreamApp", "RiskstreamProducer", "Transport", "broker_url"]

#: The broker URL scheme this transport is registered under.
SCHEME = "riskstream"


class RiskstreamProducer(BoundedStopProducer, LeanProducer):
    """Faust's aiokafka producer with a cheaper buffer and a stop that ends."""


class Transport(kafka_driver.Transport):
    """Faust's aiokafka transport with riskstream's consumer and producer."""

    Consumer = BatchGuardConsumer
    Producer = RiskstreamProducer

    async def _get_controller_node(
        self, owner: Service, client: AIOKafkaClient, timeout: int = 30000
    ) -> int | None:
        """The first broker that takes a connection, to send CreateTopics to.

        Faust asks the first broker the metadata lists for the controller's
        id and sends there, so a worker starting while that broker is dead
        (its metadata outlives it for a few seconds) crashes. Kafka's
        brokers forward CreateTopics to the active controller (KIP-590;
        KRaft always does), so any live broker will do.
        """
        for broker in client.cluster.brokers():
            if await client.ready(broker.nodeId):
                return int(broker.nodeId)
        raise NotReady("no Kafka broker takes a connection")


class RiskstreamApp(BoundedStopApp, LeanApp):
    """The Faust App for :class:`Transport`: a bounded stop and fewer per-record costs."""


def broker_url(bootstrap: str) -> str:
    """Faust's broker list (``scheme://host:port;...``) for a Kafka ``host:port,...`` list."""
    return ";".join(f"{SCHEME}://{address.strip()}" for address in bootstrap.split(","))
