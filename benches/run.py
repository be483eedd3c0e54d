"""Benchmark umqtt against paho-mqtt (and gmqtt when it is installed) on a private mosquitto.

    .venv/bin/python benches/run.py [--quick] [--repeat N] [--libs umqtt,paho] [--only a,b]

Starts its own mosquitto on a free 127.0.0.1 port, runs every scenario for every library in fresh
processes (benches/worker.py; publisher and subscriber separate), prints a Markdown table with the
ratio umqtt / paho against the targets of issue 5, and writes the figures to
benches/results/latest.json. Not part of the test suite: it passes or fails nothing.
"""

from __future__ import annotations

import argparse
import contextlib
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
from pathlib import Path
from typing import Any, Callable, NoReturn

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
RESULTS = HERE / "results"
LIBS = ("umqtt", "paho", "gmqtt")
DISTRIBUTIONS = {"umqtt": "umqtt", "paho": "paho-mqtt", "gmqtt": "gmqtt"}
# The round trip's floor: a pure-Python client on a bare socket (worker.py `socket_rtt`), run in
# the rtt scenario beside the libraries, so the table says what this machine allows any client.
FLOOR = "socket"
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
BROKER_NOFILE = 8192

# How much work each scenario does. Counts are chosen so that a scenario takes a few seconds
# for the slowest library on a 2-core machine; `duration` caps a publisher's run.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "qos0_64": {"count": 150_000, "duration": 15.0},
        "qos0_4k": {"count": 50_000, "duration": 15.0},
        "qos1_single": {"count": 1_000_000, "duration": 3.0},
        "qos1_window": {"count": 1_000_000, "duration": 3.0},
        "rtt": {"count": 10_000, "warmup": 500},
        "conn": {"count": 1000, "warmup": 50},
        "idle": {"clients": 200, "total": 1000, "settle": 1.0},
    },
    "quick": {
        "qos0_64": {"count": 30_000, "duration": 3.0},
        "qos0_4k": {"count": 5_000, "duration": 3.0},
        "qos1_single": {"count": 1_000_000, "duration": 1.0},
        "qos1_window": {"count": 1_000_000, "duration": 1.0},
        "rtt": {"count": 500, "warmup": 50},
        "conn": {"count": 50, "warmup": 5},
        "idle": {"clients": 200, "total": 1000, "settle": 0.5},
    },
}
QOS1_THREADS = 8  # umqtt's windowed QoS 1: blocking publish() from this many threads
QOS1_WINDOW = 100  # paho/gmqtt's windowed QoS 1: messages in flight (= mosquitto's inflight)


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
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    """A private mosquitto with the benchmark's settings, its fd limit raised with `ulimit -n`."""

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
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        lines += [f"{k} {v}" for k, v in self.settings.items()]
        # stderr, into a file opened here: mosquitto started as root drops to user "mosquitto",
        # which could not open a file in this private directory itself.
        lines += ["log_dest stderr", "log_type error", "log_type warning"]
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
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if time.monotonic() > deadline:
                self.fail("mosquitto did not open its port within 10 s")
            time.sleep(0.05)
        time.sleep(0.2)  # something else may own the port (a race with free_port()): still alive?
        if self.proc.poll() is not None:
            self.fail("mosquitto exited at start")
        self.version = version_of([self.binary, "-h"]).replace("mosquitto version ", "")

    def fail(self, what: str) -> NoReturn:
        tail = self.log_tail()
        self.stop()
        raise BenchError(f"{what}:\n{tail}")

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

    def __init__(self, broker_pid: int) -> None:
        self.pid = broker_pid
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.own0 = own_cpu_seconds()
        self.broker0 = process_cpu_seconds(broker_pid)

    def figures(self) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self.t0)
        broker = process_cpu_seconds(self.pid) - self.broker0
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
    """One `benches/worker.py` process; its stdout lines arrive on a queue."""

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


# =============================================================================== scenarios


