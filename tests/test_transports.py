"""Every network path (issue 22): MQTT over WebSocket (ws and wss, `ws_path`, `ws_headers`), over a
Unix socket, through HTTP CONNECT and SOCKS5 proxies (with and without credentials, under plain and
TLS, under TCP and WebSocket), ALPN, IPv6 and `ipvtype`, and credentials that expire.

Against real servers: one mosquitto with plain, TLS, WebSocket, TLS-WebSocket, Unix-socket and
IPv6 listeners; tinyproxy and microsocks (Debian's), each with and without authentication, whose
logs show that the traffic went through them; a TLS relay of ours that records the ALPN protocols
offered; a WebSocket gate of ours that checks the upgrade's path and headers.

Every dialect runs every transport at least once, in a pairwise matrix of transport x TLS x proxy
x dialect (each pair of values in some row), not the full product.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import umqtt
import umqtt._bench.worker
import umqtt.aio
import umqtt.robust
import umqtt.simple
from broker import Mosquitto, assert_ctrl_c_interrupts, unique_id, wait_until
from test_threads import CTRL_C_SCRIPT
from transport_servers import (  # noqa: F401 - net_broker_fixture: a fixture
    PROXY_LOGIN,
    AlpnRelay,
    MicroSocks,
    TinyProxy,
    WebSocketGate,
    net_broker_fixture,
    offered_alpn,
    proxy_url,
)
from umqtt.testing import find_executable, free_port, port_accepts

# --------------------------------------------------------------------------- servers


def _tcp_ports(broker: Mosquitto) -> list[int]:
    return [p for p in (broker.port, broker.tls_port, broker.ws_port, broker.wss_port) if p]


@pytest.fixture(scope="module")
def proxies(
    net_broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """tinyproxy and microsocks, each open and with credentials."""
    directory = tmp_path_factory.mktemp("proxies")
    ports = [*_tcp_ports(net_broker), net_broker.ipv6_port or 0]
    made: dict[str, Any] = {}
    try:
        made["http"] = TinyProxy(directory, ports)
        made["http+auth"] = TinyProxy(directory, ports, PROXY_LOGIN)
        made["socks5"] = MicroSocks(directory)
        made["socks5+auth"] = MicroSocks(directory, PROXY_LOGIN)
        yield made
    finally:
        for proxy in made.values():
            proxy.close()


def endpoint(broker: Mosquitto, transport: str, tls: bool) -> tuple[str, int, dict[str, Any]]:
    """Server, port and the transport/TLS options of one of the broker's listeners."""
    options: dict[str, Any] = {}
    if tls:
        options.update(ssl=True, ssl_params={"ca_certs": str(broker.ca_path)})
    if transport == "unix":
        return str(broker.unix_path), 0, {"transport": "unix"}
    if transport == "websockets":
        port = broker.wss_port if tls else broker.ws_port
        options["transport"] = "websockets"
    else:
        port = broker.tls_port if tls else broker.port
    assert port
    return broker.host, port, options


def listener_of(broker: Mosquitto, client_id: str, since: int) -> int | str:
    """Which listener a client connected to, from the broker's log: the port ("New connection
    from ADDRESS on port PORT", 0 for the Unix socket), or "websockets" (libwebsockets accepts
    those connections itself, on a dual-stack socket, and mosquitto logs no such line)."""
    connected = broker.log_lines(" as " + client_id + " (", since=since)
    assert connected, f"{client_id} never connected"
    address = connected[0].split("New client connected from ")[1].split(" as ")[0]
    for line in broker.log_lines(f"New connection from {address} on port ", since=since):
        return int(line.rsplit(" ", 1)[1].rstrip("."))
    assert address.startswith("::ffff:127.0.0.1:"), connected[0]
    return "websockets"


# ------------------------------------------------------------------- a round trip per dialect

DIALECTS = {
    "quecpython": umqtt.MQTTClient,
    "simple": umqtt.simple.MQTTClient,
    "robust": umqtt.robust.MQTTClient,
}


