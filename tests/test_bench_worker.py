"""The benchmark's workers (umqtt._bench.worker) and how umqtt._bench.run plans a run (both behind
benches/run.py and `python -m umqtt bench`): every worker runs and reports its JSON line, counts
add up. Counts and shapes only; timing is never checked here.

gmqtt and aiomqtt come with the `bench` extra (scripts/bench.sh installs it): their cases are
skipped where they are not installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import umqtt._bench.worker
from umqtt._bench import run
from umqtt.testing import Mosquitto

WORKER = Path(umqtt._bench.worker.__file__)
ASYNCIO_LIBS = ["umqtt.aio", "gmqtt", "aiomqtt"]


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=60
    )


def figures_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def needs(lib: str) -> None:
    """Skips unless the library is installed (gmqtt and aiomqtt are in the bench extra)."""
    pytest.importorskip({"umqtt.aio": "umqtt.aio"}.get(lib, lib))


@pytest.mark.parametrize("lib", ["umqtt", "socket", *ASYNCIO_LIBS])
def test_round_trip_worker_reports_every_sample(broker: Mosquitto, topic: str, lib: str) -> None:
    if lib in ASYNCIO_LIBS:
        needs(lib)
    done = run_worker(
        "rtt", lib, "--port", str(broker.port), "--topic", topic, "--count", "200", "--warmup", "5"
    )
    figures = figures_of(done)
    assert figures["n"] == 200
    assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]


def test_the_floor_has_no_other_role(broker: Mosquitto) -> None:
    done = run_worker("pub", "socket", "--port", str(broker.port))
    assert done.returncode == 2
    assert "socket has no role pub" in done.stderr


def publish_and_count(
    broker: Mosquitto, topic: str, lib: str, qos: int, shape: list[str], options: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A subscriber and a publisher of 300 messages: the figures each reported."""
    common = ["--port", str(broker.port), f"--topic={topic}/data", f"--ctl={topic}/ctl"]
    common += ["--qos", str(qos), *options]
    sub = subprocess.Popen(
        [sys.executable, str(WORKER), "sub", lib, *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sub.stdout is not None
        assert sub.stdout.readline().strip() == "READY"  # blocks until subscribed (or exit: "")
        shape = ["--count", "300", "--duration", "60", *shape]
        published = figures_of(run_worker("pub", lib, *common, *shape))
        out, err = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert sub.returncode == 0, err
    counted: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert published["sent"] == counted["expected"] == 300
    assert published["t0"] <= published["t_calls"] <= published["t_flushed"]
    return published, counted


@pytest.mark.parametrize("lib", ASYNCIO_LIBS)
@pytest.mark.parametrize(("qos", "tasks"), [(0, 1), (1, 8)])
def test_asyncio_publisher_and_subscriber_count_the_messages(
    broker: Mosquitto, topic: str, lib: str, qos: int, tasks: int
) -> None:
    needs(lib)
    # --window and --batch: gmqtt's "in flight"
    shape = ["--tasks", str(tasks), "--window", str(tasks), "--batch", str(tasks)]
    _, counted = publish_and_count(broker, topic, lib, qos, shape, [])
    if qos == 1:
        assert counted["received"] == 300
    else:  # QoS 0 may lose messages in principle: the subscriber counts what came
        assert 0 < counted["received"] <= 300


@pytest.mark.parametrize(
    ("lib", "shape"), [("umqtt", ["--threads", "4"]), ("umqtt.aio", ["--tasks", "8"])]
)
def test_the_outbox_variant_counts_every_message(
    broker: Mosquitto, topic: str, lib: str, shape: list[str]
) -> None:
    outbox = ["--option", "persistence=new"]
    _, counted = publish_and_count(broker, topic, lib, 1, shape, outbox)
    assert counted["received"] == 300


@pytest.mark.parametrize("lib", ASYNCIO_LIBS)
def test_asyncio_connect_idle_and_crowd_workers(broker: Mosquitto, lib: str) -> None:
    needs(lib)
    port = ["--port", str(broker.port)]
    conn = figures_of(run_worker("conn", lib, *port, "--count", "3", "--warmup", "1"))
    assert conn["n"] == 3
    assert 0 < conn["connect_median_ms"]
    idle = ["--clients", "4", "--total", "6", "--settle", "0"]
    idled = figures_of(run_worker("idle", lib, *port, *idle))
    assert idled["total"] == idled["wanted"] == 6
    crowd = ["--clients", "20", "--concurrency", "4", "--settle", "0"]
    crowded = figures_of(run_worker("crowd", lib, *port, *crowd))
    assert crowded["total"] == crowded["wanted"] == 20
    assert crowded["error"] is None
    assert crowded["threads"] >= 1


def test_options_reach_the_umqtt_constructor(broker: Mosquitto, topic: str) -> None:
    rtt = ["rtt", "umqtt.aio", "--port", str(broker.port), "--topic", topic, "--count", "5"]
    assert figures_of(run_worker(*rtt, "--option", "version=4"))["n"] == 5
    refused = run_worker(*rtt, "--option", "version=6")
    assert refused.returncode != 0
    assert "version must be 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5" in refused.stderr
    assert "takes no --option" in run_worker("rtt", "paho", "--port", "1", "--option=x=1").stderr


def test_a_variant_row_runs_its_libraries_with_its_options() -> None:
    v5 = run.Variant("v5", "MQTT 5", {"version": 5}, ("umqtt.aio",))
    table = run.Table(
        "t",
        "title",
        "umqtt.aio",
        "gmqtt",
        ("umqtt.aio", "gmqtt"),
        (
            run.Row("rtt", "p50_us", "p50", "µs", run.Target("<=", 0.6)),
            run.Row("rtt", "p50_us", "p50, MQTT 5", "µs", variant=v5),
        ),
    )
    libs = ["umqtt.aio", "gmqtt"]
    planned = run.contenders("rtt", libs, [table], [run.FLOOR])
    assert [c.key for c in planned] == ["umqtt.aio", "gmqtt", "umqtt.aio@v5", run.FLOOR]
    assert planned[2].worker_args() == ["--option=version=5"]
    medians = {"rtt": {"umqtt.aio": {"p50_us": 50.0}, "gmqtt": {"p50_us": 100.0}}}
    medians["rtt"]["umqtt.aio@v5"] = {"p50_us": 40.0}
    text, rows = run.render(table, medians, libs)
    assert "| p50 | µs | 50.0 | 100 | 0.50x | ≤ 0.6x | ✓ |" in text
    assert "| p50, MQTT 5 | µs | 40.0 | — | 0.40x |" in text  # gmqtt has no such variant
    assert rows[1]["variant"] == "v5"


def test_a_row_versus_default_compares_a_variant_with_the_same_library() -> None:
    (asyncio_table,) = [t for t in run.tables(run.PROFILES["quick"]) if t.name == "asyncio"]
    rates = {"umqtt.aio": 40_000.0, "umqtt.aio@disk": 30_000.0, "gmqtt": 10_000.0}
    medians = {"qos1_inflight": {lib: {"pub_rate": rate} for lib, rate in rates.items()}}
    text, _ = run.render(asyncio_table, medians, ["umqtt.aio", "gmqtt", "aiomqtt"])
    assert "outbox on disk (ratio: to umqtt.aio in memory) | msg/s | 30,000 | — | — | 0.75x" in text


def test_mqtt5_rows_compare_each_library_with_itself_at_mqtt311() -> None:
    for table in run.tables(run.PROFILES["quick"]):
        rates = {table.subject: 10_000.0, f"{table.subject}@v5": 9_500.0}
        medians = {"qos1_single": {lib: {"pub_rate": rate} for lib, rate in rates.items()}}
        text, _ = run.render(table, medians, list(table.libs))
        row = "QoS1 one at a time: publish rate, MQTT 5 (ratio: to MQTT 3.1.1) | msg/s | 9,500 |"
        assert row in text
        assert "| 0.95x | ≥ 0.9x | ✓ |" in text.split(row)[1].splitlines()[0]


def test_a_target_above_the_broker_cap_becomes_the_cap() -> None:
    (asyncio_table,) = [t for t in run.tables(run.PROFILES["quick"]) if t.name == "asyncio"]
    e2e = {"umqtt.aio": 100_000.0, "gmqtt": 80_000.0, run.CAP: 110_000.0}
    medians = {"qos0_64": {lib: {"e2e_rate": rate} for lib, rate in e2e.items()}}
    text, _ = run.render(asyncio_table, medians, ["umqtt.aio", "gmqtt", "aiomqtt"])
    assert "above the broker's cap (1.38x): the cap is the target | ✗ |" in text
    assert "110,000 msg/s | msg/s |  |  |  | 1.38x | reference |" in text