def throughput(
    lib: str, port: int, qos: int, size: int, count: int, duration: float, windowed: bool = False
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    common = ["--port", str(port), f"--topic=bench/{run}/data", f"--ctl=bench/{run}/ctl"]
    common += ["--qos", str(qos)]
    sub = Worker(["sub", lib, *common])
    pub = None
    try:
        sub.expect("READY", timeout=30)
        extra = ["--size", str(size), "--count", str(count), "--duration", str(duration)]
        if windowed:
            extra += ["--threads", str(QOS1_THREADS), "--window", str(QOS1_WINDOW)]
        pub = Worker(["pub", lib, *common, *extra])
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


def single(role: str, lib: str, port: int, **options: Any) -> dict[str, Any]:
    args = [role, lib, "--port", str(port)]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    if role == "rtt":
        args += [f"--topic=bench/{uuid.uuid4().hex[:8]}/rtt"]
    w = Worker(args)
    try:
        return w.result(timeout=180)
    finally:
        w.kill()


def scenario_runners(profile: dict[str, dict[str, Any]]) -> dict[str, Callable[[str, int], Any]]:
    q64, q4k = profile["qos0_64"], profile["qos0_4k"]
    q1, q1w = profile["qos1_single"], profile["qos1_window"]
    return {
        "qos0_64": lambda lib, port: throughput(lib, port, 0, 64, q64["count"], q64["duration"]),
        "qos0_4k": lambda lib, port: throughput(lib, port, 0, 4096, q4k["count"], q4k["duration"]),
        "qos1_single": lambda lib, port: throughput(lib, port, 1, 64, q1["count"], q1["duration"]),
        "qos1_window": lambda lib, port: throughput(
            lib, port, 1, 64, q1w["count"], q1w["duration"], windowed=True
        ),
        "rtt": lambda lib, port: single("rtt", lib, port, qos=0, size=64, **profile["rtt"]),
        "conn": lambda lib, port: single("conn", lib, port, **profile["conn"]),
        "idle": lambda lib, port: single("idle", lib, port, **profile["idle"]),
    }


# =============================================================================== the table

# (scenario, figure, label, unit, target) with target = (">=" | "<=", ratio) or None.
ROWS: list[tuple[str, str, str, str, tuple[str, float] | None]] = [
    ("qos0_64", "pub_rate", "QoS0 64 B: publisher rate", "msg/s", None),
    ("qos0_64", "e2e_rate", "QoS0 64 B: end-to-end rate", "msg/s", (">=", 2.0)),
    ("qos0_64", "lost", "QoS0 64 B: lost messages", "msgs", None),
    ("qos0_4k", "pub_rate", "QoS0 4 KiB: publisher rate", "msg/s", None),
    ("qos0_4k", "e2e_rate", "QoS0 4 KiB: end-to-end rate", "msg/s", None),
    ("qos0_4k", "lost", "QoS0 4 KiB: lost messages", "msgs", None),
    ("qos1_single", "pub_rate", "QoS1 one at a time: publish rate", "msg/s", (">=", 3.0)),
    ("qos1_single", "lost", "QoS1 one at a time: lost messages", "msgs", None),
    (
        "qos1_window",
        "pub_rate",
        f"QoS1 windowed: publish rate (umqtt {QOS1_THREADS} threads, "
        f"others {QOS1_WINDOW} in flight)",
        "msg/s",
        None,
    ),
    ("qos1_window", "lost", "QoS1 windowed: lost messages", "msgs", None),
    ("rtt", "p50_us", "Round trip QoS0 64 B: p50", "µs", ("<=", 0.45)),
    ("rtt", "p99_us", "Round trip QoS0 64 B: p99", "µs", ("<=", 0.4)),
    ("conn", "median_ms", "Connect + disconnect (median)", "ms", ("<=", 1.0)),
    (
        "idle",
        "rss_per_client_kb",
        "RSS per idle connected client (200 clients)",
        "KiB",
        ("<=", 0.5),
    ),
    ("qos0_64", "pub_cpu_us_per_msg", "Publisher CPU per QoS0 64 B message", "µs", ("<=", 0.5)),
    ("qos0_4k", "pub_cpu_us_per_msg", "Publisher CPU per QoS0 4 KiB message", "µs", None),
    ("qos0_64", "sub_cpu_us_per_msg", "Subscriber CPU per QoS0 64 B message", "µs", None),
    ("idle", "threads_total", "Threads in a process holding 1,000 clients", "threads", None),
]
THREADS_LIMIT = 16  # "1,000 clients without a thread per client": umqtt's process stays under this


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


def table(
    medians: dict[str, dict[str, Any]], libs: list[str], total_clients: int
) -> tuple[str, list[dict[str, Any]]]:
    head = ["scenario", "unit", *libs, "umqtt/paho", "target", ""]
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(libs) + 1) + ["---", "---"]) + "|",
    ]
    rows = []
    for scenario, figure, label, unit, target in ROWS:
        values = {lib: medians.get(scenario, {}).get(lib, {}).get(figure) for lib in libs}
        u, p = values.get("umqtt"), values.get("paho")
        ratio = u / p if isinstance(u, (int, float)) and isinstance(p, (int, float)) and p else None
        if unit in ("msgs", "threads"):
            ratio = None
        verdict = ""
        target_text = ""
        if target is not None:
            op, bound = target
            target_text = f"{'≥' if op == '>=' else '≤'} {bound:g}x"
            if ratio is not None:
                ok = ratio >= bound if op == ">=" else ratio <= bound
                verdict = "✓" if ok else "✗"
        if figure == "threads_total":
            target_text = f"umqtt < {THREADS_LIMIT} (no thread per client)"
            if isinstance(u, (int, float)):
                verdict = "✓" if u < THREADS_LIMIT else "✗"
        shown = {lib: fmt(values[lib], unit) for lib in libs}
        if figure == "threads_total":  # a library that could not hold them all: say how many it did
            for lib in libs:
                idle = medians.get("idle", {}).get(lib, {})
                if values[lib] is not None and idle.get("total", 0) < total_clients:
                    shown[lib] = f"{shown[lib]} (stuck at {idle['total']:.0f} clients)"
        cells = [label, unit, *(shown[lib] for lib in libs)]
        cells += [f"{ratio:.2f}x" if ratio is not None else "", target_text, verdict]
        out.append("| " + " | ".join(cells) + " |")
        rows.append(
            {
                "scenario": scenario,
                "figure": figure,
                "label": label,
                "unit": unit,
                "values": values,
                "ratio_umqtt_paho": ratio,
                "target": target_text or None,
                "met": {"✓": True, "✗": False}.get(verdict),
            }
        )
    return "\n".join(out), rows


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


