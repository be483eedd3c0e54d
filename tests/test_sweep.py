"""Every public argument of every dialect, wrong (issue 7).

`umqtt.MQTTClient`, `umqtt.simple`, `umqtt.robust` and `umqtt.aio` each get the same tables of
wrong types and out-of-range values: constructor arguments (client ids, servers, ports,
keepalive, credentials, versions, sizes, timeouts, `ssl_params` values), topics (wildcards, NUL,
invalid UTF-8, over 65535 bytes, characters brokers refuse), payloads, QoS, will arguments and
callbacks that are not callable, plus calls on a client that was never connected.

Each call must raise the documented exception at once: an `Exception` (never pyo3's
`PanicException`, a `BaseException`), of the class the table names, whose message names the
argument at fault. The case `tests/test_bad_input.py` covers only the QuecPython dialect.

After every bad call the dialect's long-lived client (one per dialect, connected to the shared
broker and subscribed to its own topic) must still work and must have lost nothing: a message a
paho peer published just before the bad call, and one the client publishes at QoS 1 right after
it, both reach the client's callback (or `messages()`), and the peer receives the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import trustme
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
from broker import Bounded, Mosquitto, unique_id, wait_until
from conftest import Peer

DIALECTS = ("umqtt", "simple", "robust", "aio")
CLASSES = {
    "umqtt": umqtt.MQTTClient,
    "simple": umqtt.simple.MQTTClient,
    "robust": umqtt.robust.MQTTClient,
    "aio": umqtt.aio.MQTTClient,
}
QUEC = frozenset({"umqtt", "aio"})  # the QuecPython constructor (reconn, version, pingmaxnum...)
WITH_CALLBACK = frozenset({"umqtt", "simple", "robust"})
VICTIM_LIMIT = 256 * 1024  # max_packet_size of the long-lived clients
T = "umqtt-test/sweep/bad"  # a valid topic for calls whose other arguments are wrong
CALL_TIMEOUT = 10.0


# --------------------------------------------------------------------------- TLS material


@dataclass
class Pem:
    ca: bytes
    cert: bytes
    key: bytes
    other_key: bytes


def _pem() -> Pem:
    ca = trustme.CA()
    leaf = ca.issue_cert("client.example")
    other = ca.issue_cert("other.example")
    return Pem(
        ca=ca.cert_pem.bytes(),
        cert=leaf.cert_chain_pems[0].bytes(),
        key=leaf.private_key_pem.bytes(),
        other_key=other.private_key_pem.bytes(),
    )


PEM = _pem()


# --------------------------------------------------------------------------- an event loop thread


class LoopThread:
    """An asyncio loop on a thread of its own, so one aio client can outlive many tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sweep-aio", daemon=True)
        self.thread.start()

    def run(self, fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> Any:
        """Call fn() inside the loop and await its result if it is awaitable."""

        async def runner() -> Any:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


# --------------------------------------------------------------------------- the long-lived clients


@dataclass
class Victim:
    """A connected client of one dialect, subscribed to `topic`, recording what it receives."""

    dialect: str
    broker: Mosquitto
    loop: LoopThread | None
    topic: str = field(default_factory=lambda: f"umqtt-test/sweep/{uuid.uuid4().hex[:8]}")
    received: list[bytes] = field(default_factory=list)
    client: Any = None
    _reader: Any = None

    def call(self, fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> Any:
        """Run fn() the dialect's way: in the loop (awaited) for aio, else on a bounded thread."""
        if self.loop is not None:
            return self.loop.run(fn, timeout)
        return Bounded(fn, "call").join(timeout)

    def build(self, **kw: Any) -> Any:
        kw = {
            "client_id": unique_id(f"sweep-{self.dialect}"),
            "server": self.broker.host,
            "port": self.broker.port,
            **kw,
        }
        return CLASSES[self.dialect](**kw)

    def start(self) -> None:
        self.received = []
        self.client = self.build(max_packet_size=VICTIM_LIMIT)
        c = self.client
        if self.dialect == "aio":
            self.call(c.connect)
            self.call(lambda: c.subscribe(self.topic, 1))

            async def read() -> None:
                async for m in c.messages():
                    if m.topic == self.topic:
                        self.received.append(m.payload)

            assert self.loop is not None
            self._reader = asyncio.run_coroutine_threadsafe(read(), self.loop.loop)
        else:
            c.set_callback(self._on_message)
            assert self.call(c.connect) == 0
            self.call(lambda: c.subscribe(self.topic, 1))

    def _on_message(self, topic: bytes, msg: bytes) -> None:
        if topic == self.topic.encode():
            self.received.append(msg)

    def healthy(self) -> bool:
        return self.client is not None and self.client._core.mqttsta() == 0

    def pump(self, wanted: list[bytes], timeout: float = 5.0) -> bool:
        """Deliver what arrived until every payload in `wanted` was received."""

        def arrived() -> bool:
            if self.dialect != "aio":
                while self.client._core.pending_messages():
                    self.call(self.client.check_msg)
            return all(w in self.received for w in wanted)

        return wait_until(arrived, timeout)

    def stop(self) -> None:
        c, self.client = self.client, None
        if c is None:
            return
        with contextlib.suppress(Exception):
            if self.dialect == "aio":
                self.call(c.disconnect)  # messages() ends after disconnect(): so does the reader
                if self._reader is not None:
                    with contextlib.suppress(Exception):
                        self._reader.result(5)
            else:
                self.call(c.disconnect)


@pytest.fixture(scope="module")
def sweep_peer(broker: Mosquitto) -> Iterator[Peer]:
    p = Peer(broker)
    yield p
    p.close()


@pytest.fixture(scope="module")
def victims(broker: Mosquitto, sweep_peer: Peer) -> Iterator[dict[str, Victim]]:
    loop = LoopThread()
    made = {d: Victim(d, broker, loop if d == "aio" else None) for d in DIALECTS}
    for v in made.values():
        sweep_peer.subscribe(v.topic, qos=1)
    yield made
    for v in made.values():
        v.stop()
    loop.stop()


@pytest.fixture
def victim(request: pytest.FixtureRequest, victims: dict[str, Victim]) -> Iterator[Victim]:
    """The dialect's long-lived client, (re)connected if an earlier failure broke it."""
    v = victims[request.param]
    if not v.healthy():
        v.stop()
        v.start()
    yield v
    if v.client is not None:
        # a will accepted by mistake must not outlive the case
        with contextlib.suppress(Exception):
            v.client._core.set_will(None, b"")


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Ctx:
    victim: Victim

    @property
    def client(self) -> Any:
        return self.victim.client

    def new(self, **kw: Any) -> Any:
        return self.victim.build(**kw)


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Ctx], Any]
    raises: type[BaseException] | tuple[type[BaseException], ...]
    mention: str | None  # a word the message must contain (case-insensitive)
    dialects: frozenset[str] = frozenset(DIALECTS)


