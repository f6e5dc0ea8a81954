"""The capacity table is arithmetic on the measured costs: check the arithmetic."""

from __future__ import annotations

import pytest

from bench.capacity import Costs, capacity_lines, costs_of


def test_the_roles_costs_add_up_every_node_of_the_role() -> None:
    run = {
        "worker_cpu_us_per_record": 30.0,
        "model_server_cpu_us_per_record": 10.0,
        "stack_cpu_us_per_record": {
            "kafka-1": 4.0,
            "kafka-2": 3.0,
            "kafka-3": 3.0,
            "clickhouse-s1r1": 5.0,
            "clickhouse-s1r2": 1.0,
            "zookeeper": 0.5,
        },
    }
    costs = costs_of(run)
    assert costs == Costs(30.0, 10.0, 10.0, 6.0, 0.5)
    assert costs.total == pytest.approx(56.5)


def test_records_per_s_is_the_usable_cpu_over_the_cost_per_record() -> None:
    lines = capacity_lines(Costs(50.0, 25.0, 15.0, 10.0, 0.0), cores=8, utilisation=0.5)
    rows = [line for line in lines if line.startswith(("| 1 |", "| 10 |"))]
    # 8 cores x 0.5 = 4,000,000 us/s per host over 100 us per record
    assert rows[0].startswith("| 1 | 40,000 | 0.5 | 0.2 | 0.1 | 0.1 |")
    assert rows[1].startswith("| 10 | 400,000 | 5.0 | 2.5 | 1.5 | 1.0 |")
