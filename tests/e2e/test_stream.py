"""The stream end to end on the real stack: correctness, crashes, outages, bad input, scaling, dashboard."""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from models.dataset import load_dataset
from models.repository import ModelRepository
from stack.launch import riskstream_argv, spawn
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    CommitWatch,
    Pipeline,
    produced_by,
    wait_until,
)
from tests.ports import restartable_port

pytestmark = pytest.mark.slow


GOOD_LINE = b"5,1,1,1,2,1,3,1,1"


def demo_ports() -> tuple[int, int]:
    """The demo's first model-server port (it takes that one and the next) and its web port."""
    first = restartable_port(3)
    return first, first + 2


@pytest.mark.parametrize("pipeline", ["clickhouse", "postgresql"], indirect=True)
def test_replaying_the_data_set_stores_the_offline_models_prediction_for_every_row(
    pipeline: Pipeline,
) -> None:
    from pypmml import Model

    pipeline.start_model_server()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    pipeline.start_worker()
    produced = produced_by(pipeline.generate("--replay", "--format", "json"))
    assert produced == 699
    wait_until(
        lambda: pipeline.count() >= 699, DRAIN_TIMEOUT_S, "699 stored predictions"
    )

    dataset = load_dataset("wisconsin-original")
    repository = ModelRepository(pipeline.repository)
    pmml = repository.current(repository.default_name()).pmml_path
    offline = Model.load(str(pmml)).predict(dataset.X)
    columns = [
        "record_id",
        "predicted_label",
        "probability_labels",
        "probabilities",
        "true_label",
        "feature_values",
    ]
    rows = [dict(zip(columns, row, strict=True)) for row in pipeline.rows(columns)]
    assert len(rows) == 699
    seen = set()
    for row in rows:
        index = int(row["record_id"].rsplit("-", 1)[1])
        seen.add(index)
        expected = offline.iloc[index]
        assert row["predicted_label"] == str(int(expected["label"])), f"row {index}"
        probabilities = dict(
            zip(row["probability_labels"], row["probabilities"], strict=True)
        )
        for label in ("0", "1"):
            assert math.isclose(
                probabilities[label], expected[f"probability({label})"], abs_tol=1e-9
            )
        assert row["true_label"] == str(int(dataset.y.iloc[index]))
        stored = np.array(
            [np.nan if v is None else v for v in row["feature_values"]], dtype=float
        )
        assert np.array_equal(stored, dataset.X.iloc[index].to_numpy(), equal_nan=True)
    assert seen == set(range(699))
    pipeline.account(produced)


