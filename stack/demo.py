"""``riskstream demo``: the README's ``make demo``, the whole pipeline on this machine.

In data-flow order: the local stack (Kafka + ClickHouse, and PostgreSQL
when ``RISKSTREAM_SINKS`` names it), a model (trained if the repository has
none), a pool of two model servers, one Faust worker, and the generator at
a modest rate. It then shows where to look (dashboard, /stats, /metrics,
each sink's query, from the sink itself) and a progress line read from
/stats until Ctrl-C, which stops everything the demo started, in reverse
order. The stack is left as it was found: services that were already
running keep running, those the demo started are stopped.

Whatever happens to its terminal, the demo cleans up: Ctrl-C (twice
included), SIGTERM, SIGHUP (the terminal closed) and a broken stdout
(``make demo | tee demo.log`` whose ``tee`` died first) all end in the same
clean-up. Every line it shows also goes to ``<data_dir>/demo/demo.log``,
so nothing is lost when stdout is gone. Records an earlier run left
unread in the feature topic are counted and announced before the worker
starts: the first windows then include their wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

import click

from core.security import kafka_client_options
from core.settings import Settings, get_settings
from datagen.generator import unread_records
from models.repository import ModelRepository
from stack import control
from stack.errors import StackError
from stack.launch import (
    Child,
    LaunchError,
    faust_worker_argv,
    riskstream_argv,
    spawn,
    wait_http_ok,
)
from tables.sinks import build_sinks

__all__ = ["demo"]


#: Model-server replicas the demo runs.
REPLICAS = 2

#: Seconds each part may take to come up.
START_TIMEOUT_S = 120.0

#: Signals that end the demo (Ctrl-C, a polite kill, its terminal closing).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Seconds between two progress lines.
PROGRESS_EVERY_S = 5.0


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP while the demo runs."""


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted()


class Screen:
    """The demo's output: stdout while it lasts, and always the demo's own log.

    A closed stdout (the reader of a pipe gone, the terminal hung up) must
    not cut the clean-up short, so the first failed write turns stdout off
    for the rest of the run and is reported as a stop.
    """

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: TextIO = log_path.open("a", encoding="utf-8")
        self.stdout_gone = False

    def say(self, text: str, err: bool = False) -> None:
        self._log.write(text + "\n")
        self._log.flush()
        if self.stdout_gone:
            return
        try:
            click.echo(text, err=err)
        except OSError:  # BrokenPipeError, EIO after a hang-up
            self.stdout_gone = True
            raise

    def close(self) -> None:
        self._log.close()
        if self.stdout_gone:
            # Python flushes stdout at exit: point it at /dev/null so that
            # flush does not fail once more.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _train_if_needed(settings: Settings, screen: Screen) -> None:
    repository = ModelRepository(settings.repository_path)
    if repository.names():
        name = repository.default_name()
        screen.say(
            f"model: {repository.current(name).ref} from {settings.repository_path}"
        )
        return
    screen.say(
        f"model: none in {settings.repository_path}, training one (riskstream train)..."
    )
    result = subprocess.run(riskstream_argv("train"), check=False)
    if result.returncode != 0:
        raise click.ClickException("riskstream train failed (see above)")


