"""Throw-away mosquitto brokers for tests and scripts.

``Mosquitto`` runs a private broker on a free 127.0.0.1 port, with its own config (and, on
request, a password file, an ACL file, dynamic-security rules and a TLS listener with
certificates generated for it) in a directory of its own. The broker logs everything
(``log_type all``) to a file, so a test can use the log as an independent witness of what
really reached the broker::

    from umqtt.testing import Mosquitto

    with Mosquitto(users={"alice": "secret"}, tls=True) as broker:
        print(broker.host, broker.port, broker.tls_port, broker.ca_path)
        ...
        assert broker.wait_for_log("Received DISCONNECT from")

The pytest fixtures built on it (``mqtt_broker``, ``mqtt_broker_factory``, ``mqtt_client``)
are in ``umqtt.pytest_plugin``, which pytest loads by itself once umqtt is installed.

Needs the ``mosquitto`` binary (and ``mosquitto_passwd`` for ``users``): it is looked up on
``PATH`` and in the ``sbin`` directory next to every ``bin`` directory on ``PATH`` (Debian
installs the broker as ``/usr/sbin/mosquitto``, which is not on a normal user's ``PATH``).
``tls=True`` needs ``trustme`` (``pip install trustme``). POSIX only (signals, ``pwd``).
This module imports nothing of umqtt's native core and does not need pytest.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Union

__all__ = [
    "INSTALL_HINT",
    "Mosquitto",
    "MosquittoNotFound",
    "disconnect_all",
    "find_executable",
    "find_mosquitto",
    "free_port",
    "port_accepts",
    "unique_id",
    "wait_until",
]

StrPath = Union[str, "os.PathLike[str]"]

INSTALL_HINT = (
    "apt-get install mosquitto (Debian/Ubuntu), dnf install mosquitto (Fedora), "
    "brew install mosquitto (macOS); see https://mosquitto.org/download/"
)
DYNSEC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
)
TLS_CLIENT_NAME = "umqtt-test-client"  # the name on the client certificate of tls=True

_running: set[Mosquitto] = set()


class MosquittoNotFound(RuntimeError):
    """mosquitto (or a part of it this broker needs) is not installed; the message says how."""


# --------------------------------------------------------------------------- small helpers


def unique_id(prefix: str = "umqtt-test") -> str:
    """``prefix`` plus 10 random hex digits: a client id or topic level nobody else uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` s pass; return its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def disconnect_all(clients: Iterable[Any], timeout: float = 10.0) -> None:
    """disconnect() every client, in parallel, all within `timeout` seconds; errors are ignored
    (a test may have disconnected or broken a client itself). For fixture teardown. An asyncio
    client's disconnect() is awaited on an event loop of the teardown thread's own."""

    def disconnect(client: Any) -> None:
        try:
            ending = client.disconnect()
            if inspect.isawaitable(ending):
                asyncio.run(_awaited(ending))
        except Exception:
            pass

    threads = [
        threading.Thread(target=disconnect, args=(c,), name="mqtt-client-teardown", daemon=True)
        for c in clients
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (an IPv4 or IPv6 address) that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host``:``port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unix_socket_accepts(path: StrPath) -> bool:
    """True when a connection to the Unix domain socket at ``path`` succeeds."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            s.connect(os.fspath(path))
            return True
    except OSError:
        return False


def _search_path() -> list[str]:
    """PATH, plus the sbin sibling of every bin directory on it (/usr/bin -> /usr/sbin)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    siblings = [
        os.path.join(os.path.dirname(d.rstrip("/")), "sbin")
        for d in dirs
        if os.path.basename(d.rstrip("/")) == "bin"
    ]
    return list(dict.fromkeys(dirs + siblings))


def find_executable(name: str) -> str | None:
    """Path of the executable ``name`` on PATH or in an sbin directory next to a bin on PATH."""
    return shutil.which(name, path=os.pathsep.join(_search_path()))


def find_mosquitto() -> str:
    """Path of the mosquitto binary; raises MosquittoNotFound (saying how to install it)."""
    found = find_executable("mosquitto")
    if found is None:
        raise MosquittoNotFound(f"mosquitto is not installed: {INSTALL_HINT}")
    return found


def find_dynsec_plugin(binary: str | None = None) -> str:
    """Path of mosquitto's dynamic-security plugin (mosquitto >= 2.0); raises MosquittoNotFound."""
    candidates = list(DYNSEC_CANDIDATES)
    if binary is not None:  # a mosquitto in <prefix>/sbin has its plugins in <prefix>/lib
        prefix = Path(binary).resolve().parent.parent
        candidates.append(str(prefix / "lib" / "mosquitto_dynamic_security.so"))
    for candidate in candidates:
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
    raise MosquittoNotFound(
        "deny_subscribe needs mosquitto's dynamic-security plugin "
        f"(mosquitto_dynamic_security.so, mosquitto >= 2.0), which was not found: {INSTALL_HINT}"
    )


def dynsec_password(password: str, iterations: int = 101) -> dict[str, Any]:
    """The salted PBKDF2-SHA512 entry the dynamic-security plugin stores for a password."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def dynsec_config(
    users: Mapping[str, str],
    deny_subscribe: Iterable[str],
    deny_publish: Iterable[str] = (),
    control: bool = False,
) -> dict[str, Any]:
    """A dynamic-security file: every user may do anything except subscribe to `deny_subscribe`
    and publish to `deny_publish`; with `control`, they may also send the plugin's commands
    (``$CONTROL/dynamic-security/v1``: ``disableClient`` and the others)."""
    acls: list[dict[str, Any]] = [
        {"acltype": "subscribePattern", "topic": t, "priority": 10, "allow": False}
        for t in deny_subscribe
    ]
    acls += [
        {"acltype": "publishClientSend", "topic": t, "priority": 10, "allow": False}
        for t in deny_publish
    ]
    if control:
        acls += [
            {"acltype": kind, "topic": "$CONTROL/dynamic-security/#", "allow": True}
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
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


def _write_certificates(directory: Path, host: str) -> dict[str, Path]:
    """A CA, a server certificate (host, 127.0.0.1, localhost) and a client certificate (PEM)."""
    try:
        import trustme
    except ImportError as e:
        raise RuntimeError(
            "Mosquitto(tls=True) generates its certificates with trustme, which is not "
            "installed: pip install trustme"
        ) from e
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*dict.fromkeys([host, "127.0.0.1", "localhost"]))
    client = ca.issue_cert(TLS_CLIENT_NAME)
    paths = {
        name: directory / name
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server.pem"]))
    server.private_key_pem.write_to_path(str(paths["server.key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client.pem"]))
    client.private_key_pem.write_to_path(str(paths["client.key"]))
    return paths


# --------------------------------------------------------------------------- the broker


class Mosquitto:
    """One private mosquitto process on 127.0.0.1; started by the constructor (``start=True``).

    workdir: where its directory (config, log, password file, certificates) goes; a temporary
        directory, removed by ``close()`` / the ``with`` block, when None.
    users: name -> password, written with ``mosquitto_passwd``; turns anonymous access off.
        ``username``/``password`` are the first user's (None for an anonymous broker).
    acl: the text of an ``acl_file``.
    deny_subscribe: topic filters the dynamic-security plugin refuses (SUBACK 0x80) to ``users``.
    deny_publish: topics it refuses ``users`` to publish to (MQTT 5: PUBACK 0x87).
    dynsec_control: ``users`` may send the plugin's commands (``$CONTROL/dynamic-security/v1``),
        such as ``disableClient``, which disconnects a client (MQTT 5: DISCONNECT 0x98).
    extra_config: more config lines; they follow the plain listener's line, so per-listener
        options apply to it.
    tls: also listen with TLS on ``tls_port``, with a CA and certificates generated by trustme:
        ``ca_path`` (the CA to trust), a server certificate for 127.0.0.1 and localhost, and
        ``client_cert_path``/``client_key_path`` (a client certificate signed by the same CA).
    require_certificate: the TLS listener demands a client certificate (mutual TLS).
    websockets: also listen for MQTT over WebSocket on ``ws_port`` (and, with ``tls``, over
        secure WebSocket on ``wss_port``, with the same certificates). mosquitto accepts any
        path.
    unix_socket: also listen on a Unix domain socket, ``unix_path`` (in the broker's directory).
    ipv6: also listen on ``::1``, port ``ipv6_port``.
    port, tls_port: fixed ports (default: free ones, drawn at the first start and kept for
        restarts; so are the other listeners' ports).
    binary: the mosquitto executable (default: looked up, see ``find_mosquitto``).

    Raises MosquittoNotFound when mosquitto is not installed, RuntimeError when it does not
    start (with its error output).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: StrPath | None = None,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        deny_subscribe: Iterable[str] = (),
        deny_publish: Iterable[str] = (),
        dynsec_control: bool = False,
        extra_config: Iterable[str] = (),
        tls: bool = False,
        require_certificate: bool = False,
        websockets: bool = False,
        unix_socket: bool = False,
        ipv6: bool = False,
        port: int | None = None,
        tls_port: int | None = None,
        binary: str | None = None,
        start: bool = True,
    ) -> None:
        self.binary = binary or find_mosquitto()
        self._own_workdir = workdir is None
        base = Path(tempfile.mkdtemp(prefix="umqtt-mosquitto.")) if workdir is None else workdir
        self.dir = Path(base) / f"mosquitto-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "mosquitto.log"
        self.stderr_path = self.dir / "mosquitto.stderr"
        self.conf_path = self.dir / "mosquitto.conf"
        self.users = dict(users or {})
        self.acl = acl
        self.deny_subscribe = tuple(deny_subscribe)
        self.deny_publish = tuple(deny_publish)
        self.dynsec_control = dynsec_control
        self.extra_config = tuple(extra_config)
        self.tls = bool(tls)
        self.require_certificate = bool(require_certificate)
        self.port = port or 0
        self.tls_port: int | None = (tls_port or 0) if self.tls else None
        self.ws_port: int | None = 0 if websockets else None
        self.wss_port: int | None = 0 if websockets and self.tls else None
        self.ipv6_port: int | None = 0 if ipv6 else None
        self.unix_path: Path | None = self.dir / "mqtt.sock" if unix_socket else None
        self.ca_path: Path | None = None
        self.server_cert_path: Path | None = None
        self.server_key_path: Path | None = None
        self.client_cert_path: Path | None = None
        self.client_key_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        if self.tls:
            certs = _write_certificates(self.dir / "tls", self.host)
            self.ca_path = certs["ca.pem"]
            self.server_cert_path = certs["server.pem"]
            self.server_key_path = certs["server.key"]
            self.client_cert_path = certs["client.pem"]
            self.client_key_path = certs["client.key"]
        self._files = self._write_auxiliary_files()
        if start:
            self.start()

    # -- what clients need

    @property
    def username(self) -> str | None:
        """The first of ``users`` (None for an anonymous broker)."""
        return next(iter(self.users), None)

    @property
    def password(self) -> str | None:
        """The password of ``username`` (None for an anonymous broker)."""
        name = self.username
        return None if name is None else self.users[name]

    def ssl_params(self, client_certificate: bool | None = None) -> dict[str, str]:
        """``ssl_params`` for a umqtt client of the TLS listener: the CA, and the client
        certificate and key when ``client_certificate`` (default: when the listener requires
        one)."""
        if self.ca_path is None:
            raise ValueError("this broker has no TLS listener: start it with tls=True")
        params = {"ca_certs": str(self.ca_path)}
        if self.require_certificate if client_certificate is None else client_certificate:
            assert self.client_cert_path is not None and self.client_key_path is not None
            params["certfile"] = str(self.client_cert_path)
            params["keyfile"] = str(self.client_key_path)
        return params

    # -- configuration

    def _write_auxiliary_files(self) -> list[str]:
        lines: list[str] = []
        if self.users:
            passwd = find_executable("mosquitto_passwd")
            if passwd is None:
                raise MosquittoNotFound(
                    f"mosquitto_passwd (needed for users=...) is not installed: {INSTALL_HINT}"
                )
            pw_file = self.dir / "passwords"
            for i, (user, password) in enumerate(self.users.items()):
                args = [passwd, *(["-c"] if i == 0 else []), "-b"]
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
        if self.deny_subscribe or self.deny_publish or self.dynsec_control:
            if not self.users:
                raise ValueError(
                    "deny_subscribe, deny_publish and dynsec_control need users (dynsec rules "
                    "apply to them)"
                )
            dynsec_file = self.dir / "dynsec.json"
            config = dynsec_config(
                self.users, self.deny_subscribe, self.deny_publish, self.dynsec_control
            )
            dynsec_file.write_text(json.dumps(config))
            plugin = find_dynsec_plugin(self.binary)
            lines += [f"plugin {plugin}", f"plugin_opt_config_file {dynsec_file}"]
        return lines

    def _tls_settings(self) -> list[str]:
        return [
            f"cafile {self.ca_path}",
            f"certfile {self.server_cert_path}",
            f"keyfile {self.server_key_path}",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
        ]

    def _more_listeners(self) -> list[str]:
        lines: list[str] = []
        if self.tls:
            lines += [f"listener {self.tls_port} {self.host}", *self._tls_settings()]
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} {self.host}", "protocol websockets"]
        if self.wss_port is not None:
            lines += [
                f"listener {self.wss_port} {self.host}",
                "protocol websockets",
                *self._tls_settings(),
            ]
        if self.ipv6_port is not None:
            lines.append(f"listener {self.ipv6_port} ::1")
        if self.unix_path is not None:
            lines.append(f"listener 0 {self.unix_path}")
        return lines

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_type all",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %H:%M:%S",
            *self._files,
            *self.extra_config,
            *self._more_listeners(),
        ]
        if hasattr(os, "getuid"):
            import pwd

            # Running as root, mosquitto would switch to user "mosquitto", which cannot read
            # private temporary directories. Stay who we are.
            lines.insert(0, f"user {pwd.getpwuid(os.getuid()).pw_name}")
        self.conf_path.write_text("\n".join(lines) + "\n")

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the broker was never started")
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker (again on the same ports, if it ran before); wait until it listens."""
        if self.running:
            raise RuntimeError("broker already running")
        fixed_port = self.port != 0
        fixed_tls_port = self.tls_port != 0
        fixed_ws_ports = self.ws_port != 0
        fixed_ipv6_port = self.ipv6_port != 0
        deadline = time.monotonic() + timeout
        while True:
            if not fixed_port:
                self.port = free_port(self.host)
            if not fixed_tls_port:
                self.tls_port = free_port(self.host)
            if not fixed_ws_ports:
                self.ws_port = free_port(self.host)
                self.wss_port = free_port(self.host) if self.wss_port is not None else None
            if not fixed_ipv6_port:
                self.ipv6_port = free_port("::1")
            if self._launch(deadline):
                _running.add(self)
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"mosquitto did not start on port {self.port}:\n{self.startup_errors()}"
                )
            time.sleep(0.1)

    def _listening(self) -> bool:
        ports = [self.port, self.tls_port, self.ws_port, self.wss_port]
        if not all(port_accepts(self.host, p) for p in ports if p):
            return False
        if self.ipv6_port and not port_accepts("::1", self.ipv6_port):
            return False
        return self.unix_path is None or _unix_socket_accepts(self.unix_path)

    def _launch(self, deadline: float) -> bool:
        """One attempt: True once every port accepts; False if the process died (port busy)."""
        self._write_config()
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # a Ctrl-C meant for the test runner spares the broker
            )
        self._paused = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._listening():
                return True
            time.sleep(0.02)
        self.kill()
        return False

    def startup_errors(self) -> str:
        """What mosquitto wrote to stderr, and the end of its log."""
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text + self.log_text()[-2000:]

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.running:
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
        """stop(), then start() on the same ports."""
        self.stop()
        self.start()

    def close(self) -> None:
        """stop(), and remove the temporary directory if this broker made it (workdir=None)."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.dir.parent, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
        if not found:
            raise AssertionError(f"no CONNECT from {client_id!r} in {self.log_path}")
        return str(found[-1])

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        tls = f" tls={self.tls_port}" if self.tls else ""
        return f"<Mosquitto {self.host}:{self.port}{tls} {state} log={self.log_path}>"


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_running):
        broker.kill()
