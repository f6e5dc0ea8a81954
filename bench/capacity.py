"""Capacity past one machine, by arithmetic from a bench run's measured CPU per record.

Not a measurement: ``riskstream bench throughput --topology cluster``
measures what each process spends per stored record (worker, model
servers, each broker, each ClickHouse replica, ZooKeeper) with everything
on one machine; this module adds those costs up per role and divides the
cores of N hosts by them. It assumes what a real deployment would have
and this machine has not: hosts that only run their role, CPU as the
limit (not disks or network), and costs per record that stay flat as
partitions, workers and shards grow (each scales out independently:
workers on partitions, model servers behind the workers' round-robin,
brokers on partition leaders, ClickHouse on shards). Run it on a
``bench.json``::

    python -m bench.capacity bench/results/<run>/bench.json [--cores 8] [--utilisation 0.6]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Costs", "capacity_lines", "costs_of"]

#: Hosts per deployment the table shows.
HOSTS = (1, 10, 100)


@dataclass(frozen=True)
class Costs:
    """CPU microseconds per stored record of each role, over all of its processes."""

    worker: float
    model_servers: float
    kafka: float
    clickhouse: float
    zookeeper: float

    @property
    def total(self) -> float:
        return (
            self.worker
            + self.model_servers
            + self.kafka
            + self.clickhouse
            + self.zookeeper
        )


def costs_of(run: dict[str, Any]) -> Costs:
    """The roles' costs of one throughput run (a ``bench.json`` entry)."""
    stack = run.get("stack_cpu_us_per_record", {})

    def role(prefix: str) -> float:
        return sum(us for name, us in stack.items() if name.split("-")[0] == prefix)

    return Costs(
        worker=run["worker_cpu_us_per_record"],
        model_servers=run.get("model_server_cpu_us_per_record", 0.0),
        kafka=role("kafka"),
        clickhouse=role("clickhouse"),
        zookeeper=role("zookeeper"),
    )


def capacity_lines(costs: Costs, cores: int, utilisation: float) -> list[str]:
    """The table: per host count, records/s and how the hosts split between the roles."""
    usable_us = cores * utilisation * 1e6  # CPU microseconds per second per host
    lines = [
        (
            f"CPU per stored record: worker {costs.worker:.1f} us, model servers "
            f"{costs.model_servers:.1f} us, Kafka {costs.kafka:.1f} us (all brokers), "
            f"ClickHouse {costs.clickhouse:.1f} us (all replicas), ZooKeeper "
            f"{costs.zookeeper:.1f} us: {costs.total:.1f} us in all"
        ),
        f"hosts of {cores} cores used to {utilisation:.0%}",
        "",
        "| hosts | records/s | hosts for workers | model servers | Kafka (+ZooKeeper) | ClickHouse |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    roles = (
        costs.worker,
        costs.model_servers,
        costs.kafka + costs.zookeeper,
        costs.clickhouse,
    )
    for hosts in HOSTS:
        rate = hosts * usable_us / costs.total
        # hosts per role in proportion to its cost, each role at least a share of one
        shares = [hosts * cost / costs.total for cost in roles]
        shown = [
            f"{share:.1f}" if share < 10 else f"{math.floor(share):,}"
            for share in shares
        ]
        lines.append(f"| {hosts} | {rate:,.0f} | " + " | ".join(shown) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--cores", type=int, default=8, help="cores per host [8]")
    parser.add_argument(
        "--utilisation",
        type=float,
        default=0.6,
        help="share of each host's CPU to plan for [0.6]",
    )
    arguments = parser.parse_args()
    results = orjson.loads(arguments.bench_json.read_bytes())
    runs = results.get("throughput_cluster") or results.get("throughput") or []
    if not runs:
        raise SystemExit(f"{arguments.bench_json} holds no throughput runs")
    run = max(runs, key=lambda r: r["records_per_s"])
    print(
        f"from the fastest {run.get('topology', 'single')} run: {run['workers']} worker(s), "
        f"{run['model_servers']} model server(s), {run['records_per_s']:,.0f} records/s"
    )
    for line in capacity_lines(costs_of(run), arguments.cores, arguments.utilisation):
        print(line)


if __name__ == "__main__":
    main()
