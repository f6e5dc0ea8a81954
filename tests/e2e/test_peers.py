"""The bench's peers on the real stack: each one stores every record of a preloaded topic exactly once.

A smoke test of ``riskstream bench peers`` (:mod:`bench.peers`), no timing:
the peers are built (or taken from the stack folder's cache), the topic is
preloaded once, and each peer runs until it has stored every record, counted
in ClickHouse as the bench counts (rows, and distinct Kafka coordinates).
The first Flink build fetches its jars from Maven Central (about 40 s); later
runs reuse ``<stack>/peers/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers.build import Built, build_all
from bench.peers.run import PEERS, Peer, measure_peer
from bench.stream import Rig
from core.settings import Settings
from tests.ports import restartable_port

pytestmark = pytest.mark.slow

RECORDS = 2_000

#: Far longer than any peer needs for RECORDS (the reference's job: ~15 s).
PEER_SECONDS = 240.0


@pytest.fixture(scope="module")
def preloaded(
    stack: Settings,
    model_repository: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Rig, str, Built]]:
    """A rig on private model-server ports, its topic preloaded, the peers built."""
    settings = stack.model_copy(update={"model_server_port": restartable_port(3)})
    workdir = tmp_path_factory.mktemp("peers")
    shutil.copytree(model_repository, workdir / "models")
    built = build_all(settings)
    with Rig(settings, workdir) as rig:
        topic = rig.topic("features")
        rig.preload(topic, RECORDS)
        yield rig, topic, built


@pytest.mark.parametrize("peer", PEERS, ids=[peer.key for peer in PEERS])
def test_the_peer_stores_every_record_exactly_once(
    preloaded: tuple[Rig, str, Built], peer: Peer
) -> None:
    rig, topic, built = preloaded
    run = measure_peer(rig, topic, RECORDS, peer, built, PEER_SECONDS)
    assert run["drained"], f"{peer.title} stored {run['records']} of {RECORDS}"
    assert run["records"] == RECORDS
    assert run["duplicates"] == 0
