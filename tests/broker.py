"""Test support: the throw-away mosquitto broker (umqtt.testing) and helpers for bounded waiting.

The broker itself lives in `umqtt.testing` (public, shipped in the wheel, used by the pytest
plugin `umqtt.pytest_plugin`); this module re-exports it under the names the tests import, with
one difference: a `Mosquitto` made here skips the test when mosquitto is not installed (instead of
raising MosquittoNotFound). What only this suite needs (the users of its auth broker, bounded
calls that fail the test, the body of its factory fixtures, the process's memory) stays here.
The MQTT bytes and the scripted broker for what mosquitto will not do are in wire.py.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

import pytest
from umqtt import testing
from umqtt.testing import (
    INSTALL_HINT,
    MosquittoNotFound,
    disconnect_all,
    dynsec_config,
    dynsec_password,
    free_port,
    port_accepts,
    unique_id,
    wait_until,
)

__all__ = [
    "ALICE",
    "BOB",
    "FORBIDDEN",
    "INSTALL_HINT",
    "Bounded",
    "Mosquitto",
    "as_bytes",
    "bounded",
    "disconnect_all",
    "dynsec_config",
    "dynsec_password",
    "find_dynsec_plugin",
    "find_mosquitto",
    "free_port",
    "port_accepts",
    "rss_bytes",
    "serve_connections",
    "tracked",
    "unique_id",
    "wait_until",
]

T = TypeVar("T")

ALICE = ("alice", "secret")  # the auth_broker's users
BOB = ("bob", "b0b-pw-7f3c9e")  # a password that cannot occur in a log by chance
FORBIDDEN = "forbidden/#"  # the auth_broker refuses SUBSCRIBE to this filter


def tracked(make: Callable[..., T], close: Callable[[T], Any]) -> Iterator[Callable[..., T]]:
    """The body of a factory fixture (`yield from tracked(make, close)`): the test gets a
    function that calls `make` and keeps what it made; each is `close`d at teardown."""
    made: list[T] = []

    def factory(*args: Any, **kwargs: Any) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    yield factory
    for thing in made:
        close(thing)


def serve_connections(
    listener: socket.socket, handle: Callable[[socket.socket], Any], name: str
) -> None:
    """Accept connections on `listener` on a daemon thread, calling handle(connection) for each
    there, until the listener is closed."""

    def accept_all() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            handle(connection)

    threading.Thread(target=accept_all, name=name, daemon=True).start()


def rss_bytes() -> int:
    """This process's resident set size in bytes (Linux: /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def as_bytes(value: str | bytes | bytearray | memoryview) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or skip the test with the install hint."""
    try:
        return testing.find_mosquitto()
    except MosquittoNotFound as e:
        pytest.skip(str(e))


def find_dynsec_plugin() -> str:
    """Path of mosquitto's dynamic-security plugin, or skip."""
    try:
        return testing.find_dynsec_plugin()
    except MosquittoNotFound as e:
        pytest.skip(str(e))


class Mosquitto(testing.Mosquitto):
    """umqtt.testing.Mosquitto that skips the test when mosquitto (or a part of it) is missing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except MosquittoNotFound as e:
            pytest.skip(str(e))


# --------------------------------------------------------------------------- bounded calls


class Bounded:
    """Runs one call on a daemon thread so a hang becomes a test failure instead of a stuck run."""

    def __init__(self, fn: Callable[[], Any], name: str = "bounded") -> None:
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float) -> Any:
        """Wait up to `timeout` s; fail the test if still running; re-raise what the call raised."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            pytest.fail(f"{self.thread.name} still blocked after {timeout} s", pytrace=False)
        if self.error is not None:
            raise self.error
        return self.result


def bounded(fn: Callable[[], T], timeout: float = 5.0) -> T:
    """Call `fn()` and return its result, failing the test if it does not finish in `timeout` s."""
    result: T = Bounded(fn, name=getattr(fn, "__name__", "call")).join(timeout)
    return result


def assert_ctrl_c_interrupts(script: str, *args: str) -> None:
    """Runs `script` (which prints "ready", blocks, and on KeyboardInterrupt prints
    time.monotonic() and exits 0) in a subprocess, sends SIGINT, and checks it was interrupted
    within 1 s."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready = Bounded(proc.stdout.readline, "read-ready")
        assert ready.join(20).strip() == "ready", proc.stderr.read() if ready.done else ""
        time.sleep(0.5)  # let it get into the blocking call
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    interrupted_at = float(out.split()[-1])  # time.monotonic() is system-wide on Linux
    assert interrupted_at - sent < 1.0, f"KeyboardInterrupt after {interrupted_at - sent:.2f} s"
