"""TLS contexts that carry a client certificate: umqtt.SSLContext, MicroPython's ssl under
`run` (umqtt.device.ssl), QuecPython's ussl.wrap_socket, and the error for a plain
ssl.SSLContext, against a mosquitto that requires client certificates."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable

import pytest
import umqtt
from umqtt.device import ssl as device_ssl
from umqtt.device import ussl
from umqtt.simple import MQTTClient as SimpleClient
from umqtt.testing import Mosquitto, unique_id


@pytest.fixture
def mutual_broker(mqtt_broker_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mqtt_broker_factory(tls=True, require_certificate=True)


def paths(broker: Mosquitto) -> tuple[str, str, str]:
    assert broker.ca_path and broker.client_cert_path and broker.client_key_path
    return str(broker.ca_path), str(broker.client_cert_path), str(broker.client_key_path)


def round_trip(client: Any) -> None:
    """Connect, subscribe, publish at QoS 1 and receive it back."""
    got: list[bytes] = []
    client.set_callback(lambda topic, msg: got.append(msg))
    client.connect()
    topic = unique_id("tls")
    client.subscribe(topic, 1)
    client.publish(topic, b"over mutual TLS", qos=1)
    while not got:
        client.wait_msg()
    assert got == [b"over mutual TLS"]
    client.disconnect()


def test_umqtt_sslcontext_presents_its_client_certificate(mutual_broker: Mosquitto) -> None:
    ca, cert, key = paths(mutual_broker)
    context = umqtt.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.load_cert_chain(cert, key)
    assert context.client_certificate == (cert, key)
    port = mutual_broker.tls_port
    assert port is not None
    round_trip(SimpleClient(unique_id("ctx"), "127.0.0.1", port, ssl=context))
    round_trip(umqtt.MQTTClient(unique_id("ctx"), "127.0.0.1", port, ssl=context))


def test_plain_sslcontext_with_a_client_certificate_names_both_ways(
    mutual_broker: Mosquitto,
) -> None:
    ca, cert, key = paths(mutual_broker)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.load_cert_chain(cert, key)
    with pytest.raises(ValueError, match=r"umqtt\.SSLContext.*ssl_params=") as raised:
        SimpleClient(unique_id("ctx"), "127.0.0.1", mutual_broker.tls_port or 0, ssl=context)
    assert "cannot be read back" in str(raised.value)
    one_way = ssl.create_default_context(cafile=ca)  # no client certificate: as before
    SimpleClient(unique_id("ctx"), "127.0.0.1", mutual_broker.tls_port or 0, ssl=one_way)


def test_micropython_ssl_context_takes_der_bytes(mutual_broker: Mosquitto) -> None:
    ca, cert, key = paths(mutual_broker)

    def der(path: str, label: str) -> bytes:
        text = open(path).read()
        if label == "cert":
            return ssl.PEM_cert_to_DER_cert(text)
        import base64

        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        return base64.b64decode(body)

    context = device_ssl.SSLContext(device_ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(der(cert, "cert"), der(key, "key"))  # MicroPython passes DER bytes
    round_trip(SimpleClient(unique_id("mp"), "127.0.0.1", mutual_broker.tls_port or 0, ssl=context))


def test_ussl_wrap_socket_takes_pem_text_and_verifies(mutual_broker: Mosquitto) -> None:
    ca, cert, key = paths(mutual_broker)
    port = mutual_broker.tls_port or 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        tls = ussl.wrap_socket(
            raw,
            server_hostname="127.0.0.1",
            cert=open(cert).read(),
            key=open(key).read(),
            cadata=open(ca).read(),
        )
        # MQTT CONNECT (3.1.1, clean session, keepalive 60, client id "u"); CONNACK accepted.
        tls.write(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01u")
        assert tls.read(4) == b"\x20\x02\x00\x00"
        tls.close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):  # no CA given: not trusted
            ussl.wrap_socket(raw, server_hostname="127.0.0.1")
