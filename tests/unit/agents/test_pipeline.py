"""The batch handler and the in-order acking pipeline, driven without Kafka."""

from __future__ import annotations

import asyncio
import base64
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from agents.pipeline import BatchOutcome, BatchProcessor, Pipeline
from agents.scoring_client import RequestRejected, ScoredRequest
from models.records import (
    DeadLetter,
    FeatureField,
    FeatureSchema,
    RecordKeys,
    encode_json,
)
from tables.histogram import LATENCY_BUCKETS_MS
from tables.predictions import INSERT_COLUMNS, STORED_AT_COLUMNS, PredictionRow

SCHEMA = FeatureSchema(
    "breast-cancer",
    "2",
    tuple(FeatureField(n, 1.0, 10.0) for n in ("clump_thickness", "mitoses")),
)
COLUMN = {name: index for index, name in enumerate(INSERT_COLUMNS)}


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 1_767_323_045.5


class RuleScorer:
    """A stand-in model: label 1 when clump_thickness > 5; refuses clump_thickness 0 per row."""

    def __init__(self, refuse_requests_with: float | None = None) -> None:
        self.requests: list[int] = []
        self._refuse = refuse_requests_with

    async def score(self, instances: Sequence[Mapping[str, float]]) -> ScoredRequest:
        self.requests.append(len(instances))
        if self._refuse is not None and any(
            row.get("mitoses") == self._refuse for row in instances
        ):
            raise RequestRejected("HTTP 400: mitoses out of range", 400)
        predictions: list[Mapping[str, Any]] = []
        for row in instances:
            if row.get("clump_thickness") == 0:
                predictions.append(
                    {"error": "field 'clump_thickness': 0.0 is not valid"}
                )
                continue
            malignant = row.get("clump_thickness", 0) > 5
            predictions.append(
                {
                    "pmml(prediction)": str(int(malignant)),
                    "probability(0)": "0.1" if malignant else "0.9",
                    "probability(1)": "0.9" if malignant else "0.1",
                    "label": str(int(malignant)),
                    "model_version": "2",
                }
            )
        return ScoredRequest(predictions, "http://server-a", 0.002, 1_767_323_046_000)


class Rows:
    def __init__(self) -> None:
        self.rows: list[PredictionRow] = []

    async def write(self, rows: Sequence[PredictionRow]) -> int:
        self.rows.extend(rows)
        return 1_767_323_046_100


class Letters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def processor(
    scorer: RuleScorer,
    rows: Rows,
    letters: Letters,
    request_rows: int = 3,
    **options: Any,
) -> BatchProcessor:
    """The batch handler of SCHEMA over these stand-ins; ``options`` as BatchProcessor takes them."""
    return BatchProcessor(
        schema=SCHEMA,
        scorer=scorer,
        sinks=[rows],
        dead_letters=letters,
        request_rows=request_rows,
        **options,
    )


async def test_good_bad_and_refused_records_each_end_up_in_one_place() -> None:
    scorer, rows, letters = RuleScorer(), Rows(), Letters()
    messages = [
        Message("features", 0, 10, b"id-10", b"7,1"),
        Message("features", 0, 11, b"id-11", b"7,x"),  # malformed
        Message("features", 1, 5, b"id-5", b"0,1"),  # the model refuses it
        Message(
            "features",
            1,
            6,
            b"id-6",
            encode_json(SCHEMA, "j-6", 1_767_323_040.0, [2, None], "0"),
        ),
        Message("features", 1, 7, None, b"3,"),
    ]
    outcome = await processor(scorer, rows, letters).process(messages)

    assert [row[COLUMN["source_offset"]] for row in rows.rows] == [10, 6, 7]
    assert [row[COLUMN["record_id"]] for row in rows.rows] == [
        "id-10",
        "j-6",
        "features:1:7",
    ]
    assert [row[COLUMN["predicted_label"]] for row in rows.rows] == ["1", "0", "0"]
    first = dict(zip(INSERT_COLUMNS, rows.rows[0] + (None, None), strict=True))
    assert first["feature_names"] == ["clump_thickness", "mitoses"]
    assert first["feature_values"] == [7.0, 1.0]
    assert first["probability_labels"] == ["0", "1"] and first["probabilities"] == [
        0.1,
        0.9,
    ]
    assert first["model_name"] == "breast-cancer" and first["model_version"] == "2"
    assert first["model_server"] == "http://server-a"
    assert (
        first["event_time_ms"] == 1_767_323_045_500
    )  # the Kafka timestamp of a CSV record
    json_row = dict(zip(INSERT_COLUMNS, rows.rows[1] + (None, None), strict=True))
    assert (
        json_row["event_time_ms"] == 1_767_323_040_000 and json_row["true_label"] == "0"
    )
    assert len(rows.rows[0]) == len(INSERT_COLUMNS) - len(STORED_AT_COLUMNS)

    reasons = {
        (letter.source_offset, letter.stage): letter.reason
        for letter in letters.letters
    }
    assert set(reasons) == {(11, "decode"), (5, "score")}
    assert "CSV field 2 (mitoses) is not a number" in reasons[(11, "decode")]
    assert "model refused the record: field 'clump_thickness'" in reasons[(5, "score")]
    refused = next(letter for letter in letters.letters if letter.source_offset == 5)
    assert base64.b64decode(refused.raw_value_base64) == b"0,1"

    assert outcome.partitions[0].received == 2 and outcome.partitions[0].stored == 1
    assert outcome.partitions[1].received == 3 and outcome.partitions[1].stored == 2
    assert outcome.partitions[1].dead_lettered == 1
    assert outcome.dead_letters_by_stage == {"decode": 1, "score": 1}
    assert sum(outcome.partitions[1].latency_counts) == 2
    assert outcome.total("received") == outcome.total("stored") + outcome.total(
        "dead_lettered"
    )


