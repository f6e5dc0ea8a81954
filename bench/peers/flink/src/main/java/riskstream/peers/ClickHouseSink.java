package riskstream.peers;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.functions.sink.RichSinkFunction;

/**
 * Buffered inserts into ClickHouse over its HTTP interface (JSONEachRow), flushed by size,
 * by age and on every checkpoint (so a checkpoint's offsets commit only stored rows).
 *
 * <p>Stands in for the reference's {@code 'connector' = 'clickhouse'} table, which is not on
 * Maven Central for Flink 1.20; it buffers and flushes by size and interval as that
 * connector did. Rows are {@link Rows} lines, closed here with the stored-at stamps.
 */
class ClickHouseSink extends RichSinkFunction<String> implements CheckpointedFunction {
  private static final long serialVersionUID = 1L;

  private final Job job;
  private final int batchRows;
  private final long flushMs;
  private transient List<String> rows;
  private transient HttpClient client;
  private transient URI uri;
  private transient ScheduledExecutorService timer;
  private transient volatile Exception failure;

  ClickHouseSink(Job job, int batchRows, long flushMs) {
    this.job = job;
    this.batchRows = batchRows;
    this.flushMs = flushMs;
  }

  @Override
  public void open(Configuration parameters) {
    rows = new ArrayList<>(batchRows);
    client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    String query = "INSERT INTO `" + job.database + "`.predictions FORMAT JSONEachRow";
    uri = URI.create(job.clickhouse + "/?query=" + URLEncoder.encode(query, StandardCharsets.UTF_8));
    timer = Executors.newSingleThreadScheduledExecutor();
    timer.scheduleWithFixedDelay(this::flushQuietly, flushMs, flushMs, TimeUnit.MILLISECONDS);
  }

  @Override
  public void invoke(String row, Context context) throws Exception {
    if (failure != null) {
      throw failure;
    }
    List<String> full = null;
    synchronized (this) {
      rows.add(row);
      if (rows.size() >= batchRows) {
        full = rows;
        rows = new ArrayList<>(batchRows);
      }
    }
    if (full != null) {
      insert(full);
    }
  }

  private void flushQuietly() {
    try {
      flush();
    } catch (Exception e) {
      failure = e;
    }
  }

  private void flush() throws Exception {
    List<String> due;
    synchronized (this) {
      if (rows.isEmpty()) {
        return;
      }
      due = rows;
      rows = new ArrayList<>(batchRows);
    }
    insert(due);
  }

  private void insert(List<String> batch) throws Exception {
    long storedAtMs = System.currentTimeMillis();
    String stamps = ",\"stored_at\":" + storedAtMs / 1000 + ",\"stored_at_ms\":" + storedAtMs + "}\n";
    StringBuilder body = new StringBuilder(batch.size() * 400);
    for (String row : batch) {
      body.append(row).append(stamps);
    }
    HttpRequest request =
        HttpRequest.newBuilder(uri)
            .header("X-ClickHouse-User", job.user)
            .header("X-ClickHouse-Key", job.password)
            .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
            .build();
    HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
    if (response.statusCode() != 200) {
      throw new IllegalStateException("ClickHouse insert failed: " + response.body());
    }
  }

  @Override
  public void snapshotState(FunctionSnapshotContext context) throws Exception {
    flush();
  }

  @Override
  public void initializeState(FunctionInitializationContext context) {}

  @Override
  public void close() throws Exception {
    if (timer != null) {
      timer.shutdownNow();
    }
    if (rows != null) {
      flush();
    }
  }
}
