package riskstream.peers;

import java.io.Serializable;
import org.apache.flink.api.java.utils.ParameterTool;
import org.json.JSONArray;

/**
 * What a peer job is told on its command line ({@code --name value}, Flink's ParameterTool).
 *
 * <p>The reference read a {@code KafkaSource.properties} resource and hard-coded its URL,
 * token and the inputs {@code _c0.._c8}; the bench passes them instead, from the same
 * RISKSTREAM_* settings riskstream's workers read.
 */
final class Job implements Serializable {
  private static final long serialVersionUID = 1L;

  final String bootstrap;
  final String topic;
  final String group;
  final String[] servers;
  final String model;
  final String modelVersion;
  final String token;
  final String[] inputs;
  final String inputNamesJson;
  final String clickhouse;
  final String database;
  final String user;
  final String password;
  final int parallelism;
  final ParameterTool params;

  Job(String[] args) {
    params = ParameterTool.fromArgs(args);
    bootstrap = params.getRequired("bootstrap");
    topic = params.getRequired("topic");
    group = params.getRequired("group");
    servers = params.getRequired("servers").split(",");
    model = params.getRequired("model");
    modelVersion = params.get("model-version", "");
    token = params.get("token", "");
    inputs = params.getRequired("inputs").split(",");
    inputNamesJson = new JSONArray(inputs).toString();
    clickhouse = params.getRequired("clickhouse");
    database = params.getRequired("database");
    user = params.get("user", "default");
    password = params.get("password", "");
    parallelism = params.getInt("parallelism", 1);
  }

  String predictUrl(String server) {
    return server + "/v1/models/" + model + ":predict";
  }
}
