"""The shipped alerting rules, checked by Prometheus's own promtool (Debian's prometheus; make test installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (make test installs Debian's prometheus)"
    return subprocess.run(
        [promtool, *args],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_rules_are_valid() -> None:
    checked = _promtool("check", "rules", "riskstream-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout


@pytest.mark.parametrize("rules_test", ["riskstream-rules.test.yml"])
def test_the_rules_fire_when_and_only_when_their_tests_say(rules_test: str) -> None:
    tested = _promtool("test", "rules", rules_test)
    assert tested.returncode == 0, tested.stdout + tested.stderr
