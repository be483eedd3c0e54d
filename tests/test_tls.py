"""TLS (issue 9): `ssl=True` with `ssl_params` in every dialect, an `ssl.SSLContext` as `ssl`, and
the errors a failed handshake or a bad certificate or key produces.

One mosquitto process serves a plain listener and several TLS listeners, all with certificates
generated for this run (trustme, plus `cryptography` for keys in the three PEM formats). The broker
log is the witness that a connection arrived on the TLS listener and that a failed verification was
never retried in the clear. Whatever depends on the process-wide state of the core (system roots
loaded once, the CERT_NONE warning logged once) runs in a subprocess.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme
import umqtt
import umqtt.robust
import umqtt.simple
import wire
from broker import (
    Bounded,
    Mosquitto,
    free_port,
    port_accepts,
    serve_connections,
    unique_id,
    wait_until,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DIALECTS = {
    "quecpython": umqtt.MQTTClient,
    "simple": umqtt.simple.MQTTClient,
    "robust": umqtt.robust.MQTTClient,
}
KNOWN_KEYS = [
    "cert",
    "key",
    "server_hostname",
    "server_side",
    "do_handshake",
    "certfile",
    "keyfile",
    "ca_certs",
    "cadata",
    "cert_reqs",
]
OTHER_HOST = "other.example"  # the only name on the "other_host" listener's certificate
CLIENT_NAME = "umqtt-test-client.example"

# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    """Every certificate and key of the run, as files in `dir` (PEM)."""

    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def text(self, name: str) -> str:
        return (self.dir / name).read_text()

    def data(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _own_client_cert(ca: trustme.CA, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """A client certificate for `key`, signed by trustme's CA (trustme issues only for its keys)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(ca_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CLIENT_NAME)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    now = _now()
    ca = trustme.CA()
    wrong_ca = trustme.CA()
    child = ca.create_child_ca()
    files: dict[str, bytes] = {
        "ca.pem": ca.cert_pem.bytes(),
        "wrong-ca.pem": wrong_ca.cert_pem.bytes(),
        "both-cas.pem": wrong_ca.cert_pem.bytes() + ca.cert_pem.bytes(),
    }

    def leaf(name: str, cert: trustme.LeafCert, chain: bool = False) -> None:
        pems = cert.cert_chain_pems if chain else cert.cert_chain_pems[:1]
        files[f"{name}.pem"] = b"".join(p.bytes() for p in pems)
        files[f"{name}.key"] = cert.private_key_pem.bytes()

    leaf("server", ca.issue_cert("127.0.0.1", "localhost"))
    leaf(
        "expired",
        ca.issue_cert(
            "127.0.0.1",
            "localhost",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
    )
    leaf("other-host", ca.issue_cert(OTHER_HOST))
    leaf("chain-server", child.issue_cert("127.0.0.1", "localhost"), chain=True)
    leaf("client", ca.issue_cert(CLIENT_NAME))
    leaf("chain-client", child.issue_cert(CLIENT_NAME), chain=True)
    leaf("rogue-client", wrong_ca.issue_cert(CLIENT_NAME))
    leaf("client-rsa", ca.issue_cert(CLIENT_NAME, key_type=trustme.KeyType.RSA))

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files["pkcs1.key"] = _key_pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    files["pkcs8.key"] = _key_pem(rsa_key, serialization.PrivateFormat.PKCS8)
    files["rsa.pem"] = _own_client_cert(ca, rsa_key)
    files["sec1.key"] = _key_pem(ec_key, serialization.PrivateFormat.TraditionalOpenSSL)
    files["ec.pem"] = _own_client_cert(ca, ec_key)
    for name, data in files.items():
        (d / name).write_bytes(data)
    pki = Pki(d)
    assert pki.text("pkcs1.key").startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pki.text("pkcs8.key").startswith("-----BEGIN PRIVATE KEY-----")
    assert pki.text("sec1.key").startswith("-----BEGIN EC PRIVATE KEY-----")
    assert pki.text("chain-client.pem").count("BEGIN CERTIFICATE") == 2
    return pki


# --------------------------------------------------------------------------- the broker


class TlsMosquitto(Mosquitto):
    """A Mosquitto with extra TLS listeners: name -> config lines for that listener.

    Ports are drawn afresh on every launch attempt (unless fixed in `fixed_ports`); the broker
    counts as started once every listener accepts.
    """

    def __init__(
        self,
        workdir: Path,
        listeners: dict[str, list[str]],
        fixed_ports: dict[str, int] | None = None,
        **kw: Any,
    ) -> None:
        self.listeners = listeners
        self.fixed_ports = dict(fixed_ports or {})
        self.ports: dict[str, int] = {}
        super().__init__(workdir, **kw)

    def _write_config(self) -> None:
        lines: list[str] = []
        for name, options in self.listeners.items():
            self.ports[name] = self.fixed_ports.get(name) or free_port()
            lines += [f"listener {self.ports[name]} {self.host}", *options]
        self.extra_config = tuple(lines)
        super()._write_config()

    def _launch(self, deadline: float) -> bool:
        if not super()._launch(deadline):
            return False
        all_up = wait_until(
            lambda: (
                not self.running or all(port_accepts(self.host, p) for p in self.ports.values())
            ),
            max(0.1, deadline - time.monotonic()),
        )
        if all_up and self.running:
            return True
        self.kill()
        return False

    # -- the log as a witness

    def listener_port_of(self, client_id: str, timeout: float = 5.0) -> int:
        """The port of the listener that `client_id`'s CONNECT arrived on (from the log)."""
        found = re.compile(rf"New client connected from (\S+) as {re.escape(client_id)} ")
        assert wait_until(lambda: found.search(self.log_text()), timeout), (
            f"no CONNECT from {client_id!r} in the broker log"
        )
        address = found.findall(self.log_text())[-1]
        ports = re.findall(
            rf"New connection from {re.escape(address)} on port (\d+)\.", self.log_text()
        )
        assert ports, f"no 'New connection from {address}' in the broker log"
        return int(ports[-1])

    def settle(self) -> int:
        """Wait until everything that happened so far is in the log (a marker client's plain
        CONNECT and hang-up are), then return the log offset: "from now on"."""
        marker = unique_id("settle")
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(wire.connect(marker))
            assert s.recv(4)[:1] == b"\x20", "no CONNACK for the settle marker"
        assert self.wait_for_log(f"Client {marker} "), "the settle marker never left the log"
        return self.log_size()

    def connection_attempts(self, offset: int) -> list[int | None]:
        """One entry per TCP connection after log offset `offset`: the listener port, or None for a
        TLS connection that failed before mosquitto logged its port."""
        attempts: list[int | None] = []
        for line in self.log_text(offset).splitlines():
            accepted = re.search(r"New connection from \S+ on port (\d+)\.", line)
            if accepted:
                attempts.append(int(accepted.group(1)))
            elif re.search(r"Client connection from \S+ failed", line):
                attempts.append(None)
        return attempts


def tls_listener(pki: Pki, cert: str, *more: str) -> list[str]:
    return [
        f"cafile {pki.path('ca.pem')}",
        f"certfile {pki.path(cert + '.pem')}",
        f"keyfile {pki.path(cert + '.key')}",
        *more,
    ]


def listeners_for(pki: Pki) -> dict[str, list[str]]:
    return {
        "tls": tls_listener(pki, "server"),
        "mutual": tls_listener(pki, "server", "require_certificate true"),
        "expired": tls_listener(pki, "expired"),
        "other_host": tls_listener(pki, "other-host"),
        "chain": tls_listener(pki, "chain-server"),
    }


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsMosquitto]:
    """One mosquitto: a plain listener (`port`) plus the TLS listeners of `listeners_for`."""
    b = TlsMosquitto(tmp_path_factory.mktemp("tls-broker"), listeners_for(pki))
    try:
        yield b
    finally:
        b.kill()


