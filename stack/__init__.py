"""The local stack: real Kafka (KRaft) and ClickHouse servers run under one folder."""