async def test_a_csv_record_whose_kafka_timestamp_cannot_be_an_event_time_is_dead_lettered() -> (
    None
):
    scorer, rows, letters = RuleScorer(), Rows(), Letters()
    messages = [
        Message("f", 0, 0, b"k", b"2,2", timestamp=-0.001),
        Message("f", 0, 1, b"k", b"2,2"),
    ]
    await processor(scorer, rows, letters).process(messages)
    assert [row[COLUMN["source_offset"]] for row in rows.rows] == [1]
    (letter,) = letters.letters
    assert (
        letter.stage == "decode"
        and "Kafka timestamp -0.001 is outside 1970-2100" in letter.reason
    )


async def test_missing_inputs_are_left_out_of_the_request_and_stored_as_nan() -> None:
    scorer, rows, letters = RuleScorer(), Rows(), Letters()
    await processor(scorer, rows, letters).process([Message("f", 0, 0, b"k", b",4")])
    values = rows.rows[0].feature_values
    assert values[0] != values[0] and values[1] == 4.0  # NaN, then 4


async def test_rows_go_to_the_pool_in_requests_of_bounded_size() -> None:
    scorer, rows, letters = RuleScorer(), Rows(), Letters()
    messages = [Message("f", 0, i, b"k", b"2,2") for i in range(8)]
    await processor(scorer, rows, letters, request_rows=3).process(messages)
    assert sorted(scorer.requests) == [2, 3, 3]
    assert [row[COLUMN["source_offset"]] for row in rows.rows] == list(range(8))


async def test_a_request_refused_as_a_whole_is_split_until_the_bad_row_is_alone() -> (
    None
):
    scorer, rows, letters = RuleScorer(refuse_requests_with=9.0), Rows(), Letters()
    messages = [
        Message("f", 0, i, b"k", b"2,9" if i == 5 else b"2,2") for i in range(8)
    ]
    outcome = await processor(scorer, rows, letters, request_rows=8).process(messages)
    assert [row[COLUMN["source_offset"]] for row in rows.rows] == [0, 1, 2, 3, 4, 6, 7]
    (letter,) = letters.letters
    assert letter.source_offset == 5 and "mitoses out of range" in letter.reason
    assert outcome.total("stored") == 7 and outcome.total("dead_lettered") == 1