def contenders(scenario: str, libs: list[str]) -> list[str]:
    """Who runs a scenario: the libraries, and in the round trip the bare-socket floor too."""
    return [*libs, FLOOR] if scenario == "rtt" else list(libs)


def floor_figures(medians: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """The floor's round trip and its ratios to paho, when both ran."""
    rtt = medians.get("rtt", {})
    floor, paho = rtt.get(FLOOR), rtt.get("paho")
    if not floor or not paho:
        return None
    figures = {}
    for figure in ("p50_us", "p99_us"):
        figures[figure] = floor[figure]
        figures[f"{figure}_ratio_to_paho"] = floor[figure] / paho[figure]
    return figures


def floor_line(floor: dict[str, float]) -> str:
    return (
        "\nRound-trip floor on this machine, a pure-Python client on a bare socket (one send and"
        f" one recv, no MQTT library): p50 {floor['p50_us']:.0f} µs"
        f" ({floor['p50_us_ratio_to_paho']:.2f}x paho), p99 {floor['p99_us']:.0f} µs"
        f" ({floor['p99_us_ratio_to_paho']:.2f}x paho)."
    )


def available_libs(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    libs, versions = [], {}
    for lib in wanted:
        module = {"paho": "paho.mqtt.client"}.get(lib, lib)
        probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
        if probe.returncode != 0:
            print(f"note: {lib} is not importable, skipped", file=sys.stderr)
            continue
        libs.append(lib)
        try:
            versions[lib] = importlib.metadata.version(DISTRIBUTIONS[lib])
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "?"
    libs.sort(key=LIBS.index)  # columns always in the order umqtt, paho, gmqtt
    if "umqtt" not in libs or "paho" not in libs:
        sys.exit("umqtt and paho-mqtt must both be importable (run scripts/bench.sh)")
    return libs, versions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller counts: about 30 s")
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
    p.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write JSON")
    a = p.parse_args()

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

    broker = Broker()
    print(
        f"mosquitto {broker.version} on 127.0.0.1:{broker.port}; libraries: "
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
                entrants = contenders(name, libs)
                shift = rep % len(entrants)
                for lib in entrants[shift:] + entrants[:shift]:  # rotate who goes first
                    waited = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 else 0.0
                    t0 = time.monotonic()
                    noise = Noise(broker.proc.pid)
                    try:
                        results[name][lib] = runners[name](lib, broker.port)
                        results[name][lib].update(noise.figures(), waited_for_quiet_s=waited)
                    except BenchError as e:
                        errors.append(f"repeat {rep + 1}, {name}, {lib}: {e}")
                        print(f"  {name:<12} {lib:<6} FAILED: {e}", file=sys.stderr)
                        if not broker.alive():
                            raise BenchError("mosquitto died:\n" + broker.log_tail()) from e
                        continue
                    other = results[name][lib]["other_cpu_pct"]
                    broker_pct = results[name][lib]["broker_cpu_pct"]
                    took = time.monotonic() - t0
                    print(
                        f"  [{rep + 1}/{a.repeat}] {name:<12} {lib:<6} {took:5.1f} s"
                        f"  (CPU, % of a core: broker {broker_pct:3.0f},"
                        f" other processes {other:3.0f})",
                        file=sys.stderr,
                    )
                    if other > NOISY_PCT:
                        noisy.append(f"{name}/{lib} (repeat {rep + 1}): {other:.0f}%")
            runs.append(results)
    finally:
        broker.stop()
    elapsed = time.monotonic() - started

    medians: dict[str, dict[str, Any]] = {}
    for name in only:
        medians[name] = {}
        for lib in contenders(name, libs):
            got = [r[name][lib] for r in runs if lib in r.get(name, {})]
            if got:
                medians[name][lib] = median_of(got)
    text, rows = table(medians, libs, profile["idle"]["total"])
    print(text)
    floor = floor_figures(medians)
    if floor:
        print(floor_line(floor))
    print(
        f"\n{profile_name} profile, {a.repeat} repeat(s){' (medians)' if a.repeat > 1 else ''}, "
        f"{elapsed:.0f} s; mosquitto {broker.version}; "
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
        },
        "config": profile,
        "rows": rows,
        "floor": floor,
        "medians": medians,
        "runs": runs,
        "errors": errors,
    }
    a.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"JSON: {a.json}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"error: {e}")
