"""``riskstream retrain``'s own behaviour: errors in one line, and a loop that outlives a failed run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from riskstream.cli import main
from stack.launch import riskstream_argv
from tests.ports import free_port

MODEL = "breast-cancer"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A repository whose current version exists (nothing here reads its PMML)."""
    version = tmp_path / "models" / MODEL / "1"
    version.mkdir(parents=True)
    (version / "model.pmml").write_text("<PMML/>")
    (version.parent / "CURRENT").write_text("1\n")
    return tmp_path / "models"


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> int:
    """A ClickHouse port nobody listens on."""
    port = free_port()
    monkeypatch.setenv("RISKSTREAM_CLICKHOUSE_PORT", str(port))
    monkeypatch.setenv("RISKSTREAM_CLICKHOUSE_HOSTS", "")
    return port


def test_an_unreachable_clickhouse_is_one_line_and_exit_1(
    repository: Path, nowhere: int
) -> None:
    result = CliRunner().invoke(
        main, ["retrain", MODEL, "--repository", str(repository)]
    )
    assert result.exit_code == 1
    assert (
        f"cannot read the labelled predictions of 'breast-cancer' from ClickHouse at 127.0.0.1:{nowhere}"
        in result.output
    )


def test_an_unknown_model_fails_before_clickhouse_is_asked(
    repository: Path, nowhere: int
) -> None:
    result = CliRunner().invoke(
        main, ["retrain", "nope", "--repository", str(repository)]
    )
    assert result.exit_code == 1
    assert "unknown model 'nope'" in result.output
    assert "ClickHouse" not in result.output


@pytest.mark.parametrize("flag", ["--since", "--every"])
def test_a_bad_duration_is_a_usage_error(repository: Path, flag: str) -> None:
    result = CliRunner().invoke(
        main, ["retrain", MODEL, flag, "soon", "--repository", str(repository)]
    )
    assert result.exit_code == 2
    assert "invalid duration 'soon'" in result.output


def test_every_logs_each_run_goes_on_after_a_failure_and_stops_on_ctrl_c(
    repository: Path, nowhere: int
) -> None:
    process = subprocess.Popen(
        riskstream_argv(
            "retrain", MODEL, "--every", "1s", "--repository", str(repository)
        ),
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        while not any("run 2 failed" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(process.stderr.readline())
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    log = "".join(lines) + rest
    assert process.returncode == 0, log
    assert "retrain breast-cancer: every 1 s, Ctrl-C stops" in log
    assert "run 1 failed: cannot read the labelled predictions" in log
    assert "run 1: next run in" in log
    assert "stopped after" in log
