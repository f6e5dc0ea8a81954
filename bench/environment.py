"""What a benchmark figure was measured on: cores, load, and the versions of everything involved.

A throughput figure means little without the machine and the software
behind it, and on a shared machine the load average tells how much the
other work there weighed on it; every ``riskstream bench`` result carries
this record.
"""

from __future__ import annotations

import os
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from core.settings import Settings
from stack.control import stack_root

__all__ = [
    "LIBRARIES",
    "cpu_seconds",
    "describe_environment",
    "kafka_version",
    "load_average",
    "process_tree_cpu_seconds",
]


#: The libraries whose versions shape the figures.
LIBRARIES = (
    "faust-streaming",
    "mode-streaming",
    "aiokafka",
    "asynch",
    "asyncpg",
    "aiohttp",
    "orjson",
    "scikit-learn",
    "sklearn-pmml-model",
    "pypmml",
)

_KAFKA_JAR = re.compile(r"^kafka-server-(\d[\w.\-]*)\.jar$")


def kafka_version(settings: Settings) -> str:
    """Kafka's version, from the local stack's jars ("unknown" for a broker elsewhere)."""
    libs = stack_root(settings) / "kafka" / "libs"
    for jar in sorted(libs.glob("kafka-server-*.jar")) if libs.is_dir() else []:
        match = _KAFKA_JAR.match(jar.name)
        if match:
            return match.group(1)
    return "unknown"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(value, 2) for value in os.getloadavg()]


def describe_environment(settings: Settings, clickhouse_version: str) -> dict[str, Any]:
    """Cores, CPU, load, Python, Kafka, ClickHouse and the key libraries' versions."""
    libraries: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = "not installed"
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_at_start": load_average(),
        "python": platform.python_version(),
        "kafka": kafka_version(settings),
        "clickhouse": clickhouse_version,
        "libraries": libraries,
    }


# --- what a process has used -------------------------------------------------------
def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` so far (Linux /proc); with its reaped children's."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, its live children and the children it reaped (a server's backends)."""
    total = cpu_seconds(pid, reaped_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat(int(entry.name))[1]) == pid:
                total += cpu_seconds(int(entry.name), reaped_children=True)
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
    return total
