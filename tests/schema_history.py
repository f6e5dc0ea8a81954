"""Schemas riskstream made in earlier versions, for the tests of the in-place upgrade."""

#: The predictions table as riskstream 0.1 created it (before text inputs and
#: regressions), in database ``{db}``.
PREDICTIONS_0_1 = """CREATE TABLE {db}.predictions (
    source_topic String, source_partition UInt32, source_offset UInt64,
    record_id String, event_time DateTime, event_time_ms UInt64, scored_at_ms UInt64,
    feature_names Array(String), feature_values Array(Float64), predicted_label String,
    probability_labels Array(String), probabilities Array(Float64), true_label String,
    model_name String, model_version String, model_server String,
    scoring_latency_ms Float64, stored_at DateTime, stored_at_ms UInt64
) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(event_time)
ORDER BY (source_topic, source_partition, source_offset)"""

#: The columns of :data:`PREDICTIONS_0_1`, in its order.
PREDICTIONS_0_1_COLUMNS = (
    "source_topic", "source_partition", "source_offset", "record_id", "event_time",
    "event_time_ms", "scored_at_ms", "feature_names", "feature_values", "predicted_label",
    "probability_labels", "probabilities", "true_label", "model_name", "model_version",
    "model_server", "scoring_latency_ms", "stored_at", "stored_at_ms",
)  # fmt: skip