def round_trip(dialect: str, server: str, port: int, **options: Any) -> str:
    """A client of `dialect` connects, subscribes, publishes QoS 1 to itself and receives it;
    returns its client id."""
    topic = f"umqtt-test/transports/{unique_id()}"
    client_id = unique_id()
    if dialect == "aio":
        aio_round_trip = _aio_round_trip(client_id, server, port, topic, **options)
        asyncio.run(asyncio.wait_for(aio_round_trip, 30))
        return client_id
    got: list[tuple[bytes, bytes]] = []
    client = DIALECTS[dialect](client_id, server, port, keepalive=30, **options)
    client.set_callback(lambda t, m: got.append((t, m)))
    client.connect()
    try:
        assert client.subscribe(topic, 1) in (None, True)
        assert client.publish(topic, b"over the wire", False, 1) in (None, True)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            client.check_msg()
            time.sleep(0.01)
    finally:
        client.disconnect()
    assert got == [(topic.encode(), b"over the wire")]
    return client_id


async def _aio_round_trip(
    client_id: str, server: str, port: int, topic: str, **options: Any
) -> None:
    async with umqtt.aio.MQTTClient(client_id, server, port, keepalive=30, **options) as client:
        await client.subscribe(topic, 1)
        await client.publish(topic, b"over the wire", qos=1)
        async for message in client.messages():
            assert (message.topic, message.payload) == (topic, b"over the wire")
            return


# (dialect, transport, tls, proxy): every pair of values of two columns is in some row.
MATRIX = [
    ("quecpython", "tcp", True, "http+auth"),
    ("quecpython", "websockets", False, "socks5+auth"),
    ("quecpython", "unix", False, None),
    ("quecpython", "websockets", True, "socks5h"),
    ("quecpython", "websockets", False, None),
    ("simple", "tcp", False, "socks5h+auth"),
    ("simple", "websockets", True, "http+auth"),
    ("simple", "unix", False, None),
    ("simple", "tcp", True, "socks5"),
    ("robust", "websockets", False, "http"),
    ("robust", "tcp", True, None),
    ("robust", "unix", False, None),
    ("robust", "tcp", False, "socks5+auth"),
    ("robust", "websockets", True, "socks5h"),
    ("aio", "tcp", False, "http"),
    ("aio", "websockets", True, "socks5"),
    ("aio", "unix", False, None),
    ("aio", "websockets", False, "socks5h+auth"),
]


def test_the_matrix_is_pairwise() -> None:
    """Each pair of values of two columns (proxies by kind, with or without credentials) is in
    some row, except the impossible ones: a Unix socket takes no TLS and no proxy."""
    rows = [(d, t, s, (p or "None").split("+")[0]) for d, t, s, p in MATRIX]
    columns = list(zip(*rows))
    values = [sorted(set(map(str, column))) for column in columns]
    for a in range(4):
        for b in range(a + 1, 4):
            seen = {(str(row[a]), str(row[b])) for row in rows}
            for x in values[a]:
                for y in values[b]:
                    pair = {a: x, b: y}
                    impossible = "unix" in pair.values() and (
                        pair.get(2) == "True" or (3 in pair and pair[3] != "None")
                    )
                    assert impossible or (x, y) in seen, (a, b, x, y)


# MQTT 5 through the transports: a few rows (every dialect, transport, TLS and proxy kind once),
# not the product: the transport is below the protocol.
MATRIX_MQTT5 = [
    ("quecpython", "websockets", True, "http+auth"),
    ("simple", "tcp", True, "socks5h"),
    ("robust", "unix", False, None),
    ("aio", "websockets", False, "socks5+auth"),
]
ROUND_TRIPS = [(*row, 4) for row in MATRIX] + [(*row, 5) for row in MATRIX_MQTT5]