# --------------------------------------------------------------------------- clients


@pytest.fixture
def tls_client(tls_broker: TlsMosquitto, make_client: Callable[..., Any]) -> Callable[..., Any]:
    """tls_client(listener, ssl_params, dialect="quecpython", ssl=True, **kw): an unconnected
    client for `tls_broker`'s `listener` (connect_timeout 10 s; reconn=False in the QuecPython
    dialect); all are disconnected at teardown."""

    def make(
        listener: str,
        ssl_params: Any = None,
        dialect: str = "quecpython",
        ssl: Any = True,
        server: str = "127.0.0.1",
        **kw: Any,
    ) -> Any:
        kw.setdefault("connect_timeout", 10.0)
        if dialect == "quecpython":
            kw.setdefault("reconn", False)
        return make_client(
            broker=tls_broker,
            dialect=dialect,
            server=server,
            port=tls_broker.ports[listener],
            ssl=ssl,
            ssl_params=ssl_params,
            **kw,
        )

    return make


def connect(client: Any) -> None:
    """connect() within 15 s; the session-present flag of a clean session is 0."""
    result = Bounded(client.connect, "connect").join(15)
    assert result == 0


def connect_error(client: Any) -> str:
    """connect() must fail: return the message (MQTTConnectError here, OSError in simple/robust)."""
    call = Bounded(client.connect, "connect")
    with pytest.raises((umqtt.MQTTConnectError, OSError)) as info:
        call.join(15)
    if isinstance(client, umqtt.MQTTClient):
        assert isinstance(info.value, umqtt.MQTTConnectError)
        assert isinstance(info.value, ValueError)
        assert info.value.rc is None
    else:
        assert isinstance(info.value, OSError)
    return str(info.value)


def round_trip(client: Any, topic: str) -> None:
    """Subscribe and publish QoS 1 on the same connection; the message must come back."""
    got: list[tuple[bytes, bytes]] = []
    client.set_callback(lambda t, m: got.append((bytes(t), bytes(m))))
    payload = f"over TLS {unique_id()}".encode()
    assert client.subscribe(topic, 1) in (True, None)
    assert client.publish(topic, payload, qos=1) in (True, None)

    def arrived() -> bool:
        client.check_msg()
        return bool(got)

    assert wait_until(arrived, 10), "the QoS 1 message did not come back over TLS"
    assert got == [(topic.encode(), payload)]


