"""Live quality and drift, read from ClickHouse and kept for a few seconds.

:class:`LiveMonitor` runs the queries of :mod:`tables.quality` and
:mod:`tables.drift` over the retained windows and assembles one report
per model version; the report is kept ``refresh_s`` seconds
(``RISKSTREAM_QUALITY_REFRESH_S``), so ``/stats``, the dashboard and
Prometheus scrapes on any number of workers cost ClickHouse a few
queries per refresh, not per request. Concurrent callers share one
computation. A model version's training bins come from its card in the
model repository (:func:`repository_references`); a version without
them gets drift "unavailable" with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.settings import Settings
from models.drift import DriftReference, reference_from_card
from models.errors import ModelsError
from models.repository import ModelRepository
from tables.clickhouse import ClickHouseSink
from tables.drift import (
    add_counts,
    drift_figures,
    feature_bins_query,
    gather_bins,
    label_mix_query,
)
from tables.quality import (
    CURRENT,
    CURRENT_BESIDE_SHADOW,
    SHADOW,
    ScoreColumns,
    Windows,
    calibration_query,
    confusion_query,
    gather,
    quality_figures,
    score_counts_query,
    totals,
)
from tables.sink import Sink

__all__ = [
    "LiveMonitor",
    "Query",
    "References",
    "drift_report",
    "quality_report",
    "repository_references",
    "rounded",
]

#: Decimals of the ratios and PSIs on /stats.
DIGITS = 6

#: Seconds one computation may take before /stats reports it failed (a hung ClickHouse).
COMPUTE_TIMEOUT_S = 20.0

logger = logging.getLogger(__name__)

#: Runs one SELECT and gives its rows.
Query = Callable[[str], Awaitable[list[tuple[Any, ...]]]]
#: (model, version) -> its drift reference, or why there is none.
References = Callable[[str, str], DriftReference | str]


def repository_references(root: Path) -> References:
    """References read from the cards of the repository at ``root`` (a found one is kept: versions never change)."""
    found: dict[tuple[str, str], DriftReference] = {}

    def reference(model: str, version: str) -> DriftReference | str:
        if (model, version) in found:
            return found[(model, version)]
        if not version.isdigit():
            return f"version {version!r} of {model} is not a repository version"
        try:
            card = ModelRepository(root).version(model, int(version)).card
        except ModelsError as exc:
            return f"no model card for {model}:{version}: {exc.message}"
        result = reference_from_card(card)
        if isinstance(result, DriftReference):
            found[(model, version)] = result
        return result

    return reference


def _window(start: int, width_s: int) -> dict[str, int]:
    return {"start_epoch_s": start, "end_epoch_s": start + width_s}


async def quality_report(
    query: Query,
    database: str,
    windows: Windows,
    columns: ScoreColumns = CURRENT,
    positive: str = "1",
) -> list[dict[str, Any]]:
    """Per model version: quality totals over ``windows`` and each window's figures (exact, unrounded)."""
    counts = gather(
        await query(confusion_query(database, columns, windows, positive)),
        await query(calibration_query(database, columns, windows, positive)),
        await query(score_counts_query(database, columns, windows, positive)),
    )
    report = []
    for (model, version), total in sorted(totals(counts).items()):
        report.append(
            {
                "model": model,
                "version": version,
                "totals": quality_figures(total),
                "windows": [
                    {**_window(start, windows.width_s), **quality_figures(c)}
                    for (start, m, v), c in sorted(counts.items())
                    if (m, v) == (model, version)
                ],
            }
        )
    return report


async def drift_report(
    query: Query, database: str, windows: Windows, references: References
) -> list[dict[str, Any]]:
    """Per model version: drift totals over ``windows`` and per window, or why it is unavailable."""
    mix: dict[tuple[str, str], dict[int, dict[str, int]]] = {}
    for start, model, version, label, records in await query(
        label_mix_query(database, windows)
    ):
        per_window = mix.setdefault((str(model), str(version)), {})
        per_window.setdefault(int(start), {})[str(label)] = int(records)
    report = []
    for (model, version), per_window in sorted(mix.items()):
        entry: dict[str, Any] = {"model": model, "version": version}
        reference = references(model, version)
        if not isinstance(reference, DriftReference):
            report.append({**entry, "available": False, "reason": reference})
            continue
        bins = gather_bins(
            await query(
                feature_bins_query(database, windows, model, version, reference)
            )
        )
        all_labels: dict[str, int] = {}
        all_bins: dict[str, dict[int, int]] = {}
        for start in per_window:
            add_counts(all_labels, per_window[start])
            for feature, counts in bins.get(start, {}).items():
                add_counts(all_bins.setdefault(feature, {}), counts)
        report.append(
            {
                **entry,
                "available": True,
                "reason": None,
                "totals": drift_figures(all_labels, all_bins, reference),
                "windows": [
                    {
                        **_window(start, windows.width_s),
                        **drift_figures(
                            per_window[start], bins.get(start, {}), reference
                        ),
                    }
                    for start in sorted(per_window)
                ],
            }
        )
    return report