@pytest.mark.parametrize(
    "dialect,transport,tls,proxy,version",
    ROUND_TRIPS,
    ids=[
        f"{d}-{t}-{'tls' if s else 'plain'}-{p or 'direct'}{'-v5' if v == 5 else ''}"
        for d, t, s, p, v in ROUND_TRIPS
    ],
)
def test_round_trip(
    net_broker: Mosquitto,
    proxies: dict[str, Any],
    dialect: str,
    transport: str,
    tls: bool,
    proxy: str | None,
    version: int,
) -> None:
    """Connect, subscribe, publish QoS 1 and receive it, over this path, with this protocol
    version; the broker's log (the listener's port, the protocol: p2 is MQTT 3.1.1, p5 MQTT 5)
    and the proxy's log witness the way the connection went."""
    server, port, options = endpoint(net_broker, transport, tls)
    options["version"] = version
    since = net_broker.log_size()
    through = None
    if proxy is not None:
        through = proxies[proxy.replace("socks5h", "socks5")]
        scheme = "socks5h" if proxy.startswith("socks5h") else None
        options["proxy"] = proxy_url(through, scheme)
        before = through.tunnels_to(port)
    client_id = round_trip(dialect, server, port, **options)
    expected = {"websockets": "websockets", "unix": 0}.get(transport, port)
    assert listener_of(net_broker, client_id, since) == expected
    assert f"p{2 if version == 4 else 5}" in net_broker.connect_flags(client_id).split(", ")
    if through is not None:
        assert wait_until(lambda: through.tunnels_to(port) > before), through.log_path


# --------------------------------------------------------------------------- WebSockets


@pytest.fixture
def gate(net_broker: Mosquitto) -> Iterator[WebSocketGate]:
    """A WebSocket gate to the broker: path /mqtt-gw and `Authorization: Bearer t0ken` only."""

    def refuse(path: str, headers: Any) -> int | None:
        if path != "/mqtt-gw":
            return 404
        return None if headers.get("authorization") == "Bearer t0ken" else 401

    assert net_broker.ws_port
    gate = WebSocketGate(net_broker.ws_port, refuse)
    yield gate
    gate.close()


def test_ws_path_and_headers_reach_the_server(gate: WebSocketGate) -> None:
    round_trip(
        "quecpython",
        "127.0.0.1",
        gate.port,
        transport="websockets",
        ws_path="/mqtt-gw",
        ws_headers={"Authorization": "Bearer t0ken", "X-Device": "d1"},
    )
    path, headers = gate.requests[-1]
    assert path == "/mqtt-gw"
    assert headers["x-device"] == "d1"
    assert headers["sec-websocket-protocol"] == "mqtt"
    assert headers["host"] == f"127.0.0.1:{gate.port}"


def test_ws_path_with_azure_and_aws_characters(net_broker: Mosquitto) -> None:
    """Azure IoT Hub's path has a $, AWS's pre-signed URLs a query: both arrive as given."""
    gate = WebSocketGate(net_broker.ws_port or 0, lambda path, headers: None)
    try:
        for path in ("/$iothub/websocket", "/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=1"):
            round_trip("simple", "127.0.0.1", gate.port, transport="websockets", ws_path=path)
            assert gate.requests[-1][0] == path
    finally:
        gate.close()


def test_websockets_to_an_ipv6_address(mqtt_broker_factory: Any) -> None:
    """ws://[::1]:port/mqtt: the address in brackets in the URL and the Host header."""
    port = free_port("::1")
    broker = mqtt_broker_factory(extra_config=[f"listener {port} ::1", "protocol websockets"])
    assert wait_until(lambda: port_accepts("::1", port), 10), broker.startup_errors()
    client = umqtt.MQTTClient(unique_id(), "[::1]", port, transport="websockets")
    assert repr(client).count(f"ws://[::1]:{port}/mqtt") == 1
    round_trip("aio", "::1", port, transport="websockets")


@pytest.mark.parametrize(
    "ws_path,status,reason", [("/mqtt", 404, "Not Found"), ("/mqtt-gw", 401, "Unauthorized")]
)
def test_a_refused_upgrade_says_the_http_status(
    gate: WebSocketGate, ws_path: str, status: int, reason: str
) -> None:
    client = umqtt.MQTTClient(
        unique_id(), "127.0.0.1", gate.port, transport="websockets", ws_path=ws_path
    )
    with pytest.raises(umqtt.MQTTConnectError, match=f"HTTP {status} {reason}") as raised:
        client.connect()
    assert "refused the WebSocket upgrade" in str(raised.value)


def test_a_plain_http_server_is_not_taken_for_a_broker(net_broker: Mosquitto) -> None:
    """mosquitto's plain MQTT port does not speak HTTP: the upgrade fails, clearly."""
    client = umqtt.simple.MQTTClient(
        unique_id(), net_broker.host, net_broker.port, transport="websockets", connect_timeout=5
    )
    with pytest.raises(OSError, match=r"127\.0\.0\.1"):
        client.connect()


