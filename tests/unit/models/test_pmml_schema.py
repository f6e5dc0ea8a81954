"""The exported PMML declares the full input schema and the outputs serving needs."""

from __future__ import annotations

import pytest

from models.dataset import ORIGINAL_FEATURES, load_dataset
from models.parity import check_parity
from models.pmml_export import LABEL_OUTPUT, export_pmml
from models.pmml_schema import read_schema
from models.training import TrainingParams, fit_pipeline


def test_all_nine_inputs_in_file_order_even_those_the_tree_does_not_use(
    pmml: bytes,
) -> None:
    schema = read_schema(pmml)
    assert schema.input_names == list(ORIGINAL_FEATURES)
    split_fields = {
        name for name in ORIGINAL_FEATURES if f'field="{name}"' in pmml.decode()
    }
    assert split_fields < set(ORIGINAL_FEATURES), (
        "the test needs a tree that skips an input"
    )


def test_every_input_declares_range_1_to_10_and_its_treatments(pmml: bytes) -> None:
    for field in read_schema(pmml).inputs:
        assert (field.valid_min, field.valid_max) == (1.0, 10.0)
        assert field.missing_value_treatment == "asMedian"
        assert field.missing_value_replacement is not None
        assert field.invalid_value_treatment == "returnInvalid"
        assert f'name="{field.name}" missingValueReplacement' in pmml.decode()
    assert pmml.decode().count('invalidValueTreatment="returnInvalid"') == 9


def test_outputs_are_the_label_and_each_class_probability(pmml: bytes) -> None:
    schema = read_schema(pmml)
    assert schema.label_field() == LABEL_OUTPUT
    assert schema.probability_fields() == {"0": "probability(0)", "1": "probability(1)"}
    assert schema.target == "malignant"
    assert schema.target_values == ("0", "1")


@pytest.mark.parametrize("algorithm", ["forest", "logistic"])
def test_other_algorithms_export_the_same_schema_and_pass_the_gate(
    algorithm: str,
) -> None:
    dataset = load_dataset("wisconsin-original")
    params = TrainingParams(algorithm=algorithm, n_estimators=5)
    pipeline = fit_pipeline(dataset, params, dataset.X, dataset.y)
    pmml = export_pmml(pipeline, dataset)
    schema = read_schema(pmml)
    assert schema.input_names == list(ORIGINAL_FEATURES)
    assert schema.output_names == [LABEL_OUTPUT, "probability(0)", "probability(1)"]
    assert check_parity(pmml, pipeline, dataset.X).rows == 699
