"""A ClickHouse of a test's own, started by the stack's code with the app's user and a password file.

The session's local stack keeps its settings for the whole run; the tests
of the app's ClickHouse user need a password the session does not have,
so they start a second server (about a second on ClickHouse 18.16) in a
folder of their own, exactly as ``riskstream stack up`` would with those
settings, and stop it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from core.settings import Settings
from stack import control
from stack.rig import clickhouse_admin_query as admin_query
from tests.ports import free_port

__all__ = ["admin_query", "private_clickhouse"]


@contextlib.contextmanager
def private_clickhouse(
    folder: Path, database: str, password: str
) -> Iterator[Settings]:
    """A running ClickHouse whose app user ``riskstream`` has ``password`` (from a file) and ``database``.

    Yields the settings a worker would use (the password file included).
    """
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "clickhouse-password"
    password_file.write_text(password + "\n")
    settings = Settings(
        stack_dir=folder / "stack",
        clickhouse_port=free_port(),
        clickhouse_http_port=free_port(),
        clickhouse_database=database,
        clickhouse_user="riskstream",
        clickhouse_password=SecretStr(""),
        clickhouse_password_file=password_file,
    )
    asyncio.run(control.up(settings, ["clickhouse"]))
    try:
        yield settings
    finally:
        asyncio.run(control.down(settings, ["clickhouse"]))
