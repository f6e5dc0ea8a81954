"""Programs the stack runs (java, mvn, clickhouse-server), installed from Debian when missing.

``make test`` must pass on a fresh machine where nobody installed anything
by hand, so a missing program is installed with apt-get (as root, or
through password-less sudo) instead of failing with a to-do list. Anything
else (another distribution, no rights) gets an error naming the command to
run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from stack.errors import InstallError

__all__ = ["ensure_program", "find_program"]

logger = logging.getLogger(__name__)

#: Where Debian puts daemons; not on a normal user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/bin", "/sbin")


def find_program(name: str, folders: Sequence[str] = ()) -> str | None:
    """Full path of an executable, looking beyond PATH into the sbin folders and ``folders``."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (*_EXTRA_DIRS, *folders):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


async def ensure_program(
    name: str, packages: Sequence[str], folders: Sequence[str] = ()
) -> str:
    """Path of ``name``, installing the Debian ``packages`` that provide it if missing.

    ``folders`` are where the packages put it when that is not on PATH
    (Debian's PostgreSQL: ``/usr/lib/postgresql/<major>/bin``).
    """
    found = find_program(name, folders)
    if found:
        return found
    command = ["apt-get", "install", "-y", *packages]
    shown = " ".join(command)
    if find_program("apt-get") is None:
        raise InstallError(
            f"{name} is missing and this is not a Debian-like system: install {', '.join(packages)}"
        )
    prefix = _privilege_prefix()
    if prefix is None:
        raise InstallError(
            f"{name} is missing and installing it needs root: run `sudo {shown}`"
        )
    logger.info(
        "%s is missing: installing %s from Debian's packages", name, " ".join(packages)
    )
    # A fresh image has no package lists: refresh them once if the first try fails.
    if await _run([*prefix, *command]) != 0:
        await _run([*prefix, "apt-get", "update"])
        if await _run([*prefix, *command]) != 0:
            raise InstallError(f"`{shown}` failed (see its output above)")
    found = find_program(name, folders)
    if found is None:
        raise InstallError(f"`{shown}` succeeded but {name} is still not found")
    return found


def _privilege_prefix() -> list[str] | None:
    """How to run apt-get: directly as root, through sudo, or not at all."""
    if os.geteuid() == 0:
        return []
    if find_program("sudo"):
        return ["sudo", "-n"]
    return None


async def _run(command: list[str]) -> int:
    """Run a command with its output shown as it goes (apt-get prints its own progress)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdin=asyncio.subprocess.DEVNULL
    )
    return await process.wait()
