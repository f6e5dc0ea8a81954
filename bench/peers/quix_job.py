"""The pipeline as a Quix Streams application: a peer of ``riskstream bench peers``.

Written as Quix Streams' documentation recommends: an ``Application`` (its
own consumer, committing on its checkpoints), a ``StreamingDataFrame`` whose
``apply`` step calls the model server on a keep-alive ``requests.Session``
(one record per call: a dataframe step sees one record), and a
``BatchingSink`` subclass that inserts each checkpoint's batch into ClickHouse
over HTTP (``JSONEachRow``), the same ``predictions`` columns riskstream
stores, so the bench counts it the same way.

It runs in a venv of its own that the bench builds in the stack folder
(:mod:`bench.peers.build`): quixstreams 3.28 requires pydantic < 2.14, which
riskstream's pins exclude. Hence no ``app.*`` import here: the bench reads
the ``RISKSTREAM_*`` settings and passes everything on the command line. It
runs until SIGTERM (Quix stops gracefully: the last batch is flushed).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import requests
from quixstreams import Application
from quixstreams.sinks.base import BatchingSink, SinkBatch

PROBABILITY_PREFIX = "probability("


class Scorer:
    """One record per call to the model server, on one keep-alive session."""

    def __init__(self, server: str, model: str, token: str, inputs: list[str]) -> None:
        self.server = server
        self._url = f"{server}/v1/models/{model}:predict"
        self._inputs = inputs
        self._session = requests.Session()
        self._session.headers.update(
            {"Content-Type": "application/json", "X-Auth-Token": token}
        )

    def __call__(self, value: bytes) -> dict[str, Any]:
        """The record's features and the model's answer, as the sink needs them."""
        values = [float(field) for field in value.decode().split(",")]
        body = orjson.dumps(
            {"instances": [dict(zip(self._inputs, values, strict=True))]}
        )
        started = time.perf_counter()
        response = self._session.post(self._url, data=body, timeout=30)
        response.raise_for_status()
        latency_ms = (time.perf_counter() - started) * 1000.0
        prediction = orjson.loads(response.content)["predictions"][0]
        labels = [
            key[len(PROBABILITY_PREFIX) : -1]
            for key in prediction
            if key.startswith(PROBABILITY_PREFIX)
        ]
        return {
            "feature_values": values,
            "predicted_label": str(
                prediction.get("label", prediction.get("pmml(prediction)"))
            ),
            "probability_labels": labels,
            "probabilities": [
                float(prediction[f"{PROBABILITY_PREFIX}{label})"]) for label in labels
            ],
            "model_version": str(prediction.get("model_version", "")),
            "scored_at_ms": int(time.time() * 1000),
            "scoring_latency_ms": latency_ms,
        }


class ClickHouseSink(BatchingSink):
    """Inserts a checkpoint's batch of one partition in one HTTP request (``JSONEachRow``)."""

    def __init__(
        self,
        url: str,
        database: str,
        user: str,
        password: str,
        constants: dict[str, Any],
    ) -> None:
        super().__init__()
        self._url = url
        self._query = f"INSERT INTO `{database}`.predictions FORMAT JSONEachRow"
        self._headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
        self._constants = constants
        self._session = requests.Session()

    def write(self, batch: SinkBatch) -> None:
        stored_at_ms = int(time.time() * 1000)
        lines = [
            orjson.dumps(
                {
                    **self._constants,
                    **item.value,
                    "source_topic": batch.topic,
                    "source_partition": batch.partition,
                    "source_offset": item.offset,
                    "record_id": (item.key or b"").decode("utf-8", "replace"),
                    "event_time": item.timestamp // 1000,
                    "event_time_ms": item.timestamp,
                    "stored_at": stored_at_ms // 1000,
                    "stored_at_ms": stored_at_ms,
                }
            )
            for item in batch
        ]
        response = self._session.post(
            self._url,
            params={"query": self._query},
            data=b"\n".join(lines),
            headers=self._headers,
            timeout=60,
        )
        response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    for name in ("bootstrap", "topic", "group", "server", "model", "inputs"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--clickhouse", required=True, help="ClickHouse's HTTP URL")
    parser.add_argument("--database", required=True)
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    inputs = args.inputs.split(",")
    scorer = Scorer(args.server, args.model, args.token, inputs)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        # A checkpoint (the sink's flush, then the commit) every second, like the
        # other peers' sinks, instead of every 5 s: the bench's runs are short.
        commit_interval=1.0,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(topic).apply(scorer)
    sdf.sink(
        ClickHouseSink(
            args.clickhouse,
            args.database,
            args.user,
            args.password,
            constants={
                "feature_names": inputs,
                "true_label": "",
                "model_name": args.model,
                "model_server": scorer.server,
            },
        )
    )
    app.run()


if __name__ == "__main__":
    main()
