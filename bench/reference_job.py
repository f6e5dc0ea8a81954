"""The reference's Flink job, ported faithfully: the baseline ``riskstream bench`` compares against.

The reference (``/work/shared/reference``, section 3.3.3, class
``OnlinePredict``) is a Flink 1.11 job that reads the feature topic with a
``FlinkKafkaConsumer``, calls the model service once per record in a
``flatMap`` and sinks the answers into ClickHouse. Mapped piece by piece:

=============================================  ==============================================
reference (Java)                               this port
=============================================  ==============================================
``FlinkKafkaConsumer`` (group offsets,         :func:`run`: one consumer of the topic in the
parallelism 1)                                 group ``RISKSTREAM_APP_ID``, from the earliest
                                               offset, one record after the other
``inputDataTransfer``: ``value.split(",")``,   :func:`parse_features` and
``Double.parseDouble``, ``{"instances":        :func:`input_data_transfer`: the same, with the
[{"_c0": ...}]}``                              model's input names (the reference's model was
                                               trained on ``_c0``..``_c8``)
``sendHttpData``: ``HttpClientBuilder.create() :func:`send_http_data`: ``urllib.request`` per
.build()`` per call, ``HttpPost`` with         call (a new client and a new TCP connection
``X-AUTH-TOKEN``, ``EntityUtils.toString``     every time), synchronous, token header; a
                                               failed call gives ``None`` like the
                                               reference's ``catch (Throwable)``
a single model service URL                     the first of ``RISKSTREAM_MODEL_SERVERS``
``CKSink`` via flink-connector-clickhouse      :class:`ClickHouseSink`: buffered rows inserted
(buffered, flushed by size and interval)       over HTTP every ``SINK_BATCH_ROWS`` rows or
                                               ``SINK_FLUSH_S`` seconds, then the offsets are
                                               committed (Flink commits on checkpoint)
``res STRING`` column                          the ``predictions`` table of riskstream (same
                                               shape in its own database), so both designs
                                               are counted the same way
=============================================  ==============================================

It is the reference's design, not a strawman: the port does no more work
per record than the Java job (it parses the answer into columns, which the
Java job does not), and it runs on the same machine, model servers and
topic as riskstream. Run by ``riskstream bench reference`` as
``python -m bench.reference_job --seconds S``, configured like a worker
(``RISKSTREAM_*``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
import orjson
from aiokafka import AIOKafkaConsumer

from core.security import kafka_client_options
from core.settings import Settings, get_settings
from tables.predictions import create_statements, quote_identifier

__all__ = [
    "ClickHouseSink",
    "ServedModel",
    "input_data_transfer",
    "parse_features",
    "run",
    "send_http_data",
]

logger = logging.getLogger(__name__)

#: Rows the sink buffers before an insert, and the longest it holds them.
SINK_BATCH_ROWS = 1000
SINK_FLUSH_S = 1.0

#: Records taken from Kafka per poll (Flink's consumer hands them over one by one anyway).
POLL_RECORDS = 100

PROBABILITY_PREFIX = "probability("


def parse_features(value: bytes) -> list[float]:
    """``value.split(",")`` and ``Double.parseDouble`` of each field (a bad one raises, as in Java)."""
    return [float(field) for field in value.decode().split(",")]


def input_data_transfer(values: Sequence[float], names: Sequence[str]) -> bytes:
    """The request body of one record: ``{"instances": [{name: value, ...}]}``."""
    instance = dict(zip(names, values, strict=True))
    return orjson.dumps({"instances": [instance]})


def send_http_data(url: str, token: str, body: bytes, timeout_s: float) -> bytes | None:
    """One synchronous call on a new connection; the answer's bytes, or None on any failure."""
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Content-type": "application/json",
            "Accept": "application/json",
            "X-AUTH-TOKEN": token,
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data: bytes = response.read()
            return data if response.status == 200 else b"error input"
    except (urllib.error.URLError, OSError) as exc:
        logger.error("model call failed: %s", exc)
        return None


