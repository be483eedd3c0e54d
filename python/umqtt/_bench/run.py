"""Benchmark umqtt on a private mosquitto: the blocking client against paho-mqtt, umqtt.aio
against gmqtt and aiomqtt.

    .venv/bin/python benches/run.py [--quick] [--repeat N] [--libs umqtt,paho] [--only a,b]

Starts its own mosquitto on a free 127.0.0.1 port, runs every scenario for every library in fresh
processes (worker.py, beside this file; publisher and subscriber separate), and prints two
Markdown tables:
blocking (ratio umqtt / paho, the targets of issue 5) and asyncio (ratio umqtt.aio / gmqtt, the
targets of issue 21, beside the broker's own cap measured with mosquitto_pub and mosquitto_sub).
Every figure goes to benches/results/latest.json. Not part of the test suite: it passes or fails
nothing.

The benchmark lives in the package (umqtt._bench, private), so that `python -m umqtt bench -h HOST
-p PORT` runs the same scenarios against a broker of the user's (`run` with a `RemoteBroker`:
no broker's cap, whose C clients need the broker's log); benches/run.py is its entry point in the
repository.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import queue
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Union

WORKER = Path(__file__).resolve().with_name("worker.py")
LIBS = ("umqtt", "paho", "gmqtt", "umqtt.aio", "aiomqtt")
MODULES = {"paho": "paho.mqtt.client"}  # the module that says a library is there, if not its name
DISTRIBUTIONS = {
    "umqtt": "umqtt",
    "paho": "paho-mqtt",
    "gmqtt": "gmqtt",
    "umqtt.aio": "umqtt",
    "aiomqtt": "aiomqtt",
}
# References, run beside the libraries in one scenario each. The round trip's floor: a pure-Python
# client on a bare socket (worker.py `socket_rtt`), so the table says what this machine allows any
# client. The broker's cap: QoS 0 end to end through mosquitto's own C clients (broker_cap below).
FLOOR = "socket"
CAP = "mosquitto_c"
REFERENCES = {"rtt": FLOOR, "qos0_64": CAP}
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
# The broker's open files (`ulimit -n` before exec), capped by the hard limit: the crowd scenario
# holds 10,000 connections.
BROKER_NOFILE = 65536
HOST = "127.0.0.1"

# How much work each scenario does. Counts are chosen so that a scenario takes a few seconds
# for the slowest library on a 2-core machine; `duration` caps a publisher's run.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "qos0_64": {"count": 150_000, "duration": 15.0},
        "qos0_4k": {"count": 50_000, "duration": 15.0},
        "qos1_single": {"count": 1_000_000, "duration": 3.0},
        "qos1_window": {"count": 1_000_000, "duration": 3.0},
        "qos1_inflight": {"count": 1_000_000, "duration": 3.0},
        "rtt": {"count": 10_000, "warmup": 500},
        "conn": {"count": 1000, "warmup": 50},
        "idle": {"clients": 200, "total": 1000, "settle": 1.0},
        "crowd": {"clients": 10_000, "concurrency": 64, "settle": 1.0},
    },
    "quick": {
        "qos0_64": {"count": 30_000, "duration": 3.0},
        "qos0_4k": {"count": 5_000, "duration": 3.0},
        "qos1_single": {"count": 1_000_000, "duration": 1.0},
        "qos1_window": {"count": 1_000_000, "duration": 1.0},
        "qos1_inflight": {"count": 1_000_000, "duration": 1.0},
        "rtt": {"count": 500, "warmup": 50},
        "conn": {"count": 50, "warmup": 5},
        "idle": {"clients": 200, "total": 1000, "settle": 0.5},
        "crowd": {"clients": 2000, "concurrency": 64, "settle": 0.5},
    },
}
QOS1_THREADS = 8  # umqtt's windowed QoS 1: blocking publish() from this many threads
QOS1_WINDOW = 100  # paho/gmqtt's windowed QoS 1: messages in flight (= mosquitto's inflight)
QOS1_TASKS = 64  # asyncio QoS 1 in flight: tasks each awaiting its own publish


class BenchError(Exception):
    pass


# =============================================================================== the broker


def find_mosquitto() -> str:
    for candidate in (*MOSQUITTO_CANDIDATES, shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("mosquitto not found: apt-get install mosquitto (or run scripts/bench.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    """A private mosquitto with the benchmark's settings, its fd limit raised with `ulimit -n`."""

    host = HOST

    def __init__(self) -> None:
        self.binary = find_mosquitto()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="umqtt-bench-broker."))
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.settings = {
            "persistence": "false",
            "max_queued_messages": "10000000",
            "max_queued_bytes": "0",
            "max_inflight_messages": "100",
            "set_tcp_nodelay": "true",
            "max_connections": "-1",
        }
        lines = [f"listener {self.port} {HOST}", "allow_anonymous true"]
        lines += [f"{k} {v}" for k, v in self.settings.items()]
        self.ws_port = free_port()
        lines += [f"listener {self.ws_port} {HOST}", "protocol websockets", "max_connections -1"]
        # stderr, into a file opened here: mosquitto started as root drops to user "mosquitto",
        # which could not open a file in this private directory itself. Subscriptions are logged
        # so that broker_cap knows when mosquitto_sub (which prints nothing then) is subscribed.
        lines += ["log_dest stderr", "log_type error", "log_type warning", "log_type subscribe"]
        self.conf.write_text("\n".join(lines) + "\n")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.nofile = BROKER_NOFILE if hard == resource.RLIM_INFINITY else min(hard, BROKER_NOFILE)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    f'ulimit -n {self.nofile} && exec "$0" -c "$1"',
                    self.binary,
                    self.conf,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                self.fail("mosquitto exited at start")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port)):
                break
            if time.monotonic() > deadline:
                self.fail("mosquitto did not open its port within 10 s")
            time.sleep(0.05)
        time.sleep(0.2)  # something else may own the port (a race with free_port()): still alive?
        if self.proc.poll() is not None:
            self.fail("mosquitto exited at start")
        self.version = version_of([self.binary, "-h"]).replace("mosquitto version ", "")

    @property
    def name(self) -> str:
        return f"mosquitto {self.version}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def worker_address(self, contender: Contender) -> list[str]:
        """Where the contender's workers connect: the listener of its variant."""
        return address(self.host, self.port, self.ws_port, contender)

    def serves(self, contender: Contender) -> bool:
        return True

    def fail(self, what: str) -> NoReturn:
        tail = self.log_tail()
        self.stop()
        raise BenchError(f"{what}:\n{tail}")

    def wait_subscribed(self, client: str, topic: str, timeout: float) -> None:
        """Until the log says `client` subscribed to `topic` (mosquitto logs it once granted)."""
        line = f" {client} 0 {topic}\n"
        deadline = time.monotonic() + timeout
        while line not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise BenchError(f"{client} not subscribed to {topic} within {timeout:.0f} s")
            time.sleep(0.02)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def address(host: str, port: int, ws_port: int | None, contender: Contender) -> list[str]:
    """The worker's --host and --port for the contender: the WebSocket listener for a variant
    over WebSocket (planned only where the broker has one: `serves`)."""
    if contender.variant is not None and contender.variant.listener == "websockets":
        assert ws_port is not None, contender.key
        port = ws_port
    return ["--host", host, "--port", str(port)]


