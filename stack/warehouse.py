"""The local ClickHouse server: Debian's package, our config, data under the stack folder.

The system service (``/etc/clickhouse-server``, ``/var/lib/clickhouse``)
is never used: the server runs as a plain process with the config that
``stack up`` renders into ``<stack_dir>/clickhouse``, so it needs no root
rights on its files and ``down`` can stop exactly it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from asynch import errors as asynch_errors
from asynch.connection import Connection

from app.settings import Settings
from stack.installer import ensure_program
from stack.service import (
    PROBE_TIMEOUT_S,
    Listener,
    LocalService,
    port_answers,
    render_conf,
)

__all__ = ["ClickHouseService"]

logger = logging.getLogger(__name__)


class ClickHouseService(LocalService):
    """``clickhouse-server`` serving the native protocol on ``127.0.0.1:<clickhouse_port>``."""

    name = "clickhouse"

    def __init__(self, settings: Settings, root: Path) -> None:
        super().__init__(settings, root)
        self.data_dir = self.home / "data"
        self.users_path = self.home / "users.xml"
        self.server = "clickhouse-server"

    @property
    def config_path(self) -> Path:
        return self.home / "config.xml"

    @property
    def listeners(self) -> list[Listener]:
        return [
            Listener(
                "native", self.settings.clickhouse_port, "RISKSTREAM_CLICKHOUSE_PORT"
            ),
            Listener(
                "http",
                self.settings.clickhouse_http_port,
                "RISKSTREAM_CLICKHOUSE_HTTP_PORT",
            ),
        ]

    async def prepare(self) -> None:
        self.server = await ensure_program(
            "clickhouse-server", ["clickhouse-server", "clickhouse-client"]
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        render_conf("clickhouse-users.xml", self.users_path)
        render_conf(
            "clickhouse-config.xml",
            self.config_path,
            port=self.settings.clickhouse_port,
            http_port=self.settings.clickhouse_http_port,
            data_dir=self.data_dir,
            users_config=self.users_path,
        )

    def command(self) -> list[str]:
        return [self.server, f"--config-file={self.config_path}"]

    async def answers(self) -> bool:
        if not await port_answers(self.settings.clickhouse_port):
            return False
        connection = Connection(host="127.0.0.1", port=self.settings.clickhouse_port)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await connection.connect()
                async with connection.cursor() as cursor:
                    await cursor.execute("SELECT 1")
                    return bool(await cursor.fetchone() == (1,))
        except (asynch_errors.Error, OSError, EOFError, TimeoutError) as error:
            logger.debug("clickhouse probe failed: %r", error)
            return False
        finally:
            with contextlib.suppress(asynch_errors.Error, OSError):
                await connection.close()
