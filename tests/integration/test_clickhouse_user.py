"""The app's ClickHouse user on the real 18.16: its password, its database, rows in and out, nothing else.

ClickHouse 18.16 has no GRANT. What it enforces, and these tests prove:
``allow_databases`` confines the user to the app's database (other
databases can be neither read nor written, not even through ``remote()``),
and the profile's ``allow_ddl = 0`` refuses every DDL and SYSTEM statement,
so the user can neither create a database, nor drop or alter the
predictions, nor shut the server down. It can still read
the ``system`` tables (as every user can on 18.16).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from asynch import errors as asynch_errors
from asynch.connection import Connection

from core.settings import Settings
from tables.clickhouse import ClickHouseSink
from tables.predictions import LABELLED_VIEW, LABELS_TABLE, TABLE, UNIQUE_VIEW
from tables.sink import Server
from tests.integration.rows import write_as_the_worker
from tests.private_clickhouse import admin_query, private_clickhouse

PASSWORD = "ch-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with private_clickhouse(
        tmp_path_factory.mktemp("clickhouse-user"), "riskstream", PASSWORD
    ) as settings:
        admin_query(settings, "CREATE TABLE default.other (x UInt8) ENGINE = Memory")
        admin_query(settings, "INSERT INTO default.other VALUES (7)")
        yield settings


async def run_as_app(
    settings: Settings, query: str, password: str = PASSWORD
) -> list[tuple[object, ...]]:
    connection = Connection(
        host="127.0.0.1",
        port=settings.clickhouse_port,
        user=settings.clickhouse_user,
        password=password,
        database=settings.clickhouse_database,
    )
    async with connection, connection.cursor() as cursor:
        await cursor.execute(query)
        return list(await cursor.fetchall() or [])


def refused(settings: Settings, query: str, password: str = PASSWORD) -> str:
    with pytest.raises(asynch_errors.ServerException) as error:
        asyncio.run(run_as_app(settings, query, password))
    return str(error.value)


def test_the_password_from_the_file_is_the_only_way_in(clickhouse: Settings) -> None:
    assert clickhouse.clickhouse_password.get_secret_value() == PASSWORD
    assert asyncio.run(run_as_app(clickhouse, "SELECT 1")) == [(1,)]
    assert "Wrong password" in refused(clickhouse, "SELECT 1", password="wrong")
    assert "Password required" in refused(clickhouse, "SELECT 1", password="")
    users = Path(clickhouse.stack_dir, "clickhouse", "users.xml").read_text()
    assert PASSWORD not in users


def test_the_worker_stores_and_reads_back_without_any_ddl(clickhouse: Settings) -> None:
    async def store() -> None:
        writer = ClickHouseSink(
            Server(
                host="127.0.0.1",
                port=clickhouse.clickhouse_port,
                user=clickhouse.clickhouse_user,
                password=clickhouse.clickhouse_password.get_secret_value(),
                database=clickhouse.clickhouse_database,
            ),
            max_rows=1000,
            max_wait_s=0.05,
            max_backoff_s=0.5,
        )
        await write_as_the_worker(writer)  # no DDL: the stack made the schema
        assert writer.failed_inserts == 0

    asyncio.run(store())
    counted = asyncio.run(
        run_as_app(clickhouse, "SELECT count() FROM riskstream.predictions FINAL")
    )
    assert counted == [(100,)]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE riskstream.extra (x UInt8) ENGINE = Memory",
        "DROP TABLE riskstream.predictions",
        "TRUNCATE TABLE riskstream.predictions",
        "ALTER TABLE riskstream.predictions DELETE WHERE 1",
        "CREATE DATABASE elsewhere",
        "SYSTEM SHUTDOWN",
    ],
)
def test_no_ddl_or_system_statement_even_in_its_own_database(
    clickhouse: Settings, statement: str
) -> None:
    assert "DDL queries are prohibited for the user" in refused(clickhouse, statement)
    assert admin_query(clickhouse, "SELECT 1").strip() == "1"  # still up


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM default.other",
        "INSERT INTO default.other VALUES (1)",
        "SELECT * FROM remote('127.0.0.1', default, other)",
    ],
)
def test_other_databases_are_out_of_reach(clickhouse: Settings, statement: str) -> None:
    assert "Access denied to database default" in refused(clickhouse, statement)
    assert admin_query(clickhouse, "SELECT x FROM default.other").split() == ["7"]


def test_what_18_16_still_lets_it_read_is_the_system_tables(
    clickhouse: Settings,
) -> None:
    tables = asyncio.run(
        run_as_app(
            clickhouse, "SELECT name FROM system.tables WHERE database = 'riskstream'"
        )
    )
    # The tables and views the stack creates for the app, nothing else.
    assert sorted(cast(str, name) for (name,) in tables) == sorted(
        [TABLE, UNIQUE_VIEW, LABELS_TABLE, LABELLED_VIEW]
    )
