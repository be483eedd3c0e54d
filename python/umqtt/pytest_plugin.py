"""pytest fixtures for code that talks MQTT: private mosquitto brokers and umqtt clients.

pytest loads this plugin by itself once umqtt is installed (entry point ``pytest11``; turn it off
with ``-p no:umqtt``). Nothing happens until a test asks for one of its fixtures::

    def test_publish(mqtt_client):
        client = mqtt_client()  # connected to mqtt_broker: a mosquitto on a free port
        assert client.publish("sensors/1", b"21.5", qos=1)  # True once the broker has it

Fixtures:

``mqtt_broker`` (session)
    An anonymous mosquitto on 127.0.0.1 and a free port, shared by the session: a
    ``umqtt.testing.Mosquitto`` with ``host``, ``port``, ``username`` and ``password`` (None),
    ``ca_path`` (None), and its log (``log_text()``, ``wait_for_log(...)``).
``mqtt_broker_factory`` (function)
    ``mqtt_broker_factory(users={"alice": "pw"}, tls=True, ...)`` starts another broker with the
    options of ``umqtt.testing.Mosquitto`` (password auth, ACL, TLS with generated certificates:
    ``tls_port``, ``ca_path``, ``client_cert_path``, ``client_key_path``); each is stopped when
    the test ends.
``mqtt_capture`` (function)
    Records every message published on ``mqtt_broker`` from before the test starts (a client
    subscribed to ``#`` at QoS 2): ``.messages`` (``topic`` str, ``payload`` bytes, ``qos`` and
    ``retain`` as the broker delivered them), ``.wait_for(topic=None, count=1, timeout=5)``
    (returns the matching messages once ``count`` arrived, ``topic`` an MQTT filter, or fails
    the test saying what it saw) and ``.clear()``::

        def test_reports_temperature(mqtt_broker, mqtt_capture):
            run_my_device(mqtt_broker.host, mqtt_broker.port)
            [reading] = mqtt_capture.wait_for("sensors/+/temperature")
            assert reading.payload == b"21.5" and reading.qos == 1

``mqtt_client`` (function)
    ``mqtt_client(**kwargs)`` returns a connected ``umqtt.MQTTClient`` (or the ``umqtt.simple`` /
    ``umqtt.robust`` client with ``dialect="simple"`` / ``"robust"``, or a class of your own
    with ``client_class=``) to ``mqtt_broker``, or to ``broker=``; ``dialect="aio"`` returns a
    ``umqtt.aio.MQTTClient`` for the test to connect with ``await``. Every client it made is
    disconnected when the test ends.

When mosquitto is not installed, tests that use these fixtures are skipped, and the skip reason
says how to install it. When a test fails, the tail of the log of every broker it used is added
to the report.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import pytest

if TYPE_CHECKING:  # the plugin imports umqtt's modules only inside fixtures
    from .testing import Mosquitto

__all__ = [
    "BrokerFactory",
    "CapturedMessage",
    "ClientFactory",
    "MessageCapture",
    "mqtt_broker",
    "mqtt_broker_factory",
    "mqtt_capture",
    "mqtt_client",
]

LOG_TAIL_LINES = 60
_DISCONNECT_TIMEOUT = 10.0
_CAPTURE_START_TIMEOUT = 10.0
_SHOWN_WHEN_FAILING = 20  # messages listed when wait_for() fails
# dialect -> the module whose MQTTClient it is (imported only when a test asks for it). A
# subclass of umqtt.robust's client is one of umqtt.simple's too: the first match names it.
_DIALECTS = {
    "aio": "umqtt.aio",
    "robust": "umqtt.robust",
    "simple": "umqtt.simple",
    "quecpython": "umqtt",
}
# The brokers a test used through the factories, by name, for the failure report.
_BROKERS_OF_TEST = pytest.StashKey["list[tuple[str, Mosquitto]]"]()


def _note_broker(request: pytest.FixtureRequest, name: str, broker: Mosquitto) -> None:
    used = request.node.stash.setdefault(_BROKERS_OF_TEST, [])
    if all(b is not broker for _, b in used):
        used.append((name, broker))


class BrokerFactory(Protocol):
    """The type of ``mqtt_broker_factory``: takes the options of umqtt.testing.Mosquitto."""

    def __call__(self, **options: Any) -> Mosquitto: ...


class ClientFactory(Protocol):
    """The type of ``mqtt_client``."""

    def __call__(
        self,
        *,
        broker: Mosquitto | None = None,
        dialect: str | None = None,
        client_class: type[Any] | None = None,
        tls: bool = False,
        callback: Callable[[bytes, bytes], Any] | None = None,
        connect: bool | None = None,
        clean_session: bool = True,
        **kwargs: Any,
    ) -> Any: ...


def _client_class(dialect: str | None, client_class: type[Any] | None) -> tuple[str, type[Any]]:
    """The dialect and the class of the client to make, from what the test gave."""
    if client_class is None:
        name = "quecpython" if dialect is None else dialect
        if name not in _DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(_DIALECTS)}; not {name!r}")
        return name, importlib.import_module(_DIALECTS[name]).MQTTClient
    for name, module in _DIALECTS.items():
        if isinstance(client_class, type) and issubclass(
            client_class, importlib.import_module(module).MQTTClient
        ):
            if dialect not in (None, name):
                raise ValueError(f"client_class {client_class!r} is not of dialect {dialect!r}")
            return name, client_class
    raise TypeError(
        f"client_class must be a subclass of one of the dialects' MQTTClient; not {client_class!r}"
    )


def _start_broker(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Mosquitto:
    from .testing import Mosquitto, MosquittoNotFound

    try:
        return Mosquitto(tmp_path_factory.mktemp("mqtt-broker"), **options)
    except MosquittoNotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """An anonymous mosquitto on 127.0.0.1 and a free port, shared by the whole session."""
    broker = _start_broker(tmp_path_factory)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_broker_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerFactory]:
    """``mqtt_broker_factory(**options)``: a new mosquitto with the options of
    umqtt.testing.Mosquitto (users, acl, deny_subscribe, extra_config, tls,
    require_certificate, ...); stopped when the test ends."""
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        broker = _start_broker(tmp_path_factory, **options)
        brokers.append(broker)
        _note_broker(request, f"mqtt_broker_factory #{len(brokers)}", broker)
        return broker

    try:
        yield make
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def mqtt_client(
    request: pytest.FixtureRequest, mqtt_broker_factory: BrokerFactory
) -> Iterator[ClientFactory]:
    """``mqtt_client(**kwargs)``: a connected umqtt client, disconnected when the test ends.

    broker: the broker to use (default: ``mqtt_broker``).
    dialect: "quecpython" (``umqtt.MQTTClient``, the default), "simple" (``umqtt.simple``),
        "robust" (``umqtt.robust``) or "aio" (``umqtt.aio``).
    client_class: the class to make instead, a subclass of a dialect's MQTTClient (your own
        ``umqtt.robust`` client, say); its dialect is the one it derives from.
    tls: connect to the broker's TLS listener, trusting its CA (and presenting the client
        certificate when the listener requires one).
    callback: passed to ``set_callback`` before connecting (not for "aio": read
        ``client.messages()``).
    connect: False returns the client unconnected (it is still disconnected at the end). An
        "aio" client is always returned unconnected, for ``await client.connect()`` or
        ``async with client``; its ``disconnect()`` is awaited at the end.
    clean_session: passed to ``connect()``.
    Other keyword arguments go to the client's constructor; ``client_id`` defaults to a fresh
    one, ``server``/``port`` to the broker's, ``user``/``password`` to the broker's first user.
    """
    # mqtt_broker_factory is requested (it costs nothing unused) so that its brokers are stopped
    # after these clients are disconnected, whatever order a test names the two in.
    made: list[Any] = []

    def make(
        *,
        broker: Mosquitto | None = None,
        dialect: str | None = None,
        client_class: type[Any] | None = None,
        tls: bool = False,
        callback: Callable[[bytes, bytes], Any] | None = None,
        connect: bool | None = None,
        clean_session: bool = True,
        **kwargs: Any,
    ) -> Any:
        from .testing import unique_id

        dialect, cls = _client_class(dialect, client_class)
        if dialect == "aio" and connect:
            raise ValueError(
                "an asyncio client is connected by the test: `await client.connect()` or "
                "`async with client`; leave connect out"
            )
        if dialect == "aio" and callback is not None:
            raise ValueError("an asyncio client has no callback: read client.messages()")
        if connect is None:
            connect = dialect != "aio"
        target: Mosquitto = broker if broker is not None else request.getfixturevalue("mqtt_broker")
        _note_broker(request, "mqtt_broker" if broker is None else "mqtt_client's broker", target)
        if tls:
            if target.tls_port is None:
                raise ValueError(f"{target!r} has no TLS listener: start it with tls=True")
            kwargs.setdefault("port", target.tls_port)
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_params", target.ssl_params())
        kwargs.setdefault("client_id", unique_id("mqtt-client"))
        kwargs.setdefault("server", target.host)
        kwargs.setdefault("port", target.port)
        kwargs.setdefault("user", target.username)
        kwargs.setdefault("password", target.password)
        client = cls(**kwargs)
        made.append(client)
        if callback is not None:
            client.set_callback(callback)
        if connect:
            client.connect(clean_session)
        return client

    try:
        yield make
    finally:
        from .testing import disconnect_all

        disconnect_all(made, _DISCONNECT_TIMEOUT)


@dataclass(frozen=True)
class CapturedMessage:
    """A message as the broker delivered it to ``mqtt_capture``: under MQTT 3.1.1, ``qos`` is
    the publisher's and ``retain`` is True only for a retained message sent on subscribing
    (one that was on the broker before the capture started)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class MessageCapture:
    """Every message published on a broker while it runs: an asyncio umqtt client subscribed to
    ``#`` at QoS 2, on a thread of its own. Started by the ``mqtt_capture`` fixture, which
    returns it subscribed (so nothing the test publishes is missed)."""

    def __init__(self, broker: Mosquitto) -> None:
        self._broker = broker
        self._messages: list[CapturedMessage] = []
        self._arrived = threading.Condition()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mqtt-capture", daemon=True)
        self._thread.start()
        if not self._ready.wait(_CAPTURE_START_TIMEOUT):
            raise RuntimeError(f"mqtt_capture: not subscribed to {broker!r} in time")
        if self._failure is not None:
            raise RuntimeError(f"mqtt_capture: cannot subscribe: {self._failure}")

    def _run(self) -> None:
        asyncio.run(self._capture())

    async def _capture(self) -> None:
        from .aio import MQTTClient
        from .testing import unique_id

        broker = self._broker
        client = MQTTClient(
            unique_id("mqtt-capture"),
            broker.host,
            broker.port,
            user=broker.username,
            password=broker.password,
        )
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await client.connect()
            await client.subscribe("#", 2)
        except Exception as e:
            self._failure = e
            self._ready.set()
            return
        self._ready.set()

        async def record() -> None:
            async for m in client.messages():
                captured = CapturedMessage(m.topic, m.payload, m.qos, m.retain)
                with self._arrived:
                    self._messages.append(captured)
                    self._arrived.notify_all()

        recording = asyncio.ensure_future(record())
        await self._stop.wait()
        recording.cancel()
        try:
            await client.disconnect()
        except Exception:
            pass  # the broker may be gone at teardown

    @property
    def messages(self) -> list[CapturedMessage]:
        """What arrived so far, in order of arrival (a copy)."""
        with self._arrived:
            return list(self._messages)

    def clear(self) -> None:
        """Forgets what arrived so far."""
        with self._arrived:
            self._messages.clear()

    def wait_for(
        self, topic: str | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[CapturedMessage]:
        """Waits until at least ``count`` messages on ``topic`` (an MQTT filter; None: any)
        arrived, and returns every such message; fails the test after ``timeout`` seconds,
        saying what did arrive."""

        from ._native import topic_matches

        def matching() -> list[CapturedMessage]:
            return [m for m in self._messages if topic is None or topic_matches(topic, m.topic)]

        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(self._missing(topic, count, timeout, len(found)), pytrace=False)
                self._arrived.wait(left)
            return found

    def _missing(self, topic: str | None, count: int, timeout: float, found: int) -> str:
        wanted = "messages" if topic is None else f"messages on {topic!r}"
        seen = [
            f"  {m.topic!r} {m.payload[:60]!r} qos={m.qos} retain={m.retain}"
            for m in self._messages[-_SHOWN_WHEN_FAILING:]
        ]
        more = len(self._messages) - len(seen)
        head = f"mqtt_capture: {found} of {count} {wanted} within {timeout:g} s; "
        if not seen:
            return head + "nothing was published"
        listed = "\n".join(([f"  ... {more} earlier"] if more else []) + seen)
        return head + f"{len(self._messages)} message(s) seen:\n{listed}"

    def close(self) -> None:
        """Stops recording and disconnects."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_DISCONNECT_TIMEOUT)


@pytest.fixture
def mqtt_capture(
    request: pytest.FixtureRequest, mqtt_broker: Mosquitto
) -> Iterator[MessageCapture]:
    """Records every message published on ``mqtt_broker`` during the test (``.messages``,
    ``.wait_for(topic=None, count=1, timeout=5)``, ``.clear()``)."""
    _note_broker(request, "mqtt_broker", mqtt_broker)
    capture = MessageCapture(mqtt_broker)
    try:
        yield capture
    finally:
        capture.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """On failure, add the tail of the log of every broker the test used to the report."""
    # An old-style wrapper: it works with every pluggy that pytest >= 7 runs on.
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    testing = sys.modules.get("umqtt.testing")
    if not report.failed or testing is None:  # no broker can exist before umqtt.testing loads
        return
    named: dict[int, tuple[str, Mosquitto]] = {}
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, testing.Mosquitto):
            named.setdefault(id(value), (name, value))
    used: list[tuple[str, Mosquitto]] = item.stash.get(_BROKERS_OF_TEST, [])
    for name, broker in used:
        named.setdefault(id(broker), (name, broker))
    for name, broker in named.values():
        tail = "\n".join(broker.log_text().splitlines()[-LOG_TAIL_LINES:])
        report.sections.append((f"mosquitto log ({name}, last {LOG_TAIL_LINES} lines)", tail))