class RemoteBroker:
    """A broker the benchmark did not start (``python -m umqtt bench -h HOST -p PORT``): its
    settings, version and CPU are unknown here, and there is no log to tell when mosquitto_sub is
    subscribed, so no broker's cap."""

    version = "unknown"
    nofile = None
    pid = None

    def __init__(self, host: str, port: int, ws_port: int | None) -> None:
        self.host, self.port, self.ws_port = host, port, ws_port
        self.settings: dict[str, str] = {}

    @property
    def name(self) -> str:
        return f"the broker at {self.host}:{self.port}"

    def worker_address(self, contender: Contender) -> list[str]:
        return address(self.host, self.port, self.ws_port, contender)

    def serves(self, contender: Contender) -> bool:
        """Whether it has the contender's listener (without --ws-port, no WebSocket rows)."""
        websockets = contender.variant is not None and contender.variant.listener == "websockets"
        return self.ws_port is not None or not websockets

    def alive(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 2):
            return True
        return False

    def log_tail(self) -> str:
        return ""

    def stop(self) -> None:
        pass


# =============================================================================== noise


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def own_cpu_seconds() -> float:
    """CPU seconds used by this process and its waited-for workers."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Noise:
    """CPU taken while one scenario ran (in % of one core): by the broker, and by processes that
    are not part of the benchmark (the machine's busy time minus ours and the broker's)."""

    def __init__(self, broker_pid: int | None) -> None:
        self.pid = broker_pid
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.own0 = own_cpu_seconds()
        self.broker0 = process_cpu_seconds(broker_pid) if broker_pid is not None else 0.0

    def figures(self) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self.t0)
        broker = process_cpu_seconds(self.pid) - self.broker0 if self.pid is not None else 0.0
        other = (machine_busy_seconds() - self.busy0) - (own_cpu_seconds() - self.own0) - broker
        return {
            "broker_cpu_pct": 100.0 * broker / wall,
            "other_cpu_pct": max(0.0, 100.0 * other / wall),
        }


NOISY_PCT = 20.0  # warn when other processes took more than this share of a core during a run


def wait_quiet(limit: float) -> float:
    """Waits (up to `limit` s) for a 1-s window in which the machine is busy less than NOISY_PCT
    of a core; nothing of the benchmark runs then, so that is other processes. Returns the wait."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        busy0 = machine_busy_seconds()
        time.sleep(1.0)
        if 100.0 * (machine_busy_seconds() - busy0) < NOISY_PCT:
            break
    return time.monotonic() - t0


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


# =============================================================================== worker processes