def flows(tls_broker: TlsMosquitto, client: Any, listener: str, topic: str) -> None:
    """connect + round trip, and the broker saw the CONNECT on `listener`'s (TLS) port."""
    connect(client)
    round_trip(client, topic)
    cid = client.client_id if isinstance(client.client_id, str) else client.client_id.decode()
    assert tls_broker.listener_port_of(cid) == tls_broker.ports[listener]


def ca_only(pki: Pki) -> dict[str, Any]:
    return {"ca_certs": pki.path("ca.pem")}


def assert_mentions(message: str, *words: str) -> None:
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# --------------------------------------------------------------------------- one-way TLS


@pytest.mark.parametrize("dialect", DIALECTS)
def test_ca_certs_round_trip_in_every_dialect(tls_broker, tls_client, pki, topic, dialect):
    c = tls_client("tls", ca_only(pki), dialect=dialect)
    flows(tls_broker, c, "tls", topic)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_localhost_by_name(tls_broker, tls_client, pki, topic, dialect):
    """The server name (a DNS name) is what is verified when no server_hostname is given."""
    c = tls_client("tls", ca_only(pki), dialect=dialect, server="localhost")
    flows(tls_broker, c, "tls", topic)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda p: p.path("ca.pem"), id="str-path"),
        pytest.param(lambda p: Path(p.path("ca.pem")), id="pathlike"),
        pytest.param(lambda p: p.path("both-cas.pem"), id="bundle-with-other-ca"),
    ],
)
def test_ca_certs_forms(tls_broker, tls_client, pki, topic, value):
    flows(tls_broker, tls_client("tls", {"ca_certs": value(pki)}), "tls", topic)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda p: p.text("ca.pem"), id="pem-str"),
        pytest.param(lambda p: p.data("ca.pem"), id="pem-bytes"),
        pytest.param(lambda p: p.text("both-cas.pem"), id="pem-two-cas"),
        pytest.param(
            lambda p: ssl.PEM_cert_to_DER_cert(p.text("ca.pem")), id="der-bytes-as-cpython"
        ),
    ],
)
def test_cadata(tls_broker, tls_client, pki, topic, value):
    flows(tls_broker, tls_client("tls", {"cadata": value(pki)}), "tls", topic)


def test_cert_reqs_required_explicit(tls_broker, tls_client, pki, topic):
    params = {**ca_only(pki), "cert_reqs": ssl.CERT_REQUIRED}
    flows(tls_broker, tls_client("tls", params), "tls", topic)


def test_cert_reqs_required_is_the_default(tls_broker, tls_client, pki):
    """Without cert_reqs (or with cert_reqs=None: not given) the server is verified."""
    for params in (
        {"ca_certs": pki.path("wrong-ca.pem")},
        {"ca_certs": pki.path("wrong-ca.pem"), "cert_reqs": None},
    ):
        assert_mentions(connect_error(tls_client("tls", params)), "ca_certs", "cadata", "CERT_NONE")


def test_device_keys_server_side_false_and_do_handshake_true(tls_broker, tls_client, pki, topic):
    """What device scripts pass: server_side=False, do_handshake=True (plus the CA we need)."""
    params = {**ca_only(pki), "server_side": False, "do_handshake": True}
    flows(tls_broker, tls_client("tls", params), "tls", topic)


def test_none_values_mean_not_given(tls_broker, tls_client, pki, topic):
    params = {
        **ca_only(pki),
        "cert": None,
        "key": None,
        "certfile": None,
        "keyfile": None,
        "cadata": None,
        "server_hostname": None,
        "cert_reqs": None,
        "server_side": None,
        "do_handshake": None,
    }
    flows(tls_broker, tls_client("tls", params), "tls", topic)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_server_hostname_is_verified_instead_of_the_address(
    tls_broker, tls_client, pki, topic, dialect
):
    """The other_host certificate names only other.example: connecting to 127.0.0.1 works once
    server_hostname says which name to check."""
    params = {**ca_only(pki), "server_hostname": OTHER_HOST}
    flows(tls_broker, tls_client("other_host", params, dialect=dialect), "other_host", topic)


def test_server_chain_with_intermediate_ca(tls_broker, tls_client, pki, topic):
    """The server sends leaf + intermediate; the client trusts only the root."""
    flows(tls_broker, tls_client("chain", ca_only(pki)), "chain", topic)


def test_cert_none_skips_verification(tls_broker, tls_client, pki, topic):
    """CERT_NONE connects to a server whose CA is unknown, whose name does not match, and whose
    certificate has expired."""
    for listener in ("tls", "other_host", "expired"):
        c = tls_client(listener, {"cert_reqs": ssl.CERT_NONE})
        flows(tls_broker, c, listener, f"{topic}/{listener}")


def test_plain_client_and_tls_client_exchange_messages(
    tls_broker, tls_client, make_peer, pki, topic
):
    """A paho peer on the plain listener receives what the TLS client publishes, and the reverse."""
    peer = make_peer(tls_broker)
    peer.subscribe(topic, 1)
    c = tls_client("tls", ca_only(pki))
    got: list[bytes] = []
    c.set_callback(lambda t, m: got.append(bytes(m)))
    connect(c)
    assert c.subscribe(topic + "/back", 1) is True
    assert c.publish(topic, b"from tls", qos=1) is True
    assert [m.payload for m in peer.wait_for(topic)] == [b"from tls"]
    peer.publish(topic + "/back", b"to tls", qos=1)
    assert wait_until(lambda: c.check_msg() or got, 10)
    assert got == [b"to tls"]


