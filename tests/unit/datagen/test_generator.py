"""The generator's rows: within each input's range, overridable like datagen's fields.X.min/max."""

from __future__ import annotations

import math

import click
import pytest

from datagen.cli import parse_field_options
from datagen.generator import (
    BLOCK_ROWS,
    FieldRange,
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
    assert parse_field_options(("mitoses.min=0", "mitoses.max=3", "area.max=1e3")) == {
        "mitoses": {"min": 0.0, "max": 3.0},
        "area": {"max": 1000.0},
    }


@pytest.mark.parametrize("option", ["mitoses=3", "mitoses.mean=3", "mitoses.min=three"])
def test_malformed_field_options_are_refused(option: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_field_options((option,))


def test_ranges_default_to_the_models_valid_range_and_take_overrides() -> None:
    ranges = field_ranges(SCHEMA, {"mitoses": FieldRange(0.0, 3.0)})
    assert ranges[0] == FieldRange(1.0, 10.0)
    assert ranges[1] == FieldRange(0.0, 3.0)
    assert ranges[3] == FieldRange(0.0, 100.0)


def test_unknown_or_inverted_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="inputs the model does not have: age"):
        field_ranges(SCHEMA, {"age": FieldRange(1, 2)})
    with pytest.raises(ValueError, match="min 5.0 is above max 2.0"):
        field_ranges(SCHEMA, {"mitoses": FieldRange(5.0, 2.0)})


def test_random_rows_stay_in_range_integers_where_bounds_are_integral() -> None:
    ranges = field_ranges(SCHEMA, {"mitoses": FieldRange(0.0, 3.0)})
    block, labels = next(random_rows(ranges, seed=1))
    assert len(block) == BLOCK_ROWS and labels == [None] * BLOCK_ROWS
    thickness = {row[0] for row in block}
    assert thickness == set(range(1, 11))  # every integer 1-10 drawn, nothing else
    assert {row[1] for row in block} == {0, 1, 2, 3}
    assert all(row[2] is not None and 143.5 <= row[2] <= 2501.0 for row in block)
    line = encode_csv(block[0])
    assert None not in block[0]
    assert decode_features(line, SCHEMA).values == [
        float(v) for v in block[0] if v is not None
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
    assert next(blocks) == (rows, ["0", "1", "0"])
    assert next(blocks) == (rows, ["0", "1", "0"])


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
    assert as_row([1.0, math.nan]) == [1.0, None]