def _stats_line(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
            stats = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"/stats not answering: {error}"
    totals = stats["totals"]
    windows = stats["windows"]
    rate = windows[-1]["stored_rate_records_per_s"] if windows else 0
    servers = ", ".join(
        f"{s['url'].rsplit(':', 1)[-1]} {'in' if s['in_rotation'] else 'OUT'}"
        for s in stats["model_servers"]
    )
    return (
        f"received {totals['received_records']:,} | stored {totals['stored_records']:,} | "
        f"dead-lettered {totals['dead_lettered_records']:,} | {rate:,.1f} records/s | "
        f"p99 {totals['latency_p99_ms'] or 0:,.0f} ms | labels {totals['predicted_label_records']} | "
        f"model servers: {servers}"
    )


def _watch(children: list[Child], web_url: str, screen: Screen) -> None:
    """Show progress until Ctrl-C, or until a child dies (then say which, with its log)."""
    next_line = 0.0
    while True:
        for child in children:
            if not child.alive():
                raise LaunchError(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"end of {child.log_path}:\n{child.log_tail()}"
                )
        now = time.monotonic()
        if now >= next_line:
            screen.say(_stats_line(web_url))
            next_line = now + PROGRESS_EVERY_S
        time.sleep(0.5)


def _announce_backlog(settings: Settings, screen: Screen) -> None:
    """Say how many records an earlier run left unread: the worker catches up on them first."""
    unread = asyncio.run(
        unread_records(
            settings.kafka_bootstrap,
            settings.feature_topic,
            settings.app_id,
            kafka_client_options(settings),
        )
    )
    if unread:
        screen.say(
            f"backlog: {unread:,} records an earlier run left unread in topic "
            f"{settings.feature_topic}; the worker stores them first, so the first "
            "windows' latency includes the time they waited"
        )


def _run(
    settings: Settings,
    rate: float,
    logs: Path,
    children: list[Child],
    screen: Screen,
) -> None:
    _train_if_needed(settings, screen)
    first_port = settings.model_server_port
    server_urls = [f"http://127.0.0.1:{first_port + i}" for i in range(REPLICAS)]
    env = {"RISKSTREAM_MODEL_SERVERS": ",".join(server_urls)}
    servers = spawn(
        "model servers",
        riskstream_argv(
            "serve",
            "--replicas",
            str(REPLICAS),
            "--port",
            str(first_port),
            "--served-name",
            settings.model_name,
        ),
        env,
        logs / "model-servers.log",
    )
    children.append(servers)
    for url in server_urls:
        wait_http_ok(f"{url}/v2/health/ready", servers, START_TIMEOUT_S)
    screen.say(f"model servers: {', '.join(server_urls)} (log {servers.log_path})")

    _announce_backlog(settings, screen)
    web_url = f"http://{settings.web_host}:{settings.web_port}"
    worker = spawn("worker", faust_worker_argv("-l", "info"), env, logs / "worker.log")
    children.append(worker)
    wait_http_ok(f"{web_url}/stats", worker, START_TIMEOUT_S)
    screen.say(f"worker: faust -A app worker, web {web_url} (log {worker.log_path})")

    generator = spawn(
        "generator",
        riskstream_argv("datagen", "--rate", f"{rate:g}"),
        env,
        logs / "generator.log",
    )
    children.append(generator)
    stores = "".join(
        f"  {sink.kind:<11} {sink.analysis_hint()}\n" for sink in build_sinks(settings)
    )
    screen.say(
        f"""generator: riskstream datagen --rate {rate:g} -> topic {settings.feature_topic} (log {generator.log_path})

The pipeline runs. Look at it:
  dashboard   {web_url}/dashboard
  stats JSON  {web_url}/stats
  Prometheus  {web_url}/metrics
{stores}  dead letters: topic {settings.dlq_topic}
Ctrl-C stops the generator, the worker, the model servers and the stack services the demo started.
"""
    )
    _watch(children, web_url, screen)


@click.command()
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Records per second the generator produces.",
)
def demo(rate: float) -> None:
    """Run the whole local pipeline: stack, model, model servers, worker, generator."""
    settings = get_settings()
    logs = settings.data_dir / "demo"
    screen = Screen(logs / "demo.log")
    children: list[Child] = []
    started: list[str] = []
    failed = False
    previous = {signum: signal.signal(signum, _on_signal) for signum in STOP_SIGNALS}
    try:
        # The stores the worker writes to must answer too (PostgreSQL is not in the base stack).
        started = asyncio.run(
            control.up(
                settings,
                control.chosen_names(
                    settings,
                    set(settings.sink_names) & set(control.EXTRA_SERVICES),
                ),
            )
        )
        screen.say(
            "stack: "
            + (
                f"started {', '.join(started)}"
                if started
                else "already running (left running)"
            )
        )
        _run(settings, rate, logs, children, screen)
    except Interrupted:
        _say_quietly(screen, "\nstopping...")
    except OSError:
        _say_quietly(screen, "stdout is gone (a closed pipe or terminal): stopping...")
    except (StackError, LaunchError) as error:
        _say_quietly(screen, f"demo failed: {error.message}", err=True)
        failed = True
    finally:
        # A second Ctrl-C (or a hang-up after it) must not cut the clean-up short.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        for child in reversed(children):
            code = child.stop(
                signum=signal.SIGINT if child.name == "generator" else signal.SIGTERM
            )
            _say_quietly(screen, f"stopped {child.name} (exit code {code})")
        if started:
            asyncio.run(control.down(settings, started))
            _say_quietly(
                screen,
                f"stopped the stack services the demo started: {', '.join(started)}",
            )
        screen.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed:
        raise SystemExit(1)


def _say_quietly(screen: Screen, text: str, err: bool = False) -> None:
    """Show a clean-up line; a stdout that is gone by now only loses it from the screen."""
    try:
        screen.say(text, err=err)
    except OSError:
        pass
