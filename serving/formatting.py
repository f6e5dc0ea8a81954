"""The reference's answer format: every value a string, numbers as Java prints them.

The reference's PMML service (TI-EMS, a JPMML evaluator in Java) answers
``{"pmml(prediction)": "1", "probability(0)": "0.47058823529411764",
"probability(1)": "0.5294117647058824", "prediction": "1.0", "label": "1"}``.
Its numbers are Java's ``Double.toString``: the shortest digits that read
back as the same double (what Python's ``repr`` gives too) laid out as
``d.dddE-n`` below 10^-3 and from 10^7 on, where Python would write
``0.0001234`` or ``12345678.0``. Clients written against the reference
parse either, but the layout is the reference's, so we keep it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

__all__ = ["java_double", "java_doubles", "output_text", "prediction_text"]


def java_double(value: float) -> str:
    """``value`` as Java's ``Double.toString`` writes it (JDK 19+ shortest digits)."""
    value = float(value)  # numpy scalars have another repr
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        return repr(value)
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    mantissa, _, exponent = f"{value!r}".partition("e")
    if not exponent:  # repr chose positional notation (1e-4 <= |value| < 1e16)
        mantissa, exponent = _scientific(repr(value))
    digits = mantissa if "." in mantissa else f"{mantissa}.0"
    return f"{digits}E{int(exponent)}"


def java_doubles(values: np.ndarray) -> list[str]:
    """Every value of a 1-D float64 array as :func:`java_double` writes it, fast.

    orjson writes a double with the same shortest digits as ``repr`` (and as
    Java), positionally, at a fraction of ``repr``'s cost; only the values
    outside Java's positional range (other than zero) are redone one by one.
    """
    if (
        values.size <= 16
    ):  # one-row requests: the vector set-up costs more than it saves
        return [java_double(value) for value in values.tolist()]
    values = np.ascontiguousarray(values, dtype=np.float64)
    texts = (
        orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
        .decode()
        .split(",")
    )
    positional = ((values >= 1e-3) & (values < 1e7)) | (
        (values <= -1e-3) & (values > -1e7)
    )
    for index in np.flatnonzero(~positional & (values != 0.0)).tolist():
        texts[index] = java_double(float(values[index]))
    return texts


def _scientific(positional: str) -> tuple[str, str]:
    """'0.000123' -> ('1.23', '-4'); '12345678.0' -> ('1.2345678', '7') — same digits."""
    sign = "-" if positional.startswith("-") else ""
    whole, _, fraction = positional.lstrip("-").partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent = (
        len(whole) - 1
        if whole.strip("0")
        else -(len(fraction) - len(fraction.lstrip("0")) + 1)
    )
    digits = digits.rstrip("0") or "0"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return sign + mantissa, str(exponent)


def prediction_text(category: str) -> str:
    """The reference's ``prediction``: the label as a double ("1" -> "1.0").

    The reference's Spark-trained model predicts a double that its PMML maps
    to the label; a label that is not a number has no such double and is
    returned as it is.
    """
    try:
        return java_double(float(category))
    except ValueError:
        return category


def output_text(value: Any) -> str | None:
    """One value of an extra PMML output field (entity id, reason code, ...) as answer text.

    Strings stay as they are, numbers are written as Java writes them
    (integers without a fraction), booleans as ``true``/``false``; a value
    the model did not give stays null.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    return str(value)
