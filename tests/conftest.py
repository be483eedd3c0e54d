"""Fixtures: private mosquitto brokers, a scripted fake broker, a paho-mqtt peer, umqtt clients
(the plugin's factory) and message recorders."""

from __future__ import annotations

import functools
import logging
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as paho
import pytest
import umqtt.aio
from broker import (
    ALICE,
    BOB,
    FORBIDDEN,
    Mosquitto,
    as_bytes,
    tracked,
    unique_id,
    wait_until,
)
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from umqtt.pytest_plugin import ClientFactory
from wire import ScriptedBroker


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a shell without job control (`./scripts/test.sh &`
    in a script, nohup in a subshell) inherits SIGINT ignored, and so would every Python child it
    starts, where a Ctrl-C then raises nothing: the tests that send SIGINT to a child would fail
    for the shell's reason. Python's own handler here means SIG_DFL in the children (exec resets
    a caught signal), so they install theirs, as a Python started from a terminal does."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --------------------------------------------------------------------------- brokers
# The plugin umqtt.pytest_plugin (shipped in the wheel, loaded through its pytest11 entry point)
# provides mqtt_broker, mqtt_broker_factory and mqtt_client, and adds the tail of every broker log
# a failed test used to its report. The fixtures below are this suite's names for them.


@pytest.fixture(scope="session")
def broker(mqtt_broker: Mosquitto) -> Mosquitto:
    """An anonymous broker shared by the whole session (persistence off): the plugin's."""
    return mqtt_broker


@pytest.fixture(scope="session")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Password-only broker (ALICE, BOB); dynsec refuses SUBSCRIBE to forbidden/# (SUBACK 0x80)."""
    b = Mosquitto(
        tmp_path_factory.mktemp("auth-broker"),
        users=dict([ALICE, BOB]),
        acl="user alice\ntopic readwrite #\n",
        deny_subscribe=[FORBIDDEN],
    )
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def fresh_broker(mqtt_broker_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A broker of this test's own, free to be killed, paused and restarted."""
    return mqtt_broker_factory()


@pytest.fixture
def scripted_broker() -> Iterator[Callable[..., ScriptedBroker]]:
    """scripted_broker(script=None, handshake=CONNACK_ACCEPTED): a fake broker for one
    connection, for what mosquitto will not do (tests/wire.py); closed at teardown."""
    yield from tracked(ScriptedBroker, ScriptedBroker.close)


# --------------------------------------------------------------------------- names


@pytest.fixture(params=[4, 5], ids=["v4", "v5"])
def mqtt_version(request: pytest.FixtureRequest) -> int:
    """The protocol version a test runs at, each in turn: 4 (MQTT 3.1.1) and 5 (MQTT 5). A test
    (or a fixture it uses) that takes it runs twice; ``parametrize("mqtt_version", [4])`` picks."""
    return int(request.param)


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic nobody else uses: umqtt-test/<test name>/<random>."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"umqtt-test/{name}/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client_id() -> str:
    return unique_id()


# --------------------------------------------------------------------------- paho peer


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    #: MQTT 5 peers: the message's properties, with umqtt's names (see `umqtt_properties`).
    properties: dict[str, Any] = field(default_factory=dict)


# paho's names of MQTT 5 properties -> umqtt's.
_PROPERTY_NAMES = {
    "PayloadFormatIndicator": "payload_format_indicator",
    "MessageExpiryInterval": "message_expiry_interval",
    "TopicAlias": "topic_alias",
    "ResponseTopic": "response_topic",
    "CorrelationData": "correlation_data",
    "UserProperty": "user_properties",
    "SubscriptionIdentifier": "subscription_identifiers",
    "ContentType": "content_type",
}


def umqtt_properties(properties: Any) -> dict[str, Any]:
    """A paho message's MQTT 5 properties as a dict with umqtt's keys (what umqtt gives)."""
    if properties is None:
        return {}
    return {
        umqtt_name: getattr(properties, paho_name)
        for paho_name, umqtt_name in _PROPERTY_NAMES.items()
        if hasattr(properties, paho_name)
    }


def paho_properties(packet_type: int, **given: Any) -> Any:
    """paho Properties of a packet type from umqtt's keys (publish_properties(...))."""
    properties = Properties(packet_type)
    names = {umqtt: paho_name for paho_name, umqtt in _PROPERTY_NAMES.items()}
    names["subscription_identifier"] = "SubscriptionIdentifier"
    for key, value in given.items():
        setattr(properties, names[key], value)
    return properties


class Peer:
    """An independent MQTT 3.1.1 client (paho-mqtt) to watch and drive the broker; an MQTT 5
    one with ``mqtt5=True`` (its messages then carry their properties)."""

    def __init__(
        self,
        broker: Mosquitto,
        username: str | None = None,
        password: str | None = None,
        *,
        clean_session: bool = True,
        mqtt5: bool = False,
    ) -> None:
        self.messages: list[Received] = []
        self._subacks: dict[int, list[int]] = {}
        self._connected = threading.Event()
        if mqtt5:
            self.client = paho.Client(
                paho.CallbackAPIVersion.VERSION2,
                client_id=unique_id("peer"),
                protocol=paho.MQTTv5,
            )
        else:
            self.client = paho.Client(
                paho.CallbackAPIVersion.VERSION2,
                client_id=unique_id("peer"),
                clean_session=clean_session,
                protocol=paho.MQTTv311,
            )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, flags, rc, props: self._connected.set()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        if mqtt5:
            self.client.connect(broker.host, broker.port, keepalive=60, clean_start=clean_session)
        else:
            self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.loop_start()
        if not self._connected.wait(5):
            self.close()
            raise RuntimeError(f"peer could not connect to {broker}")

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        properties = umqtt_properties(getattr(msg, "properties", None))
        received = Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), properties)
        self.messages.append(received)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._subacks[mid] = [int(getattr(c, "value", c)) for c in codes]

    def subscribe(
        self,
        topic: str,
        qos: int = 2,
        timeout: float = 5.0,
        *,
        options: SubscribeOptions | None = None,
        properties: Any = None,
    ) -> int:
        """Subscribe and wait for the SUBACK; return the granted code. ``options`` and
        ``properties`` (paho's) for an MQTT 5 peer."""
        if options is not None:
            _, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            _, mid = self.client.subscribe(topic, qos, properties=properties)
        assert wait_until(lambda: mid in self._subacks, timeout), f"no SUBACK for {topic}"
        return self._subacks[mid][0]

    def publish(
        self,
        topic: str,
        payload: str | bytes = b"",
        qos: int = 1,
        retain: bool = False,
        properties: Any = None,
    ) -> None:
        """Publish and wait until the broker has it (PUBACK/PUBCOMP, or written for QoS 0)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(5)
        assert info.is_published(), f"peer could not publish to {topic}"

    def received(self, topic: str | None = None) -> list[Received]:
        return [m for m in list(self.messages) if topic is None or m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """Wait until `count` messages arrived on `topic`; return all that did (maybe fewer)."""
        wait_until(lambda: len(self.received(topic)) >= count, timeout)
        return self.received(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def make_peer() -> Iterator[Callable[..., Peer]]:
    """Factory for paho peers: make_peer(broker, username=None, password=None), or
    make_peer(broker, kind=SomePeerSubclass, **its_arguments)."""

    def make(broker: Mosquitto, kind: type[Peer] = Peer, **kw: Any) -> Peer:
        return kind(broker, **kw)

    yield from tracked(make, Peer.close)


@pytest.fixture
def peer(broker: Mosquitto, make_peer: Callable[..., Peer]) -> Peer:
    """A paho peer connected to the shared anonymous broker."""
    return make_peer(broker)


# --------------------------------------------------------------------------- umqtt side


@dataclass(frozen=True)
class Delivery:
    topic: Any
    msg: Any
    thread: int


class Inbox:
    """Records what a umqtt client's set_callback() callback receives."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []

    def callback(self, topic: Any, msg: Any) -> None:
        self.items.append(Delivery(topic, msg, threading.get_ident()))

    def payloads(self, topic: str | bytes | None = None) -> list[Any]:
        want = None if topic is None else as_bytes(topic)
        return [d.msg for d in list(self.items) if want is None or d.topic == want]

    def pairs(self) -> list[tuple[Any, Any]]:
        """(topic, msg) of every delivery, in order."""
        return [(d.topic, d.msg) for d in list(self.items)]

    def pump(
        self,
        client: Any,
        count: int = 1,
        topic: str | bytes | None = None,
        timeout: float = 5.0,
    ) -> list[Any]:
        """Call client.check_msg() until `count` payloads (on `topic`) arrived or `timeout`."""

        def arrived() -> bool:
            client.check_msg()
            return len(self.payloads(topic)) >= count

        wait_until(arrived, timeout)
        return self.payloads(topic)


