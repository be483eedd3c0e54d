"""Proxies that refuse (issue 22): every refusal is a connect error that says the proxy refused and
why, in words (the HTTP status, the SOCKS reply), and never shows the proxy's password.

Against tinyproxy (HTTP CONNECT) and microsocks (SOCKS5) from Debian, each with and without
authentication, in front of a real mosquitto. tinyproxy 1.11 answers wrong credentials with 401,
missing ones with 407: both are "the proxy refused".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import umqtt
import umqtt.aio
import umqtt.simple
from broker import Mosquitto, unique_id, wait_until
from transport_servers import (  # noqa: F401 - socks_proxy_fixture: a fixture
    PROXY_LOGIN,
    MicroSocks,
    TinyProxy,
    proxy_url,
    socks_proxy_fixture,
)
from umqtt.testing import free_port


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("proxied-broker"), ipv6=True)
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port nothing listens on (tinyproxy is told to allow it)."""
    return free_port()


@pytest.fixture(scope="module")
def tinyproxy(
    target: Mosquitto, closed_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TinyProxy]:
    proxy = TinyProxy(
        tmp_path_factory.mktemp("tinyproxy"),
        [target.port, target.ipv6_port or 0, closed_port],
        PROXY_LOGIN,
    )
    yield proxy
    proxy.close()


def connect_error(server: str, port: int, proxy: str, **options: Any) -> str:
    """The text of the connect error through `proxy` (which must never show a password)."""
    client = umqtt.MQTTClient(unique_id(), server, port, proxy=proxy, connect_timeout=10, **options)
    with pytest.raises(umqtt.MQTTConnectError) as raised:
        client.connect()
    text = str(raised.value)
    assert raised.value.rc is None
    for secret in (PROXY_LOGIN[1], "wr0ng"):
        assert secret not in text and secret not in repr(client)
    return text


def without_password(proxy: TinyProxy | MicroSocks, scheme: str | None = None) -> str:
    return (
        proxy_url(proxy, scheme)
        .replace(f":{PROXY_LOGIN[1]}@", "@")
        .replace(f"{PROXY_LOGIN[0]}@", "")
    )


def wrong_password(proxy: TinyProxy | MicroSocks, scheme: str | None = None) -> str:
    return proxy_url(proxy, scheme).replace(PROXY_LOGIN[1], "wr0ng")


# --------------------------------------------------------------------------- HTTP CONNECT


def test_http_proxy_without_credentials_is_refused_with_407(
    target: Mosquitto, tinyproxy: TinyProxy
) -> None:
    text = connect_error(target.host, target.port, without_password(tinyproxy))
    assert "the proxy refused the connection" in text
    assert "HTTP 407 Proxy Authentication Required" in text
    assert "check the user name and password" in text


def test_http_proxy_with_a_wrong_password_is_refused(
    target: Mosquitto, tinyproxy: TinyProxy
) -> None:
    text = connect_error(target.host, target.port, wrong_password(tinyproxy))
    assert "HTTP 401 Unauthorized: check the user name and password" in text


def test_http_proxy_refuses_a_port_it_does_not_allow(
    target: Mosquitto, tinyproxy: TinyProxy
) -> None:
    text = connect_error(target.host, free_port(), proxy_url(tinyproxy))
    assert "HTTP 403 Forbidden: the proxy does not allow a tunnel to that host and port" in text


def test_http_proxy_that_cannot_reach_the_broker(
    target: Mosquitto, tinyproxy: TinyProxy, closed_port: int
) -> None:
    text = connect_error(target.host, closed_port, proxy_url(tinyproxy))
    assert "the proxy refused the connection" in text and "HTTP 5" in text


def test_http_proxy_to_an_ipv6_broker(target: Mosquitto, tinyproxy: TinyProxy) -> None:
    """CONNECT [::1]:port: the address in brackets, as a request line needs it."""
    client = umqtt.simple.MQTTClient(
        unique_id(), "::1", target.ipv6_port or 0, proxy=proxy_url(tinyproxy)
    )
    client.connect()
    client.disconnect()
    assert wait_until(lambda: tinyproxy.tunnels_to(target.ipv6_port or 0) >= 1)


def test_a_proxy_nobody_listens_on(target: Mosquitto) -> None:
    text = connect_error(target.host, target.port, f"http://127.0.0.1:{free_port()}")
    assert "cannot reach the proxy" in text and "http://127.0.0.1:" in text


# --------------------------------------------------------------------------- SOCKS5


def test_socks5_wrong_password(target: Mosquitto, socks_proxy: MicroSocks) -> None:
    text = connect_error(target.host, target.port, wrong_password(socks_proxy))
    assert "the SOCKS5 proxy refused the user name and password" in text


def test_socks5_without_credentials(target: Mosquitto, socks_proxy: MicroSocks) -> None:
    text = connect_error(target.host, target.port, without_password(socks_proxy, "socks5h"))
    assert "accepts none of the ways offered to log in" in text


def test_socks5_reply_in_words(target: Mosquitto, socks_proxy: MicroSocks) -> None:
    text = connect_error(target.host, free_port(), proxy_url(socks_proxy))
    assert "the SOCKS5 proxy could not connect to" in text
    assert "connection refused by the broker's address (SOCKS reply 5)" in text


def test_socks5h_lets_the_proxy_resolve(target: Mosquitto, socks_proxy: MicroSocks) -> None:
    """A name only the proxy can resolve fails there (a SOCKS reply), not in our resolver."""
    text = connect_error("no-such-host.invalid", target.port, proxy_url(socks_proxy, "socks5h"))
    assert "the SOCKS5 proxy could not connect to no-such-host.invalid" in text


def test_socks5_resolves_locally(target: Mosquitto, socks_proxy: MicroSocks) -> None:
    text = connect_error("no-such-host.invalid", target.port, proxy_url(socks_proxy))
    assert "cannot resolve" in text


def test_ipvtype_applies_to_socks5_not_to_socks5h(
    target: Mosquitto, socks_proxy: MicroSocks
) -> None:
    """socks5://: we resolve the broker's name, so IPv6-only finds no address for 127.0.0.1;
    socks5h://: the proxy resolves it, and ipvtype does not apply."""
    text = connect_error(target.host, target.port, proxy_url(socks_proxy), ipvtype=1)
    assert "has no IPv6 address" in text
    client = umqtt.simple.MQTTClient(
        unique_id(), target.host, target.port, proxy=proxy_url(socks_proxy, "socks5h"), ipvtype=1
    )
    client.connect()
    client.disconnect()


def test_the_aio_client_reports_a_refusing_proxy(
    target: Mosquitto, socks_proxy: MicroSocks
) -> None:
    import asyncio

    async def connect() -> None:
        client = umqtt.aio.MQTTClient(
            unique_id(), target.host, target.port, proxy=wrong_password(socks_proxy)
        )
        with pytest.raises(umqtt.aio.MQTTConnectError, match="refused the user name and password"):
            await client.connect()

    asyncio.run(connect())


def test_simple_raises_oserror_for_a_refusing_proxy(target: Mosquitto, tmp_path: Path) -> None:
    """MicroPython's dialects raise OSError for network failures, a refusing proxy included."""
    proxy = MicroSocks(tmp_path, PROXY_LOGIN)
    try:
        client = umqtt.simple.MQTTClient(
            unique_id(), target.host, target.port, proxy=wrong_password(proxy)
        )
        with pytest.raises(OSError, match="SOCKS5 proxy refused"):
            client.connect()
    finally:
        proxy.close()
