"""Free loopback ports for the servers a test starts."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

__all__ = ["free_port", "restartable_port"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def restartable_port(count: int = 1) -> int:
    """The first of ``count`` free consecutive ports below the kernel's ephemeral range.

    For a server that restarts on its port, or several a command starts on
    consecutive ports (the demo's model servers): a client retrying a
    stopped server on a port inside the range can be given that very port
    as its own source port and connect to itself, and any outgoing
    connection may take a free port of the range between our check and the
    server's bind. Below the range neither can happen.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        first = random.randrange(10000, max(low - count, 10001))
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise AssertionError(f"no {count} free consecutive ports between 10000 and {low}")
