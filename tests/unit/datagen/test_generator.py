"""The generator's rows: within each input's range or values, overridable like datagen's fields.X.min/max."""

from __future__ import annotations

import math

import click
import pytest

from datagen.cli import parse_field_options
from datagen.generator import (
    BLOCK_ROWS,
    FieldOverride,
    FieldRange,
    FieldValues,
    as_row,
    field_ranges,
    random_rows,
    replay_rows,
)
from datagen.schema import dataset_for
from models.records import FeatureField, FeatureSchema, decode_features, encode_csv

SCHEMA = FeatureSchema(
    "breast-cancer",
    "1",
    (
        FeatureField("clump_thickness", 1.0, 10.0),
        FeatureField("mitoses", 1.0, 10.0),
        FeatureField("area", 143.5, 2501.0),
        FeatureField("open", None, None),
    ),
)


def test_field_options_parse_like_flink_datagen() -> None:
    assert parse_field_options(
        (
            "mitoses.min=0",
            "mitoses.max=3",
            "area.max=1e3",
            "race.values=white|other race",
        )
    ) == {
        "mitoses": FieldOverride(0.0, 3.0),
        "area": FieldOverride(high=1000.0),
        "race": FieldOverride(values=("white", "other race")),
    }


@pytest.mark.parametrize(
    "option",
    [
        "mitoses=3",
        "mitoses.mean=3",
        "mitoses.min=three",
        "race.values=",
        "race.values=a||b",
    ],
)
def test_malformed_field_options_are_refused(option: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_field_options((option,))


def test_ranges_default_to_the_models_valid_range_and_take_overrides() -> None:
    ranges = field_ranges(SCHEMA, {"mitoses": FieldOverride(0.0, 3.0)})
    assert ranges[0] == FieldRange(1.0, 10.0)
    assert ranges[1] == FieldRange(0.0, 3.0)
    assert ranges[3] == FieldRange(0.0, 100.0)


def test_unknown_or_inverted_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="inputs the model does not have: age"):
        field_ranges(SCHEMA, {"age": FieldOverride(1, 2)})
    with pytest.raises(ValueError, match="min 5.0 is above max 2.0"):
        field_ranges(SCHEMA, {"mitoses": FieldOverride(5.0, 2.0)})
    with pytest.raises(ValueError, match="min 11.0 is above max 10.0"):
        field_ranges(SCHEMA, {"mitoses": FieldOverride(low=11.0)})  # max: the model's


def test_random_rows_stay_in_range_integers_where_bounds_are_integral() -> None:
    ranges = field_ranges(SCHEMA, {"mitoses": FieldOverride(0.0, 3.0)})
    block, labels, record_ids = next(random_rows(ranges, seed=1))
    assert record_ids is None  # generated from the run id
    assert len(block) == BLOCK_ROWS and labels == [None] * BLOCK_ROWS
    thickness = {row[0] for row in block}
    assert thickness == set(range(1, 11))  # every integer 1-10 drawn, nothing else
    assert {row[1] for row in block} == {0, 1, 2, 3}
    assert all(isinstance(row[2], float) and 143.5 <= row[2] <= 2501.0 for row in block)
    numbers = [v for v in block[0] if isinstance(v, (int, float))]
    assert len(numbers) == len(SCHEMA.names)  # no missing value, no string
    assert decode_features(encode_csv(numbers), SCHEMA).values == [
        float(v) for v in numbers
    ]


def test_same_seed_same_rows() -> None:
    ranges = field_ranges(SCHEMA, {})
    assert (
        next(random_rows(ranges, seed=7))[0][:50]
        == next(random_rows(ranges, seed=7))[0][:50]
    )


def test_replay_runs_through_the_rows_in_order_and_starts_again() -> None:
    rows = [[float(i)] for i in range(3)]
    blocks = replay_rows(rows, ["0", "1", "0"])
    assert next(blocks) == (rows, ["0", "1", "0"], None)
    assert next(blocks) == (rows, ["0", "1", "0"], None)
    with_ids = replay_rows(rows, ["0", "1", "0"], ["a", "b", "c"])
    assert next(with_ids).record_ids == ["a", "b", "c"]


