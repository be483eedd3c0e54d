"""Test support: a throw-away mosquitto broker, and small helpers for bounded waiting.

`Mosquitto` runs a private broker on a free 127.0.0.1 port with its own config, password file,
ACL file and dynamic-security plugin file, all in a temporary directory. The broker logs
everything (`log_type all`) to a file, so tests can use the log as an independent witness of
what really reached the broker.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

T = TypeVar("T")

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
INSTALL_HINT = "apt-get install mosquitto mosquitto-clients"
DYNSEC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)

ALICE = ("alice", "secret")  # the auth_broker's users
BOB = ("bob", "b0b-pw-7f3c9e")  # a password that cannot occur in a log by chance
FORBIDDEN = "forbidden/#"  # the auth_broker refuses SUBSCRIBE to this filter

_running: set[Mosquitto] = set()


def unique_id(prefix: str = "umqtt-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def as_bytes(value: str | bytes | bytearray | memoryview) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


# --------------------------------------------------------------------------- waiting helpers


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass; return its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


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


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the broker


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or skip the test with the install hint."""
    for candidate in (*MOSQUITTO_CANDIDATES, shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(f"mosquitto is not installed: {INSTALL_HINT}")


def find_dynsec_plugin() -> str:
    """Path of mosquitto's dynamic-security plugin, or skip."""
    for candidate in DYNSEC_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "mosquitto"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    for line in listing.splitlines():
        if line.endswith("mosquitto_dynamic_security.so"):
            return line
    pytest.skip(f"mosquitto_dynamic_security.so not found: {INSTALL_HINT}")


def dynsec_password(password: str, iterations: int = 101) -> dict[str, Any]:
    """The salted PBKDF2-SHA512 entry the dynamic-security plugin stores for a password."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def dynsec_config(users: Mapping[str, str], deny_subscribe: Iterable[str]) -> dict[str, Any]:
    """A dynamic-security file: every user may do anything except subscribe to `deny_subscribe`."""
    acls: list[dict[str, Any]] = [
        {"acltype": "subscribePattern", "topic": t, "priority": 10, "allow": False}
        for t in deny_subscribe
    ]
    acls += [
        {"acltype": kind, "topic": "#", "allow": True}
        for kind in (
            "subscribePattern",
            "unsubscribePattern",
            "publishClientSend",
            "publishClientReceive",
        )
    ]
    return {
        "clients": [
            {"username": user, "roles": [{"rolename": "tests"}], **dynsec_password(password)}
            for user, password in users.items()
        ],
        "roles": [{"rolename": "tests", "acls": acls}],
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


class Mosquitto:
    """One private mosquitto process on 127.0.0.1.

    users: name -> password, written with `mosquitto_passwd` (turns anonymous access off).
    acl: text of an `acl_file`.
    deny_subscribe: topic filters the dynamic-security plugin refuses (SUBACK 0x80) to `users`.
    extra_config: more config lines.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        extra_config: Iterable[str] = (),
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        deny_subscribe: Iterable[str] = (),
        port: int | None = None,
        start: bool = True,
    ) -> None:
        self.binary = find_mosquitto()
        self.dir = Path(workdir) / f"mosquitto-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "mosquitto.log"
        self.stderr_path = self.dir / "mosquitto.stderr"
        self.conf_path = self.dir / "mosquitto.conf"
        self.users = dict(users or {})
        self.deny_subscribe = tuple(deny_subscribe)
        self.extra_config = tuple(extra_config)
        self.acl = acl
        self.port = port or 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._files = self._write_auxiliary_files()
        if start:
            self.start()

    # -- configuration

    def _write_auxiliary_files(self) -> list[str]:
        lines: list[str] = []
        if self.users:
            pw_file = self.dir / "passwords"
            for i, (user, password) in enumerate(self.users.items()):
                args = ["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b"]
                subprocess.run(
                    [*args, str(pw_file), user, password], check=True, capture_output=True
                )
            lines += [f"password_file {pw_file}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = self.dir / "acl"
            acl_file.write_text(self.acl)
            lines.append(f"acl_file {acl_file}")
        if self.deny_subscribe:
            if not self.users:
                raise ValueError("deny_subscribe needs users (dynsec rules apply to them)")
            dynsec_file = self.dir / "dynsec.json"
            dynsec_file.write_text(json.dumps(dynsec_config(self.users, self.deny_subscribe)))
            lines += [f"plugin {find_dynsec_plugin()}", f"plugin_opt_config_file {dynsec_file}"]
        return lines

    def _write_config(self) -> None:
        lines = [
            # Running as root, mosquitto would switch to user "mosquitto", which cannot read
            # pytest's private tmp dirs. Stay who we are.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_type all",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %H:%M:%S",
            *self._files,
            *self.extra_config,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker (again on the same port, if it ran before) and wait until it listens."""
        if self.running:
            raise RuntimeError("broker already running")
        fixed_port = self.port != 0
        deadline = time.monotonic() + timeout
        while True:
            if not fixed_port:
                self.port = free_port()
            if self._launch(deadline):
                _running.add(self)
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"mosquitto did not start on port {self.port}:\n{self.startup_errors()}"
                )
            time.sleep(0.1)

    def _launch(self, deadline: float) -> bool:
        """One attempt: True once the port accepts; False if the process died (port busy)."""
        self._write_config()
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # a Ctrl-C meant for pytest does not hit the broker
            )
        self._paused = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if port_accepts(self.host, self.port):
                return True
            time.sleep(0.02)
        self.kill()
        return False

    def startup_errors(self) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text + self.log_text()[-2000:]

    def _signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def pause(self) -> None:
        """SIGSTOP: the TCP connections stay up but nothing answers (a half-open link)."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def _end(self, sig: int, timeout: float) -> None:
        if self.proc is None:
            return
        if self._paused:
            self.resume()
        self._signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        _running.discard(self)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait (a graceful stop: clients get their TCP connections closed)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL and wait (a crash)."""
        self._end(signal.SIGKILL, 5.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- the log as a witness

    def log_text(self, since: int = 0) -> str:
        """The broker log, optionally only what was written after offset `since` (see log_size)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        """An offset for log_text(since=...): 'what the broker logs from now on'."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_lines(self, *needles: str, since: int = 0) -> list[str]:
        """Log lines (after offset `since`) that contain every one of `needles`."""
        lines = self.log_text(since).splitlines()
        return [line for line in lines if all(n in line for n in needles)]

    def wait_for_log(self, *needles: str, timeout: float = 5.0, since: int = 0) -> bool:
        """True once a log line (after offset `since`) contains all `needles`, within `timeout`."""
        return wait_until(lambda: self.log_lines(*needles, since=since), timeout)

    def connect_flags(self, client_id: str, timeout: float = 5.0) -> str:
        """The flags of the last CONNECT from `client_id` as logged, e.g. "p2, c1, k60, u'alice'".

        p2 = MQTT 3.1.1, c1 = clean session, k = keepalive, u = user name.
        """
        pattern = re.compile(rf" as {re.escape(client_id)} \(([^)]*)\)")
        wait_until(lambda: pattern.search(self.log_text()), timeout)
        found = pattern.findall(self.log_text())
        assert found, f"no CONNECT from {client_id!r} in {self.log_path}"
        return str(found[-1])

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Mosquitto {self.host}:{self.port} {state} log={self.log_path}>"


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_running):
        broker.kill()
