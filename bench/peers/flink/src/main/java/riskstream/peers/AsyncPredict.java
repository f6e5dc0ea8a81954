package riskstream.peers;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.datastream.AsyncDataStream;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.async.ResultFuture;
import org.apache.flink.streaming.api.functions.async.RichAsyncFunction;
import org.apache.kafka.clients.consumer.OffsetResetStrategy;
import org.json.JSONArray;
import org.json.JSONObject;

/**
 * The reference's job as a Flink engineer would write it: the KafkaSource, Async I/O
 * ({@code AsyncDataStream.unorderedWait}) on one shared keep-alive {@link HttpClient} per
 * JVM, records grouped into multi-row requests (like riskstream's worker), a bounded number
 * of records in flight, and a batched ClickHouse sink flushed on every checkpoint.
 *
 * <p>Options beside {@link Job}'s: {@code --batch} rows per request, {@code --capacity}
 * records in flight per subtask (Async I/O's capacity), {@code --linger-ms} the longest a
 * partial request waits, {@code --sink-rows} and {@code --sink-flush-ms}.
 */
public class AsyncPredict {
  public static void main(String[] args) throws Exception {
    Job job = new Job(args);
    int batch = job.params.getInt("batch", 256);
    int capacity = job.params.getInt("capacity", 4 * batch);
    long lingerMs = job.params.getLong("linger-ms", 5);
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(job.parallelism);
    env.getConfig().enableObjectReuse();
    env.enableCheckpointing(job.params.getLong("checkpoint-ms", 10_000));
    KafkaSource<Feature> source =
        KafkaSource.<Feature>builder()
            .setBootstrapServers(job.bootstrap)
            .setTopics(job.topic)
            .setGroupId(job.group)
            .setStartingOffsets(OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST))
            .setDeserializer(KafkaRecordDeserializationSchema.of(new Feature.Schema()))
            .build();
    DataStream<Feature> features =
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "features");
    DataStream<String> rows =
        AsyncDataStream.unorderedWait(
            features, new BatchingScorer(job, batch, lingerMs), 30, TimeUnit.SECONDS, capacity);
    rows.addSink(
            new ClickHouseSink(
                job, job.params.getInt("sink-rows", 5000), job.params.getLong("sink-flush-ms", 500)))
        .name("clickhouse");
    env.execute("AsyncPredict");
  }

  /** Groups records into multi-row requests; each record's future completes with its row. */
  static class BatchingScorer extends RichAsyncFunction<Feature, String> {
    private static final long serialVersionUID = 1L;
    private static HttpClient shared;

    private final Job job;
    private final int batch;
    private final long lingerMs;
    private transient List<Pending> pending;
    private transient long oldestMs;
    private transient ScheduledExecutorService timer;
    private transient AtomicInteger next;

    BatchingScorer(Job job, int batch, long lingerMs) {
      this.job = job;
      this.batch = batch;
      this.lingerMs = lingerMs;
    }

    private static synchronized HttpClient client() {
      if (shared == null) {
        shared =
            HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
      }
      return shared;
    }

    @Override
    public void open(Configuration parameters) {
      pending = new ArrayList<>(batch);
      next = new AtomicInteger(getRuntimeContext().getIndexOfThisSubtask());
      timer = Executors.newSingleThreadScheduledExecutor();
      timer.scheduleWithFixedDelay(this::lingerElapsed, lingerMs, lingerMs, TimeUnit.MILLISECONDS);
    }

    @Override
    public void close() {
      if (timer != null) {
        timer.shutdownNow();
      }
    }

    @Override
    public void asyncInvoke(Feature record, ResultFuture<String> future) {
      Pending item = new Pending(record, Rows.features(record.value), future);
      List<Pending> full = null;
      synchronized (this) {
        if (pending.isEmpty()) {
          oldestMs = System.currentTimeMillis();
        }
        pending.add(item);
        if (pending.size() >= batch) {
          full = pending;
          pending = new ArrayList<>(batch);
        }
      }
      if (full != null) {
        send(full);
      }
    }

    private void lingerElapsed() {
      List<Pending> due = null;
      synchronized (this) {
        if (!pending.isEmpty() && System.currentTimeMillis() - oldestMs >= lingerMs) {
          due = pending;
          pending = new ArrayList<>(batch);
        }
      }
      if (due != null) {
        send(due);
      }
    }

    private void send(List<Pending> items) {
      StringBuilder body = new StringBuilder(items.size() * 200).append("{\"instances\":[");
      for (int i = 0; i < items.size(); i++) {
        if (i > 0) {
          body.append(',');
        }
        body.append('{');
        double[] values = items.get(i).values;
        for (int j = 0; j < values.length; j++) {
          if (j > 0) {
            body.append(',');
          }
          body.append(JSONObject.quote(job.inputs[j])).append(':').append(values[j]);
        }
        body.append('}');
      }
      body.append("]}");
      String server = job.servers[Math.floorMod(next.getAndIncrement(), job.servers.length)];
      HttpRequest request =
          HttpRequest.newBuilder(URI.create(job.predictUrl(server)))
              .header("Content-Type", "application/json")
              .header("X-Auth-Token", job.token)
              .timeout(Duration.ofSeconds(30))
              .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
              .build();
      long started = System.nanoTime();
      client()
          .sendAsync(request, HttpResponse.BodyHandlers.ofString())
          .whenComplete(
              (response, error) -> {
                if (error == null && response.statusCode() != 200) {
                  error = new IllegalStateException("model server: " + response.body());
                }
                if (error != null) {
                  for (Pending item : items) {
                    item.future.completeExceptionally(error);
                  }
                  return;
                }
                double latencyMs = (System.nanoTime() - started) / 1e6;
                JSONArray predictions = new JSONObject(response.body()).getJSONArray("predictions");
                for (int i = 0; i < items.size(); i++) {
                  Pending item = items.get(i);
                  item.future.complete(
                      Collections.singletonList(
                          Rows.row(
                              item.record,
                              item.values,
                              predictions.getJSONObject(i),
                              job,
                              server,
                              latencyMs)));
                }
              });
    }
  }

  private static final class Pending {
    final Feature record;
    final double[] values;
    final ResultFuture<String> future;

    Pending(Feature record, double[] values, ResultFuture<String> future) {
      this.record = record;
      this.values = values;
      this.future = future;
    }
  }
}