def ctor(
    case_id: str, raises: Any, mention: str | None, dialects: Any = DIALECTS, **kw: Any
) -> Case:
    return Case(f"new-{case_id}", lambda ctx: ctx.new(**kw), raises, mention, frozenset(dialects))


def tls(case_id: str, raises: Any, mention: str | None, params: Any, **kw: Any) -> Case:
    return ctor(f"ssl-{case_id}", raises, mention, ssl=True, ssl_params=params, **kw)


def method(
    case_id: str,
    name: str,
    args: tuple[Any, ...],
    raises: Any,
    mention: str | None,
    dialects: Any = DIALECTS,
    **kw: Any,
) -> Case:
    return Case(
        f"{name}-{case_id}",
        lambda ctx: getattr(ctx.client, name)(*args, **kw),
        raises,
        mention,
        frozenset(dialects),
    )


def unconnected(name: str, *args: Any, dialects: Any = DIALECTS) -> Case:
    """A network call on a client that was never connected raises MQTTException at once."""

    def call(ctx: Ctx) -> Any:
        c = ctx.new()
        if ctx.victim.dialect in WITH_CALLBACK:
            c.set_callback(lambda t, m: None)
        return getattr(c, name)(*args)

    return Case(f"never-connected-{name}", call, umqtt.MQTTException, None, frozenset(dialects))


