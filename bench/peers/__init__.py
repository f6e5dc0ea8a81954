"""The bench's peers: the same pipeline on Flink (the reference's job and an Async I/O job) and Quix Streams.

:mod:`bench.peers.build` builds them into the stack folder once;
:mod:`bench.peers.run` runs each on the bench's preloaded topic and counts
what it stored in ClickHouse the way :mod:`bench.stream` counts riskstream.
"""