@pytest.mark.parametrize("pipeline", ["clickhouse", "postgresql"], indirect=True)
def test_a_worker_killed_mid_stream_and_restarted_loses_nothing_and_stores_each_record_once(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    # Commits every 10 s: the kill surely comes between a store and its commit.
    worker = pipeline.start_worker("worker", RISKSTREAM_COMMIT_INTERVAL_S="10")
    generator = pipeline.generate("--count", "20000", "--rate", "2500")
    with CommitWatch(pipeline) as commits:
        wait_until(
            lambda: pipeline.count() >= 4000,
            DRAIN_TIMEOUT_S,
            "4,000 stored predictions",
        )
    assert commits.samples >= 5 and not commits.violations, commits.violations
    worker.child.kill()  # kill -9: no commit, no goodbye
    stored_at_kill = pipeline.count(final=False)
    uncommitted = pipeline.stored_beyond_commit()
    assert uncommitted > 0, (
        "the kill came at a commit: nothing stored waits for a replay"
    )
    pipeline.start_worker("worker-restarted")
    produced = produced_by(generator)
    assert produced == 20000
    wait_until(
        lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
    )
    rows, distinct = pipeline.distinct_record_ids()
    assert rows == distinct == produced
    raw = pipeline.count(final=False)
    # PostgreSQL's primary key keeps one row per record: no replay is left to merge.
    assert pipeline.sinks != ("postgresql",) or raw == produced
    print(
        f"\n[{pipeline.run_id}] {pipeline.sinks[0]}: killed with {stored_at_kill} rows "
        f"stored, {uncommitted} of them beyond the committed offsets (replayed after the "
        f"restart); {raw} rows in the table (replays not merged away yet on ClickHouse), "
        f"{rows} distinct records"
    )
    pipeline.account(produced)


def test_a_model_server_stopped_mid_stream_leaves_rotation_and_nothing_is_lost(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    stopped = pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker()
    generator = pipeline.generate("--count", "10000", "--rate", "1000")
    wait_until(
        lambda: pipeline.count() >= 2000, DRAIN_TIMEOUT_S, "2,000 stored predictions"
    )
    stopped.child.stop()

    def out_of_rotation() -> dict[str, object] | None:
        servers = {s["url"]: s for s in worker.stats()["model_servers"]}
        server = servers[stopped.url]
        return server if not server["in_rotation"] else None

    shown = wait_until(
        out_of_rotation, 30, f"/stats to show {stopped.url} out of rotation"
    )
    assert shown["ejections"] >= 1 and shown["last_error"]
    produced = produced_by(generator)
    wait_until(
        lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
    )
    assert out_of_rotation() is not None, "a stopped server came back into rotation"
    rows, distinct = pipeline.distinct_record_ids()
    assert rows == distinct == produced
    pipeline.account(produced)


def test_malformed_records_all_reach_the_dead_letter_topic_and_every_good_one_is_scored(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    pipeline.start_worker()
    malformed = [
        (b"5,1,1", "CSV record has 3 fields"),
        (b"5,1,1,1,2,x,3,1,1", "is not a number"),
        (b'{"record_id": "oops", "event_time": ', "invalid JSON"),
        (
            b"0,1,1,1,2,1,3,1,1",
            "model refused the record",
        ),  # outside the valid range 1-10
        (
            b'{"record_id": "r", "event_time": 1767323045, "age": 40}',
            "does not take: age",
        ),
    ]
    records: list[tuple[bytes, bytes]] = []
    bad_reason: dict[bytes, str] = {}
    good_keys: set[str] = set()
    for i in range(5000):
        key = f"{pipeline.run_id}-{i}".encode()
        if i % 5 == 2:
            value, reason = malformed[(i // 5) % len(malformed)]
            bad_reason[key] = reason
        else:
            value = GOOD_LINE
            good_keys.add(key.decode())
        records.append((key, value))
    produced = pipeline.produce(records)
    assert produced == 5000 and len(bad_reason) == 1000
    wait_until(
        lambda: pipeline.count() >= len(good_keys),
        DRAIN_TIMEOUT_S,
        "4,000 stored predictions",
    )
    letters = wait_until(
        lambda: (found := pipeline.dead_letters()) and len(found) >= 1000 and found,
        DRAIN_TIMEOUT_S,
        "1,000 dead letters",
    )
    assert len(letters) == 1000
    for letter in letters:
        key = base64.b64decode(letter["raw_key_base64"])
        assert key in bad_reason, f"a good record was dead-lettered: {letter}"
        assert bad_reason[key] in letter["reason"]
        assert letter["source_topic"] == pipeline.feature_topic
        value = base64.b64decode(letter["raw_value_base64"])
        assert value == dict(records)[key]
    stored_ids = set(
        pipeline.clickhouse(
            f"SELECT record_id FROM {pipeline.database}.predictions FINAL"
        ).split()
    )
    assert stored_ids == good_keys
    pipeline.account(produced)


def test_two_workers_split_the_partitions_and_stopping_one_loses_nothing(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    first = pipeline.start_worker("worker-1")
    second = pipeline.start_worker("worker-2")

    def split() -> tuple[list[int], list[int]] | None:
        mine, theirs = first.local()["partitions"], second.local()["partitions"]
        return (
            (mine, theirs) if mine and theirs and not set(mine) & set(theirs) else None
        )

    mine, theirs = wait_until(split, 60, "the two workers to share the partitions")
    assert sorted(mine + theirs) == [0, 1, 2, 3]
    generator = pipeline.generate("--count", "12000", "--rate", "1000")
    wait_until(
        lambda: pipeline.count() >= 3000, DRAIN_TIMEOUT_S, "3,000 stored predictions"
    )
    group = first.stats()
    assert {w["url"] for w in group["workers"]} == {first.url, second.url}
    assert group["totals"]["stored_records"] >= 3000  # both workers' partitions summed
    assert second.child.stop() == 0
    wait_until(
        lambda: sorted(first.local()["partitions"]) == [0, 1, 2, 3],
        60,
        "the remaining worker to take every partition",
    )
    produced = produced_by(generator)
    wait_until(
        lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
    )
    rows, distinct = pipeline.distinct_record_ids()
    assert rows == distinct == produced
    # The stats of the partitions taken over came along (from the table's changelog).
    wait_until(
        lambda: first.stats()["totals"]["stored_records"] >= produced,
        30,
        "/stats of the remaining worker to count every record",
    )
    pipeline.account(produced)


def test_workers_joining_and_leaving_mid_stream_never_commit_an_unstored_record_and_lose_nothing(
    pipeline: Pipeline,
) -> None:
    """Two rebalances while batches are in flight, with commits sampled throughout.

    A joining worker makes the first one revoke partitions mid-batch (the
    revocation waits until every record taken is stored and acked); the
    second worker then stops and hands them back. Commits every 0.5 s
    give a commit that would run ahead of the store many chances to show.
    """
    pipeline.start_model_server()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    settings = {"RISKSTREAM_COMMIT_INTERVAL_S": "0.5"}
    first = pipeline.start_worker("worker-1", **settings)
    generator = pipeline.generate("--count", "30000", "--rate", "1500")
    with CommitWatch(pipeline) as commits:
        wait_until(lambda: pipeline.count() >= 4000, DRAIN_TIMEOUT_S, "4,000 stored")
        second = pipeline.start_worker("worker-2", **settings)
        wait_until(
            lambda: first.local()["partitions"] and second.local()["partitions"],
            60,
            "the joining worker to take partitions from the busy one",
        )
        stored_at_join = pipeline.count(final=False)
        wait_until(
            lambda: (
                second.local()["pipeline"]["batches_done"] >= 5
                and pipeline.count(final=False) >= stored_at_join + 6000
            ),
            DRAIN_TIMEOUT_S,
            "both workers to store records",
        )
        assert second.child.stop() == 0
        wait_until(
            lambda: sorted(first.local()["partitions"]) == [0, 1, 2, 3],
            60,
            "the remaining worker to take every partition back",
        )
        produced = produced_by(generator)
        wait_until(
            lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
        )
        wait_until(
            lambda: sum(pipeline.committed_offsets().values()) >= produced,
            30,
            "every offset committed",
        )
    assert not commits.violations, (
        f"commits ran ahead of the store: {commits.violations[:5]}"
    )
    assert commits.samples >= 20, f"only {commits.samples} samples: {commits.errors}"
    rows, distinct = pipeline.distinct_record_ids()
    assert rows == distinct == produced
    raw = pipeline.count(final=False)
    print(
        f"\n[{pipeline.run_id}] {commits.samples} commit samples, none ahead of the "
        f"store; {raw} rows before deduplication (replays after the rebalances, "
        f"unless merges removed them already), {rows} in the dedup query"
    )
    pipeline.account(produced)


def test_the_dashboard_shows_live_counts_in_headless_chromium(
    pipeline: Pipeline,
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker(RISKSTREAM_QUALITY_REFRESH_S="1")
    # random rows (drift), then the data set with its labels 1 s late (quality)
    produced = produced_by(pipeline.generate("--count", "500", "--rate", "500"))
    produced += produced_by(pipeline.generate("--replay", "--labels-delay", "1"))
    wait_until(
        lambda: pipeline.count() >= produced,
        DRAIN_TIMEOUT_S,
        f"{produced} stored predictions",
    )
    wait_until(
        lambda: worker.stats()["totals"]["stored_records"] >= produced,
        30,
        "/stats to count them",
    )
    live = wait_until(
        lambda: (
            (q := worker.stats()["live_quality"])["quality"]
            and q["quality"][0]["totals"]["labelled_records"] == 699
            and q
        ),
        60,
        "/stats to count 699 labelled predictions",
    )
    profile = pipeline.workdir / "chromium-profile"

    def chromium_run(*mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                *mode,
                f"{worker.url}/dashboard",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dom = chromium_run("--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout

    def shown(element_id: str) -> int:
        match = re.search(rf'id="{element_id}">([\d,]+)<', html)
        assert match, f"#{element_id} has no number in the rendered page"
        return int(match.group(1).replace(",", ""))

    assert shown("stored-total") == produced
    assert shown("received-total") == produced
    assert shown("dead-total") == 0
    # measured values: one decimal below 100, none above (53.5 ms, 8,008 ms)
    for element_id in ("rate-now", "p50", "p99"):
        match = re.search(rf'id="{element_id}">([\d,]+(?:\.\d+)?)<', html)
        assert match, f"#{element_id} has no number in the rendered page"
        text = match.group(1)
        value = float(text.replace(",", ""))
        decimals = len(text.partition(".")[2])
        assert decimals == (1 if value < 100 else 0), f"#{element_id} shows {text}"
    assert "<rect" in html and "<polyline" in html, "the charts were not drawn"
    # the quality panel: the totals /stats gives, ratios with 3 decimals
    (quality,) = live["quality"]
    for metric in ("accuracy", "sensitivity", "specificity", "roc_auc", "brier_score"):
        match = re.search(rf'data-metric="{metric}">(\d\.\d{{3}})<', html)
        assert match, f"the quality panel shows no {metric}"
        assert float(match.group(1)) == round(quality["totals"][metric], 3)
    match = re.search(r'data-metric="labelled_records">([\d,]+)<', html)
    assert match and match.group(1) == "699"
    calibration = html.split('id="calibration-chart"', 1)[1].split("</svg>", 1)[0]
    assert "<polyline" in calibration and "<circle" in calibration
    # the drift panel: every input's PSI with 2 decimals, the random rows' drift flagged
    (drift,) = live["drift"]
    for feature in drift["totals"]["features"]:
        match = re.search(
            rf'data-metric="psi-{feature}"( class="drifted")?>(\d+\.\d\d)<', html
        )
        assert match, f"the drift panel shows no PSI of {feature}"
    assert 'class="drifted"' in html
    assert ">records/s<" in html and ">ms<" in html, "the charts' axes have no unit"
    # what a person sees at 1280x800 (kept in the test's folder to look at)
    screenshot = pipeline.workdir / "dashboard.png"
    shot = chromium_run("--window-size=1280,800", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[
        -2000:
    ]
    # the whole page, quality and drift panels included
    whole = pipeline.workdir / "dashboard-whole.png"
    shot = chromium_run("--window-size=1280,1900", f"--screenshot={whole}")
    assert shot.returncode == 0 and whole.stat().st_size > 10_000, shot.stderr[-2000:]
    assert worker.url.split("//", 1)[1] in html  # the workers table lists this worker
    pipeline.account(produced)


def demo_log(pipeline: Pipeline) -> str:
    """What the demo wrote to its own log file, whatever became of its stdout."""
    path = pipeline.workdir / "data" / "demo" / "demo.log"
    return path.read_text() if path.exists() else f"(no {path})"


@pytest.mark.parametrize("pipeline", ["clickhouse", "postgresql"], indirect=True)
@pytest.mark.parametrize("ending", ["pipe closed, then Ctrl-C", "terminal hung up"])
def test_the_demo_cleans_up_whatever_happens_to_its_stdout_or_terminal(
    pipeline: Pipeline, ending: str
) -> None:
    """``make demo | tee demo.log``, then Ctrl-C: tee dies first and the pipe breaks."""
    first_port, web_port = demo_ports()
    env = pipeline.env(
        RISKSTREAM_MODEL_SERVER_PORT=str(first_port), RISKSTREAM_WEB_PORT=str(web_port)
    )
    demo = subprocess.Popen(
        riskstream_argv("demo", "--rate", "50"),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        while not any("| stored " in line for line in lines):
            line = demo.stdout.readline().decode()
            assert line, (
                f"the demo closed its stdout before showing progress "
                f"(exit code {demo.wait(30)}):\n{demo_log(pipeline)[-3000:]}"
            )
            lines.append(line)
        wait_until(
            lambda: pipeline.count() >= 100,
            DRAIN_TIMEOUT_S,
            "the demo to store 100 predictions",
        )
        demo.stdout.close()  # the reader is gone: the next write breaks the pipe
        if ending == "terminal hung up":
            demo.send_signal(signal.SIGHUP)
        else:
            time.sleep(1)
            demo.send_signal(signal.SIGINT)
        assert demo.wait(90) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    shown = demo_log(pipeline)
    for part in ("generator", "worker", "model servers"):
        assert f"stopped {part} (exit code 0)" in shown, shown[-2000:]
    for port in (first_port, first_port + 1, web_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, (
                f"port {port} still answers after: {ending}"
            )


def test_the_demo_runs_the_pipeline_and_ctrl_c_stops_everything_it_started(
    pipeline: Pipeline,
) -> None:
    first_port, web_port = demo_ports()
    demo = spawn(
        "demo",
        riskstream_argv("demo", "--rate", "50"),
        pipeline.env(
            RISKSTREAM_MODEL_SERVER_PORT=str(first_port),
            RISKSTREAM_WEB_PORT=str(web_port),
        ),
        pipeline.workdir / "demo.log",
    )
    pipeline.children.append(demo)
    wait_until(
        lambda: pipeline.count() >= 100,
        DRAIN_TIMEOUT_S,
        "the demo to store 100 predictions",
    )
    output = wait_until(
        lambda: (text := demo.log_path.read_text()).count("| stored ") >= 2 and text,
        60,
        "two progress lines",
    )
    assert f"http://127.0.0.1:{web_port}/dashboard" in output
    # Where to look, as the sink itself words it.
    hint = {
        "clickhouse": f"{pipeline.database}.predictions FINAL",
        "postgresql": f"dbname={pipeline.database} user=postgres",
    }[pipeline.sinks[0]]
    assert hint in output, output[-3000:]
    assert "already running (left running)" in output
    demo.send_signal(signal.SIGINT)
    assert demo.process.wait(60) == 0, demo.log_tail()
    output = demo.log_path.read_text()
    for part in ("generator", "worker", "model servers"):
        assert f"stopped {part} (exit code 0)" in output, output[-2000:]
    for port in (first_port, first_port + 1, web_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, (
                f"port {port} still answers"
            )