class SlowProcessor:
    """Finishes batches in random order, remembering how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0

    async def process(self, messages: Sequence[Message]) -> BatchOutcome:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(random.uniform(0.0, 0.03))
        self.running -= 1
        return BatchOutcome()


async def test_batches_are_acked_in_the_order_taken_and_in_flight_stays_bounded() -> (
    None
):
    slow = SlowProcessor()

    async def prepare() -> Any:
        return slow

    pipeline = Pipeline(prepare=prepare, batches_in_flight=3)
    outcomes: list[BatchOutcome] = []
    pipeline.add_outcome_listener(outcomes.append)
    acked: list[int] = []

    def ack(messages: Sequence[Message]) -> None:
        acked.extend(message.offset for message in messages)

    await pipeline.start()
    try:
        await pipeline.wait_ready()
        offsets = iter(range(200))
        for _ in range(40):
            batch = [Message("f", 0, next(offsets), None, b"") for _ in range(5)]
            await pipeline.submit(batch, ack)
        for _ in range(200):
            if len(acked) == 200:
                break
            await asyncio.sleep(0.01)
    finally:
        await pipeline.stop()
    assert acked == list(range(200))
    assert len(outcomes) == 40
    assert slow.most_running == 3


async def test_a_failing_batch_crashes_the_pipeline_and_acks_nothing() -> None:
    class Broken:
        async def process(self, messages: Sequence[Message]) -> BatchOutcome:
            raise TypeError("a bug")

    async def prepare() -> Any:
        return Broken()

    pipeline = Pipeline(prepare=prepare, batches_in_flight=2)
    acked: list[Message] = []

    def ack(messages: Sequence[Message]) -> None:
        acked.extend(messages)

    await pipeline.start()
    try:
        await pipeline.wait_ready()
        await pipeline.submit([Message("f", 0, 0, None, b"")], ack)
        for _ in range(100):
            if pipeline.crashed:
                break
            await asyncio.sleep(0.01)
    finally:
        await pipeline.stop()
    assert pipeline.crashed and isinstance(pipeline.crash_reason, TypeError)
    assert acked == []


@pytest.mark.parametrize("limit", [1, 4])
async def test_stopping_abandons_the_in_flight_batches_without_acking(
    limit: int,
) -> None:
    release = asyncio.Event()

    class Stuck:
        async def process(self, messages: Sequence[Message]) -> BatchOutcome:
            await release.wait()
            return BatchOutcome()

    async def prepare() -> Any:
        return Stuck()

    pipeline = Pipeline(prepare=prepare, batches_in_flight=limit)
    acked: list[Message] = []

    def ack(messages: Sequence[Message]) -> None:
        acked.extend(messages)

    await pipeline.start()
    await pipeline.wait_ready()
    for offset in range(limit):
        await pipeline.submit([Message("f", 0, offset, None, b"")], ack)
    assert pipeline.snapshot()["records_in_flight"] == limit
    await pipeline.stop()
    release.set()
    await asyncio.sleep(0.01)
    assert acked == []


class EchoScorer:
    """Answers as a server of ``schema`` would: a regression, or a label per row; keeps the requests."""

    def __init__(self, regression: bool) -> None:
        self.regression = regression
        self.instances: list[Mapping[str, Any]] = []

    async def score(self, instances: Sequence[Mapping[str, Any]]) -> ScoredRequest:
        self.instances.extend(instances)
        predictions: list[Mapping[str, Any]]
        if self.regression:
            predictions = [
                {"pmml(prediction)": "2.5", "prediction": "2.5", "model_version": "1"}
                for _ in instances
            ]
        else:
            predictions = [
                {"pmml(prediction)": "yes", "probability(yes)": "0.75", "label": "yes"}
                for _ in instances
            ]
        return ScoredRequest(predictions, "http://server-a", 0.001, 1_767_323_046_000)


def mixed_schema(function_name: str) -> FeatureSchema:
    return FeatureSchema(
        "audit",
        "1",
        (
            FeatureField("age", 17.0, 90.0),
            FeatureField("employment", None, None, "string", "categorical"),
            FeatureField("married", None, None, "boolean", "categorical"),
        ),
        function_name,
    )


@pytest.mark.parametrize("function_name", ["classification", "regression"])
async def test_text_inputs_travel_as_text_and_are_stored_beside_the_numbers(
    function_name: str,
) -> None:
    schema = mixed_schema(function_name)
    scorer, rows, letters = EchoScorer(function_name == "regression"), Rows(), Letters()
    handler = BatchProcessor(
        schema=schema,
        scorer=scorer,
        sinks=[rows],
        dead_letters=letters,
        request_rows=10,
    )
    await handler.process(
        [
            Message("features", 0, 1, b"k-1", b"38,Private,true"),
            Message("features", 0, 2, None, b'{"age": 40, "married": false}'),
            Message("features", 0, 3, None, b'{"age": 41, "married": "perhaps"}'),
        ]
    )
    assert scorer.instances == [
        {"age": 38.0, "employment": "Private", "married": "true"},
        {"age": 40.0, "married": "false"},
    ]
    assert [letter.stage for letter in letters.letters] == ["decode"]
    assert "married" in letters.letters[0].reason
    first, second = rows.rows
    assert first.record_id == "k-1" and second.record_id == "features:0:2"
    assert first.feature_names == ["age"] and first.feature_values == [38.0]
    assert first.text_feature_names == ["employment", "married"]
    assert first.text_feature_values == ["Private", "true"]
    assert second.text_feature_values == ["", "false"]
    if function_name == "regression":
        assert first.predicted_value == 2.5 and first.predicted_label == ""
        assert first.probabilities == []
    else:
        assert first.predicted_label == "yes" and first.probabilities == [0.75]
        assert first.predicted_value != first.predicted_value  # NaN


async def test_the_record_keys_are_settings() -> None:
    scorer, rows, letters = RuleScorer(), Rows(), Letters()
    handler = processor(
        scorer,
        rows,
        letters,
        keys=RecordKeys(record_id="patient", event_time="seen_at"),
    )
    raw = (
        b'{"patient": "p-9", "seen_at": 1767323040, "clump_thickness": 7, "mitoses": 1}'
    )
    await handler.process([Message("features", 1, 5, b"kafka-key", raw)])
    (row,) = rows.rows
    assert row.record_id == "p-9" and row.event_time_ms == 1_767_323_040_000
    assert row.predicted_label == "1"


class ShadowedScorer(RuleScorer):
    """RuleScorer's answers with a shadow's beside them: label 1 when mitoses > 5, or refused."""

    async def score(self, instances: Sequence[Mapping[str, float]]) -> ScoredRequest:
        answer = await super().score(instances)
        for row, prediction in zip(instances, answer.predictions, strict=True):
            assert isinstance(prediction, dict)
            prediction["shadow_version"] = "3"
            if row.get("mitoses") == 1:
                prediction["shadow_error"] = "field 'mitoses': refused by the shadow"
                continue
            malignant = row.get("mitoses", 0) > 5
            prediction["shadow_label"] = str(int(malignant))
            prediction["shadow_probabilities"] = {"1": 0.8 if malignant else 0.3}
        return answer


async def test_the_shadows_answer_is_stored_beside_the_prediction_aligned_to_its_classes() -> (
    None
):
    rows = Rows()
    messages = [
        Message("features", 0, 1, b"a", b"7,9"),
        Message("features", 0, 2, b"b", b"7,1"),
    ]
    await processor(ShadowedScorer(), rows, Letters()).process(messages)
    shadowed, refused = (row._asdict() for row in rows.rows)
    assert shadowed["predicted_label"] == "1" and shadowed["shadow_label"] == "1"
    assert shadowed["shadow_version"] == "3"
    assert shadowed["probability_labels"] == ["0", "1"]
    # parallel to probability_labels: NaN for the class the shadow did not give
    assert math.isnan(shadowed["shadow_probabilities"][0])
    assert shadowed["shadow_probabilities"][1] == 0.8
    assert (refused["shadow_version"], refused["shadow_label"]) == ("3", "")
    assert refused["shadow_probabilities"] == []


async def test_a_batch_tallies_labels_and_latencies_per_source_partition() -> None:
    """Each stored row counts once, in its partition: its label and its latency's bucket."""
    stored_at_s = 1_767_323_046.1  # Rows.write's stamp

    def record(partition: int, offset: int, age_s: float, thickness: int) -> Message:
        value = encode_json(
            SCHEMA, f"r-{offset}", stored_at_s - age_s, [thickness, 1], ""
        )
        return Message("features", partition, offset, None, value)

    messages = [
        record(0, 1, 0.005, 7),  # 5 ms: the first bucket (<= 5 ms)
        record(0, 2, 0.010, 2),  # 10 ms
        record(1, 3, 1.0, 7),  # 1,000 ms
        record(1, 4, 6.1, 7),  # 6,100 ms: the 10,000 ms bucket
        record(1, 5, 6.1, 0),  # refused by the model: dead-lettered, no latency
    ]
    outcome = await processor(RuleScorer(), Rows(), Letters()).process(messages)

    first, second = outcome.partitions[0], outcome.partitions[1]
    assert (first.received, first.stored, first.dead_lettered) == (2, 2, 0)
    assert (second.received, second.stored, second.dead_lettered) == (3, 2, 1)
    assert first.labels == {"1": 1, "0": 1} and second.labels == {"1": 2}
    buckets = LATENCY_BUCKETS_MS
    assert {i: n for i, n in enumerate(first.latency_counts) if n} == {
        buckets.index(5): 1,
        buckets.index(10): 1,
    }
    assert {i: n for i, n in enumerate(second.latency_counts) if n} == {
        buckets.index(1_000): 1,
        buckets.index(10_000): 1,
    }
    assert first.latency_sum_ms == pytest.approx(15.0, abs=2.0)
    assert second.latency_sum_ms == pytest.approx(7_100.0, abs=2.0)
