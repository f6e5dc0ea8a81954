"""The shared start/wait/stop machinery, driven with a tiny Python "server" instead of Kafka."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from stack.errors import ServiceDidNotStart
from stack.processes import is_alive
from stack.service import Listener, LocalService, port_answers
from tests.ports import free_port

#: What the fake server does, by mode; argv[1] is its config path (our marker).
SERVER = """
import socket, sys, time
mode, port = sys.argv[2], int(sys.argv[3])
print(f"fake server in mode {mode}", flush=True)
if mode == "crash":
    print("boom: cannot read config", flush=True)
    sys.exit(3)
if mode == "serve":
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
time.sleep(120)
"""


class FakeService(LocalService):
    name = "fake"

    def __init__(self, settings: Settings, root: Path, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        super().__init__(settings, root)

    @property
    def config_path(self) -> Path:
        return self.home / "fake.conf"

    @property
    def listeners(self) -> list[Listener]:
        return [Listener("client", self.port, "RISKSTREAM_FAKE_PORT")]

    async def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.py").write_text(SERVER)

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(self.home / "server.py"),
            str(self.config_path),
            self.mode,
            str(self.port),
        ]

    async def answers(self) -> bool:
        return await port_answers(self.port)


def fake(tmp_path: Path, mode: str, timeout_s: float = 30) -> FakeService:
    settings = Settings(stack_dir=tmp_path, stack_timeout_s=timeout_s)
    return FakeService(settings, tmp_path.resolve(), mode)


async def test_a_service_that_answers_starts_once_and_stops_with_a_log_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stack.service")
    service = fake(tmp_path, "serve")
    launch = await service.launch()
    try:
        await service.wait_ready(launch)
        assert service.pid_file.owned_pid() == launch.pid
        again = await service.launch()
        assert again.pid == launch.pid and not again.started_now
    finally:
        assert await service.stop() is True
    assert not is_alive(launch.pid)
    assert await service.stop() is False
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith(f"fake started at 127.0.0.1:{service.port} (pid {launch.pid}")
        for m in messages
    )
    assert any(
        m.startswith(f"fake stopped at 127.0.0.1:{service.port} (pid {launch.pid}")
        for m in messages
    )


async def test_a_service_that_exits_fails_at_once_with_the_end_of_its_log(
    tmp_path: Path,
) -> None:
    service = fake(tmp_path, "crash")
    launch = await service.launch()
    with pytest.raises(
        ServiceDidNotStart, match="fake exited with code 3 while starting"
    ) as failure:
        await service.wait_ready(launch)
    assert "boom: cannot read config" in failure.value.log_tail
    assert failure.value.log_tail[0].startswith("==== riskstream stack: starting fake")
    assert not service.pid_file.path.exists()


async def test_a_service_that_never_answers_is_stopped_after_the_timeout(
    tmp_path: Path,
) -> None:
    service = fake(tmp_path, "mute", timeout_s=1)
    launch = await service.launch()
    with pytest.raises(
        ServiceDidNotStart, match="did not answer at .* within 1 s"
    ) as failure:
        await service.wait_ready(launch)
    assert "fake server in mode mute" in failure.value.log_tail
    assert not is_alive(launch.pid)
    assert not service.pid_file.path.exists()
