package riskstream.peers;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.streaming.connectors.kafka.KafkaDeserializationSchema;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * One Kafka record of the feature topic with its coordinates.
 *
 * <p>The reference read the bare value ({@code SimpleStringSchema}); the coordinates are
 * kept because the bench's table is keyed on them and counts every record once by them.
 * A public POJO, so Flink serializes it with its POJO serializer, not Kryo.
 */
public class Feature {
  public String topic;
  public int partition;
  public long offset;
  public long timestamp;
  public String key;
  public String value;

  public Feature() {}

  /** The deserializer both Kafka sources use (the new KafkaSource wraps it). */
  public static class Schema implements KafkaDeserializationSchema<Feature> {
    @Override
    public boolean isEndOfStream(Feature next) {
      return false;
    }

    @Override
    public Feature deserialize(ConsumerRecord<byte[], byte[]> record) {
      Feature feature = new Feature();
      feature.topic = record.topic();
      feature.partition = record.partition();
      feature.offset = record.offset();
      feature.timestamp = record.timestamp();
      feature.key = record.key() == null ? "" : new String(record.key(), StandardCharsets.UTF_8);
      feature.value = new String(record.value(), StandardCharsets.UTF_8);
      return feature;
    }

    @Override
    public TypeInformation<Feature> getProducedType() {
      return TypeInformation.of(Feature.class);
    }
  }
}