class ErrorLog:
    """Records what a umqtt client's error_register_cb() callback receives."""

    def __init__(self) -> None:
        self.texts: list[Any] = []

    def callback(self, text: Any) -> None:
        self.texts.append(text)

    def wait_for(self, text: str, timeout: float = 10.0) -> bool:
        return wait_until(lambda: text in self.texts, timeout)


class UmqttLog:
    """What umqtt logged (logger "umqtt" and its children), captured through caplog."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def records(self, level: int = logging.DEBUG) -> list[logging.LogRecord]:
        return [
            r
            for r in self.caplog.records
            if (r.name == "umqtt" or r.name.startswith("umqtt.")) and r.levelno >= level
        ]

    def text(self) -> str:
        return "\n".join(self.caplog.handler.format(r) for r in self.records())

    def clear(self) -> None:
        self.caplog.clear()


@pytest.fixture
def umqtt_log(caplog: pytest.LogCaptureFixture) -> UmqttLog:
    """Captures everything umqtt logs, down to DEBUG."""
    caplog.set_level(logging.DEBUG, logger="umqtt")
    return UmqttLog(caplog)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def make_client(mqtt_client: ClientFactory) -> Callable[..., Any]:
    """The plugin's client factory, mqtt_client, with the client returned unconnected: these
    tests connect themselves, to check what connect() returns (and to set callbacks first).

    make_client(broker=None, dialect=None, client_class=None, tls=False, **constructor_kw);
    every client it made is disconnected at teardown.
    """
    return functools.partial(mqtt_client, connect=False)


@pytest.fixture
def make_aio(make_client: Callable[..., Any]) -> Callable[..., umqtt.aio.MQTTClient]:
    """make_client(dialect="aio", ...): an unconnected umqtt.aio.MQTTClient; every client made
    is disconnected (awaited) at teardown."""
    return functools.partial(make_client, dialect="aio")


@pytest.fixture
def client(
    request: pytest.FixtureRequest, make_client: Callable[..., Any], inbox: Inbox, client_id: str
) -> Any:
    """A umqtt client (id `client_id`) connected to the shared broker, recording into `inbox`.
    MQTT 3.1.1, or the version a test gives: ``parametrize("client", [4, 5], indirect=True)``."""
    version = {"version": request.param} if hasattr(request, "param") else {}
    c = make_client(client_id=client_id, **version)
    c.set_callback(inbox.callback)
    assert c.connect() == 0
    return c
