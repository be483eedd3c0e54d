"""The benchmark's round-trip worker runs (benches/worker.py): the libraries and the bare-socket
floor it is compared with. Counts and shapes only; timing is never checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from umqtt.testing import Mosquitto

WORKER = Path(__file__).resolve().parent.parent / "benches" / "worker.py"


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("lib", ["umqtt", "socket"])
def test_round_trip_worker_reports_every_sample(broker: Mosquitto, topic: str, lib: str) -> None:
    done = run_worker(
        "rtt", lib, "--port", str(broker.port), "--topic", topic, "--count", "200", "--warmup", "5"
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["n"] == 200
    assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]


def test_the_floor_has_no_other_role(broker: Mosquitto) -> None:
    done = run_worker("pub", "socket", "--port", str(broker.port))
    assert done.returncode == 2
    assert "socket has no role pub" in done.stderr