def test_replay_picks_the_data_set_with_the_models_inputs() -> None:
    from models.dataset import ORIGINAL_FEATURES

    schema = FeatureSchema(
        "m", "1", tuple(FeatureField(n, 1, 10) for n in ORIGINAL_FEATURES)
    )
    dataset = dataset_for(schema)
    assert dataset.key == "wisconsin-original"
    rows = [as_row(values) for values in dataset.X.to_numpy().tolist()]
    assert (
        sum(1 for row in rows for value in row if value is None)
        == dataset.missing_cells
    )
    with pytest.raises(ValueError, match="no data set has the inputs"):
        dataset_for(SCHEMA)


def test_missing_values_become_none() -> None:
    assert as_row([1.0, math.nan, "white"]) == [1.0, None, "white"]


#: birthwt's inputs as its PMML declares them: string categories and numbers.
BIRTHWT = FeatureSchema(
    "birthwt",
    "1",
    (
        FeatureField("age", 14.0, 45.0, "float"),
        FeatureField(
            "race", None, None, "string", "categorical", ("white", "black", "other")
        ),
        FeatureField("smoke", None, None, "string", "categorical", ("no", "yes")),
        FeatureField("ptl", 0.0, 3.0, "float"),
    ),
)


def test_random_categories_are_drawn_only_from_the_declared_values() -> None:
    draws = field_ranges(BIRTHWT, {})
    assert draws[1] == FieldValues(("white", "black", "other"))
    block = next(random_rows(draws, seed=5)).rows
    assert {row[1] for row in block} == {
        "white",
        "black",
        "other",
    }  # each, nothing else
    assert {row[2] for row in block} == {"no", "yes"}
    assert {row[0] for row in block} <= set(range(14, 46))
    assert all(isinstance(row[0], int) and isinstance(row[1], str) for row in block)


def test_field_values_override_the_declared_values_typed_by_the_schema() -> None:
    overrides = parse_field_options(("race.values=black|other", "ptl.values=0|3"))
    draws = field_ranges(BIRTHWT, overrides)
    assert draws[1] == FieldValues(("black", "other"))
    assert draws[3] == FieldValues((0.0, 3.0))  # numbers for a numeric input
    block = next(random_rows(draws, seed=2)).rows
    assert {row[1] for row in block} == {"black", "other"}
    assert {row[3] for row in block} == {0.0, 3.0}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (FieldOverride(0, 1), "race is a string input: give race.values=a|b|c"),
        (FieldOverride(high=1, values=("a",)), "either values or min/max"),
    ],
)
def test_bounds_of_a_string_input_are_refused(
    override: FieldOverride, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        field_ranges(BIRTHWT, {"race": override})


def test_numeric_values_that_are_not_numbers_are_refused() -> None:
    with pytest.raises(
        ValueError, match="field ptl: the value is not a number: 'many'"
    ):
        field_ranges(BIRTHWT, {"ptl": FieldOverride(values=("1", "many"))})


def test_a_string_input_without_declared_values_needs_them_given() -> None:
    free = FeatureSchema("m", "1", (FeatureField("note", data_type="string"),))
    with pytest.raises(ValueError, match="declares no values for: give note.values"):
        field_ranges(free, {})
    assert field_ranges(free, {"note": FieldOverride(values=("a",))}) == [
        FieldValues(("a",))
    ]
    flag = FeatureSchema("m", "1", (FeatureField("flag", data_type="boolean"),))
    assert field_ranges(flag, {}) == [FieldValues((False, True))]


def test_replay_of_birthwt_sends_its_words() -> None:
    from models.dataset import BIRTHWT_INPUTS

    schema = FeatureSchema(
        "birthwt", "1", tuple(FeatureField(name) for name in BIRTHWT_INPUTS)
    )
    dataset = dataset_for(schema)
    assert dataset.key == "birthwt"
    rows = [as_row(values) for values in dataset.X.to_numpy().tolist()]
    assert rows[0] == [19.0, 182.0, "black", "no", 0.0, "no", "yes", 0.0]
