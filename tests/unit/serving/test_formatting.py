"""Numbers as the reference's Java service writes them."""

from __future__ import annotations

import numpy as np
import pytest

from serving.formatting import java_double, java_doubles, prediction_text


@pytest.mark.parametrize(
    ("value", "java"),
    [  # Double.toString on OpenJDK 17
        (0.47058823529411764, "0.47058823529411764"),
        (0.5294117647058824, "0.5294117647058824"),
        (1.0, "1.0"),
        (0.0, "0.0"),
        (0.001, "0.001"),
        (0.00011848341232227489, "1.1848341232227489E-4"),
        (1e-5, "1.0E-5"),
        (9.999e-4, "9.999E-4"),
        (-2.5e-4, "-2.5E-4"),
        (9999999.999, "9999999.999"),
        (1e7, "1.0E7"),
        (1.2345678e7, "1.2345678E7"),
        (123456789012.0, "1.23456789012E11"),
        (1e22, "1.0E22"),
        (1e-300, "1.0E-300"),
    ],
)
def test_java_double_matches_java(value: float, java: str) -> None:
    assert java_double(value) == java
    assert float(java) == value


def test_prediction_is_the_label_as_a_double() -> None:
    assert prediction_text("1") == "1.0"
    assert prediction_text("0") == "0.0"
    assert prediction_text("malignant") == "malignant"


def test_the_vectorised_form_writes_every_double_as_java_does() -> None:
    rng = np.random.default_rng(3)
    magnitudes = 10.0 ** rng.uniform(-12, 12, 50_000)
    values = np.concatenate(
        [
            magnitudes * rng.choice([-1.0, 1.0], magnitudes.size),
            [
                0.0,
                -0.0,
                1.0,
                1e-3,
                np.nextafter(1e-3, 0),
                1e7,
                np.nextafter(1e7, 0),
                np.nan,
            ],
            rng.random(10_000),  # probabilities
        ]
    )
    assert java_doubles(values) == [java_double(v) for v in values.tolist()]
