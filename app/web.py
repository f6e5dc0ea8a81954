"""The worker's web views: ``/stats`` (JSON), ``/stats/local`` and ``/dashboard``.

Each worker only holds the stats of the feature partitions it owns, so
``/stats`` asks every worker of the group for its ``/stats/local`` (the
peers are the hosts the partition assignor lists for the stats table) and
adds the reports up; any worker answers for the whole group. ``/metrics``
(Prometheus) is Faust's sensor's page, set up with the App, or with
``RISKSTREAM_FAUST_METRICS=false`` a page of riskstream's metrics alone.

``/stats`` also shows, under ``shadow``, how often a shadow version agreed
with the current one: counted by the first sink over the stored
predictions (each record once), so it is the whole group's figure and the
same after a restart; and, under ``live_quality``, quality and drift per window and
model version, computed in ClickHouse (:mod:`tables.monitor`), so every
worker gives the same figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from typing import Any

import aiohttp
import faust
from aiohttp.web import Response
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from agents.score import Scoring
from agents.topics import StreamTopics
from tables.monitor import LiveMonitor, rounded
from tables.sink import Sink
from tables.stats import StreamStats, merge_reports

__all__ = ["add_web_views"]

logger = logging.getLogger(__name__)

#: Seconds a worker waits for a peer's report before leaving it out.
PEER_TIMEOUT_S = 2.0

UNITS = {
    "_records": "records",
    "_ms": "milliseconds",
    "_s": "seconds",
    "_epoch_s": "seconds since 1970-01-01 UTC",
    "_per_s": "records per second",
    "requests, rows, failures, ejections, slow_ejections, outages": "counts",
    "agreement_rate": "fraction (0-1) of the compared records on which the shadow "
    "version predicted the current version's label",
    "accuracy, sensitivity, specificity, roc_auc, mean_predicted, observed_rate, "
    "missing_ratio, *_mix": "ratios from 0 to 1",
    "brier_score": "mean squared error of P(positive), 0 to 1",
    "*psi": "population stability index (0 = the training distribution)",
}

#: Seconds /stats waits for the store's shadow agreement before leaving it out.
SHADOW_QUERY_TIMEOUT_S = 5.0


async def _shadow_agreement(sink: Sink) -> dict[str, Any]:
    """The shadow's agreement per (model, version, shadow version), from the store.

    ``compared_records`` are the records both versions scored (a record the
    shadow did not score is counted in ``records`` only).
    """
    failures: tuple[type[BaseException], ...] = (*sink.transient, TimeoutError)
    try:
        counts = await asyncio.wait_for(
            sink.shadow_agreement(), timeout=SHADOW_QUERY_TIMEOUT_S
        )
    except failures as exc:
        logger.warning("%s did not give the shadow agreement: %s", sink.kind, exc)
        return {"error": f"{sink.kind}: {type(exc).__name__}: {exc}", "versions": []}
    return {
        "error": "",
        "versions": [
            {
                "model": model,
                "version": version,
                "shadow_version": shadow,
                "records": records,
                "compared_records": compared,
                "agreeing_records": agreed,
                "agreement_rate": agreed / compared if compared else None,
            }
            for model, version, shadow, records, compared, agreed in counts
        ],
    }


async def _peer_report(
    session: aiohttp.ClientSession, url: str
) -> dict[str, Any] | None:
    try:
        async with session.get(f"{url}/stats/local") as response:
            if response.status == 200:
                body: dict[str, Any] = await response.json()
                return body
            logger.warning(
                "worker %s answered /stats/local with HTTP %d", url, response.status
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("worker %s did not answer /stats/local: %s", url, exc)
    return None


#: A model server's counts that /stats sums over the workers.
SERVER_COUNTERS = ("requests", "rows", "failures", "ejections", "slow_ejections")


def _servers_overview(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model server: in rotation for how many workers, and their summed counts."""
    overview: dict[str, dict[str, Any]] = {}
    for report in reports:
        for server in report["model_servers"]:
            entry = overview.setdefault(
                server["url"],
                {
                    "url": server["url"],
                    "in_rotation": True,
                    "workers_in_rotation": 0,
                    "workers_out_of_rotation": 0,
                    **dict.fromkeys(SERVER_COUNTERS, 0),
                    "last_error": "",
                },
            )
            key = (
                "workers_in_rotation"
                if server["in_rotation"]
                else "workers_out_of_rotation"
            )
            entry[key] += 1
            entry["in_rotation"] = entry["in_rotation"] and server["in_rotation"]
            for counter in SERVER_COUNTERS:
                entry[counter] += server.get(counter, 0)
            entry["last_error"] = server["last_error"] or entry["last_error"]
    return list(overview.values())


