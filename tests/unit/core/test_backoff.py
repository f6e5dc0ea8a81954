"""The one retry policy: pauses double up to a cap, outages are waited out, permanent failures and bugs propagate."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from core.backoff import Backoff, retry_until_done, worth_retrying


async def test_pauses_double_up_to_the_cap() -> None:
    backoff = Backoff(0.001, 0.004)
    pauses = []
    for _ in range(4):
        pauses.append(backoff.pause_s)
        await backoff.wait()
    assert pauses == [0.001, 0.002, 0.004, 0.004]
    assert backoff.failures == 4


async def test_a_transient_failure_is_retried_until_the_action_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls, failures_seen = [], []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("peer went away")

    async def on_failure() -> None:
        failures_seen.append(len(calls))

    with caplog.at_level(logging.INFO):
        await retry_until_done(
            flaky,
            where="ClickHouse 127.0.0.1:9000",
            what="insert 5 rows",
            backoff=Backoff(0.001, 0.01),
            log=logging.getLogger("test"),
            on_failure=on_failure,
        )
    assert len(calls) == 3 and failures_seen == [1, 2]
    assert (
        "ClickHouse 127.0.0.1:9000: cannot insert 5 rows (attempt 2): "
        "ConnectionResetError: peer went away; retrying in 0.0 s"
    ) in caplog.text
    assert "insert 5 rows succeeded after 3 attempts" in caplog.text


async def test_an_error_that_is_not_an_outage_propagates_at_once() -> None:
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retry_until_done(
            broken,
            where="Kafka",
            what="publish",
            backoff=Backoff(0.001, 0.01),
            log=logging.getLogger("test"),
        )
    assert calls == [1]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (KafkaConnectionError("broker down"), True),
        (NotLeaderForPartitionError(), True),
        (KafkaTimeoutError(), True),
        (TopicAuthorizationFailedError(), False),
        (MessageSizeTooLargeError(), False),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ValueError("a bug"), False),
    ],
)
def test_one_answer_to_whether_a_failure_is_worth_retrying(
    error: BaseException, retried: bool
) -> None:
    assert worth_retrying(error) is retried


def test_a_store_adds_its_drivers_transient_errors() -> None:
    class ServerRestarting(Exception):
        pass

    assert not worth_retrying(ServerRestarting())
    assert worth_retrying(ServerRestarting(), transient=(ServerRestarting,))


async def test_a_permanent_kafka_failure_stops_the_caller_with_a_clear_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    async def forbidden() -> None:
        calls.append(1)
        raise TopicAuthorizationFailedError()

    with pytest.raises(TopicAuthorizationFailedError):
        await retry_until_done(
            forbidden,
            where="Kafka topic features-dlq",
            what="publish 3 dead letters",
            backoff=Backoff(0.001, 0.01),
            log=logging.getLogger("test"),
        )
    assert calls == [1]
    assert (
        "Kafka topic features-dlq: cannot publish 3 dead letters: "
        "TopicAuthorizationFailedError"
    ) in caplog.text
    assert "a permanent failure, not retried" in caplog.text
