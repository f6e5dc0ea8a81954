"""jpmml-evaluator (JPMML-Evaluator through JPype) next to pypmml, the slow path's engine.

    python -m bench.jpmml_compare FILE.pmml [FILE.pmml ...] [--rows 20000]

For each PMML: the same random rows (drawn by the schema, as
``riskstream bench serving`` draws them) scored by both, as a batch
(pandas DataFrame in, DataFrame out), one row per call as a one-row
DataFrame ("single") and as a dict ("record", each library's row API: the
model server's single-row case), then how many rows they disagree on (label, or
a probability / predicted value by more than 1e-9). Both JVMs live in this
process's reach at once: pypmml's is a py4j child process, JPype's is in
this process. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from bench.serving import _machine, _random_rows
from models.pmml_schema import PmmlSchema, read_schema

__all__ = ["compare"]


def _rate(call: Callable[[], Any], rows: int, minimum_s: float = 2.0) -> float:
    """Rows per second of ``call()``, repeated for at least ``minimum_s`` seconds."""
    calls, started = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= minimum_s:
            return calls * rows / elapsed


def _answers(
    schema: PmmlSchema, frame: Any, labels: str, names: dict[str, str]
) -> np.ndarray:
    """One row per answer: the label (or predicted value) then each class's probability."""
    if schema.function_name == "regression":
        return frame[[labels]].to_numpy(dtype=float)
    columns = [frame[labels].astype(str).to_numpy()]
    columns += [frame[names[c]].to_numpy(dtype=float) for c in schema.target_values]
    return np.column_stack(columns)


def _disagreements(schema: PmmlSchema, ours: np.ndarray, theirs: np.ndarray) -> int:
    if schema.function_name == "regression":
        same = np.isclose(ours[:, 0], theirs[:, 0], rtol=0, atol=1e-9, equal_nan=True)
        return int((~same).sum())
    labels = ours[:, 0] == theirs[:, 0]
    numbers = np.isclose(
        ours[:, 1:].astype(float), theirs[:, 1:].astype(float), rtol=0, atol=1e-9
    ).all(axis=1)
    return int((~(labels & numbers)).sum())


def _with_outputs(path: Path, schema: PmmlSchema) -> tuple[str, str, dict[str, str]]:
    """The document asking for a label and every probability (as the server asks), and their columns."""
    from serving.reference_evaluator import answering_document

    text, answers = answering_document(path.read_bytes(), schema, schema.target_values)
    return text, answers.label, answers.probabilities


def compare(path: Path, rows: int) -> dict[str, float]:
    """Batch and single-row rows/s of both engines on ``path``, and their disagreements."""
    import pandas as pd
    from jpmml_evaluator import make_evaluator
    from pypmml import Model

    schema = read_schema(path)
    drawn = _random_rows(schema, rows)
    frame = pd.DataFrame(dict(zip(schema.input_names, drawn.values, strict=True)))
    single = frame.head(1)
    text, label, probabilities = _with_outputs(path, schema)
    reference = Model.fromString(text)
    record = {
        name: column[0]
        for name, column in zip(schema.input_names, drawn.values, strict=True)
    }
    # the same document for both: with the label and probability outputs added
    with tempfile.NamedTemporaryFile("w", suffix=".pmml") as copy:
        copy.write(text)
        copy.flush()
        jpmml = make_evaluator(copy.name, backend="jpype").verify()
    reference.predict(frame.head(100))  # warm both JVMs up
    jpmml.evaluateAll(frame.head(100))

    theirs = reference.predict(frame)
    ours = jpmml.evaluateAll(frame)
    return {
        "pypmml_batch": _rate(lambda: reference.predict(frame), rows),
        "jpmml_batch": _rate(lambda: jpmml.evaluateAll(frame), rows),
        "pypmml_single": _rate(lambda: reference.predict(single), 1),
        "jpmml_single": _rate(lambda: jpmml.evaluateAll(single), 1),
        "pypmml_record": _rate(lambda: reference.predict(record), 1),
        "jpmml_record": _rate(lambda: jpmml.evaluate(record), 1),
        "disagreements": _disagreements(
            schema,
            # jpmml answers a model chain's added top-level probabilities as 0.0,
            # its final segment's own outputs right: prefer those where present
            _answers(
                schema,
                ours,
                schema.target
                if schema.target is not None and schema.target in ours.columns
                else label,
                {
                    c: f"probability({c})"
                    if f"probability({c})" in ours.columns
                    else probabilities[c]
                    for c in schema.target_values
                },
            ),
            _answers(schema, theirs, label, probabilities),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--rows", type=int, default=20_000)
    arguments = parser.parse_args()
    for line in _machine():
        print(line)
    print(f"jpmml-evaluator {version('jpmml-evaluator')}, jpype1 {version('jpype1')}")
    for path in arguments.files:
        figures = compare(path, arguments.rows)
        print(f"\n{path.name} ({arguments.rows:,} rows)")
        for mode in ("batch", "single", "record"):
            ratio = figures[f"jpmml_{mode}"] / figures[f"pypmml_{mode}"]
            print(
                f"  {mode:<6}  pypmml {figures[f'pypmml_{mode}']:>10,.0f} rows/s   "
                f"jpmml-evaluator {figures[f'jpmml_{mode}']:>10,.0f} rows/s   "
                f"({ratio:.1f} x)"
            )
        print(f"  rows they disagree on: {figures['disagreements']:,}")


if __name__ == "__main__":
    main()
