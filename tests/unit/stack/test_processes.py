"""Pid files trust only processes that are provably ours; stopping escalates to SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.processes import PidFile, is_alive, owns, tail, terminate


def spawn_sleeper(marker: str, ignore_sigterm: bool = False) -> subprocess.Popen[bytes]:
    """A child process with ``marker`` on its command line, ready when it has printed."""
    code = "import signal, sys, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(120)\n"
    child = subprocess.Popen(
        [sys.executable, "-c", code, marker], stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


@pytest.fixture
def marker(tmp_path: Path) -> str:
    return str(tmp_path / "config.xml")


@pytest.fixture
def sleeper(marker: str) -> Iterator[subprocess.Popen[bytes]]:
    child = spawn_sleeper(marker)
    yield child
    child.kill()
    child.wait()


def test_pid_file_returns_the_pid_of_our_running_process(
    tmp_path: Path, marker: str, sleeper: subprocess.Popen[bytes]
) -> None:
    pid_file = PidFile(tmp_path / "run" / "svc.pid", marker)
    pid_file.write(sleeper.pid)
    assert pid_file.owned_pid() == sleeper.pid
    assert pid_file.path.exists()


def test_pid_file_refuses_a_live_pid_that_is_not_ours_and_leaves_it_alone(
    tmp_path: Path, marker: str
) -> None:
    pid_file = PidFile(tmp_path / "svc.pid", marker)
    pid_file.write(os.getpid())  # alive, but its command line lacks the marker
    assert pid_file.owned_pid() is None
    assert not pid_file.path.exists()
    assert is_alive(os.getpid())


def test_pid_file_of_an_exited_process_is_stale(tmp_path: Path, marker: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass", marker])
    child.wait()
    pid_file = PidFile(tmp_path / "svc.pid", marker)
    pid_file.write(child.pid)
    assert pid_file.owned_pid() is None
    assert not pid_file.path.exists()


@pytest.mark.parametrize("content", ["", "not a pid\n", "12x\n"])
def test_unreadable_pid_file_is_removed(
    tmp_path: Path, marker: str, content: str
) -> None:
    path = tmp_path / "svc.pid"
    path.write_text(content)
    assert PidFile(path, marker).owned_pid() is None
    assert not path.exists()


def test_missing_pid_file_means_not_running(tmp_path: Path, marker: str) -> None:
    assert PidFile(tmp_path / "none.pid", marker).owned_pid() is None


def test_owns_checks_the_marker_not_the_program_name(
    marker: str, sleeper: subprocess.Popen[bytes]
) -> None:
    assert owns(sleeper.pid, marker)
    assert not owns(sleeper.pid, marker + ".other")


async def test_terminate_stops_a_process_with_sigterm(
    marker: str, sleeper: subprocess.Popen[bytes]
) -> None:
    assert await terminate(sleeper.pid, grace_s=10) is False
    assert not is_alive(sleeper.pid)


async def test_terminate_kills_a_process_that_ignores_sigterm(marker: str) -> None:
    child = spawn_sleeper(marker, ignore_sigterm=True)
    started = time.monotonic()
    assert await terminate(child.pid, grace_s=0.5) is True
    assert not is_alive(child.pid)
    assert time.monotonic() - started >= 0.5


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 30) == [f"line {i}" for i in range(70, 100)]
    assert tail(tmp_path / "missing.log") == []
