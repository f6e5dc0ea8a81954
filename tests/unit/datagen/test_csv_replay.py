"""`riskstream datagen --from-csv`: a CSV file's rows become typed records with their ids and labels."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from datagen import cli as datagen_cli
from datagen import generator
from datagen.generator import (
    Block,
    GeneratorConfig,
    check_csv_values,
    generate,
    read_csv_records,
    replay_rows,
)
from models.dataset import BIRTHWT_PATH
from models.records import FeatureField, FeatureSchema

from .test_generator import BIRTHWT as SCHEMA

#: columns in another order than the schema's, one column the model does not take
TABLE = """\
patient,smoke,ptl,race,age,outcome
p-1,no,0,black,19,0
p-2,yes,,white,33,1
p-3,no,2,other,,
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    path.write_text(TABLE)
    return path


def test_rows_are_read_by_column_name_and_typed_by_the_schema(table: Path) -> None:
    rows, labels, record_ids = read_csv_records(table, SCHEMA)
    assert rows == [
        [19.0, "black", "no", 0.0],
        [33.0, "white", "yes", None],  # an empty cell is a missing value
        [None, "other", "no", 2.0],
    ]
    assert labels == [None, None, None] and record_ids is None


def test_label_and_id_columns_travel_with_each_row(table: Path) -> None:
    block = read_csv_records(table, SCHEMA, label_column="outcome", id_column="patient")
    assert block.labels == ["0", "1", None]
    assert block.record_ids == ["p-1", "p-2", "p-3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "has no column 'lwt'"),
        ({"label_column": "low"}, "has no column 'lwt', 'low'"),
    ],
)
def test_a_missing_column_is_an_error_naming_it(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    schema = FeatureSchema(
        "m", "1", (*SCHEMA.fields, FeatureField("lwt", 80.0, 250.0, "float"))
    )
    path = tmp_path / "t.csv"
    path.write_text(TABLE)
    with pytest.raises(ValueError, match=message) as error:
        read_csv_records(path, schema, **kwargs)
    assert "its columns: patient, smoke, ptl, race, age, outcome" in str(error.value)


def test_a_cell_the_schema_refuses_names_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(TABLE.replace("p-3,no,2,", "p-3,no,two,"))
    with pytest.raises(
        ValueError, match=r"line 4, column ptl: the value is not a number: 'two'"
    ):
        read_csv_records(path, SCHEMA)


def test_an_empty_id_or_a_short_row_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(TABLE.replace("p-2,", ","))
    with pytest.raises(ValueError, match="line 3: empty record id in column patient"):
        read_csv_records(path, SCHEMA, id_column="patient")
    path.write_text(TABLE.replace("p-2,yes,,white,33,1", "p-2,yes"))
    with pytest.raises(ValueError, match="line 3: 2 cells, the header has 6"):
        read_csv_records(path, SCHEMA)


def test_booleans_are_typed_as_booleans(tmp_path: Path) -> None:
    schema = FeatureSchema("m", "1", (FeatureField("flag", data_type="boolean"),))
    path = tmp_path / "t.csv"
    path.write_text("flag\ntrue\n0\nFALSE\n")
    assert read_csv_records(path, schema).rows == [["true"], ["false"], ["false"]]
    path.write_text("flag\nmaybe\n")
    with pytest.raises(ValueError, match=r"a boolean .true or false., not 'maybe'"):
        read_csv_records(path, schema)


def test_the_vendored_birthwt_file_replays_as_it_is() -> None:
    schema = FeatureSchema(
        "birthwt",
        "1",
        tuple(
            FeatureField(name, 0.0, 300.0, "float")
            for name in ("age", "lwt", "ptl", "ftv")
        )
        + tuple(
            FeatureField(name, data_type="string", optype="categorical")
            for name in ("race", "smoke", "ht", "ui")
        ),
    )
    block = read_csv_records(BIRTHWT_PATH, schema, label_column="low", id_column="id")
    assert len(block.rows) == 189
    assert block.record_ids is not None and block.record_ids[0] == "85"
    assert block.labels[0] == "0" and set(block.labels) == {"0", "1"}
    assert block.rows[0] == [19.0, 182.0, 0.0, 0.0, "black", "no", "no", "yes"]


class RecordingProducer:
    """Stands in for aiokafka's producer: acknowledges everything, keeps what it got."""

    sent: list[tuple[bytes, bytes]]

    def __init__(self, **options: Any) -> None:
        RecordingProducer.sent = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        RecordingProducer.sent.append((key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> type[RecordingProducer]:
    async def declare(*args: Any) -> None:
        pass

    monkeypatch.setattr(generator, "declare_topic", declare)
    monkeypatch.setattr(generator, "AIOKafkaProducer", RecordingProducer)
    return RecordingProducer


def _produce(rows: Iterator[Block], fmt: str, count: int) -> list[tuple[bytes, bytes]]:
    config = GeneratorConfig("kafka:9092", "t", 1, SCHEMA, count=count, format=fmt)
    report = asyncio.run(generate(config, rows))
    assert report.produced == count
    return RecordingProducer.sent


def test_csv_rows_become_json_records_keyed_by_their_ids(
    table: Path, no_kafka: type[RecordingProducer]
) -> None:
    block = read_csv_records(table, SCHEMA, label_column="outcome", id_column="patient")
    sent = _produce(replay_rows(*block), "json", 3)
    assert [key for key, _ in sent] == [b"p-1", b"p-2", b"p-3"]
    records = [orjson.loads(value) for _, value in sent]
    assert records[1] == {
        "record_id": "p-2",
        "event_time": records[1]["event_time"],
        "label": "1",
        "age": 33.0,
        "race": "white",
        "smoke": "yes",
        "ptl": None,
    }
    assert records[2]["label"] is None and records[2]["age"] is None


def test_without_an_id_column_ids_are_generated_as_in_the_replay(
    table: Path, no_kafka: type[RecordingProducer]
) -> None:
    config = GeneratorConfig("kafka:9092", "t", 1, SCHEMA, count=4, format="json")
    asyncio.run(generate(config, replay_rows(*read_csv_records(table, SCHEMA))))
    keys = [key.decode() for key, _ in RecordingProducer.sent]
    assert keys == [f"{config.run_id}-{i}" for i in range(4)]  # the 4th: row 1 again


def test_csv_output_writes_strings_as_they_are(
    table: Path, no_kafka: type[RecordingProducer]
) -> None:
    sent = _produce(replay_rows(*read_csv_records(table, SCHEMA)), "csv", 3)
    assert [value for _, value in sent] == [
        b"19,black,no,0",
        b"33,white,yes,",
        b",other,no,2",
    ]


def test_a_value_with_a_comma_is_refused_for_csv() -> None:
    check_csv_values("race", ["white", "black"])
    with pytest.raises(ValueError, match="input race: 'a,b' holds a comma"):
        check_csv_values("race", ["white", "a,b"])


@pytest.fixture
def cli_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[GeneratorConfig, Block]]:
    """The datagen command with the schema given and generate() recording its input."""
    calls: list[tuple[GeneratorConfig, Block]] = []

    async def schema(settings: Any, source: str, model: str | None) -> FeatureSchema:
        return SCHEMA

    async def fake_generate(
        config: GeneratorConfig, rows: Iterator[Block], *args: Any
    ) -> generator.GeneratorReport:
        calls.append((config, next(rows)))
        return generator.GeneratorReport(config.run_id, config.count or 0, 1.0)

    monkeypatch.setattr(datagen_cli, "_schema", schema)
    monkeypatch.setattr(datagen_cli, "generate", fake_generate)
    return calls


def _datagen(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(datagen_cli.datagen, list(args))
    return result.exit_code, result.output


def test_from_csv_sends_json_once_through_the_file_by_default(
    table: Path, cli_run: list[tuple[GeneratorConfig, Block]]
) -> None:
    code, output = _datagen(
        "--from-csv", str(table), "--label-column", "outcome", "--id-column", "patient"
    )
    assert code == 0, output
    assert f"replaying {table}: 3 records" in output
    ((config, block),) = cli_run
    assert (config.format, config.count) == ("json", 3)
    assert block.record_ids == ["p-1", "p-2", "p-3"] and block.labels[0] == "0"


def test_from_csv_errors_are_one_line_before_anything_is_sent(
    tmp_path: Path, table: Path, cli_run: list[tuple[GeneratorConfig, Block]]
) -> None:
    code, output = _datagen("--from-csv", str(table), "--id-column", "visit")
    assert code == 1 and "has no column 'visit'" in output
    comma = tmp_path / "comma.csv"
    comma.write_text('age,race,smoke,ptl\n19,"black, hispanic",no,0\n')
    code, output = _datagen("--from-csv", str(comma), "--format", "csv")
    assert code == 1 and "holds a comma" in output
    code, output = _datagen("--label-column", "outcome")
    assert code == 2 and "go with --from-csv" in output
    code, output = _datagen("--from-csv", str(table), "--replay")
    assert code == 2 and "choose one" in output
    assert cli_run == []


def test_random_rows_take_field_values_from_the_command_line(
    cli_run: list[tuple[GeneratorConfig, Block]],
) -> None:
    code, output = _datagen(
        "--count", "10", "--field", "race.values=black", "--seed", "1"
    )
    assert code == 0, output
    ((config, block),) = cli_run
    assert config.format == "csv"
    assert {row[1] for row in block.rows} == {"black"}
    code, output = _datagen("--field", "race.min=1")
    assert code == 2 and "race is a string input" in output


def test_labels_delay_goes_with_a_replay_that_has_labels(
    table: Path, cli_run: list[tuple[GeneratorConfig, Block]]
) -> None:
    code, output = _datagen("--labels-delay", "5")
    assert code == 2 and "use it with --replay" in output
    code, output = _datagen("--from-csv", str(table), "--labels-delay", "5")
    assert code == 2 and "--label-column" in output
    code, output = _datagen(
        "--from-csv", str(table), "--label-column", "outcome", "--labels-delay", "2.5"
    )
    assert code == 0, output
    ((config, _),) = cli_run
    assert config.labels_delay_s == 2.5
