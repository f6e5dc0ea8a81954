"""The model-server pool: N replica processes on ports P..P+N-1 under one supervisor.

The stream workers spread requests over the replicas themselves
(round-robin over ``RISKSTREAM_MODEL_SERVERS``), so the pool needs no
proxy: the supervisor only starts the replicas, forwards SIGTERM/SIGINT to
them, waits for them to drain, and restarts a replica that dies while the
pool is running (a replica that cannot start at all stops the pool: its
model or port will not get better by retrying).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from types import FrameType

from serving.server import EXIT_START_FAILED, ServerConfig, run_replica

__all__ = ["run_pool"]

logger = logging.getLogger(__name__)

#: Seconds between two looks at the replicas.
_TICK_S = 0.2
#: Seconds before a replica that died is started again.
_RESTART_DELAY_S = 1.0


class _Supervisor:
    def __init__(self, config: ServerConfig, replicas: int) -> None:
        self._configs = [replace(config, port=config.port + i) for i in range(replicas)]
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, BaseProcess] = {}
        self._stopping = False

    def _start(self, config: ServerConfig) -> None:
        process = self._context.Process(
            target=run_replica, args=(config,), name=f"model-server-{config.port}"
        )
        process.start()
        self._processes[config.port] = process
        logger.info("pool: replica pid %d started for %s", process.pid, config.address)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        first, last = self._configs[0], self._configs[-1]
        logger.info(
            "model-server pool: %d replicas on %s .. %s (pid %d)",
            len(self._configs),
            first.address,
            last.address,
            os.getpid(),
        )
        for config in self._configs:
            self._start(config)
        status = 0
        while not self._stopping:
            time.sleep(_TICK_S)
            for config in self._configs:
                process = self._processes[config.port]
                if process.is_alive() or self._stopping:
                    continue
                if process.exitcode == EXIT_START_FAILED:
                    logger.error(
                        "pool: replica for %s cannot start; stopping the pool",
                        config.address,
                    )
                    self._stopping, status = True, 1
                    break
                logger.warning(
                    "pool: replica pid %s for %s exited with status %s; restarting it in %.0f s",
                    process.pid,
                    config.address,
                    process.exitcode,
                    _RESTART_DELAY_S,
                )
                time.sleep(_RESTART_DELAY_S)
                self._start(config)
        self._stop_all(first.drain_timeout_s)
        return status

    def _stop_all(self, drain_timeout_s: float) -> None:
        alive = [p for p in self._processes.values() if p.is_alive()]
        logger.info(
            "pool: stopping %d replicas (SIGTERM, drain up to %.0f s)",
            len(alive),
            drain_timeout_s,
        )
        for process in alive:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + drain_timeout_s + 5.0
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.warning(
                    "pool: replica pid %s did not stop in time; killing it", process.pid
                )
                process.kill()
                process.join()
        logger.info("model-server pool stopped")


def run_pool(config: ServerConfig, replicas: int) -> int:
    """Run ``replicas`` replicas of ``config`` until SIGTERM/SIGINT; returns the exit status."""
    return _Supervisor(config, replicas).run()
