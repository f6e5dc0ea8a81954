"""The feature generator: datagen-style random rows or a replay of the data set, to Kafka."""
