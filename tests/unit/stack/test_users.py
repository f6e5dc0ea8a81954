"""The local ClickHouse's users, rendered from the settings: the app's user is hashed, confined, without DDL."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import Settings
from stack.errors import StackError
from stack.service import render_conf
from stack.warehouse import ADMIN_USER, ClickHouseService, app_user_xml


def test_the_app_user_gets_a_password_hash_its_database_and_the_no_ddl_profile() -> (
    None
):
    settings = Settings(
        clickhouse_user="riskstream",
        clickhouse_password=SecretStr("pa55-word"),
        clickhouse_database="rs",
    )
    xml = app_user_xml(settings)
    assert "pa55-word" not in xml
    assert hashlib.sha256(b"pa55-word").hexdigest() in xml
    assert "<allow_databases>\n        <database>rs</database>" in xml
    assert "<profile>app</profile>" in xml
    assert "<ip>127.0.0.1</ip>" in xml and "::/0" not in xml


def test_the_rendered_users_file_holds_the_no_ddl_profile_and_the_app_user(
    tmp_path: Path,
) -> None:
    service = ClickHouseService(Settings(stack_dir=tmp_path), tmp_path)
    render_conf(
        "clickhouse-users.xml",
        service.users_path,
        app_user=app_user_xml(service.settings),
    )
    text = service.users_path.read_text()
    assert "<allow_ddl>0</allow_ddl>" in text and "<riskstream>" in text


def test_the_admin_as_app_user_adds_no_user() -> None:
    assert app_user_xml(Settings(clickhouse_user=ADMIN_USER)) == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [("clickhouse_user", "rs><admin"), ("clickhouse_database", "rs; DROP")],
)
def test_names_that_could_break_the_users_file_are_refused(
    field: str, value: str
) -> None:
    with pytest.raises(StackError, match=f"RISKSTREAM_{field.upper()}"):
        overrides: dict[str, Any] = {field: value}
        app_user_xml(Settings(**overrides))