class LiveMonitor:
    """Quality and drift of the retained windows, recomputed at most every ``refresh_s`` seconds."""

    def __init__(
        self,
        query: Query | None,
        database: str,
        references: References,
        *,
        window_s: int,
        retention_s: int,
        refresh_s: float,
        unavailable: str = "",
        errors: tuple[type[BaseException], ...] = (OSError,),
    ) -> None:
        self._query = query
        self._database = database
        self._references = references
        self.window_s = window_s
        self.retention_s = retention_s
        self.refresh_s = refresh_s
        self._unavailable = unavailable
        self._errors = errors
        self._latest: dict[str, Any] | None = None
        self._computed_at = float("-inf")
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[dict[str, Any]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sinks: Sequence[Sink]) -> LiveMonitor:
        """The monitor of the worker's ClickHouse sink (unavailable, with why, without one)."""
        clickhouse = next((s for s in sinks if isinstance(s, ClickHouseSink)), None)
        return cls(
            clickhouse.query if clickhouse is not None else None,
            settings.clickhouse_database,
            repository_references(settings.repository_path),
            window_s=settings.stats_window_s,
            retention_s=settings.stats_retention_s,
            refresh_s=settings.quality_refresh_s,
            unavailable="live quality and drift are computed in ClickHouse, and "
            "RISKSTREAM_SINKS names no clickhouse sink",
            errors=ClickHouseSink.transient,
        )

    @property
    def latest(self) -> Mapping[str, Any] | None:
        """The last report computed, however old (None before the first)."""
        return self._latest

    async def report(self) -> dict[str, Any]:
        """The report, recomputed if older than ``refresh_s``."""
        async with self._lock:
            if (
                self._latest is None
                or time.monotonic() - self._computed_at >= self.refresh_s
            ):
                self._latest = await self._compute()
                self._computed_at = time.monotonic()
            return self._latest

    def refresh_soon(self) -> None:
        """Start a refresh in the background if the report is stale (for a synchronous scrape)."""
        stale = time.monotonic() - self._computed_at >= self.refresh_s
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.get_running_loop().create_task(self.report())

    async def _compute(self) -> dict[str, Any]:
        now = time.time()
        body: dict[str, Any] = {
            "window_s": self.window_s,
            "retention_s": self.retention_s,
            "refresh_s": self.refresh_s,
            "computed_at_epoch_s": round(now, 3),
            "windows_by": "event time of the prediction",
            "positive_label": "1",
            "error": None,
            "quality": [],
            "drift": [],
            "shadow": {"shadow": [], "current": []},
        }
        if self._query is None:
            body["error"] = self._unavailable
            return body
        windows = Windows.retained(self.window_s, self.retention_s, now)
        query = self._query

        async def both() -> None:
            body["quality"] = await quality_report(query, self._database, windows)
            body["drift"] = await drift_report(
                query, self._database, windows, self._references
            )
            # side by side on the same records: those the shadow scored too
            body["shadow"] = {
                "shadow": await quality_report(query, self._database, windows, SHADOW),
                "current": await quality_report(
                    query, self._database, windows, CURRENT_BESIDE_SHADOW
                ),
            }

        failures: tuple[type[BaseException], ...] = (TimeoutError, *self._errors)
        try:
            await asyncio.wait_for(both(), COMPUTE_TIMEOUT_S)
        except failures as exc:
            # the store away or hung, or no schema yet: say so, keep serving
            logger.warning("live quality and drift: ClickHouse query failed: %s", exc)
            body["error"] = f"ClickHouse query failed: {type(exc).__name__}: {exc}"
        return body


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """``value`` with every float rounded to ``digits`` decimals (for /stats; the gauges keep all)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    return value
