"""The real servers the transport tests go through, each on a free 127.0.0.1 port and each a
witness of what went through it: tinyproxy (HTTP CONNECT) and microsocks (SOCKS5) from Debian,
and two small relays of our own in front of mosquitto: a TLS one that records the ALPN protocols
a client offers, and a WebSocket one that checks the upgrade's path and headers."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable

import pytest
from broker import Mosquitto, wait_until
from umqtt.testing import free_port, port_accepts


def _executable(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install {name}; scripts/_setup.sh does)")
    return found


class _Process:
    """A server process on a free port, stopped by close()."""

    port: int
    proc: subprocess.Popen[bytes]

    def _start(self, argv: list[str], log: Path) -> None:
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        if not wait_until(lambda: port_accepts("127.0.0.1", self.port), 10):
            self.close()
            raise RuntimeError(f"{argv[0]} did not start: {log.read_text(errors='replace')}")

    def close(self) -> None:
        self.proc.kill()  # nothing to save: its log is written as it goes
        self.proc.wait(5)


class TinyProxy(_Process):
    """tinyproxy allowing CONNECT to `ports` only, with Basic authentication when `credentials`."""

    scheme = "http"

    def __init__(
        self, directory: Path, ports: list[int], credentials: tuple[str, str] | None = None
    ) -> None:
        self.credentials = credentials
        self.port = free_port()
        self.log_path = directory / f"tinyproxy-{self.port}.log"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",
            "MaxClients 200",
            "DisableViaHeader Yes",
            *(f"ConnectPort {port}" for port in ports),
        ]
        if credentials is not None:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        conf = directory / f"tinyproxy-{self.port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._start([_executable("tinyproxy"), "-d", "-c", str(conf)], directory / "tinyproxy.out")

    def tunnels_to(self, port: int) -> int:
        """How many CONNECT requests to `port` the proxy logged."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return sum(1 for line in text.splitlines() if "CONNECT" in line and f":{port} " in line)


class MicroSocks(_Process):
    """microsocks (SOCKS5), with user name and password authentication when `credentials`."""

    scheme = "socks5"

    def __init__(self, directory: Path, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.port = free_port()
        self.log_path = directory / f"microsocks-{self.port}.log"
        argv = [_executable("microsocks"), "-i", "127.0.0.1", "-p", str(self.port)]
        if credentials is not None:
            argv += ["-u", credentials[0], "-P", credentials[1]]
        self._start(argv, self.log_path)

    def tunnels_to(self, port: int) -> int:
        """How many connections to `port` the proxy logged."""
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if f":{port}" in line and "connected" in line)


@pytest.fixture(scope="module", name="net_broker")
def net_broker_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """`net_broker`: one mosquitto with every kind of listener: plain, TLS, WebSocket, TLS
    WebSocket, Unix socket and IPv6."""
    broker = Mosquitto(
        tmp_path_factory.mktemp("net-broker"),
        tls=True,
        websockets=True,
        unix_socket=True,
        ipv6=True,
    )
    try:
        yield broker
    finally:
        broker.kill()


# The user name and password of the proxies with authentication.
PROXY_LOGIN = ("proxyuser", "pr0xy-s3cret")


@pytest.fixture(scope="module", name="socks_proxy")
def socks_proxy_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroSocks]:
    """`socks_proxy`: microsocks that wants PROXY_LOGIN, one per test module that imports this."""
    proxy = MicroSocks(tmp_path_factory.mktemp("microsocks"), PROXY_LOGIN)
    yield proxy
    proxy.close()


def proxy_url(proxy: TinyProxy | MicroSocks, scheme: str | None = None) -> str:
    """The `proxy=` URL of a proxy, with its credentials."""
    login = "" if proxy.credentials is None else "{}:{}@".format(*proxy.credentials)
    return f"{scheme or proxy.scheme}://{login}127.0.0.1:{proxy.port}"


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copies bytes until either side closes, then closes both."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
    _pipe(client, upstream)
    client.close()
    upstream.close()


class _Relay:
    """Accepts on a free 127.0.0.1 port and hands each connection to `handle` on its own thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="test-relay").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.listener.close()


def offered_alpn(client_hello: bytes) -> list[str] | None:
    """The ALPN protocol names in a TLS ClientHello record (None: no ALPN extension)."""
    # record header 5, handshake header 4, version 2, random 32
    at = 5 + 4 + 2 + 32
    at += 1 + client_hello[at]  # session id
    at += 2 + struct.unpack_from("!H", client_hello, at)[0]  # cipher suites
    at += 1 + client_hello[at]  # compression methods
    end = at + 2 + struct.unpack_from("!H", client_hello, at)[0]
    at += 2
    while at + 4 <= end:
        kind, length = struct.unpack_from("!HH", client_hello, at)
        at += 4
        if kind == 16:  # application_layer_protocol_negotiation
            names, i = [], at + 2
            while i < at + length:
                size = client_hello[i]
                names.append(client_hello[i + 1 : i + 1 + size].decode())
                i += 1 + size
            return names
        at += length
    return None


class AlpnRelay(_Relay):
    """A TLS server (Python's ssl, the given certificate) that records the ALPN protocols each
    client offers (`offered`), picks one of `protocols` if it can, and relays the decrypted
    stream to mosquitto's plain port."""

    def __init__(self, cert: Path, key: Path, protocols: list[str], broker_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(protocols)
        self.broker_port = broker_port
        self.offered: list[list[str] | None] = []
        self.chosen: list[str | None] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            hello = b""
            while len(hello) < 5 or len(hello) < 5 + struct.unpack_from("!H", hello, 3)[0]:
                peeked = conn.recv(65536, socket.MSG_PEEK)
                if not peeked:
                    raise OSError("closed before its ClientHello")
                if peeked == hello:
                    time.sleep(0.005)  # the rest of the record is on its way
                hello = peeked
            self.offered.append(offered_alpn(hello))
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError, struct.error, IndexError):
            conn.close()
            return
        self.chosen.append(tls.selected_alpn_protocol())
        tls.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
        except OSError:
            tls.close()
            return
        _relay(tls, upstream)


class WebSocketGate(_Relay):
    """In front of mosquitto's WebSocket listener: records each upgrade request's path and
    headers, answers `refuse(path, headers)`'s HTTP status (when it returns one) itself, and
    relays the others to mosquitto (which accepts any path)."""

    def __init__(
        self, broker_ws_port: int, refuse: Callable[[str, Mapping[str, str]], int | None]
    ) -> None:
        self.broker_ws_port = broker_ws_port
        self.refuse = refuse
        self.requests: list[tuple[str, dict[str, str]]] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    conn.close()
                    return
                head += chunk
        except OSError:
            conn.close()
            return
        request_line, *header_lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        path = request_line.split(" ")[1]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        self.requests.append((path, headers))
        status = self.refuse(path, headers)
        if status is not None:
            conn.sendall(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode())
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.broker_ws_port))
        except OSError:  # the broker is down (restarting): the client's attempt fails
            conn.close()
            return
        upstream.sendall(head)
        conn.settimeout(None)
        _relay(conn, upstream)
