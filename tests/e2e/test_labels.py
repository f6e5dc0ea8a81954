"""Ground truth that arrives late, end to end on the real stack, in each sink."""

from __future__ import annotations

import base64

import pytest

from models.dataset import load_dataset
from models.records import encode_label
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    Pipeline,
    generator_run_id,
    produced_by,
    wait_until,
)

pytestmark = pytest.mark.slow

#: A malformed label (not a string or a number) and the reason its dead letter must give.
BAD_LABEL = (b"not-a-record", b'{"record_id": "not-a-record", "label": true}')
BAD_REASON = "label of not-a-record must be a string or an integer, got True"


@pytest.mark.parametrize("pipeline", ["clickhouse", "postgresql"], indirect=True)
def test_labels_five_seconds_late_give_every_record_its_true_label_once(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    pipeline.start_worker()
    generator = pipeline.generate("--replay", "--labels-delay", "5")
    run_id = generator_run_id(generator)
    produced = produced_by(generator)
    assert produced == 699
    assert "699 labels to" in generator.log_path.read_text()
    wait_until(
        lambda: pipeline.count() >= 699 and pipeline.count_labels() >= 699,
        DRAIN_TIMEOUT_S,
        "699 predictions and 699 labels stored",
    )
    assert pipeline.count_labels() == 699
    # the records went without their label (CSV): only the labels topic labelled them
    assert {label for (label,) in pipeline.rows(["true_label"])} == {""}

    truth = {
        f"{run_id}-{index}": str(label)
        for index, label in enumerate(load_dataset("wisconsin-original").y.tolist())
    }
    assert dict(pipeline.labelled()) == truth

    # The same labels again (a producer retry, a replay of the topic) and a malformed one.
    again = [
        (record_id.encode(), encode_label(record_id, label, 1_767_323_045.0))
        for record_id, label in truth.items()
    ]
    assert pipeline.produce([*again, BAD_LABEL], topic=pipeline.labels_topic) == 700
    wait_until(
        lambda: pipeline.count_labels() >= 2 * 699,
        DRAIN_TIMEOUT_S,
        "the labels sent again stored",
    )
    (letter,) = wait_until(
        lambda: pipeline.dead_letters(stages=("label",)),
        DRAIN_TIMEOUT_S,
        "the malformed label's dead letter",
    )
    assert BAD_REASON in letter["reason"]
    assert letter["source_topic"] == pipeline.labels_topic
    assert base64.b64decode(letter["raw_value_base64"]) == BAD_LABEL[1]
    labelled = pipeline.labelled()
    assert len(labelled) == 699 and dict(labelled) == truth  # one label per record
    pipeline.account(produced)


def test_a_worker_killed_after_storing_labels_and_restarted_keeps_one_label_per_record(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    # Commits every 60 s: the kill comes after the labels are stored, before their commit.
    settings = {"RISKSTREAM_COMMIT_INTERVAL_S": "60"}
    worker = pipeline.start_worker("worker", **settings)
    generator = pipeline.generate("--replay", "--labels-delay", "1")
    run_id = generator_run_id(generator)
    produced = produced_by(generator)
    wait_until(
        lambda: pipeline.count_labels() >= 699, DRAIN_TIMEOUT_S, "699 labels stored"
    )
    worker.child.kill()  # kill -9: no commit, the labels are read again
    pipeline.start_worker("worker-restarted", **settings)
    replayed = wait_until(
        lambda: (
            int(pipeline.clickhouse(f"SELECT count() FROM {pipeline.database}.labels"))
            >= 2 * 699
        ),
        DRAIN_TIMEOUT_S,
        "the uncommitted labels stored again by the new worker",
    )
    assert replayed
    wait_until(lambda: pipeline.count() >= 699, DRAIN_TIMEOUT_S, "699 predictions")
    assert pipeline.count_labels() == 699
    truth = {
        f"{run_id}-{index}": str(label)
        for index, label in enumerate(load_dataset("wisconsin-original").y.tolist())
    }
    labelled = pipeline.labelled()
    assert len(labelled) == 699 and dict(labelled) == truth
    pipeline.account(produced)
