"""The PostgreSQL sink and the app's role on the stack's real PostgreSQL 15.

The role is made the way ``riskstream stack up`` makes it (the same code,
run with a test database, role and password file of its own), then used
the way the worker uses it: it may write and read its table and nothing
else, and only with its password.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.settings import Settings
from stack import control
from stack.postgresql import ADMIN_USER, admin_execute, server_dir, socket_dir
from tables.postgresql import PostgreSQLSink
from tables.sink import Server
from tests.integration.rows import prediction_row as row
from tests.integration.rows import write_as_the_worker

PASSWORD = "pg-" + secrets.token_hex(8)


def admin_sink(settings: Settings, database: str) -> PostgreSQLSink:
    """A sink on a test database of its own, as the stack's admin (through the socket)."""
    return PostgreSQLSink(
        Server(
            str(socket_dir(settings)),
            settings.postgresql_port,
            ADMIN_USER,
            "",
            database,
        ),
        max_rows=100_000,
        max_wait_s=0.2,
        max_backoff_s=1.0,
    )


@pytest.fixture
def database(postgresql_stack: Settings) -> Iterator[str]:
    name = f"it_{secrets.token_hex(4)}"
    yield name
    asyncio.run(
        admin_execute(
            postgresql_stack, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']
        )
    )


def test_concurrent_batches_share_a_write_and_a_replay_leaves_one_row_per_record(
    postgresql_stack: Settings, database: str
) -> None:
    sink = admin_sink(postgresql_stack, database)

    async def run() -> tuple[list[int], int, int, list[tuple[Any, ...]]]:
        await sink.start()
        try:
            await sink.ensure_schema()  # creates the database, schema and table
            await sink.ensure_schema()  # idempotent
            stamps = await asyncio.gather(
                *(
                    sink.write([row(b * 1000 + i) for i in range(1000)])
                    for b in range(10)
                )
            )
            await sink.write([row(i) for i in range(500)])  # a replay of stored records
        finally:
            await sink.stop()
        stored = await sink.rows(
            [
                "source_offset",
                "feature_values",
                "event_time",
                "stored_at_ms",
                "text_feature_values",
            ]
        )
        return stamps, await sink.count_rows(), await sink.count_records(), stored

    stamps, rows, records, stored = asyncio.run(run())
    assert len(set(stamps)) == 1  # ten batches, one write
    assert sink.inserts == 2 and sink.rows_inserted == 10_500
    assert rows == records == 10_000  # the primary key absorbed the replay
    by_offset = {r[0]: r for r in stored}
    _, values, event_time, stored_at_ms, texts = by_offset[7]
    assert values[0] == 5.0 and math.isnan(values[1])
    assert event_time == 1_767_323_045 and stored_at_ms >= 1_767_323_045_500
    assert texts == ["yes"]


