"""The transports from the command line (issue 22): pub, sub and doctor take --transport, --unix,
--ws-path, --ws-header, --proxy, --alpn and --ipv6-only, and the doctor says which way it went
(steps 1 and 2 about the proxy, or the Unix socket) without ever showing the proxy's password."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import transport_servers as servers
from broker import Mosquitto, wait_until
from transport_servers import (  # noqa: F401 - fixtures
    PROXY_LOGIN,
    net_broker_fixture,
    socks_proxy_fixture,
)
from umqtt import cli


def test_pub_over_websockets_through_a_socks_proxy(
    net_broker: Mosquitto, socks_proxy: servers.MicroSocks, make_peer: Any, topic: str
) -> None:
    peer = make_peer(net_broker)
    peer.subscribe(topic)
    args = ["pub", "-h", "127.0.0.1", "-p", str(net_broker.ws_port), "-t", topic, "-m", "hi"]
    args += [
        "--transport",
        "websockets",
        "--proxy",
        servers.proxy_url(socks_proxy, "socks5h"),
        "-q",
        "1",
    ]
    assert cli.main(args) == 0
    assert [m.payload for m in peer.wait_for(topic)] == [b"hi"]
    assert socks_proxy.tunnels_to(net_broker.ws_port or 0) >= 1


def test_sub_over_a_unix_socket(
    net_broker: Mosquitto, make_peer: Any, topic: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    peer = make_peer(net_broker)
    args = ["sub", "--unix", str(net_broker.unix_path), "-t", topic, "-C", "1", "-W", "20"]
    done = threading.Event()
    status: list[int] = []

    def subscribe() -> None:
        status.append(cli.main(args))
        done.set()

    threading.Thread(target=subscribe, daemon=True).start()
    # Publish until the subscription is in (the retained flag is not used: nothing is left behind).
    assert wait_until(lambda: done.is_set() or peer.publish(topic, b"via unix", qos=0), 20)
    assert done.wait(20) and status == [0]
    assert capsysbinary.readouterr().out.splitlines()[0] == b"via unix"


def test_ws_path_and_header_options(net_broker: Mosquitto, topic: str) -> None:
    gate = servers.WebSocketGate(net_broker.ws_port or 0, lambda path, headers: None)
    try:
        args = ["pub", "-h", "127.0.0.1", "-p", str(gate.port), "-t", topic, "-m", "x"]
        args += ["--transport", "websockets", "--ws-path", "/gw", "--ws-header", "X-Key: k1"]
        assert cli.main(args) == 0
        assert gate.requests[0][0] == "/gw" and gate.requests[0][1]["x-key"] == "k1"
    finally:
        gate.close()


def test_a_bad_ws_header_option_is_an_error(
    net_broker: Mosquitto, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["pub", "-p", str(net_broker.ws_port), "-t", topic, "-m", "x"]
    assert cli.main([*args, "--transport", "websockets", "--ws-header", "no colon"]) == 1
    assert "--ws-header takes 'NAME: VALUE'" in capsys.readouterr().err


# --------------------------------------------------------------------------- the doctor


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict[str, Any]]:
    """The doctor as text and as --json; neither shows the proxy's password."""
    status = cli.main(["doctor", *args])
    text = capsys.readouterr().out
    assert cli.main(["doctor", *args, "--json"]) == status
    out = capsys.readouterr().out
    assert PROXY_LOGIN[1] not in text + out
    return status, text, json.loads(out)


def test_doctor_through_a_proxy_over_wss(
    net_broker: Mosquitto, socks_proxy: servers.MicroSocks, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steps 1 and 2 are about the proxy; TLS is the core's verdict; every step passes."""
    status, text, report = doctor(
        capsys,
        *["-h", "localhost", "-p", str(net_broker.wss_port), "--cafile", str(net_broker.ca_path)],
        *["--transport", "websockets", "--proxy", servers.proxy_url(socks_proxy, "socks5h")],
    )
    assert status == 0, text
    shown = f"socks5h://{PROXY_LOGIN[0]}@127.0.0.1:{socks_proxy.port}"
    assert f"over WebSocket via the proxy {shown}" in text
    assert "✓ 1 name resolution" in text and f"via the proxy {shown}: 127.0.0.1" in text
    assert "✓ 3 TLS" in text and "the handshake through the proxy passed" in text
    assert report["target"]["proxy"] == shown and report["target"]["transport"] == "websockets"


def test_doctor_over_a_unix_socket(
    net_broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    status, text, report = doctor(capsys, "--unix", str(net_broker.unix_path))
    assert status == 0, text
    assert "is a Unix socket (no name to resolve)" in text
    assert "✓ 2 TCP" in text and "accepts connections" in text
    assert report["target"]["transport"] == "unix"


def test_doctor_names_a_refusing_proxy(
    net_broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = servers.TinyProxy(tmp_path, [net_broker.port], PROXY_LOGIN)
    try:
        url = servers.proxy_url(proxy).replace(PROXY_LOGIN[1], "wr0ng")
        status, text, report = doctor(capsys, "-p", str(net_broker.port), "--proxy", url)
    finally:
        proxy.close()
    assert status == 1
    step = next(s for s in report["steps"] if s["status"] == "fail")
    assert step["name"] == "connect"
    assert "HTTP 401" in step["result"] and "the proxy did not open the way" in step["cause"]
    assert "wr0ng" not in text + json.dumps(report)


def test_doctor_explains_no_common_alpn_protocol(
    net_broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    assert net_broker.server_cert_path and net_broker.server_key_path
    relay = servers.AlpnRelay(
        net_broker.server_cert_path, net_broker.server_key_path, ["h2"], net_broker.port
    )
    try:
        status, _, report = doctor(
            capsys,
            *["-h", "127.0.0.1", "-p", str(relay.port), "--cafile", str(net_broker.ca_path)],
            *["--alpn", "x-amzn-mqtt-ca"],
        )
    finally:
        relay.close()
    assert status == 1
    tls = next(s for s in report["steps"] if s["name"] == "tls")
    assert tls["status"] == "fail" and "--alpn x-amzn-mqtt-ca" in tls["fix"]
    assert relay.offered[-1] == ["x-amzn-mqtt-ca"]