class Worker:
    """One worker.py process; its stdout lines arrive on a queue."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def error(self, what: str) -> BenchError:
        self.kill()
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-15:]
        return BenchError(f"{' '.join(self.args[:2])}: {what}\n  " + "\n  ".join(tail))

    def expect(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise self.error(f"no {text!r} within {timeout:.0f} s") from None
            if line is None:
                raise self.error(f"exited before printing {text!r}")
            if line == text:
                return

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.error(f"still running after {timeout:.0f} s") from None
        last = None
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            if line.startswith("{"):
                last = line
        if self.proc.returncode != 0 or last is None:
            raise self.error(f"exit status {self.proc.returncode}, no result")
        figures: dict[str, Any] = json.loads(last)
        return figures

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# =============================================================================== variants


@dataclass(frozen=True)
class Variant:
    """A library's client with options beside its defaults, measured in rows of its own (a row
    names its variant). The options reach the client constructor through worker.py's --option;
    `libs` are the libraries that have them. E.g. MQTT 5 beside 3.1.1:
    ``Variant("v5", "MQTT 5", {"version": 5}, ("umqtt", "umqtt.aio"))``."""

    name: str
    label: str
    options: Mapping[str, Any]
    libs: tuple[str, ...]
    # The broker's listener its clients connect to: "mqtt" or "websockets" (Broker.port_for).
    listener: str = "mqtt"


# The outbox on disk (issue 24): QoS 1/2 publishes committed to an SQLite file of the publisher's
# own (worker.py, NEW_OUTBOX) before publish() returns; the publisher's rate ends at its flush().
DISK = Variant("disk", "outbox on disk", {"persistence": "new"}, ("umqtt", "umqtt.aio"))

# MQTT 5 (issue 25) beside MQTT 3.1.1, the default: within 10 %.
MQTT5 = Variant("v5", "MQTT 5", {"version": 5}, ("umqtt", "umqtt.aio"))


def mqtt5_rows() -> tuple[Row, ...]:
    """QoS 0 end to end, QoS 1 one at a time and the round trip at version=5, each in ratio to
    the same library at version=4."""
    versus = " (ratio: to MQTT 3.1.1)"
    return tuple(
        dataclasses.replace(
            row,
            label=f"{row.label}, MQTT 5{versus}",
            target=target,
            variant=MQTT5,
            versus_default=True,
        )
        for row, target in (
            (QOS0_E2E, Target(">=", 0.9)),
            (QOS1_SINGLE, Target(">=", 0.9)),
            (RTT_P50, Target("<=", 1.1)),
        )
    )


# MQTT over WebSocket (issue 22), on the broker's WebSocket listener.
WEBSOCKET = Variant(
    "ws", "over WebSocket", {"transport": "websockets"}, ("umqtt", "umqtt.aio"), "websockets"
)


@dataclass(frozen=True)
class Contender:
    """What runs in a scenario: a library (or a reference) with a variant's options, if any."""

    lib: str
    variant: Variant | None = None

    @property
    def key(self) -> str:
        """Its name in progress lines and in the JSON's `runs` and `medians`."""
        return self.lib if self.variant is None else f"{self.lib}@{self.variant.name}"

    def worker_args(self) -> list[str]:
        options = self.variant.options if self.variant is not None else {}
        return [f"--option={key}={json.dumps(value)}" for key, value in options.items()]


# =============================================================================== scenarios


