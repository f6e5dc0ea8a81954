"""A private stack's life: up twice is a no-op, down stops exactly its processes.

It runs its own ClickHouse (its own folder and ports) so that the shared
session stack is never disturbed; Kafka shares the same code path
(``stack.service``), its start and stop are what ``make test`` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from stack import control
from stack.processes import is_alive
from tests.ports import free_port

pytestmark = pytest.mark.stack


def processes_mentioning(folder: Path) -> list[int]:
    """Pids of live processes whose command line names ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder) in (entry / "cmdline").read_bytes().decode(
                    errors="replace"
                ):
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if is_alive(pid)]


async def test_private_clickhouse_up_twice_then_down_twice_leaves_no_process(
    tmp_path: Path,
) -> None:
    root = tmp_path / "stack"
    settings = Settings(
        stack_dir=root,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        clickhouse_port=free_port(),
        clickhouse_http_port=free_port(),
    )
    try:
        assert await control.up(settings, ["clickhouse"]) == ["clickhouse"]
        statuses = {status.name: status for status in await control.status(settings)}
        pid = statuses["clickhouse"].pid
        assert pid is not None and statuses["clickhouse"].answers
        assert not statuses["kafka"].answers

        assert await control.up(settings, ["clickhouse"]) == []
        assert (await control.status(settings))[1].pid == pid

        assert await control.down(settings) == ["clickhouse"]
        assert not is_alive(pid)
        assert await control.down(settings) == []
        assert processes_mentioning(root) == []
    finally:
        await control.down(settings)
