package riskstream.peers;

import java.util.ArrayList;
import java.util.List;
import org.json.JSONObject;

/**
 * The row of one prediction in the bench's {@code predictions} table, as a JSONEachRow line.
 *
 * <p>The line is left open (no closing brace): {@link ClickHouseSink} appends the stored-at
 * stamps at the insert, as riskstream's writer does. The reference stored the answer's text
 * in a {@code res STRING} column; these are the same columns riskstream stores, so the bench
 * counts every system the same way.
 */
final class Rows {
  private static final String PROBABILITY = "probability(";

  private Rows() {}

  /** The features of a CSV value: {@code value.split(",")} and {@code Double.parseDouble}. */
  static double[] features(String value) {
    String[] input = value.split(",");
    double[] values = new double[input.length];
    for (int i = 0; i < input.length; i++) {
      values[i] = Double.parseDouble(input[i]);
    }
    return values;
  }

  static String row(
      Feature record,
      double[] values,
      JSONObject prediction,
      Job job,
      String server,
      double latencyMs) {
    List<String> labels = new ArrayList<>();
    for (String key : prediction.keySet()) {
      if (key.startsWith(PROBABILITY)) {
        labels.add(key.substring(PROBABILITY.length(), key.length() - 1));
      }
    }
    StringBuilder probabilities = new StringBuilder();
    for (String label : labels) {
      if (probabilities.length() > 0) {
        probabilities.append(',');
      }
      probabilities.append(prediction.getDouble(PROBABILITY + label + ")"));
    }
    StringBuilder features = new StringBuilder();
    for (double v : values) {
      if (features.length() > 0) {
        features.append(',');
      }
      features.append(v);
    }
    JSONObject text = new JSONObject();
    text.put("source_topic", record.topic);
    text.put("record_id", record.key);
    text.put("predicted_label", prediction.optString("label", prediction.optString("pmml(prediction)")));
    text.put("probability_labels", labels);
    text.put("model_version", prediction.optString("model_version", job.modelVersion));
    text.put("model_server", server);
    String head = text.toString();
    return head.substring(0, head.length() - 1)
        + ",\"source_partition\":" + record.partition
        + ",\"source_offset\":" + record.offset
        + ",\"event_time\":" + record.timestamp / 1000
        + ",\"event_time_ms\":" + record.timestamp
        + ",\"scored_at_ms\":" + System.currentTimeMillis()
        + ",\"feature_names\":" + job.inputNamesJson
        + ",\"feature_values\":[" + features + "]"
        + ",\"probabilities\":[" + probabilities + "]"
        + ",\"true_label\":\"\""
        + ",\"model_name\":" + JSONObject.quote(job.model)
        + ",\"scoring_latency_ms\":" + latencyMs;
  }
}