# --------------------------------------------------------------------------- mutual TLS


def mutual(
    pki: Pki, cert: str, key: str | None = None, *, as_bytes: bool = False
) -> dict[str, Any]:
    read = pki.data if as_bytes else pki.text
    return {**ca_only(pki), "cert": read(cert + ".pem"), "key": read((key or cert) + ".key")}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_mutual_device_cert_and_key(tls_broker, tls_client, pki, topic, dialect, as_bytes):
    params = mutual(pki, "client", as_bytes=as_bytes)
    flows(tls_broker, tls_client("mutual", params, dialect=dialect), "mutual", topic)


def test_mutual_certfile_and_keyfile(tls_broker, tls_client, pki, topic):
    params = {
        **ca_only(pki),
        "certfile": pki.path("client.pem"),
        "keyfile": pki.path("client.key"),
    }
    flows(tls_broker, tls_client("mutual", params), "mutual", topic)


@pytest.mark.parametrize("version", [4, 5])
def test_mutual_with_every_device_key(tls_broker, tls_client, pki, topic, version):
    """cert, key, server_hostname, server_side, do_handshake and the CA, all at once; under
    MQTT 3.1.1 and MQTT 5 (the broker logs p2 or p5)."""
    params = {
        **mutual(pki, "client"),
        "server_hostname": "localhost",
        "server_side": False,
        "do_handshake": True,
        "cert_reqs": ssl.CERT_REQUIRED,
    }
    c = tls_client("mutual", params, version=version)
    flows(tls_broker, c, "mutual", topic)
    assert f"p{2 if version == 4 else 5}" in tls_broker.connect_flags(c.client_id).split(", ")


@pytest.mark.parametrize(
    ("cert", "key"),
    [
        pytest.param("rsa", "pkcs1", id="rsa-pkcs1"),
        pytest.param("rsa", "pkcs8", id="rsa-pkcs8"),
        pytest.param("ec", "sec1", id="ec-sec1"),
        pytest.param("client", None, id="ec-pkcs8-trustme"),
        pytest.param("client-rsa", None, id="rsa-pkcs8-trustme"),
    ],
)
def test_client_key_formats(tls_broker, tls_client, pki, topic, cert, key):
    flows(tls_broker, tls_client("mutual", mutual(pki, cert, key)), "mutual", topic)


def test_client_key_formats_from_files(tls_broker, tls_client, pki, topic):
    for cert, key in (("rsa", "pkcs1"), ("rsa", "pkcs8"), ("ec", "sec1")):
        params = {
            **ca_only(pki),
            "certfile": pki.path(cert + ".pem"),
            "keyfile": pki.path(key + ".key"),
        }
        flows(tls_broker, tls_client("mutual", params), "mutual", f"{topic}/{key}")


def test_client_chain_with_intermediate_ca(tls_broker, tls_client, pki, topic):
    """The client sends leaf + intermediate; the broker trusts only the root."""
    flows(tls_broker, tls_client("mutual", mutual(pki, "chain-client")), "mutual", topic)


def test_mutual_with_cert_none_still_sends_the_client_cert(tls_broker, tls_client, pki, topic):
    params = {**mutual(pki, "client"), "cert_reqs": ssl.CERT_NONE}
    del params["ca_certs"]
    flows(tls_broker, tls_client("mutual", params), "mutual", topic)


# --------------------------------------------------------------------------- SSLContext


@pytest.mark.parametrize("dialect", ["simple", "robust"])
def test_sslcontext_with_test_ca(tls_broker, tls_client, pki, topic, dialect):
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    flows(tls_broker, tls_client("tls", None, dialect=dialect, ssl=ctx), "tls", topic)


def test_sslcontext_cadata(tls_broker, tls_client, pki, topic):
    ctx = ssl.create_default_context(cadata=pki.text("ca.pem"))
    flows(tls_broker, tls_client("tls", {}, dialect="simple", ssl=ctx), "tls", topic)


def test_sslcontext_with_wrong_ca_fails(tls_broker, tls_client, pki):
    ctx = ssl.create_default_context(cafile=pki.path("wrong-ca.pem"))
    message = connect_error(tls_client("tls", None, dialect="simple", ssl=ctx))
    assert_mentions(message, "ca_certs", "cadata", "CERT_NONE")