BIG_TOPIC = "x" * 65536
BIG_TOPIC_MULTIBYTE = "é" * 32768  # 32768 characters, 65536 bytes: lengths are byte lengths
REFUSED_CHARS = {  # MQTT 3.1.1 §1.5.3: SHOULD NOT appear; mosquitto drops the connection
    "C0-control": "a\tb",
    "DEL": "a\x7fb",
    "C1-control": "a\x85b",
    "noncharacter-FFFF": "a\uffffb",
    "noncharacter-FDD0": "a\ufdd0b",
}
TIMEOUTS = ("connect_timeout", "ack_timeout", "reconnect_delay", "reconnect_max_delay")

CTOR_CASES: list[Case] = [
    # client_id
    ctor("client_id-int", TypeError, "client_id", client_id=123),
    ctor("client_id-None", TypeError, "client_id", client_id=None),
    ctor("client_id-float", TypeError, "client_id", client_id=1.5),
    ctor("client_id-bytearray", TypeError, "client_id", client_id=bytearray(b"x")),
    ctor("client_id-invalid-utf8", ValueError, "client_id", client_id=b"\xff\xfe"),
    ctor("client_id-surrogate", ValueError, None, client_id="\ud800"),
    ctor("client_id-NUL", ValueError, "client_id", client_id="a\x00b"),
    ctor("client_id-64KiB", ValueError, "client_id", client_id="x" * 65536),
    ctor("client_id-64KiB-multibyte", ValueError, "client_id", client_id=BIG_TOPIC_MULTIBYTE),
    # server
    ctor("server-None", TypeError, "server", server=None),
    ctor("server-int", TypeError, "server", server=123),
    ctor("server-empty", ValueError, "server", server=""),
    ctor("server-blank", ValueError, "server", server="   "),
    ctor("server-invalid-utf8", ValueError, "server", server=b"\xff"),
    # port
    ctor("port-float", TypeError, "port", port=1.5),
    ctor("port-list", TypeError, "port", port=[1883]),
    ctor("port-None", TypeError, "port", port=None),
    ctor("port-abc", ValueError, "port", port="abc"),
    ctor("port-empty-str", ValueError, "port", port=""),
    ctor("port-hex-str", ValueError, "port", port="0x75b"),
    ctor("port-float-str", ValueError, "port", port="1883.0"),
    ctor("port-negative", ValueError, "port", port=-1),
    ctor("port-negative-str", ValueError, "port", port="-1"),
    ctor("port-65536", ValueError, "port", port=65536),
    ctor("port-str-65536", ValueError, "port", port="65536"),
    ctor("port-2**70", ValueError, "port", port=2**70),
    # user, password
    ctor("user-int", TypeError, "user", user=123),
    ctor("user-invalid-utf8", ValueError, "user", user=b"\xff"),
    ctor("user-NUL", ValueError, "user", user="a\x00b"),
    ctor("user-64KiB", ValueError, "user", user="u" * 65536),
    ctor("password-int", TypeError, "password", user="u", password=123),
    ctor("password-list", TypeError, "password", user="u", password=["p"]),
    ctor("password-64KiB", ValueError, "password", user="u", password="p" * 65536),
    # keepalive
    ctor("keepalive-str", TypeError, "keepalive", keepalive="60"),
    ctor("keepalive-float", TypeError, "keepalive", keepalive=1.5),
    ctor("keepalive-negative", ValueError, "keepalive", keepalive=-1),
    ctor("keepalive-65536", ValueError, "keepalive", keepalive=65536),
    ctor("keepalive-2**70", ValueError, "keepalive", keepalive=2**70),
    ctor("keepalive-3", ValueError, "keepalive", QUEC, keepalive=3),
    # QuecPython-only arguments
    ctor("version-6", ValueError, "version", DIALECTS, version=6),
    ctor("version-str", TypeError, "version", DIALECTS, version="4"),
    ctor("pingmaxnum-negative", ValueError, "pingmaxnum", QUEC, pingmaxnum=-1),
    ctor("pingmaxnum-2**40", ValueError, "pingmaxnum", QUEC, pingmaxnum=2**40),
    ctor("pingmaxnum-str", TypeError, "pingmaxnum", QUEC, pingmaxnum="3"),
    # size and time options (keyword-only extensions)
    ctor("max_packet_size-tiny", ValueError, "max_packet_size", max_packet_size=100),
    ctor("max_packet_size-1GiB", ValueError, "max_packet_size", max_packet_size=2**30),
    ctor("max_packet_size-negative", ValueError, "max_packet_size", max_packet_size=-1),
    ctor("max_packet_size-2**70", ValueError, "max_packet_size", max_packet_size=2**70),
    ctor("max_packet_size-str", TypeError, "max_packet_size", max_packet_size="1024"),
    ctor("max_packet_size-float", TypeError, "max_packet_size", max_packet_size=4096.0),
    *(ctor(f"{name}-zero", ValueError, name, **{name: 0}) for name in TIMEOUTS),
    *(ctor(f"{name}-negative", ValueError, name, **{name: -1}) for name in TIMEOUTS),
    *(ctor(f"{name}-nan", ValueError, name, **{name: float("nan")}) for name in TIMEOUTS),
    *(ctor(f"{name}-inf", ValueError, name, **{name: float("inf")}) for name in TIMEOUTS),
    *(ctor(f"{name}-str", TypeError, name, **{name: "5"}) for name in TIMEOUTS),
    ctor("unknown-keyword", TypeError, "bogus", bogus=1),
    # ssl / ssl_params
    tls("params-None", TypeError, "ssl_params", None),
    tls("params-list", TypeError, "ssl_params", []),
    tls("params-str", TypeError, "ssl_params", "cert_reqs=0"),
    tls("params-int-key", TypeError, "ssl_params", {1: 2}),
    tls("params-unknown-key", ValueError, "bogus", {"bogus": 1}),
    tls("cert-int", TypeError, "cert", {"cert": 123}),
    tls("cert-junk", ValueError, "cert", {"cert": "junk"}),
    tls("cert-truncated", ValueError, "cert", {"cert": PEM.cert[: len(PEM.cert) // 2]}),
    tls("cert-without-key", ValueError, "key", {"cert": PEM.cert}),
    tls("key-int", TypeError, "key", {"cert": PEM.cert, "key": 123}),
    tls("key-junk", ValueError, "key", {"cert": PEM.cert, "key": "junk"}),
    tls("key-truncated", ValueError, "key", {"cert": PEM.cert, "key": PEM.key[:200]}),
    tls("key-is-a-cert", ValueError, "key", {"cert": PEM.cert, "key": PEM.cert}),
    tls("key-mismatch", ValueError, "key", {"cert": PEM.cert, "key": PEM.other_key}),
    tls("cadata-int", TypeError, "cadata", {"cadata": 123}),
    tls("cadata-junk-pem", ValueError, "cadata", {"cadata": "junk"}),
    tls("cadata-junk-der", ValueError, "CA", {"cadata": b"junk"}),
    tls("cadata-key", ValueError, "cadata", {"cadata": PEM.key.decode()}),
    tls("certfile-int", TypeError, "certfile", {"certfile": 123}),
    tls("certfile-missing", ValueError, "certfile", {"certfile": "/nonexistent/c.pem"}),
    tls("keyfile-missing", ValueError, "keyfile", {"keyfile": "/nonexistent/k.pem"}),
    tls("ca_certs-missing", ValueError, "ca_certs", {"ca_certs": "/nonexistent/ca.pem"}),
    tls("ca_certs-directory", ValueError, "ca_certs", {"ca_certs": "/etc"}),
    tls("ca_certs-not-pem", ValueError, "ca_certs", {"ca_certs": "/etc/hostname"}),
    tls("server_hostname-int", TypeError, "server_hostname", {"server_hostname": 1}),
    tls("server_hostname-space", ValueError, "server_hostname", {"server_hostname": "a b"}),
    tls("server_hostname-empty", ValueError, "server_hostname", {"server_hostname": ""}),
    tls("server_side-true", ValueError, "server_side", {"server_side": True}),
    tls("do_handshake-false", ValueError, "do_handshake", {"do_handshake": False}),
    tls("cert_reqs-str", TypeError, "cert_reqs", {"cert_reqs": "none"}),
    tls("cert_reqs-float", TypeError, "cert_reqs", {"cert_reqs": 0.0}),
    tls("cert_reqs-2**70", ValueError, "cert_reqs", {"cert_reqs": 2**70}),
]

PUBLISH_CASES: list[Case] = [
    method("topic-int", "publish", (123, b"x"), TypeError, "topic"),
    method("topic-None", "publish", (None, b"x"), TypeError, "topic"),
    method("topic-bytearray", "publish", (bytearray(b"a"), b"x"), TypeError, "topic"),
    method("topic-plus", "publish", ("a/+", b"x"), ValueError, "wildcard"),
    method("topic-hash", "publish", ("a/#", b"x"), ValueError, "wildcard"),
    method("topic-only-hash", "publish", ("#", b"x"), ValueError, "wildcard"),
    method("topic-bytes-plus", "publish", (b"a/+/b", b"x"), ValueError, "wildcard"),
    method("topic-empty", "publish", ("", b"x"), ValueError, "topic"),
    method("topic-NUL", "publish", ("a\x00b", b"x"), ValueError, "NUL"),
    method("topic-NUL-bytes", "publish", (b"a\x00b", b"x"), ValueError, "NUL"),
    method("topic-invalid-utf8", "publish", (b"a/\xff\xfe", b"x"), ValueError, "UTF-8"),
    method("topic-overlong-utf8", "publish", (b"a/\xc0\xaf", b"x"), ValueError, "UTF-8"),
    method("topic-surrogate", "publish", ("a/\ud800", b"x"), ValueError, None),
    method("topic-64KiB", "publish", (BIG_TOPIC, b"x"), ValueError, "65535"),
    method("topic-64KiB-multibyte", "publish", (BIG_TOPIC_MULTIBYTE, b"x"), ValueError, "65535"),
    *(
        method(f"topic-{k}", "publish", (v, b"x"), ValueError, "topic")
        for k, v in REFUSED_CHARS.items()
    ),
    method("msg-None", "publish", (T, None), TypeError, "msg"),
    method("msg-int", "publish", (T, 123), TypeError, "msg"),
    method("msg-bool", "publish", (T, True), TypeError, "msg"),
    method("msg-float", "publish", (T, 1.5), TypeError, "msg"),
    method("msg-dict", "publish", (T, {"a": 1}), TypeError, "msg"),
    method("msg-object", "publish", (T, object()), TypeError, "msg"),
    method("msg-empty-list", "publish", (T, []), TypeError, "msg"),
    method("msg-list-of-ints", "publish", (T, [104, 105]), TypeError, "msg"),
    method("msg-empty-dict", "publish", (T, {}), TypeError, "msg"),
    method("msg-range", "publish", (T, range(3)), TypeError, "msg"),
    method("msg-surrogate", "publish", (T, "\udcff"), ValueError, None),
    Case(  # over MQTT's limit, not max_packet_size's (that one limits only what comes in)
        "publish-msg-over-limit",
        lambda ctx: ctx.client.publish(T, bytes(268_435_455)),
        ValueError,
        "256 MiB",
    ),
    method("qos-3", "publish", (T, b"x"), ValueError, "qos", qos=3),
    method("qos-negative", "publish", (T, b"x"), ValueError, "qos", qos=-1),
    method("qos-2**70", "publish", (T, b"x"), ValueError, "qos", qos=2**70),
    method("qos-str", "publish", (T, b"x"), TypeError, "qos", qos="1"),
    method("qos-float", "publish", (T, b"x"), TypeError, "qos", qos=1.0),
]

SUBSCRIBE_CASES: list[Case] = [
    method("topic-int", "subscribe", (123,), TypeError, "topic"),
    method("topic-None", "subscribe", (None,), TypeError, "topic"),
    method("topic-empty", "subscribe", ("",), ValueError, "topic"),
    method("hash-not-last", "subscribe", ("a/#/b",), ValueError, "topic"),
    method("hash-in-level", "subscribe", ("a/b#",), ValueError, "topic"),
    method("plus-in-level", "subscribe", ("a+/b",), ValueError, "topic"),
    method("topic-NUL", "subscribe", ("a\x00b",), ValueError, "NUL"),
    method("topic-invalid-utf8", "subscribe", (b"\xff",), ValueError, "UTF-8"),
    method("topic-64KiB", "subscribe", (BIG_TOPIC,), ValueError, "65535"),
    *(
        method(f"topic-{k}", "subscribe", (v,), ValueError, "topic")
        for k, v in REFUSED_CHARS.items()
    ),
    method("qos-3", "subscribe", (T, 3), ValueError, "qos"),
    method("qos-negative", "subscribe", (T, -1), ValueError, "qos"),
    method("qos-str", "subscribe", (T, "0"), TypeError, "qos"),
    method("topic-int", "unsubscribe", (123,), TypeError, "topic"),
    method("topic-empty", "unsubscribe", ("",), ValueError, "topic"),
    method("hash-not-last", "unsubscribe", ("a/#/b",), ValueError, "topic"),
    method("topic-NUL", "unsubscribe", ("a\x00b",), ValueError, "NUL"),
    method("topic-64KiB", "unsubscribe", (BIG_TOPIC,), ValueError, "65535"),
]

WILL_CASES: list[Case] = [
    method("topic-wildcard", "set_last_will", ("a/#", b"x"), ValueError, "wildcard"),
    method("topic-plus", "set_last_will", ("a/+/b", b"x"), ValueError, "wildcard"),
    method("topic-empty", "set_last_will", ("", b"x"), ValueError, "topic"),
    method("topic-NUL", "set_last_will", ("a\x00b", b"x"), ValueError, "NUL"),
    method("topic-invalid-utf8", "set_last_will", (b"\xff", b"x"), ValueError, "UTF-8"),
    method("topic-64KiB", "set_last_will", (BIG_TOPIC, b"x"), ValueError, "65535"),
    method("topic-C0-control", "set_last_will", ("a\x01b", b"x"), ValueError, "topic"),
    method("topic-int", "set_last_will", (123, b"x"), TypeError, "topic"),
    method("msg-int", "set_last_will", (T, 123), TypeError, "msg"),
    method("msg-None", "set_last_will", (T, None), TypeError, "msg"),
    method("msg-dict", "set_last_will", (T, {}), TypeError, "msg"),
    method("msg-64KiB", "set_last_will", (T, b"x" * 65536), ValueError, "65535"),
    method("msg-over-limit", "set_last_will", (T, b"x" * VICTIM_LIMIT), ValueError, None),
    method("qos-3", "set_last_will", (T, b"x", False, 3), ValueError, "qos"),
    method("qos-negative", "set_last_will", (T, b"x", False, -1), ValueError, "qos"),
    method("qos-str", "set_last_will", (T, b"x", False, "1"), TypeError, "qos"),
]

OTHER_CASES: list[Case] = [
    method("int", "set_callback", (42,), TypeError, "callable", WITH_CALLBACK),
    method("str", "set_callback", ("f",), TypeError, "callable", WITH_CALLBACK),
    method("None", "set_callback", (None,), TypeError, "callable", WITH_CALLBACK),
    method("int", "error_register_cb", (42,), TypeError, "callable", {"umqtt"}),
    method("None", "error_register_cb", (None,), TypeError, "callable", {"umqtt"}),
    method("timeout-str", "connect", (), TypeError, "timeout", {"simple", "robust"}, timeout="5"),
    method(
        "timeout-negative", "connect", (), ValueError, "timeout", {"simple", "robust"}, timeout=-1
    ),
    method(
        "timeout-nan",
        "connect",
        (),
        ValueError,
        "timeout",
        {"simple", "robust"},
        timeout=float("nan"),
    ),
    Case(
        "connect-empty-client_id-persistent",
        lambda ctx: ctx.new(client_id="").connect(clean_session=False),
        ValueError,
        "client_id",
    ),
    unconnected("publish", T, b"x"),
    unconnected("subscribe", T),
    unconnected("unsubscribe", T),
    unconnected("wait_msg", dialects={"umqtt", "simple"}),
    unconnected("check_msg", dialects={"simple", "umqtt"}),
    unconnected("ping", dialects={"umqtt", "simple", "aio"}),
]

ALL_CASES = CTOR_CASES + PUBLISH_CASES + SUBSCRIBE_CASES + WILL_CASES + OTHER_CASES
PARAMS = [
    pytest.param(dialect, case, id=f"{dialect}-{case.id}")
    for case in ALL_CASES
    for dialect in DIALECTS
    if dialect in case.dialects
]


def test_case_ids_are_unique() -> None:
    ids = [p.id for p in PARAMS]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize(("victim", "case"), PARAMS, indirect=["victim"])
def test_bad_argument(victim: Victim, sweep_peer: Peer, case: Case, capfd) -> None:
    """The bad call raises the documented Exception naming the argument; the dialect's client
    keeps working and loses neither the message that arrived before the call nor its own next
    QoS 1 publish."""
    marker = uuid.uuid4().hex[:12]
    before, after = f"before-{marker}".encode(), f"after-{marker}".encode()
    sweep_peer.publish(victim.topic, before, qos=1)

    try:
        victim.call(lambda: case.call(Ctx(victim)))
    except pytest.fail.Exception:
        raise
    except BaseException as exc:
        assert isinstance(exc, Exception), (
            f"not an Exception: {type(exc).__module__}.{type(exc).__name__}: {exc}"
        )
        assert isinstance(exc, case.raises), f"expected {case.raises}, got {exc!r}"
        # PyO3 names a failed argument conversion in a note ("while processing 'x'").
        text = " ".join([str(exc), *getattr(exc, "__notes__", ())])
        assert str(exc).strip(), f"{exc!r} has no message"
        if case.mention is not None:
            assert case.mention.lower() in text.lower(), (
                f"the message does not name {case.mention!r}: {type(exc).__name__}: {text[:300]}"
            )
    else:
        pytest.fail(f"no exception; expected {case.raises}")
    finally:
        _, err = capfd.readouterr()
        assert "panicked" not in err, err[-2000:]

    c = victim.client
    result = victim.call(lambda: c.publish(victim.topic, after, False, 1))
    assert result in (True, None), f"publish after the bad call returned {result!r}"
    assert victim.pump([before, after]), (
        f"lost: {[m for m in (before, after) if m not in victim.received]} (state {c._core.state})"
    )
    assert wait_until(lambda: any(m.payload == after for m in sweep_peer.received(victim.topic))), (
        "the peer did not receive the publish made after the bad call"
    )


# ------------------------------------------------------------------- the core's own timeouts


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 1e300, 1e20, 2.0**64, -1.0])
@pytest.mark.parametrize("call", ["next_notice", "deliver", "connect", "publish", "subscribe"])
def test_core_timeouts_never_panic(call: str, seconds: float) -> None:
    """umqtt._native.Client (what every dialect wraps, found by the fuzzer): any float as a
    timeout is either used or rejected with ValueError, never a PanicException."""
    from umqtt import _native

    core = _native.Client(unique_id("core"), "127.0.0.1", 1, connect_timeout=0.5)
    calls: dict[str, Callable[[], Any]] = {
        "next_notice": lambda: core.next_notice(seconds),
        "deliver": lambda: core.deliver(lambda t, m: None, seconds),
        "connect": lambda: core.connect(True, seconds),
        "publish": lambda: core.publish(T, b"x", 1, False, seconds),
        "subscribe": lambda: core.subscribe(T, 1, seconds),
    }
    try:
        calls[call]()
    except BaseException as exc:
        assert isinstance(exc, Exception), (
            f"{call}(timeout={seconds}): {type(exc).__module__}.{type(exc).__name__}: {exc}"
        )
