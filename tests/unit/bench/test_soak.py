"""The soak's own arithmetic and its /proc readings (the run itself is a bench, not a test)."""

from __future__ import annotations

import os

import pytest

from bench.soak import (
    Sample,
    fd_count,
    parse_vm_rss_kib,
    rss_mib,
    slope_per_min,
    summarize,
)

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  301236 kB
VmSize:\t  286952 kB
VmHWM:\t   92104 kB
VmRSS:\t   76800 kB
RssAnon:\t   60100 kB
Threads:\t4
"""


def test_vm_rss_is_read_in_kib_from_the_status_text() -> None:
    assert parse_vm_rss_kib(STATUS) == 76_800


def test_a_status_without_vm_rss_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        parse_vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n")


def test_this_process_has_a_resident_size_and_open_descriptors() -> None:
    assert rss_mib(os.getpid()) > 1.0
    assert fd_count(os.getpid()) >= 3  # stdin, stdout, stderr at least


def test_the_slope_is_per_minute_and_needs_two_distinct_minutes() -> None:
    rising = [(m, 75.0 + 1.2 * m) for m in range(11)]
    assert slope_per_min(rising) == pytest.approx(1.2)
    assert slope_per_min([(m, 80.0) for m in range(5)]) == pytest.approx(0.0)
    assert slope_per_min([(3, 80.0)]) is None
    assert slope_per_min([(3, 80.0), (3, 81.0)]) is None


def _sample(minute: int, worker_mib: float, lag: int = 0) -> Sample:
    return Sample(
        minute=minute,
        rss_mib={"worker 1": worker_mib, "kafka": 400.0},
        open_fds={"worker 1": 15 + minute % 2, "kafka": 170},
        lag_records=lag,
        p99_ms=None if minute == 0 else 100.0 + minute,
        stored_records_per_s=0.0 if minute == 0 else 2_000.0,
        load_average=[1.0, 1.0, 1.0],
    )


def test_the_summary_fits_the_slope_over_the_last_30_minutes_only() -> None:
    # Rises 1 MiB/min for 60 minutes, then stays flat for 30: levelled off.
    samples = [_sample(m, 75.0 + min(m, 60)) for m in range(91)]
    summary = summarize(samples)
    worker = summary["processes"]["worker 1"]
    assert worker["rss_mib_at_minute"] == {
        "0": 75.0,
        "30": 105.0,
        "60": 135.0,
        "90": 135.0,
    }
    assert worker["slope_window_min"] == [60, 90]
    assert worker["rss_slope_mib_per_min"] == pytest.approx(0.0)
    assert worker["rss_peak_mib"] == 135.0
    assert (worker["open_fds_min"], worker["open_fds_max"]) == (15, 16)
    assert summary["processes"]["kafka"]["rss_slope_mib_per_min"] == pytest.approx(0.0)


def test_a_short_run_fits_from_minute_one_and_leaves_minute_zero_out_of_the_stream_figures() -> (
    None
):
    # minute 0 is sampled before the load: the warm-up jump is no growth
    samples = [_sample(0, 60.0)] + [
        _sample(m, 75.0 + 1.2 * m, lag=m * 10) for m in range(1, 11)
    ]
    summary = summarize(samples)
    worker = summary["processes"]["worker 1"]
    assert worker["slope_window_min"] == [1, 10]
    assert worker["rss_slope_mib_per_min"] == pytest.approx(1.2)
    assert worker["rss_mib_at_minute"] == {"0": 60.0, "10": 87.0}
    assert summary["lag_records_max"] == 100 and summary["lag_records_last"] == 100
    assert summary["p99_ms_max_of_minutes"] == 110.0
    assert summary["stored_records_per_s_mean"] == 2_000.0