@pytest.fixture(scope="module")
def app_role(
    postgresql_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """``stack up``'s role set-up for a database and role of this module, password from a file."""
    folder = tmp_path_factory.mktemp("postgresql-role")
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    suffix = secrets.token_hex(3)
    # Read again from the environment like any entry point, with this module's names.
    settings = Settings(
        postgresql_database=f"it_role_{suffix}",
        postgresql_user=f"it_app_{suffix}",
        postgresql_password_file=password_file,
    )
    assert settings.postgresql_port == postgresql_stack.postgresql_port
    asyncio.run(control.up(settings, ["postgresql"]))
    database = settings.postgresql_database
    asyncio.run(
        admin_execute(
            settings,
            [
                "CREATE SCHEMA elsewhere",
                "CREATE TABLE elsewhere.secrets (x int)",
                "INSERT INTO elsewhere.secrets VALUES (7)",
                "CREATE TABLE public.other (x int)",
            ],
            database=database,
        )
    )
    try:
        yield settings
    finally:
        asyncio.run(
            admin_execute(
                settings,
                [
                    f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                    f'DROP ROLE IF EXISTS "{settings.postgresql_user}"',
                ],
            )
        )


async def as_app(settings: Settings, query: str, password: str = PASSWORD) -> object:
    connection = await asyncpg.connect(
        host="127.0.0.1",
        port=settings.postgresql_port,
        user=settings.postgresql_user,
        password=password,
        database=settings.postgresql_database,
        timeout=10,
    )
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


def test_the_role_writes_and_reads_its_table_through_the_sink_without_any_ddl(
    app_role: Settings,
) -> None:
    assert app_role.postgresql_password.get_secret_value() == PASSWORD  # from the file
    sink = PostgreSQLSink(
        Server.of(app_role, "postgresql"),
        max_rows=1000,
        max_wait_s=0.05,
        max_backoff_s=0.5,
    )

    async def run() -> tuple[int, int]:
        await write_as_the_worker(sink)
        return await sink.count_rows(), await sink.count_records()

    assert asyncio.run(run()) == (100, 100)
    assert sink.failed_inserts == 0


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE riskstream.predictions",
        "ALTER TABLE riskstream.predictions ADD COLUMN x int",
        "TRUNCATE riskstream.predictions",
        "DELETE FROM riskstream.predictions",
        "UPDATE riskstream.predictions SET record_id = 'x'",
        "CREATE TABLE riskstream.extra (x int)",
        "CREATE SCHEMA mine",
        "SELECT * FROM elsewhere.secrets",
        "SELECT * FROM public.other",
        "CREATE TABLE public.mine (x int)",
    ],
)
def test_the_role_may_not_change_the_schema_delete_rows_or_read_elsewhere(
    app_role: Settings, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(as_app(app_role, statement))


def test_a_wrong_password_is_refused_and_the_admin_is_not_reachable_over_tcp(
    app_role: Settings,
) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(as_app(app_role, "SELECT 1", password="wrong"))
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        asyncio.run(
            asyncpg.connect(
                host="127.0.0.1",
                port=app_role.postgresql_port,
                user=ADMIN_USER,
                database="postgres",
                timeout=10,
            )
        )


def test_the_password_is_in_no_file_of_the_stack_and_no_log(app_role: Settings) -> None:
    root = Path(app_role.stack_dir).resolve()
    for path in (root / "logs").glob("*.log"):
        assert PASSWORD not in path.read_text(errors="replace"), path
    for path in server_dir(app_role).glob("*.conf"):
        assert PASSWORD not in path.read_text(errors="replace"), path


def test_workers_starting_together_create_the_schema_once_without_a_race(
    postgresql_stack: Settings, database: str
) -> None:
    """``CREATE TABLE IF NOT EXISTS`` races on PostgreSQL; the sinks take turns instead."""
    sinks = [admin_sink(postgresql_stack, database) for _ in range(4)]

    async def run() -> int:
        await asyncio.gather(*(sink.ensure_schema() for sink in sinks))
        try:
            return await sinks[0].count_rows()
        finally:
            for sink in sinks:
                await sink.stop()

    assert asyncio.run(run()) == 0
    assert all(sink.failed_inserts == 0 for sink in sinks)


def test_a_connection_the_server_ended_while_idle_is_replaced_for_the_next_write(
    postgresql_stack: Settings, database: str
) -> None:
    """``stack stop postgresql`` and ``start`` between two writes: the next one still lands.

    Whether it meets the dead connection (and retries) or asyncpg noticed the
    end first (and the sink reconnects) is a race this test does not steer.
    """
    sink = admin_sink(postgresql_stack, database)

    async def run() -> int:
        await sink.start()
        try:
            await sink.ensure_schema()
            await sink.write([row(1)])
            await control.down(postgresql_stack, ["postgresql"])
            await control.up(postgresql_stack, ["postgresql"])
            await asyncio.wait_for(sink.write([row(2)]), 30)
        finally:
            await sink.stop()
        return await sink.count_records()

    assert asyncio.run(run()) == 2
