"""Where a worker's memory goes: a tracemalloc snapshot every minute, the growing sites in a file.

With ``RISKSTREAM_TRACEMALLOC_DIR`` set, the worker traces its Python
allocations from the moment its App is built. Every
:data:`INTERVAL_S` it takes a snapshot, compares it with the first one
(taken one interval after the start, once the worker has warmed up) and
writes ``worker-<pid>-minute-<NNN>.txt``: the allocation sites whose live
memory grew most since then (file:line, size and block counts). A resident size that keeps rising shows up
there as one site growing every minute.

tracemalloc rather than py-spy: py-spy shows where the CPU is, not which
line holds the memory. Tracing slows the worker (every allocation records
its stack) and a snapshot pauses its event loop for a moment, so it is for
diagnosis runs (``riskstream bench soak --tracemalloc``), never on by default.
"""

from __future__ import annotations

import logging
import os
import tracemalloc
from pathlib import Path

import faust

__all__ = ["AllocationTracer", "trace_allocations"]

logger = logging.getLogger(__name__)

#: Seconds between two snapshots.
INTERVAL_S = 60.0

#: Frames kept per allocation: the allocating line alone. Each frame more
#: costs every allocation; at 12 frames a worker fell from 2,000 to under
#: 300 records/s on this 2-core machine (shared) and its loop stalled.
FRAMES = 1

#: Sites listed per report.
TOP_SITES = 30

#: Allocations made by the tracing itself, left out of the reports.
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


class AllocationTracer:
    """Snapshots of this process's allocations, each compared with the first."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._first: tracemalloc.Snapshot | None = None
        self._snapshots = 0

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)

    def record(self) -> Path | None:
        """Take a snapshot; from the second on, write the growth since the first (its path)."""
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        self._snapshots += 1
        if self._first is None:
            self._first = snapshot
            return None
        path = self.folder / f"worker-{os.getpid()}-minute-{self._snapshots:03d}.txt"
        path.write_text(growth_report(snapshot, self._first, self._snapshots))
        return path


def growth_report(
    snapshot: tracemalloc.Snapshot, first: tracemalloc.Snapshot, minute: int
) -> str:
    """The sites whose live memory grew most from ``first`` to ``snapshot``."""
    current, peak = tracemalloc.get_traced_memory()
    total_now = sum(stat.size for stat in snapshot.statistics("filename"))
    total_first = sum(stat.size for stat in first.statistics("filename"))
    lines = [
        (
            f"minute {minute}: {total_now / 2**20:.2f} MiB traced "
            f"({(total_now - total_first) / 2**20:+.2f} MiB since minute 1; "
            f"tracemalloc current {current / 2**20:.2f} MiB, peak {peak / 2**20:.2f} MiB)"
        ),
        "",
        f"top {TOP_SITES} sites by growth since minute 1 (size KiB, blocks):",
    ]
    for stat in snapshot.compare_to(first, "lineno")[:TOP_SITES]:
        frame = stat.traceback[0]
        lines.append(
            f"  {stat.size_diff / 1024:+10.1f} KiB  {stat.size / 1024:10.1f} KiB now  "
            f"{stat.count_diff:+8d} blocks  {frame.filename}:{frame.lineno}"
        )
    return "\n".join(lines) + "\n"


def trace_allocations(app: faust.App, folder: Path) -> AllocationTracer:
    """Start tracing now and have the worker write a growth report every :data:`INTERVAL_S`."""
    tracer = AllocationTracer(folder)
    tracer.start()

    @app.timer(INTERVAL_S)
    async def snapshot_allocations() -> None:
        path = tracer.record()
        if path is not None:
            logger.info("allocation growth written to %s", path)

    logger.info("tracing allocations (tracemalloc, %d frames) into %s", FRAMES, folder)
    return tracer