def test_wss_verifies_the_broker_certificate(net_broker: Mosquitto) -> None:
    """wss:// goes through the same TLS checks as mqtts://: no CA, no connection."""
    client = umqtt.MQTTClient(
        unique_id(),
        net_broker.host,
        net_broker.wss_port or 0,
        transport="websockets",
        ssl=True,
        ssl_params={},
        connect_timeout=5,
    )
    with pytest.raises(umqtt.MQTTConnectError, match="not signed by a trusted CA"):
        client.connect()


def test_wss_server_hostname_is_sent_and_verified(net_broker: Mosquitto) -> None:
    """The certificate is for 127.0.0.1 and localhost: server_hostname='localhost' verifies."""
    server, port, options = endpoint(net_broker, "websockets", True)
    options["ssl_params"]["server_hostname"] = "localhost"
    round_trip("robust", server, port, **options)
    options["ssl_params"]["server_hostname"] = "elsewhere.example"
    with pytest.raises(umqtt.MQTTConnectError, match="not valid for that host name"):
        umqtt.MQTTClient(unique_id(), server, port, **options).connect()


# ------------------------------------------------------------------- credentials that expire


def test_callable_password_and_headers_are_called_at_every_connect(
    mqtt_broker_factory: Any,
) -> None:
    """An expiring token: the password and ws_headers callables run before the first connect
    and before each reconnect; the broker (its password file changed meanwhile) accepts the new
    token, and the gate in front of it saw each connect's header."""
    broker = mqtt_broker_factory(users={"device": "token-1"}, websockets=True)
    gate = WebSocketGate(broker.ws_port, lambda path, headers: None)
    calls: list[str] = []
    token = {"now": "token-1"}

    def password() -> str:
        calls.append("password")
        return token["now"]

    def ws_headers() -> dict[str, str]:
        calls.append("ws_headers")
        return {"X-Token": token["now"]}

    notices: list[str] = []
    client = umqtt.MQTTClient(
        unique_id(),
        "127.0.0.1",
        gate.port,
        user="device",
        password=password,
        transport="websockets",
        ws_headers=ws_headers,
        reconnect_delay=0.2,
    )
    client.error_register_cb(notices.append)
    client.set_callback(lambda t, m: None)
    try:
        client.connect()
        assert calls == ["password", "ws_headers"]
        passwd = find_executable("mosquitto_passwd")
        assert passwd is not None
        subprocess.run(
            [passwd, "-b", str(broker.dir / "passwords"), "device", "token-2"], check=True
        )
        token["now"] = "token-2"
        broker.restart()
        assert wait_until(lambda: "reconnect_success" in notices, 20), notices
        # One pair of calls per attempt: the first connect, then one or more reconnect attempts
        # (those made while the broker was still down fail at the gate).
        assert len(calls) >= 4 and calls == ["password", "ws_headers"] * (len(calls) // 2)
        tokens = [headers["x-token"] for _, headers in gate.requests]
        assert tokens[0] == "token-1" and set(tokens[1:]) == {"token-2"}, tokens
    finally:
        client.disconnect()
        gate.close()


def test_a_failing_password_callable_is_a_connect_error(net_broker: Mosquitto) -> None:
    def password() -> str:
        raise RuntimeError("token service down")

    client = umqtt.simple.MQTTClient(
        unique_id(), net_broker.host, net_broker.port, user="device", password=password
    )
    with pytest.raises(OSError, match="password callable failed: RuntimeError: token service down"):
        client.connect()


def test_a_password_callable_returning_a_bad_type_is_a_connect_error(
    net_broker: Mosquitto,
) -> None:
    client = umqtt.MQTTClient(
        unique_id(), net_broker.host, net_broker.port, user="device", password=lambda: 42
    )
    with pytest.raises(umqtt.MQTTConnectError, match=r"password\(\) must be str or bytes"):
        client.connect()


# --------------------------------------------------------------------------- ALPN


@pytest.fixture
def alpn_relay(net_broker: Mosquitto, request: pytest.FixtureRequest) -> Iterator[AlpnRelay]:
    assert net_broker.server_cert_path and net_broker.server_key_path
    relay = AlpnRelay(
        net_broker.server_cert_path, net_broker.server_key_path, request.param, net_broker.port
    )
    yield relay
    relay.close()


@pytest.mark.parametrize("alpn_relay", [["x-amzn-mqtt-ca", "http/1.1"]], indirect=True)
@pytest.mark.parametrize("dialect", ["quecpython", "aio"])
def test_alpn_protocols_are_offered(
    net_broker: Mosquitto, alpn_relay: AlpnRelay, dialect: str
) -> None:
    ssl_params = {"ca_certs": str(net_broker.ca_path), "alpn_protocols": ["x-amzn-mqtt-ca"]}
    round_trip(dialect, "127.0.0.1", alpn_relay.port, ssl=True, ssl_params=ssl_params)
    assert alpn_relay.offered == [["x-amzn-mqtt-ca"]]
    assert alpn_relay.chosen == ["x-amzn-mqtt-ca"]


@pytest.mark.parametrize("alpn_relay", [["x-amzn-mqtt-ca"]], indirect=True)
def test_no_alpn_is_offered_unless_asked(net_broker: Mosquitto, alpn_relay: AlpnRelay) -> None:
    round_trip(
        "simple",
        "127.0.0.1",
        alpn_relay.port,
        ssl=True,
        ssl_params={"ca_certs": str(net_broker.ca_path)},
    )
    assert alpn_relay.offered == [None]


@pytest.mark.parametrize("alpn_relay", [["http/1.1"]], indirect=True)
def test_no_common_alpn_protocol_is_a_connect_error(
    net_broker: Mosquitto, alpn_relay: AlpnRelay
) -> None:
    ssl_params = {"ca_certs": str(net_broker.ca_path), "alpn_protocols": ["mqtt", "x-amzn-mqtt-ca"]}
    client = umqtt.MQTTClient(
        unique_id(), "127.0.0.1", alpn_relay.port, ssl=True, ssl_params=ssl_params
    )
    with pytest.raises(umqtt.MQTTConnectError, match="chose none of the ALPN protocols offered"):
        client.connect()
    assert alpn_relay.offered == [["mqtt", "x-amzn-mqtt-ca"]]


def test_the_client_hello_parser_finds_alpn() -> None:
    """The relay's witness itself: Python's own ClientHello, read back."""
    import ssl

    context = ssl.create_default_context()
    context.set_alpn_protocols(["a", "bc"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    assert offered_alpn(outgoing.read()) == ["a", "bc"]


# --------------------------------------------------------------------------- IPv6 and ipvtype


@pytest.mark.parametrize("server", ["::1", "[::1]"])
@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_ipv6_literals(net_broker: Mosquitto, server: str, dialect: str) -> None:
    since = net_broker.log_size()
    round_trip(dialect, server, net_broker.ipv6_port or 0, ipvtype=1)
    assert net_broker.log_lines("New connection from ::1", since=since)


def test_ipv6_target_is_written_in_brackets(net_broker: Mosquitto) -> None:
    client = umqtt.MQTTClient(unique_id(), "::1", 1)
    assert "[::1]:1" in repr(client)


def test_ipvtype_1_refuses_a_name_without_ipv6_address() -> None:
    # ipvtype is the QuecPython constructor's last positional parameter.
    client = umqtt.MQTTClient(
        unique_id(), "127.0.0.1", 1883, None, None, 60, False, {}, True, 4, 0, False, 1
    )
    with pytest.raises(umqtt.MQTTConnectError, match=r"has no IPv6 address.*ipvtype=1"):
        client.connect()


def test_ipvtype_is_checked() -> None:
    with pytest.raises(ValueError, match="ipvtype"):
        umqtt.simple.MQTTClient("c", "h", ipvtype=2)


# --------------------------------------------------------------------------- Unix sockets


def test_unix_socket_that_does_not_exist(tmp_path: Path) -> None:
    path = str(tmp_path / "nothing.sock")
    client = umqtt.MQTTClient(unique_id(), path, 0, transport="unix")
    with pytest.raises(umqtt.MQTTConnectError, match=r"nothing\.sock"):
        client.connect()


# --------------------------------------------------------------------------- as on TCP


@pytest.mark.parametrize(
    ("transport", "version"),
    [("websockets", 4), ("unix", 4), ("socks5", 4), ("http", 4), ("websockets", 5), ("http", 5)],
)
def test_reconnect_and_resubscribe(
    mqtt_broker_factory: Any, tmp_path: Path, transport: str, version: int
) -> None:
    """The broker restarts: the client reconnects over the same path, re-subscribes, and
    receives what is published afterwards (MQTT 3.1.1 over every path, MQTT 5 over two)."""
    broker = mqtt_broker_factory(websockets=True, unix_socket=True)
    server, port, options = endpoint(
        broker, "tcp" if transport in ("socks5", "http") else transport, False
    )
    proxy: Any = None
    if transport == "socks5":
        proxy = MicroSocks(tmp_path)
    elif transport == "http":
        proxy = TinyProxy(tmp_path, [broker.port])
    if proxy is not None:
        options["proxy"] = proxy_url(proxy)
    topic = f"umqtt-test/reconnect/{unique_id()}"
    got: list[bytes] = []
    notices: list[str] = []
    client = umqtt.MQTTClient(
        unique_id(), server, port, reconnect_delay=0.2, version=version, **options
    )
    client.set_callback(lambda t, m: got.append(m))
    client.error_register_cb(notices.append)
    try:
        client.connect()
        assert client.subscribe(topic, 1)
        broker.restart()
        assert wait_until(lambda: "reconnect_success" in notices, 20), notices
        # The re-subscription is in once the broker delivers to it.
        assert wait_until(
            lambda: client.publish(topic, b"again", False, 1) and (client.check_msg() or got), 30
        )
        assert got and set(got) == {b"again"}
        if proxy is not None:
            assert proxy.tunnels_to(port) >= 2
    finally:
        client.disconnect()
        if proxy is not None:
            proxy.close()


# test_threads' child blocked in wait_msg(), over another transport (its 6th argument).
CTRL_C_OVER = CTRL_C_SCRIPT.replace("version=version)", "version=version, transport=sys.argv[6])")
assert CTRL_C_OVER != CTRL_C_SCRIPT


@pytest.mark.parametrize("transport", ["websockets", "unix"])
def test_ctrl_c_interrupts_wait_msg(
    net_broker: Mosquitto, transport: str, mqtt_version: int
) -> None:
    server, port, _ = endpoint(net_broker, transport, False)
    args = ["wait_msg", server, str(port), unique_id(), str(mqtt_version), transport]
    assert_ctrl_c_interrupts(CTRL_C_OVER, *args)


def test_back_pressure_over_websockets(
    mqtt_broker_factory: Any, make_peer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """5,000 QoS 0 messages of 4,000 bytes (20 MB) left unread over WebSocket: the driver stops
    reading at 16 MiB (and says so), and every message arrives once the application reads.
    (mosquitto 2.0.11's WebSocket listener stalls on bursts of messages over 4 KiB, for every
    client: paho too; hence 4,000 bytes.)"""
    broker = mqtt_broker_factory(websockets=True)
    topic = f"umqtt-test/back-pressure/{unique_id()}"
    client = umqtt.MQTTClient(unique_id(), broker.host, broker.ws_port, transport="websockets")
    got: list[int] = []
    client.set_callback(lambda t, m: got.append(len(m)))
    client.connect()
    try:
        assert client.subscribe(topic, 0)
        peer = make_peer(broker)
        for _ in range(5000):
            peer.client.publish(topic, b"x" * 4000, qos=0)
        assert wait_until(lambda: "wait unread" in caplog.text, 30)
        assert wait_until(lambda: client._core.pending_messages() >= 4000, 10)
        time.sleep(0.5)
        paused_at = client._core.pending_messages()
        assert paused_at < 5000
        time.sleep(0.5)
        assert client._core.pending_messages() == paused_at  # the rest waits upstream
        assert wait_until(lambda: (client.check_msg(), len(got))[1] == 5000, 30), len(got)
    finally:
        client.disconnect()


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "options,error,match",
    [
        ({"transport": "quic"}, ValueError, "transport must be 'tcp', 'websockets' or 'unix'"),
        ({"transport": 1}, TypeError, "transport must be str"),
        ({"ws_path": "/x"}, ValueError, "apply to transport='websockets' only"),
        ({"ws_headers": {"A": "b"}}, ValueError, "apply to transport='websockets' only"),
        ({"transport": "websockets", "ws_path": "mqtt"}, ValueError, "must start with '/'"),
        (
            {"transport": "websockets", "ws_headers": {"Bad Name": "v"}},
            ValueError,
            "not a valid HTTP header name",
        ),
        (
            {"transport": "websockets", "ws_headers": {"A": "v\r\nX: y"}},
            ValueError,
            "not a valid HTTP header value",
        ),
        ({"transport": "websockets", "ws_headers": ["A"]}, TypeError, "must be a dict"),
        (
            {"transport": "unix", "ssl": True, "ssl_params": {}},
            ValueError,
            "takes neither ssl nor proxy",
        ),
        ({"transport": "unix", "proxy": "socks5://h:1"}, ValueError, "takes neither ssl nor proxy"),
        ({"proxy": "ftp://u:hunter2@h:1"}, ValueError, "scheme is not http, socks5 or socks5h"),
        ({"proxy": "http://u:hunter2@h"}, ValueError, "no host:port"),
        ({"proxy": "http://u:hunter2@h:70000"}, ValueError, "port is not a number"),
        (
            {"ssl": True, "ssl_params": {"alpn_protocols": "mqtt"}},
            TypeError,
            "list of protocol names",
        ),
        ({"ssl": True, "ssl_params": {"alpn_protocols": [""]}}, ValueError, "1 to 255 bytes"),
        ({"ipvtype": "1"}, TypeError, "ipvtype"),
    ],
)
def test_bad_transport_arguments(options: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match) as raised:
        umqtt.MQTTClient("c", "127.0.0.1", 1883, **options)
    assert "hunter2" not in str(raised.value)


def test_websocket_port_defaults() -> None:
    assert umqtt.MQTTClient("c", "h", transport="websockets").port == 80
    assert umqtt.MQTTClient("c", "h", ssl=True, transport="websockets").port == 443
    assert "ws://h:80/mqtt" in repr(umqtt.simple.MQTTClient("c", "h", transport="websockets"))


def test_proxy_password_is_in_no_log_repr_or_error(
    net_broker: Mosquitto, proxies: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Neither when connecting through the proxy works, nor when the proxy refuses."""
    caplog.set_level(logging.DEBUG)
    good = proxy_url(proxies["http+auth"])
    bad = good.replace(PROXY_LOGIN[1], "wr0ng-pa55")
    round_trip("quecpython", net_broker.host, net_broker.port, proxy=good)
    client = umqtt.MQTTClient(unique_id(), net_broker.host, net_broker.port, proxy=bad)
    with pytest.raises(umqtt.MQTTConnectError) as raised:
        client.connect()
    seen = caplog.text + repr(client) + str(raised.value) + repr(raised.value)
    assert f"http://{PROXY_LOGIN[0]}@127.0.0.1" in repr(client)
    for secret in (PROXY_LOGIN[1], "wr0ng-pa55"):
        assert secret not in seen


def test_the_benchmark_worker_runs_over_websockets(net_broker: Mosquitto) -> None:
    """The benchmark's WebSocket rows (umqtt._bench.run, variant "ws"): the round-trip worker with
    transport="websockets" on the broker's WebSocket listener."""
    worker = Path(umqtt._bench.worker.__file__)
    topic = f"umqtt-test/bench-ws/{unique_id()}"
    args = ["rtt", "umqtt", "--port", str(net_broker.ws_port), "--topic", topic]
    args += ["--count", "50", "--warmup", "5", '--option=transport="websockets"']
    done = subprocess.run(
        [sys.executable, str(worker), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["n"] == 50


def test_a_password_callable_without_a_user_is_refused_before_sending(
    net_broker: Mosquitto,
) -> None:
    """MQTT 3.1.1 forbids a password without a user name, whether it is fixed or a callable."""
    client = umqtt.MQTTClient(unique_id(), net_broker.host, net_broker.port, password=lambda: "t")
    with pytest.raises(umqtt.MQTTConnectError, match="a password without a user name"):
        client.connect()
