"""Progress of long steps (downloads, installs, waits) on stderr.

On a terminal one transient line is rewritten in place; in a log (CI, ``make``
piped to a file) a line is printed at most every few seconds, so a slow
step is visibly alive without flooding the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TextIO

__all__ = ["Progress", "ticking"]

#: Minimum seconds between two progress lines when stderr is not a terminal.
_LOG_INTERVAL_S = 5.0


class Progress:
    """One line of progress that a step updates as often as it likes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._last_shown = 0.0
        self._width = 0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if self.interactive:
            # The cursor goes back to the line's start, so that a log line
            # written meanwhile overwrites the progress instead of following it.
            self.stream.write(text.ljust(self._width) + "\r")
            self._width = len(text)
            self.stream.flush()
        elif now - self._last_shown >= _LOG_INTERVAL_S:
            self._last_shown = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def done(self) -> None:
        """Erase the progress line on a terminal (it was transient); reset the pacing."""
        if self.interactive and self._width:
            self.stream.write(" " * self._width + "\r")
            self.stream.flush()
        self._width = 0
        self._last_shown = 0.0


@contextlib.asynccontextmanager
async def ticking(
    describe: Callable[[float], str], every_s: float = 1.0
) -> AsyncIterator[Progress]:
    """Show ``describe(elapsed seconds)`` every ``every_s`` while the body runs."""
    progress = Progress()
    started = time.monotonic()

    async def tick() -> None:
        # Quiet for the first interval: a step that ends at once shows nothing.
        while True:
            await asyncio.sleep(every_s)
            progress.update(describe(time.monotonic() - started))

    task = asyncio.create_task(tick())
    try:
        yield progress
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        progress.done()