def add_web_views(
    app: faust.App,
    topics: StreamTopics,
    stats: StreamStats,
    scoring: Scoring,
    monitor: LiveMonitor,
    faust_metrics: bool,
) -> None:
    """Add the pages to ``app``; ``/metrics`` too unless Faust's sensor serves it (``faust_metrics``)."""

    def own_url() -> str:
        return str(app.conf.canonical_url).rstrip("/")

    def local_body() -> dict[str, Any]:
        topic = topics.features.get_topic_name()
        partitions = sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic
        )
        return {
            "worker": own_url(),
            "partitions": partitions,
            "windows": stats.local_report(partitions),
            "pipeline": scoring.pipeline.snapshot(),
            "model_servers": scoring.pool.snapshot(),
            "model_pool": scoring.pool.availability(),
        }

    async def group_reports() -> tuple[list[dict[str, Any]], list[str]]:
        own = own_url()
        try:
            peers = {
                url.rstrip("/")
                for url in app.router.table_metadata(stats.table.table.name)
            }
        except KeyError:
            peers = set()
        peers.discard(own)
        reports = [local_body()]
        unreachable: list[str] = []
        if peers:
            timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                answers = await asyncio.gather(
                    *(_peer_report(session, url) for url in sorted(peers))
                )
            for url, answer in zip(sorted(peers), answers, strict=True):
                if answer is None:
                    unreachable.append(url)
                else:
                    reports.append(answer)
        return reports, unreachable

    @app.page("/stats/local")
    async def local_stats(self: web.View, request: web.Request) -> web.Response:
        """This worker's share: its partitions' windows, its pipeline and model-server view."""
        return self.json(local_body())

    @app.page("/stats")
    async def group_stats(self: web.View, request: web.Request) -> web.Response:
        """The whole consumer group's stats, whichever worker is asked."""
        reports, unreachable = await group_reports()
        body = stats.summarize(
            merge_reports(report["windows"] for report in reports), time.time()
        )
        body["units"] = UNITS
        body["workers"] = [
            {
                "url": report["worker"],
                "partitions": report["partitions"],
                "pipeline": report["pipeline"],
                "model_servers": report["model_servers"],
                "model_pool": report.get("model_pool"),
            }
            for report in reports
        ]
        body["unreachable_workers"] = unreachable
        body["model_servers"] = _servers_overview(reports)
        body["shadow"] = await _shadow_agreement(scoring.sinks[0])
        # from ClickHouse (the record of truth), the same whichever worker answers
        body["live_quality"] = rounded(await monitor.report())
        return self.json(body)

    @app.page("/dashboard")
    async def dashboard(self: web.View, request: web.Request) -> web.Response:
        """A self-contained live page (inline JS and SVG, no CDN) polling /stats."""
        page = (
            resources.files("app")
            .joinpath("dashboard.html")
            .read_text(encoding="utf-8")
        )
        return self.html(page)

    if not faust_metrics:

        @app.page("/metrics")
        async def metrics(self: web.View, request: web.Request) -> web.Response:
            """riskstream's Prometheus metrics alone (Faust's per-message sensor is off)."""
            body = generate_latest(REGISTRY)
            return Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})  # type: ignore[return-value]