@dataclass(frozen=True)
class ServedModel:
    """What the model service says about itself (the reference hard-codes ``_c0``..``_c8``)."""

    name: str
    version: str
    inputs: list[str]

    @classmethod
    def ask(cls, server: str, served_name: str, token: str) -> ServedModel:
        request = urllib.request.Request(
            f"{server}/v1/models/{served_name}", headers={"X-AUTH-TOKEN": token}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            status = orjson.loads(response.read())
        return cls(
            name=str(status.get("model") or served_name),
            version=str(status.get("version") or ""),
            inputs=[field["name"] for field in status["schema"]["inputFields"]],
        )


class ClickHouseSink:
    """Buffers rows and inserts them over ClickHouse's HTTP interface (JSONEachRow)."""

    def __init__(self, settings: Settings) -> None:
        self._url = (
            f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/"
        )
        self._user = settings.clickhouse_user
        self._password = settings.clickhouse_password.get_secret_value()
        self._database = settings.clickhouse_database
        self._rows: list[dict[str, Any]] = []
        self._flushed_at = time.monotonic()
        self.stored = 0

    def query(self, sql: str, body: bytes = b"") -> bytes:
        request = urllib.request.Request(
            self._url + "?" + urllib.parse.urlencode({"query": sql}),
            data=body,
            headers={
                "X-ClickHouse-User": self._user,
                "X-ClickHouse-Key": self._password,
            },
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            data: bytes = response.read()
            return data

    def ensure_table(self) -> None:
        for statement in create_statements(self._database):
            self.query(statement)

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    @property
    def pending(self) -> int:
        return len(self._rows)

    def due(self) -> bool:
        return bool(self._rows) and (
            len(self._rows) >= SINK_BATCH_ROWS
            or time.monotonic() - self._flushed_at >= SINK_FLUSH_S
        )

    def flush(self) -> None:
        stored_at_ms = int(time.time() * 1000)
        for row in self._rows:
            row["stored_at"] = stored_at_ms // 1000
            row["stored_at_ms"] = stored_at_ms
        body = b"\n".join(orjson.dumps(row) for row in self._rows)
        table = f"{quote_identifier(self._database)}.predictions"
        self.query(f"INSERT INTO {table} FORMAT JSONEachRow", body)
        self.stored += len(self._rows)
        self._rows = []
        self._flushed_at = time.monotonic()


def result_row(
    record: Any,
    values: list[float],
    model: ServedModel,
    answer: bytes,
    server: str,
    latency_s: float,
) -> dict[str, Any]:
    """The ``predictions`` row of one record and its answer (the reference stores the answer text)."""
    prediction = orjson.loads(answer)["predictions"][0]
    labels = [
        key[len(PROBABILITY_PREFIX) : -1]
        for key in prediction
        if key.startswith(PROBABILITY_PREFIX)
    ]
    return {
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "record_id": (record.key or b"").decode("utf-8", "replace"),
        "event_time": record.timestamp // 1000,
        "event_time_ms": record.timestamp,
        "scored_at_ms": int(time.time() * 1000),
        "feature_names": model.inputs,
        "feature_values": values,
        "predicted_label": str(
            prediction.get("label", prediction.get("pmml(prediction)"))
        ),
        "probability_labels": labels,
        "probabilities": [
            float(prediction[f"{PROBABILITY_PREFIX}{label})"]) for label in labels
        ],
        "true_label": "",
        "model_name": model.name,
        "model_version": str(prediction.get("model_version", model.version)),
        "model_server": server,
        "scoring_latency_ms": latency_s * 1000.0,
    }


async def run(settings: Settings, seconds: float) -> int:
    """Consume, score one record at a time, sink; stop after ``seconds``. Returns the rows stored."""
    server = settings.model_server_urls[0]
    token = settings.model_client_token
    url = f"{server}/v1/models/{settings.model_name}:predict"
    model = ServedModel.ask(server, settings.model_name, token)
    sink = ClickHouseSink(settings)
    sink.ensure_table()
    consumer = AIOKafkaConsumer(
        settings.feature_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_client_options(settings),
    )
    await consumer.start()
    logger.info(
        "reference job started: topic %s, model %s, ClickHouse database %s",
        settings.feature_topic,
        url,
        settings.clickhouse_database,
    )
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=POLL_RECORDS)
            for records in batches.values():
                for record in records:
                    values = parse_features(record.value)
                    body = input_data_transfer(values, model.inputs)
                    started = time.perf_counter()
                    answer = send_http_data(url, token, body, settings.score_timeout_s)
                    latency_s = time.perf_counter() - started
                    if answer is not None and answer != b"error input":
                        sink.add(
                            result_row(record, values, model, answer, server, latency_s)
                        )
            if sink.due():
                sink.flush()
                await consumer.commit()
        if sink.pending:
            sink.flush()
            await consumer.commit()
    finally:
        await consumer.stop()
    logger.info("reference job stopped: %d rows stored", sink.stored)
    return sink.stored


@click.command()
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="Seconds to run before stopping.",
)
def main(seconds: float) -> None:
    """Run the reference design's job (configured by RISKSTREAM_* like a worker)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stored = asyncio.run(run(get_settings(), seconds))
    click.echo(f"reference job: {stored} rows stored in {seconds:.0f} s")


if __name__ == "__main__":
    main()
