"""Request rows -> feature matrix: the PMML's names, ranges and missing-value rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.pmml_schema import InputField, read_schema
from serving.features import FeatureEncoder

from .conftest import MODEL_NAMES, REFERENCE_INSTANCE


@pytest.fixture(scope="module")
def tree_encoder(pmml_paths: dict[str, Path]) -> FeatureEncoder:
    return FeatureEncoder(read_schema(pmml_paths["breast-cancer"]))


def test_named_and_positional_rows_give_the_same_matrix(
    tree_encoder: FeatureEncoder,
) -> None:
    named = {tree_encoder.names[int(k[2:])]: v for k, v in REFERENCE_INSTANCE.items()}
    by_name = tree_encoder.encode([named])
    by_position = tree_encoder.encode([REFERENCE_INSTANCE])
    assert not by_name.errors and not by_position.errors
    assert (
        by_name.values.tolist()
        == by_position.values.tolist()
        == [[3.0, 2.0, 3.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0]]
    )


def replacement_of(field: InputField) -> float:
    """The field's missingValueReplacement as a number (the PMML declares one)."""
    assert field.missing_value_replacement is not None
    return float(field.missing_value_replacement)


def test_a_missing_field_takes_the_pmml_replacement(
    tree_encoder: FeatureEncoder,
) -> None:
    batch = tree_encoder.encode([{}, {"_c0": None, "_c5": ""}])
    replacements = [replacement_of(f) for f in tree_encoder.fields]
    assert not batch.errors
    assert batch.values[0].tolist() == replacements
    assert (
        batch.values[1, 0] == replacements[0] and batch.values[1, 5] == replacements[5]
    )
    assert not np.isnan(batch.values).any()


def test_invalid_rows_get_reasons_and_the_others_stay(
    tree_encoder: FeatureEncoder,
) -> None:
    first = tree_encoder.names[0]
    batch = tree_encoder.encode(
        [
            {"_c0": 0},  # outside [1, 10] under returnInvalid
            {first: "abc"},
            {"no_such_field": 1},
            [1, 2, 3],
            {"_c0": True},
            {"_c0": 3, first: 3},
            {"_c0": "7", "_c1": " 2.5 "},
            {"_c0": 10},  # the interval is closed: 10 is valid
            {"_c0": {"nested": 1}},
            {"_c0": 10**400},
        ]
    )
    assert (
        batch.errors[0] == f"field {first!r}: 0.0 is not in the valid range [1.0, 10.0]"
    )
    assert batch.errors[1] == f"field {first!r}: 'abc' is not a number"
    assert batch.errors[2].startswith(
        "unknown field 'no_such_field'; the model's inputs are"
    )
    assert batch.errors[3] == "an instance must be a JSON object, not a JSON array"
    assert batch.errors[4] == f"field {first!r}: true is not a number"
    assert "given twice" in batch.errors[5]
    assert batch.errors[8] == f"field {first!r}: a JSON object is not a number"
    assert "too large" in batch.errors[9]
    assert set(batch.errors) == {0, 1, 2, 3, 4, 5, 8, 9}
    assert batch.values[6, :2].tolist() == [7.0, 2.5]
    assert batch.values[7, 0] == 10.0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_trained_model_accepts_its_own_positional_names(
    name: str, pmml_paths: dict[str, Path]
) -> None:
    encoder = FeatureEncoder(read_schema(pmml_paths[name]))
    width = len(encoder.names)
    row = {f"_c{i}": f.valid_min for i, f in enumerate(encoder.fields)}
    batch = encoder.encode([row, {f"_c{width}": 1}])
    assert 0 not in batch.errors
    assert batch.values[0].tolist() == [f.valid_min for f in encoder.fields]
    assert batch.errors[1].startswith(f"unknown field '_c{width}'")


def test_as_is_inputs_keep_values_outside_their_range(
    pmml_paths: dict[str, Path],
) -> None:
    encoder = FeatureEncoder(read_schema(pmml_paths["breast-cancer-diagnostic"]))
    high = encoder.fields[0].valid_max
    assert high is not None
    batch = encoder.encode([{"_c0": high * 10}])
    assert not batch.errors
    assert math.isclose(batch.values[0, 0], high * 10)


def test_large_batches_convert_by_column(tree_encoder: FeatureEncoder) -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(1, 11, size=(5000, len(tree_encoder.names)))
    batch = tree_encoder.encode(
        [dict(zip(tree_encoder.names, r.tolist())) for r in rows]
    )
    assert not batch.errors
    assert np.array_equal(batch.values, rows.astype(float))


CODED = b"""<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <DataDictionary>
    <DataField name="grade" optype="categorical" dataType="string">
      <Value value="1"/><Value value="2"/><Value value="?" property="missing"/>
    </DataField>
    <DataField name="shade" optype="categorical" dataType="string">
      <Value value="dark"/><Value value="light"/>
    </DataField>
    <DataField name="flag" optype="categorical" dataType="boolean"/>
    <DataField name="level" optype="ordinal" dataType="integer">
      <Value value="1"/><Value value="2"/><Value value="3"/>
    </DataField>
    <DataField name="y" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema>
      <MiningField name="grade" missingValueReplacement="2"/>
      <MiningField name="shade" invalidValueTreatment="asIs"/>
      <MiningField name="flag"/>
      <MiningField name="level" invalidValueTreatment="asMissing"/>
      <MiningField name="y" usageType="target"/>
    </MiningSchema>
    <RegressionTable intercept="0">
      <CategoricalPredictor name="shade" value="dim" coefficient="1"/>
    </RegressionTable>
  </RegressionModel>
</PMML>"""


def test_string_and_boolean_inputs_become_category_codes() -> None:
    encoder = FeatureEncoder(read_schema(CODED))
    shade = encoder.fields[1]
    assert shade.categories == ("dark", "light", "dim")  # declared, then compared
    batch = encoder.encode(
        [
            {"grade": "1", "shade": "light", "flag": True, "level": 3},
            {"grade": 2, "shade": "dim", "flag": "false", "level": 2.0},
            {"grade": 2.0, "shade": "pink", "flag": "true", "level": 7},
            {"grade": "?", "shade": "", "level": None},
            {"grade": "3"},
            {"flag": 1},
            {"shade": 4},
        ]
    )
    assert batch.values[0].tolist() == [0.0, 1.0, 1.0, 3.0]
    # a JSON number finds the category it equals; an asIs value the document
    # compares with keeps its own code, one it never mentions is "other" (3)
    assert batch.values[1].tolist() == [1.0, 2.0, 0.0, 2.0]
    assert batch.values[2, :3].tolist() == [1.0, 3.0, 1.0]
    assert math.isnan(batch.values[2, 3])  # 7 is not a level: asMissing
    # "?" is declared missing and takes the replacement "2" (code 1); blank is missing
    assert batch.values[3, 0] == 1.0
    assert [math.isnan(v) for v in batch.values[3, 1:]] == [True, True, True]
    assert batch.errors == {
        4: "field 'grade': '3' is not one of the valid values '1', '2'",
        5: "field 'flag': 1 is not a boolean (true or false)",
    }
    assert 6 not in batch.errors and batch.values[6, 1] == 3.0  # "4": other, asIs