def test_sslcontext_check_hostname(tls_broker, tls_client, pki, topic):
    """check_hostname=True: the other_host certificate is refused at 127.0.0.1; False: accepted."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    message = connect_error(tls_client("other_host", None, dialect="simple", ssl=ctx))
    assert_mentions(message, "host name", "server_hostname")
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.check_hostname = False
    c = tls_client("other_host", None, dialect="simple", ssl=ctx)
    flows(tls_broker, c, "other_host", topic)


def test_sslcontext_check_hostname_false_still_checks_the_ca(tls_broker, tls_client, pki):
    ctx = ssl.create_default_context(cafile=pki.path("wrong-ca.pem"))
    ctx.check_hostname = False
    message = connect_error(tls_client("other_host", None, dialect="simple", ssl=ctx))
    assert_mentions(message, "ca_certs", "CERT_NONE")


def test_sslcontext_verify_mode_none(tls_broker, tls_client, topic):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    flows(tls_broker, tls_client("expired", None, dialect="simple", ssl=ctx), "expired", topic)


def test_sslcontext_port_zero_means_8883(pki):
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    assert umqtt.simple.MQTTClient(unique_id(), "127.0.0.1", 0, ssl=ctx).port == 8883


# --------------------------------------------------------------------------- port 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_port_zero_means_8883_with_tls(pki, dialect):
    cls = DIALECTS[dialect]
    assert cls(unique_id(), "127.0.0.1", 0, ssl=True, ssl_params=ca_only(pki)).port == 8883
    assert cls(unique_id(), "127.0.0.1", "0", ssl=True, ssl_params=ca_only(pki)).port == 8883
    assert cls(unique_id(), "127.0.0.1", 0).port == 1883


def test_default_port_connects_to_8883(tmp_path, pki, topic):
    """With no port at all (QuecPython's default 0), a TLS client really talks to port 8883."""
    if port_accepts("127.0.0.1", 8883):
        pytest.skip("port 8883 is in use on this machine")
    b = TlsMosquitto(tmp_path, {"tls": tls_listener(pki, "server")}, fixed_ports={"tls": 8883})
    try:
        c = umqtt.MQTTClient(unique_id(), "127.0.0.1", ssl=True, ssl_params=ca_only(pki))
        try:
            flows(b, c, "tls", topic)
        finally:
            c.disconnect()
    finally:
        b.kill()


# --------------------------------------------------------------------------- SNI


class SniRecorder:
    """A TLS server (our CA's server certificate) that records the SNI name of each handshake."""

    def __init__(self, pki: Pki) -> None:
        self.names: list[str | None] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
        self.ctx.sni_callback = lambda sock, name, ctx: self.names.append(name)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        serve_connections(self.sock, self._record, "sni-recorder")

    def _record(self, conn: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(5)
                tls.recv(1024)  # the CONNECT; then hang up
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self.sock.close()


# server_hostname is both the SNI name and the name verified (vendor/rumqttc/PATCHES.md).
@pytest.fixture
def sni(pki: Pki) -> Iterator[SniRecorder]:
    s = SniRecorder(pki)
    yield s
    s.close()


@pytest.mark.parametrize(
    ("server", "params", "expected"),
    [
        pytest.param("localhost", {}, "localhost", id="server-name"),
        pytest.param(
            "127.0.0.1",
            {"server_hostname": "localhost"},
            "localhost",
            id="server_hostname",
        ),
        pytest.param(
            "localhost",
            {"server_hostname": OTHER_HOST},
            OTHER_HOST,
            id="server_hostname-wins",
        ),
        pytest.param("127.0.0.1", {}, None, id="ip-sends-no-sni"),
    ],
)
@pytest.mark.parametrize("version", [4, 5])
def test_sni_name_sent(sni, pki, server, params, expected, version):
    c = umqtt.MQTTClient(
        unique_id(),
        server,
        sni.port,
        ssl=True,
        ssl_params={"cert_reqs": ssl.CERT_NONE, **params},
        reconn=False,
        connect_timeout=5,
        version=version,
    )
    Bounded(c.connect, "connect").thread.join(10)  # the recorder hangs up: connect() fails
    assert wait_until(lambda: sni.names, 5), "no TLS handshake reached the recorder"
    assert sni.names == [expected]


# --------------------------------------------------------------------------- handshake errors


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unknown_ca_says_how_to_fix(tls_broker, tls_client, pki, dialect):
    c = tls_client("tls", {"ca_certs": pki.path("wrong-ca.pem")}, dialect=dialect)
    message = connect_error(c)
    assert_mentions(message, "not signed by a trusted CA", "ca_certs", "cadata", "CERT_NONE")


def test_unknown_ca_without_any_ca_given(tls_broker, tls_client):
    """ssl_params={} trusts only the system store, which cannot know this run's CA."""
    message = connect_error(tls_client("tls", {}))
    assert_mentions(message, "ca_certs", "cadata", "CERT_NONE")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_hostname_mismatch(tls_broker, tls_client, pki, dialect):
    c = tls_client("other_host", ca_only(pki), dialect=dialect)
    assert_mentions(connect_error(c), "not valid for that host name", "server_hostname")


def test_hostname_mismatch_by_server_hostname(tls_broker, tls_client, pki):
    """A server_hostname the certificate does not cover fails, although the address would pass."""
    c = tls_client("tls", {**ca_only(pki), "server_hostname": "nothere.example"})
    assert_mentions(connect_error(c), "not valid for that host name")


def test_ip_address_is_checked_as_ip(tls_broker, tls_client, pki):
    """A certificate for names only is refused at 127.0.0.1 (the IP SAN is what matched above)."""
    c = tls_client("other_host", {**ca_only(pki), "server_hostname": "127.0.0.1"})
    assert_mentions(connect_error(c), "not valid for that host name")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_expired_certificate(tls_broker, tls_client, pki, dialect):
    c = tls_client("expired", ca_only(pki), dialect=dialect)
    assert_mentions(connect_error(c), "expired")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_client_certificate_required_but_not_given(tls_broker, tls_client, pki, dialect):
    c = tls_client("mutual", ca_only(pki), dialect=dialect)
    assert_mentions(connect_error(c), "client certificate", "cert=", "key=")


def test_client_certificate_from_unknown_ca_rejected(tls_broker, tls_client, pki):
    c = tls_client("mutual", mutual(pki, "rogue-client"))
    assert_mentions(connect_error(c), "client certificate")


@pytest.mark.parametrize(
    ("listener", "params"),
    [
        pytest.param("tls", lambda p: {"ca_certs": p.path("wrong-ca.pem")}, id="unknown-ca"),
        pytest.param("other_host", ca_only, id="hostname"),
        pytest.param("expired", ca_only, id="expired"),
        pytest.param("mutual", ca_only, id="no-client-cert"),
    ],
)
def test_failure_never_downgrades(tls_broker, tls_client, pki, listener, params):
    """A failed handshake is one TCP connection to the TLS listener and nothing else: no retry (in
    the clear or otherwise), nothing on the plain listener, no CONNECT from the client anywhere;
    the client stays disconnected."""
    offset = tls_broker.settle()
    c = tls_client(listener, params(pki))
    connect_error(c)
    assert wait_until(lambda: tls_broker.connection_attempts(offset), 5), "no attempt logged"
    time.sleep(1)
    assert f" as {c.client_id} " not in tls_broker.log_text(offset)
    attempts = tls_broker.connection_attempts(offset)
    assert len(attempts) == 1, attempts
    assert attempts[0] in (None, tls_broker.ports[listener])
    assert c.get_mqttsta() != 0


# --------------------------------------------------------------------------- bad arguments


def bad_params(p: Pki, tmp: Path) -> list[Any]:
    garbage = tmp / "garbage.pem"
    garbage.write_text("this is not PEM at all\n")
    broken = tmp / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n")
    bad_der = tmp / "bad-der.pem"
    bad_der.write_text("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n")
    missing = str(tmp / "does-not-exist.pem")
    client = {"cert": p.text("client.pem"), "key": p.text("client.key")}
    return [
        # (params, exception, words in the message)
        ({**client, "key": "garbage"}, ValueError, ["key", "private key"]),
        ({**client, "key": p.text("client.pem")}, ValueError, ["key", "private key"]),
        ({**client, "key": b"\xff\xfe\x00garbage"}, ValueError, ["key"]),
        ({**client, "cert": "garbage"}, ValueError, ["cert", "certificate"]),
        ({**client, "cert": broken.read_text()}, ValueError, ["cert"]),
        ({**client, "cert": p.text("client.key")}, ValueError, ["cert", "certificate"]),
        ({"certfile": missing, "keyfile": p.path("client.key")}, ValueError, ["certfile", missing]),
        ({"certfile": p.path("client.pem"), "keyfile": missing}, ValueError, ["keyfile", missing]),
        ({"certfile": str(garbage), "keyfile": p.path("client.key")}, ValueError, ["certfile"]),
        ({"certfile": p.path("client.pem"), "keyfile": str(garbage)}, ValueError, ["keyfile"]),
        ({"ca_certs": missing}, ValueError, ["ca_certs", missing]),
        ({"ca_certs": str(garbage)}, ValueError, ["ca_certs"]),
        ({"ca_certs": str(broken)}, ValueError, ["ca_certs"]),
        ({"ca_certs": str(bad_der)}, ValueError, ["CA certificate"]),
        ({"cadata": "garbage"}, ValueError, ["cadata"]),
        ({"cert": p.text("client.pem")}, ValueError, ["key"]),
        ({"cert": p.text("client.pem"), "key": p.text("server.key")}, ValueError, ["key"]),
        ({"key": 123, "cert": p.text("client.pem")}, TypeError, ["key"]),
        ({"cert": 123, "key": p.text("client.key")}, TypeError, ["cert"]),
        ({"ca_certs": 123}, TypeError, ["ca_certs"]),
        ({"server_hostname": "bad host name!"}, ValueError, ["server_hostname"]),
        ({"server_side": True}, ValueError, ["server_side"]),
        ({"do_handshake": False}, ValueError, ["do_handshake"]),
    ]


BAD_PARAM_IDS = [
    "key-garbage",
    "key-is-a-cert",
    "key-binary",
    "cert-garbage",
    "cert-bad-base64",
    "cert-is-a-key",
    "certfile-missing",
    "keyfile-missing",
    "certfile-garbage",
    "keyfile-garbage",
    "ca_certs-missing",
    "ca_certs-garbage",
    "ca_certs-bad-base64",
    "ca_certs-not-x509",
    "cadata-garbage",
    "cert-without-key",
    "key-of-another-cert",
    "key-int",
    "cert-int",
    "ca_certs-int",
    "server_hostname-invalid",
    "server_side-true",
    "do_handshake-false",
]


@pytest.mark.parametrize("index", range(len(BAD_PARAM_IDS)), ids=BAD_PARAM_IDS)
@pytest.mark.parametrize("dialect", ["quecpython", "simple"])
def test_bad_ssl_params_raise_at_construction(pki, tmp_path, index, dialect):
    params, exc_type, words = bad_params(pki, tmp_path)[index]
    with pytest.raises(exc_type) as info:
        DIALECTS[dialect](unique_id(), "127.0.0.1", 0, ssl=True, ssl_params=params)
    assert_mentions(str(info.value), *words)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unknown_key_lists_the_known_ones(pki, dialect):
    with pytest.raises(ValueError) as info:
        DIALECTS[dialect](
            unique_id(), "127.0.0.1", 0, ssl=True, ssl_params={**ca_only(pki), "verify": False}
        )
    message = str(info.value)
    assert_mentions(message, "verify", *KNOWN_KEYS)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_ssl_true_with_ssl_params_none(dialect):
    with pytest.raises((TypeError, ValueError)) as info:
        DIALECTS[dialect](unique_id(), "127.0.0.1", 0, ssl=True, ssl_params=None)
    assert_mentions(str(info.value), "ssl_params", "None", "ssl_params={}")


def test_ssl_params_not_a_dict():
    with pytest.raises(TypeError) as info:
        umqtt.MQTTClient(unique_id(), "127.0.0.1", 0, ssl=True, ssl_params=[("ca_certs", "x")])
    assert_mentions(str(info.value), "ssl_params", "dict")


def test_ssl_false_ignores_ssl_params(broker, make_client, topic):
    """ssl=False is plain MQTT whatever ssl_params holds (device scripts keep them around)."""
    c = make_client(ssl=False, ssl_params={"cert": "unused", "key": "unused"})
    c.set_callback(lambda t, m: None)
    assert c.connect() == 0
    assert c.port == broker.port


def test_keys_and_pem_never_in_repr_or_log(tls_broker, tls_client, pki, umqtt_log, topic):
    params = mutual(pki, "client")
    c = tls_client("mutual", params)
    flows(tls_broker, c, "mutual", topic)
    key_body = pki.text("client.key").splitlines()[1]
    assert key_body not in repr(c)
    assert key_body not in umqtt_log.text()


# --------------------------------------------------------------------------- subprocesses


def run_python(
    code: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


ROUND_TRIP_SCRIPT = """
    import json, sys, threading, time
    import umqtt
    cfg = json.loads(__import__("os").environ["UMQTT_TEST"])

    def round_trip():
        c = umqtt.MQTTClient(cfg["id"], "127.0.0.1", cfg["port"], ssl=True,
                             ssl_params=cfg["params"], reconn=False, connect_timeout=10)
        got = []
        c.set_callback(lambda t, m: got.append(m))
        try:
            c.connect()
        except Exception as e:
            print("FAILED:", e)
            return 3
        c.subscribe(cfg["topic"], 1)
        c.publish(cfg["topic"], b"via system roots", qos=1)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            c.check_msg()
            time.sleep(0.01)
        c.disconnect()
        print("GOT", got)
        return 0 if got == [b"via system roots"] else 4

    # On a thread with the stack size the test asks for (0: the platform's default).
    threading.stack_size(cfg["stack"])
    codes = []
    worker = threading.Thread(target=lambda: codes.append(round_trip()))
    worker.start()
    worker.join()
    sys.exit(codes[0] if codes else 5)
"""


def round_trip_run(
    tls_broker: TlsMosquitto,
    topic: str,
    env: dict[str, str],
    params: dict[str, Any] | None = None,
    stack: int = 0,
) -> tuple[str, str]:
    """ROUND_TRIP_SCRIPT in a fresh interpreter: the client id, and what it printed."""
    cid = unique_id()
    cfg = {
        "id": cid,
        "port": tls_broker.ports["tls"],
        "params": params or {},
        "topic": topic,
        "stack": stack,
    }
    result = run_python(ROUND_TRIP_SCRIPT, {**env, "UMQTT_TEST": json.dumps(cfg)})
    return cid, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"


# musl's default thread stack (glibc's is 8 MiB). Measured 2026-12-07 (release build): TLS needs
# more than 48 KiB and 64 KiB suffice; plain MQTT needs more than 32 KiB and 48 KiB suffice.
SMALL_THREAD_STACK = 128 * 1024


def test_tls_from_a_thread_with_a_small_stack(tls_broker, pki, topic):
    """A blocked call runs the I/O, TLS handshake included, on the caller's own thread
    (docs/design.md, "Who runs the I/O"): a thread with musl's 128 KiB stack is enough. In a
    child process, so that a stack overflow fails this test instead of ending the run."""
    cid, out = round_trip_run(tls_broker, topic, {}, ca_only(pki), stack=SMALL_THREAD_STACK)
    assert "rc=0" in out, out
    assert tls_broker.listener_port_of(cid) == tls_broker.ports["tls"]


def test_ssl_cert_file_makes_empty_ssl_params_work(tls_broker, pki, topic):
    cid, out = round_trip_run(tls_broker, topic, {"SSL_CERT_FILE": pki.path("ca.pem")})
    assert "rc=0" in out, out
    assert tls_broker.listener_port_of(cid) == tls_broker.ports["tls"]


def test_ssl_cert_dir_makes_empty_ssl_params_work(tls_broker, pki, tmp_path, topic):
    """SSL_CERT_DIR, loaded leniently: a garbage file and a non-X.509 PEM block beside the CA."""
    (tmp_path / "test-ca.pem").write_bytes(pki.data("ca.pem"))
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\n!!!\n")
    cid, out = round_trip_run(tls_broker, topic, {"SSL_CERT_DIR": str(tmp_path)})
    assert "rc=0" in out, out
    assert tls_broker.listener_port_of(cid) == tls_broker.ports["tls"]


def test_ssl_cert_file_with_junk_is_loaded_leniently(tls_broker, pki, tmp_path, topic):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(
        "some text\n-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
        + pki.text("wrong-ca.pem")
        + pki.text("ca.pem")
    )
    _, out = round_trip_run(tls_broker, topic, {"SSL_CERT_FILE": str(bundle)})
    assert "rc=0" in out, out


def test_cert_none_works_without_any_system_roots(tls_broker, tmp_path, topic):
    """A container without a CA bundle: cert_reqs=CERT_NONE needs no roots at all."""
    (tmp_path / "empty.pem").write_text("")
    (tmp_path / "empty-dir").mkdir()
    env = {
        "SSL_CERT_FILE": str(tmp_path / "empty.pem"),
        "SSL_CERT_DIR": str(tmp_path / "empty-dir"),
    }
    _, out = round_trip_run(tls_broker, topic, env, {"cert_reqs": ssl.CERT_NONE})
    assert "rc=0" in out, out


@pytest.mark.parametrize("other_ca", [True, False], ids=["SSL_CERT_FILE-other-ca", "unset"])
def test_without_the_ca_empty_ssl_params_fails(tls_broker, pki, topic, other_ca):
    """The control: the same script, with SSL_CERT_FILE naming another CA or unset, fails."""
    env = {"SSL_CERT_FILE": pki.path("wrong-ca.pem")} if other_ca else {}
    _, out = round_trip_run(tls_broker, topic, env)
    assert "rc=3" in out, out
    assert_mentions(out, "ca_certs", "cadata", "CERT_NONE")


WARNING_SCRIPT = """
    import json, logging, os, ssl, sys
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append([record.name, record.levelname, record.getMessage()])

    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.DEBUG)
    import umqtt, umqtt.simple
    cfg = json.loads(os.environ["UMQTT_TEST"])

    def warnings():
        return [r for r in records if r[1] == "WARNING"]

    verified = umqtt.MQTTClient("v", "127.0.0.1", cfg["port"], ssl=True,
                                ssl_params={"ca_certs": cfg["ca"]})
    out = {"after_verified": warnings()}
    clients = []
    for i in range(3):
        c = umqtt.MQTTClient(cfg["id"] + str(i), "127.0.0.1", cfg["port"], ssl=True,
                             ssl_params={"cert_reqs": ssl.CERT_NONE}, reconn=False)
        c.set_callback(lambda t, m: None)
        c.connect()
        clients.append(c)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = umqtt.simple.MQTTClient(cfg["id"] + "s", "127.0.0.1", cfg["port"], ssl=ctx)
    s.connect()
    clients.append(s)
    out["after_cert_none"] = warnings()
    for c in clients:
        c.disconnect()
    print(json.dumps(out))
"""


def test_cert_none_warning_logged_once(tls_broker, pki):
    cid = unique_id()
    cfg = {"id": cid, "port": tls_broker.ports["tls"], "ca": pki.path("ca.pem")}
    result = run_python(WARNING_SCRIPT, {"UMQTT_TEST": json.dumps(cfg)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["after_verified"] == []
    assert len(out["after_cert_none"]) == 1, out
    name, _, text = out["after_cert_none"][0]
    assert name == "umqtt"
    assert_mentions(text.lower(), "verif")
    assert tls_broker.listener_port_of(cid + "0") == tls_broker.ports["tls"]


def test_verification_failure_with_reconn_true_raises_and_stops(tls_broker, pki):
    """The device default reconn=True: a failed verification raises from connect() at once and
    is not retried in the background."""
    offset = tls_broker.settle()
    c = umqtt.MQTTClient(
        unique_id(),
        "127.0.0.1",
        tls_broker.ports["tls"],
        ssl=True,
        ssl_params={"ca_certs": pki.path("wrong-ca.pem")},
    )
    started = time.monotonic()
    try:
        message = connect_error(c)
        assert time.monotonic() - started < 5
        assert_mentions(message, "ca_certs", "cadata", "CERT_NONE")
        time.sleep(3)
        attempts = tls_broker.connection_attempts(offset)
        assert len(attempts) == 1, attempts
        assert attempts[0] in (None, tls_broker.ports["tls"])
    finally:
        c.disconnect()


# --------------------------------------------------------------------------- the example


def test_example_tls_mutual(pki, tmp_path):
    """examples/tls_mutual.py, as written (127.0.0.1:8883, files in the current directory)."""
    if port_accepts("127.0.0.1", 8883):
        pytest.skip("port 8883 is in use on this machine")
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(pki.data(name))
    listener = tls_listener(pki, "server", "require_certificate true")
    b = TlsMosquitto(tmp_path, {"mutual": listener}, fixed_ports={"mutual": 8883})
    try:
        example = Path(__file__).resolve().parent.parent / "examples" / "tls_mutual.py"
        result = subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "b'hello over mutual TLS'" in result.stdout
        assert b.listener_port_of("umqtt_tls_client") == 8883
    finally:
        b.kill()