def throughput(
    c: Contender,
    where: list[str],
    qos: int,
    size: int,
    count: int,
    duration: float,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    common = [*where, f"--topic=bench/{run}/data", f"--ctl=bench/{run}/ctl"]
    common += ["--qos", str(qos), *c.worker_args()]
    sub = Worker(["sub", c.lib, *common])
    pub = None
    try:
        sub.expect("READY", timeout=30)
        shape = ["--size", str(size), "--count", str(count), "--duration", str(duration)]
        pub = Worker(["pub", c.lib, *common, *shape, *extra])
        p = pub.result(timeout=duration + 120)
        s = sub.result(timeout=120)
    finally:
        sub.kill()
        if pub is not None:
            pub.kill()
    sent, received = p["sent"], s["received"]
    return {
        "sent": sent,
        "received": received,
        "lost": s["lost"],
        "failed": p["failed"],
        "call_rate": sent / (p["t_calls"] - p["t0"]),
        "pub_rate": sent / (p["t_flushed"] - p["t0"]),
        "e2e_rate": received / (s["t_last"] - p["t0"]) if s["t_last"] else 0.0,
        "pub_seconds": p["t_flushed"] - p["t0"],
        "e2e_seconds": (s["t_last"] - p["t0"]) if s["t_last"] else None,
        "pub_cpu_us_per_msg": p["cpu"] / sent * 1e6,
        "sub_cpu_us_per_msg": s["cpu"] / received * 1e6 if received else None,
        "publisher": p,
        "subscriber": s,
    }


def exit_time(proc: subprocess.Popen[bytes]) -> Callable[[float], float | None]:
    """Watches `proc` from a thread; the result waits up to a timeout for the monotonic time at
    which it exited (None if it is still running then)."""
    when: list[float] = []

    def watch() -> None:
        proc.wait()
        when.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def result(timeout: float) -> float | None:
        watcher.join(timeout)
        return when[0] if when else None

    return result


def broker_cap(broker: Broker, size: int, count: int) -> dict[str, Any]:
    """QoS 0 end to end through mosquitto's own C clients: what the broker passes on this machine
    when the clients cost next to nothing. mosquitto_sub -C counts to `count` and exits; once the
    broker has logged its subscription, mosquitto_pub -l publishes one message per line of a file
    written beforehand (so neither this process nor a shell feeds it). Rates as in `throughput`:
    from the start of mosquitto_pub (its start-up and CONNECT included: a few ms) to its exit (it
    has written everything then), and to mosquitto_sub's exit on the last message."""
    pub_bin, sub_bin = shutil.which("mosquitto_pub"), shutil.which("mosquitto_sub")
    if pub_bin is None or sub_bin is None:
        raise BenchError("mosquitto_pub/mosquitto_sub not found: apt-get install mosquitto-clients")
    run = uuid.uuid4().hex[:8]
    topic, sub_id = f"bench/{run}/cap", f"bench-capsub-{run}"
    common = ["-h", HOST, "-p", str(broker.port), "-t", topic, "-q", "0"]
    with tempfile.TemporaryDirectory(prefix="umqtt-bench-cap.") as tmp:
        lines, received_file = Path(tmp) / "lines", Path(tmp) / "received"
        lines.write_bytes((b"x" * size + b"\n") * count)
        # -W: mosquitto_sub gives up (and exits, flushing what it printed) if messages are lost.
        with open(received_file, "wb") as out:
            sub = subprocess.Popen(
                [sub_bin, *common, "-i", sub_id, "-C", str(count), "-W", "120"],
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        try:
            broker.wait_subscribed(sub_id, topic, timeout=30)
            sub_exit = exit_time(sub)
            t0 = time.monotonic()
            with open(lines, "rb") as feed:
                pub = subprocess.run(
                    [pub_bin, *common, "-i", f"bench-cappub-{run}", "-l"],
                    stdin=feed,
                    capture_output=True,
                    timeout=120,
                )
            t_pub = time.monotonic()
            if pub.returncode != 0:
                raise BenchError(f"mosquitto_pub: exit status {pub.returncode}: {pub.stderr!r}")
            t_last = sub_exit(130)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        received = received_file.read_bytes().count(b"\n")
    complete = received == count and t_last is not None
    return {
        "sent": count,
        "received": received,
        "lost": count - received,
        "pub_rate": count / (t_pub - t0),
        "e2e_rate": count / (t_last - t0) if complete and t_last is not None else None,
        "pub_seconds": t_pub - t0,
        "e2e_seconds": t_last - t0 if complete and t_last is not None else None,
    }


def single(role: str, c: Contender, where: list[str], **options: Any) -> dict[str, Any]:
    args = [role, c.lib, *where, *c.worker_args()]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    if role == "rtt":
        args += [f"--topic=bench/{uuid.uuid4().hex[:8]}/rtt"]
    w = Worker(args)
    try:
        return w.result(timeout=180)
    finally:
        w.kill()


AnyBroker = Union[Broker, RemoteBroker]
Runner = Callable[[Contender, AnyBroker], dict[str, Any]]


def scenario_runners(profile: dict[str, dict[str, Any]]) -> dict[str, Runner]:
    q64, q4k = profile["qos0_64"], profile["qos0_4k"]
    q1, q1w, q1i = profile["qos1_single"], profile["qos1_window"], profile["qos1_inflight"]
    windowed = ["--threads", str(QOS1_THREADS), "--window", str(QOS1_WINDOW)]
    # umqtt.aio and aiomqtt: tasks each awaiting its own publish; gmqtt: batches awaited whole.
    in_flight = [
        "--tasks",
        str(QOS1_TASKS),
        "--window",
        str(QOS1_TASKS),
        "--batch",
        str(QOS1_TASKS),
    ]

    def qos0_64(c: Contender, b: AnyBroker) -> dict[str, Any]:
        if c.lib == CAP:
            assert isinstance(b, Broker), "the broker's cap runs on a broker of the benchmark's"
            return broker_cap(b, 64, q64["count"])
        return throughput(c, b.worker_address(c), 0, 64, q64["count"], q64["duration"])

    return {
        "qos0_64": qos0_64,
        "qos0_4k": lambda c, b: throughput(
            c, b.worker_address(c), 0, 4096, q4k["count"], q4k["duration"]
        ),
        "qos1_single": lambda c, b: throughput(
            c, b.worker_address(c), 1, 64, q1["count"], q1["duration"]
        ),
        "qos1_window": lambda c, b: throughput(
            c, b.worker_address(c), 1, 64, q1w["count"], q1w["duration"], windowed
        ),
        "qos1_inflight": lambda c, b: throughput(
            c, b.worker_address(c), 1, 64, q1i["count"], q1i["duration"], in_flight
        ),
        "rtt": lambda c, b: single("rtt", c, b.worker_address(c), qos=0, size=64, **profile["rtt"]),
        "conn": lambda c, b: single("conn", c, b.worker_address(c), **profile["conn"]),
        "idle": lambda c, b: single("idle", c, b.worker_address(c), **profile["idle"]),
        "crowd": lambda c, b: single("crowd", c, b.worker_address(c), **profile["crowd"]),
    }


# =============================================================================== the tables


@dataclass(frozen=True)
class Target:
    """`op` is ">=", "<=" or "<". The bound is on the ratio subject / anchor, or, when `why` is
    given, on the subject's own figure (and `why` says what it stands for)."""

    op: str
    bound: float
    why: str = ""

    def met(self, value: float) -> bool:
        return {">=": value >= self.bound, "<=": value <= self.bound, "<": value < self.bound}[
            self.op
        ]


@dataclass(frozen=True)
class Row:
    """One figure of one scenario, for every library of its table.

    `variant`: the libraries run with those options (the others show —; an anchor without it
    is compared as it is by default). `at_total`: measured
    with every client of the scenario held; a library that stopped earlier says where.
    `reference`: the row shows that reference's figure (the broker's cap), not the libraries'.
    `capped_by`: a rate target above that reference's rate (in ratio to the anchor) becomes the
    reference's rate: no client can pass the broker.
    `versus_default`: the ratio (and its target) is to the subject's own figure without the
    variant, in the same run (the outbox on disk against memory only), not to the anchor."""

    scenario: str
    figure: str
    label: str
    unit: str
    target: Target | None = None
    variant: Variant | None = None
    at_total: bool = False
    reference: str | None = None
    capped_by: str | None = None
    versus_default: bool = False

    def contender(self, lib: str) -> Contender | None:
        if self.variant is not None and lib not in self.variant.libs:
            return None
        return Contender(lib, self.variant)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    subject: str  # the library the targets are for
    anchor: str  # the library it is compared with
    libs: tuple[str, ...]  # columns, in this order
    rows: tuple[Row, ...] = field(repr=False)


# Figures both tables show (each table adds its own target with `with_target`).
QOS0_PUB = Row("qos0_64", "pub_rate", "QoS0 64 B: publisher rate", "msg/s")
QOS0_E2E = Row("qos0_64", "e2e_rate", "QoS0 64 B: end-to-end rate", "msg/s")
QOS0_LOST = Row("qos0_64", "lost", "QoS0 64 B: lost messages", "msgs")
QOS0_CPU = Row("qos0_64", "pub_cpu_us_per_msg", "Publisher CPU per QoS0 64 B message", "µs")
QOS1_SINGLE = Row("qos1_single", "pub_rate", "QoS1 one at a time: publish rate", "msg/s")
RTT_P50 = Row("rtt", "p50_us", "Round trip QoS0 64 B: p50", "µs")
RTT_P99 = Row("rtt", "p99_us", "Round trip QoS0 64 B: p99", "µs")
CONN = Row("conn", "median_ms", "Connect + disconnect (median)", "ms")
IDLE_RSS = Row("idle", "rss_per_client_kb", "RSS per idle connected client (200 clients)", "KiB")


def with_target(row: Row, op: str, bound: float, **more: Any) -> Row:
    return dataclasses.replace(row, target=Target(op, bound), **more)


def tables(profile: dict[str, dict[str, Any]]) -> tuple[Table, ...]:
    crowd = f"{profile['crowd']['clients']:,} clients in one process"
    blocking = Table(
        "blocking",
        "umqtt (blocking) against paho-mqtt: the targets of issue 5",
        "umqtt",
        "paho",
        ("umqtt", "paho", "gmqtt"),
        (
            QOS0_PUB,
            with_target(QOS0_E2E, ">=", 2.0),
            QOS0_LOST,
            Row("qos0_4k", "pub_rate", "QoS0 4 KiB: publisher rate", "msg/s"),
            Row("qos0_4k", "e2e_rate", "QoS0 4 KiB: end-to-end rate", "msg/s"),
            Row("qos0_4k", "lost", "QoS0 4 KiB: lost messages", "msgs"),
            with_target(QOS1_SINGLE, ">=", 3.0),
            Row("qos1_single", "lost", "QoS1 one at a time: lost messages", "msgs"),
            Row(
                "qos1_window",
                "pub_rate",
                f"QoS1 windowed: publish rate (umqtt {QOS1_THREADS} threads, "
                f"others {QOS1_WINDOW} in flight)",
                "msg/s",
            ),
            Row("qos1_window", "lost", "QoS1 windowed: lost messages", "msgs"),
            dataclasses.replace(
                QOS1_SINGLE,
                label="QoS1 one at a time: publish rate, outbox on disk",
                variant=DISK,
                target=Target(">=", 1.0),
            ),
            Row(
                "qos1_window",
                "pub_rate",
                f"QoS1 windowed: publish rate, outbox on disk (umqtt {QOS1_THREADS} threads)",
                "msg/s",
                Target(">=", 1.0),
                variant=DISK,
            ),
            with_target(RTT_P50, "<=", 0.45),
            with_target(RTT_P99, "<=", 0.4),
            dataclasses.replace(
                QOS0_E2E, label="QoS0 64 B: end-to-end rate, over WebSocket", variant=WEBSOCKET
            ),
            dataclasses.replace(
                RTT_P50, label="Round trip QoS0 64 B: p50, over WebSocket", variant=WEBSOCKET
            ),
            *mqtt5_rows(),
            with_target(CONN, "<=", 1.0),
            with_target(IDLE_RSS, "<=", 0.5),
            with_target(QOS0_CPU, "<=", 0.5),
            Row("qos0_4k", "pub_cpu_us_per_msg", "Publisher CPU per QoS0 4 KiB message", "µs"),
            Row("qos0_64", "sub_cpu_us_per_msg", "Subscriber CPU per QoS0 64 B message", "µs"),
            Row(
                "idle",
                "threads_total",
                "Threads in a process holding 1,000 clients",
                "threads",
                Target("<", 16, "no thread per client"),
                at_total=True,
            ),
        ),
    )
    asyncio_table = Table(
        "asyncio",
        "umqtt.aio against gmqtt and aiomqtt: the targets of issue 21",
        "umqtt.aio",
        "gmqtt",
        ("umqtt.aio", "gmqtt", "aiomqtt"),
        (
            QOS0_PUB,
            with_target(QOS0_E2E, ">=", 1.5, capped_by=CAP),
            Row(
                "qos0_64",
                "e2e_rate",
                "↳ the broker's cap: mosquitto_pub → mosquitto_sub (C) end to end",
                "msg/s",
                reference=CAP,
            ),
            QOS0_LOST,
            with_target(QOS1_SINGLE, ">=", 1.5),
            Row(
                "qos1_inflight",
                "pub_rate",
                f"QoS1, {QOS1_TASKS} in flight: publish rate",
                "msg/s",
                Target(">=", 1.5),
            ),
            Row("qos1_inflight", "lost", f"QoS1, {QOS1_TASKS} in flight: lost messages", "msgs"),
            dataclasses.replace(
                QOS1_SINGLE, label="QoS1 one at a time: publish rate, outbox on disk", variant=DISK
            ),
            Row(
                "qos1_inflight",
                "pub_rate",
                f"QoS1, {QOS1_TASKS} in flight: publish rate, outbox on disk "
                "(ratio: to umqtt.aio in memory)",
                "msg/s",
                Target(">=", 0.5),
                variant=DISK,
                versus_default=True,
            ),
            Row(
                "qos1_inflight",
                "pub_cpu_us_per_msg",
                f"Publisher CPU per QoS1 message, {QOS1_TASKS} in flight, outbox on disk "
                "(ratio: to umqtt.aio in memory)",
                "µs",
                variant=DISK,
                versus_default=True,
            ),
            with_target(RTT_P50, "<=", 0.6),
            RTT_P99,
            *mqtt5_rows(),
            CONN,
            IDLE_RSS,
            Row("crowd", "connect_all_s", f"{crowd}: time to connect them", "s", at_total=True),
            Row("crowd", "rss_per_client_kb", f"{crowd}: RSS per client", "KiB", at_total=True),
            Row("crowd", "threads", f"{crowd}: threads", "threads", at_total=True),
            QOS0_CPU,
        ),
    )
    return blocking, asyncio_table


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit in ("msg/s", "msgs", "threads"):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def render(
    t: Table, medians: dict[str, dict[str, Any]], libs: list[str]
) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table of `t` (the rows of scenarios that ran) and its rows for the JSON."""
    cols = [lib for lib in t.libs if lib in libs]
    ratio_name = f"{t.subject}/{t.anchor}"
    head = ["scenario", "unit", *cols, ratio_name, "target", ""]
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(cols) + 1) + ["---", "---"]) + "|",
    ]
    rows = []
    for row in t.rows:
        ran = medians.get(row.scenario)
        if ran is None:
            continue

        def figures(lib: str, ran: dict[str, Any] = ran, row: Row = row) -> dict[str, Any]:
            c = row.contender(lib)
            return ran.get(c.key, {}) if c is not None else {}

        # An anchor without the row's variant is compared as it is by default.
        anchor = (figures(t.anchor) or ran.get(t.anchor, {})).get(row.figure)
        if row.versus_default:
            anchor = ran.get(t.subject, {}).get(row.figure)
        label, target_text, verdict = row.label, "", ""
        if row.reference is not None:
            value = ran.get(row.reference, {}).get(row.figure)
            values = {row.reference: value}
            shown = {lib: "" for lib in cols}
            label = f"{label}: {fmt(value, row.unit)} {row.unit}"
            ratio = value / anchor if number(value) and number(anchor) and anchor else None
            target_text = "reference"
        else:
            values = {lib: figures(lib).get(row.figure) for lib in cols}
            shown = {lib: fmt(values[lib], row.unit) for lib in cols}
            if row.at_total:  # a library that could not hold them all: say how many it did
                for lib in cols:
                    held = figures(lib)
                    if values[lib] is not None and held.get("total", 0) < held.get("wanted", 0):
                        shown[lib] = f"{shown[lib]} (stuck at {held['total']:.0f} clients)"
            subject = values.get(t.subject)
            ratio = subject / anchor if number(subject) and number(anchor) and anchor else None
            if row.unit in ("msgs", "threads"):
                ratio = None
            if row.target is not None:
                target_text, verdict = judge(row, ratio, subject, anchor, ran, t.subject)
        cells = [label, row.unit, *(shown[lib] for lib in cols)]
        cells += [f"{ratio:.2f}x" if ratio is not None else "", target_text, verdict]
        out.append("| " + " | ".join(cells) + " |")
        rows.append(
            {
                "scenario": row.scenario,
                "figure": row.figure,
                "variant": row.variant.name if row.variant is not None else None,
                "label": label,
                "unit": row.unit,
                "values": values,
                f"ratio_{t.subject}_{t.anchor}": ratio,
                "target": target_text or None,
                "met": {"✓": True, "✗": False}.get(verdict),
            }
        )
    return "\n".join(out), rows


def judge(
    row: Row,
    ratio: float | None,
    subject: Any,
    anchor: Any,
    ran: dict[str, Any],
    subject_name: str,
) -> tuple[str, str]:
    """The target column's text and ✓/✗ (or "" while a figure is missing)."""
    target = row.target
    assert target is not None
    sign = {">=": "≥", "<=": "≤", "<": "<"}[target.op]
    if target.why:
        text = f"{subject_name} {sign} {target.bound:g} ({target.why})"
        return text, ("✓" if target.met(subject) else "✗") if number(subject) else ""
    text = f"{sign} {target.bound:g}x"
    bound = target
    cap = ran.get(row.capped_by, {}).get(row.figure) if row.capped_by else None
    if number(cap) and number(anchor) and anchor and target.op == ">=":
        cap_ratio = cap / anchor
        if target.bound > cap_ratio:
            text += f", above the broker's cap ({cap_ratio:.2f}x): the cap is the target"
            bound = Target(">=", cap_ratio)
    return text, ("✓" if bound.met(ratio) else "✗") if ratio is not None else ""


# =============================================================================== main


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Figure-wise median of the numeric top-level figures of several runs of one scenario."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(values):
            out[key] = statistics.median(nums)
    return out


def contenders(
    scenario: str, libs: list[str], shown: Sequence[Table], references: Sequence[str]
) -> list[Contender]:
    """Who runs a scenario: each selected library a table shows in it, once per variant a row of
    it asks for, and the scenario's reference (the round trip's floor, the broker's cap)."""
    found: dict[str, Contender] = {}
    for t in shown:
        for row in t.rows:
            if row.scenario != scenario or row.reference is not None:
                continue
            for lib in t.libs:
                c = row.contender(lib) if lib in libs else None
                if c is not None:
                    found.setdefault(c.key, c)
    reference = REFERENCES.get(scenario)
    if found and reference is not None and reference in references:
        found[reference] = Contender(reference)
    return list(found.values())


def floor_figures(medians: dict[str, dict[str, Any]], anchor: str) -> dict[str, float] | None:
    """The floor's round trip and its ratios to the anchor, when both ran."""
    rtt = medians.get("rtt", {})
    floor, compared = rtt.get(FLOOR), rtt.get(anchor)
    if not floor or not compared:
        return None
    figures = {}
    for figure in ("p50_us", "p99_us"):
        figures[figure] = floor[figure]
        figures[f"{figure}_ratio_to_{anchor}"] = floor[figure] / compared[figure]
    return figures


def floor_line(floor: dict[str, float], anchor: str) -> str:
    return (
        "\nRound-trip floor on this machine, a pure-Python client on a bare socket (one send and"
        f" one recv, no MQTT library): p50 {floor['p50_us']:.0f} µs"
        f" ({floor[f'p50_us_ratio_to_{anchor}']:.2f}x {anchor}), p99 {floor['p99_us']:.0f} µs"
        f" ({floor[f'p99_us_ratio_to_{anchor}']:.2f}x {anchor})."
    )


def available_libs(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    libs, versions = [], {}
    for lib in wanted:
        if lib not in LIBS:
            sys.exit(f"unknown library {lib!r} (known: {', '.join(LIBS)})")
        probe = subprocess.run(
            [sys.executable, "-c", f"import {MODULES.get(lib, lib)}"], capture_output=True
        )
        if probe.returncode != 0:
            print(f"note: {lib} is not importable, skipped", file=sys.stderr)
            continue
        libs.append(lib)
        try:
            versions[lib] = importlib.metadata.version(DISTRIBUTIONS[lib])
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "?"
    libs.sort(key=LIBS.index)
    return libs, versions


def available_references() -> list[str]:
    """The floor always; the broker's cap when mosquitto's C clients are installed."""
    if shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub"):
        return [FLOOR, CAP]
    print("note: mosquitto_pub/mosquitto_sub not found: no broker cap", file=sys.stderr)
    return [FLOOR]


def add_arguments(p: argparse.ArgumentParser | Any, json_default: Path | None) -> None:
    """The options of a run (benches/run.py's, and `python -m umqtt bench`'s beside -h and -p)."""
    p.add_argument("--quick", action="store_true", help="smaller counts: about 1 minute")
    p.add_argument("--repeat", type=int, default=1, help="run everything N times, report medians")
    p.add_argument(
        "--libs", default=",".join(LIBS), help="comma-separated subset of " + ",".join(LIBS)
    )
    p.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help=f"before each run, wait up to S seconds for other processes to use < {NOISY_PCT:g}%% "
        "of a core (for shared machines)",
    )
    p.add_argument("--json", type=Path, default=json_default, help="where to write JSON")


def main(json_default: Path) -> None:
    """benches/run.py: on a private mosquitto started for the run."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_arguments(p, json_default)
    run(p.parse_args(), Broker, available_references())


def run(a: argparse.Namespace, start: Callable[[], AnyBroker], references: list[str]) -> None:
    """Runs the scenarios `a` asks for on the broker `start` returns, prints the tables and writes
    the JSON (when `a.json` is set)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # workers inherit it
    libs, versions = available_libs([x for x in a.libs.split(",") if x])
    profile_name = "quick" if a.quick else "default"
    profile = PROFILES[profile_name]
    runners = scenario_runners(profile)
    only = [x for x in a.only.split(",") if x] or list(runners)
    unknown = set(only) - set(runners)
    if unknown:
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {', '.join(runners)})")
    # A table is shown when its library runs (without the one it is compared with, the ratios
    # and targets stay empty).
    shown = [t for t in tables(profile) if t.subject in libs]
    if not shown:
        sys.exit("no table to show: umqtt or umqtt.aio must be importable and in --libs")
    broker = start()
    plan = {
        name: [c for c in contenders(name, libs, shown, references) if broker.serves(c)]
        for name in only
    }
    crowd = profile["crowd"]["clients"]
    if "crowd" in only and broker.nofile is not None and broker.nofile < crowd + 64:
        print(
            f"note: the broker may open {broker.nofile} files (hard limit): fewer than the "
            f"{crowd:,} clients of the crowd scenario",
            file=sys.stderr,
        )
    print(
        f"{broker.name} on {broker.host}:{broker.port}; libraries: "
        + ", ".join(f"{lib} {versions[lib]}" for lib in libs)
        + f"; profile {profile_name}, {a.repeat} repeat(s)",
        file=sys.stderr,
    )
    started = time.monotonic()
    runs: list[dict[str, dict[str, Any]]] = []
    errors: list[str] = []
    noisy: list[str] = []
    load_before = os.getloadavg()
    try:
        for rep in range(a.repeat):
            results: dict[str, dict[str, Any]] = {}
            for name in only:
                results[name] = {}
                entrants = plan[name]
                shift = rep % max(1, len(entrants))
                for c in entrants[shift:] + entrants[:shift]:  # rotate who goes first
                    waited = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 else 0.0
                    t0 = time.monotonic()
                    noise = Noise(broker.pid)
                    try:
                        results[name][c.key] = runners[name](c, broker)
                        results[name][c.key].update(noise.figures(), waited_for_quiet_s=waited)
                    except BenchError as e:
                        errors.append(f"repeat {rep + 1}, {name}, {c.key}: {e}")
                        print(f"  {name:<13} {c.key:<11} FAILED: {e}", file=sys.stderr)
                        if not broker.alive():
                            raise BenchError("mosquitto died:\n" + broker.log_tail()) from e
                        continue
                    other = results[name][c.key]["other_cpu_pct"]
                    broker_pct = results[name][c.key]["broker_cpu_pct"]
                    took = time.monotonic() - t0
                    print(
                        f"  [{rep + 1}/{a.repeat}] {name:<13} {c.key:<11} {took:5.1f} s"
                        f"  (CPU, % of a core: broker {broker_pct:3.0f},"
                        f" other processes {other:3.0f})",
                        file=sys.stderr,
                    )
                    if other > NOISY_PCT:
                        noisy.append(f"{name}/{c.key} (repeat {rep + 1}): {other:.0f}%")
            runs.append(results)
    finally:
        broker.stop()
    elapsed = time.monotonic() - started

    medians: dict[str, dict[str, Any]] = {}
    for name in only:
        medians[name] = {}
        for c in plan[name]:
            got = [r[name][c.key] for r in runs if c.key in r.get(name, {})]
            if got:
                medians[name][c.key] = median_of(got)
    rendered: dict[str, list[dict[str, Any]]] = {}
    for t in shown:
        text, rendered[t.name] = render(t, medians, libs)
        print(f"\n### {t.title}\n\n{text}")
        floor = floor_figures(medians, t.anchor)
        if floor:
            print(floor_line(floor, t.anchor))
    print(
        f"\n{profile_name} profile, {a.repeat} repeat(s){' (medians)' if a.repeat > 1 else ''}, "
        f"{elapsed:.0f} s; {broker.name}; "
        + ", ".join(f"{lib} {versions[lib]}" for lib in libs)
        + f"; Python {platform.python_version()}; {os.cpu_count()} CPUs"
    )
    if noisy:
        total = sum(len(r) for runs_of in runs for r in runs_of.values())
        print(
            f"\nWarning: in {len(noisy)} of {total} runs other processes took over "
            f"{NOISY_PCT:.0f}% of a core (the worst: "
            + ", ".join(sorted(noisy, key=lambda x: -float(x.rsplit(" ", 1)[1][:-1]))[:4])
            + "). Those figures are noisy: run again on a quiet machine, or use --repeat."
        )
    if errors:
        print(f"\n{len(errors)} scenario run(s) failed; see stderr and the JSON file.")
    if a.json is None:
        return
    a.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "elapsed_s": elapsed,
            "profile": profile_name,
            "repeat": a.repeat,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "mosquitto": broker.version,
            "broker_settings": broker.settings,
            "broker_nofile": broker.nofile,
            "versions": versions,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "noisy_runs": noisy,
            "qos1_window": {"umqtt_threads": QOS1_THREADS, "in_flight_others": QOS1_WINDOW},
            "qos1_inflight": {"tasks": QOS1_TASKS},
        },
        "config": profile,
        "rows": rendered.get("blocking", []),
        "tables": rendered,
        "floor": floor_figures(medians, "paho"),
        "floor_asyncio": floor_figures(medians, "gmqtt"),
        "medians": medians,
        "runs": runs,
        "errors": errors,
    }
    a.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"JSON: {a.json}", file=sys.stderr)
