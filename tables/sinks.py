"""The prediction stores by name: ``RISKSTREAM_SINKS=clickhouse,postgresql`` picks them.

Like faust's transport drivers, a store registers under a name and is
built from the settings; a new store is one module (a
:class:`~tables.sink.Sink` subclass with ``from_settings``) and one line
here. Modules are imported only when their store is chosen, so a worker
writing to ClickHouse alone never imports asyncpg.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from core.settings import Settings
from tables.sink import Sink

__all__ = ["SINKS", "build_sink", "build_sinks"]

#: name -> "module:class" of its :class:`~tables.sink.Sink`.
SINKS: dict[str, str] = {
    "clickhouse": "tables.clickhouse:ClickHouseSink",
    "postgresql": "tables.postgresql:PostgreSQLSink",
}


def build_sink(name: str, settings: Settings, **overrides: Any) -> Sink:
    """The store registered as ``name``, configured from ``settings`` (``overrides`` win)."""
    target = SINKS.get(name)
    if target is None:
        raise ValueError(
            f"unknown sink {name!r} in RISKSTREAM_SINKS; known: {', '.join(SINKS)}"
        )
    module_name, attribute = target.split(":")
    cls = getattr(importlib.import_module(module_name), attribute)
    sink: Sink = cls.from_settings(settings, **overrides)
    return sink


def build_sinks(settings: Settings, names: Sequence[str] | None = None) -> list[Sink]:
    """One sink per name (default ``RISKSTREAM_SINKS``); at least one."""
    chosen = list(settings.sink_names if names is None else names)
    if not chosen:
        raise ValueError("RISKSTREAM_SINKS names no sink; e.g. clickhouse")
    return [build_sink(name, settings) for name in chosen]
