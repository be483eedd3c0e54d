"""umqtt: the QuecPython / MicroPython ``umqtt`` MQTT client API for CPython, on a Rust core.

``from umqtt import MQTTClient`` is the QuecPython dialect (the device's ``umqtt.py``).
Every socket, timer and packet lives in the native core (``umqtt._native``, rumqttc on tokio);
this module only chooses return values, exceptions and callback policy, as the device does.
"""

from __future__ import annotations

from . import _cwd_guard  # noqa: F401 - before anything else is imported

# isort: split
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Literal, TypedDict, Union, cast, overload

from . import _native
from ._native import (
    MQTTConnectError,
    MQTTConnectionLost,
    MQTTException,
    MQTTOutboxError,
    MQTTTimeout,
    set_busy_poll,
)
from ._sslcontext import SSLContext, tls_arguments
from .properties import (
    ConnackProperties,
    ConnectProperties,
    PublishProperties,
    ReceivedProperties,
    SubscribeProperties,
    WillProperties,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MQTTClient",
    "MQTTConnectError",
    "MQTTConnectionLost",
    "MQTTException",
    "MQTTOutboxError",
    "MQTTTimeout",
    "SSLContext",
    "Stats",
    "set_busy_poll",
]
__version__: str = _native.__version__

log = logging.getLogger("umqtt")
# A library never decides where logs go: the application configures logging (or sees nothing).
log.addHandler(logging.NullHandler())

Text = Union[str, bytes]
Payload = Union[str, bytes, bytearray, memoryview]
#: A password or its callable, called at every connect for the current value (expiring tokens).
Password = Union[Text, Callable[[], Text]]
#: Extra headers of the WebSocket upgrade request, or a callable called at every connect.
WsHeaders = Union[Mapping[str, str], Callable[[], Mapping[str, str]]]
MessageCallback = Callable[[bytes, bytes], Any]
#: ``set_callback(f, properties=True)``: ``f(topic, msg, properties)`` (MQTT 5's, ``{}`` else).
PropertiesCallback = Callable[[bytes, bytes, ReceivedProperties], Any]
ErrorCallback = Callable[[str], Any]


class Stats(TypedDict):
    """What ``client.stats()`` returns: the client's counters since it was made (docs/api.md)."""

    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    reconnects: int
    last_error: str | None
    inflight: int
    queued: int
    unread: int
    outbox_refused: int


class _CoreOptions(TypedDict, total=False):
    """The core's own keyword-only options, the same on every dialect. A dialect passes on only
    those given: their defaults are the native constructor's (docs/api.md lists them)."""

    connect_timeout: float
    ack_timeout: float
    max_packet_size: int
    reconnect_delay: float
    reconnect_max_delay: float
    transport: str
    ws_path: str
    ws_headers: WsHeaders
    proxy: str | None
    persistence: str | os.PathLike[str] | None
    persistence_max_messages: int
    persistence_max_bytes: int
    persistence_sync: str
    connect_properties: ConnectProperties


class _SubscribeOptions(TypedDict, total=False):
    """``subscribe()``'s keyword-only MQTT 5 options, on every dialect (``version=5``)."""

    no_local: bool
    retain_as_published: bool
    retain_handling: int
    properties: SubscribeProperties | None


class _MicroPythonOptions(_CoreOptions, total=False):
    """The MicroPython dialects' keyword-only options: the core's, and ``ipvtype``, which the
    QuecPython signature has in its positional list."""

    ipvtype: int


_KEEPALIVE_TOO_SHORT = "inport parameter error : keepalive >= 5S"  # the device's text, verbatim
_NOTICE_POLL_SECONDS = 0.5


def _require_callable(f: object, what: str) -> None:
    if not callable(f):
        raise TypeError(f"{what} must be callable, not {type(f).__name__}")


def _describe(client: object, core: _native.Client) -> str:
    """A client's repr: what it is and where it connects, never its credentials."""
    kind = f"{type(client).__module__}.{type(client).__name__}"
    return f"<{kind} client_id={core.client_id!r} server={core.target!r} state={core.state!r}>"


class _CoreClient:
    """What every dialect's client has: the native core, the attributes the device's client
    has, its repr and the will."""

    def __init__(
        self,
        client_id: Text,
        server: Text,
        port: int | str,
        user: Text | None,
        password: Password | None,
        keepalive: int,
        ssl: Any,
        ssl_params: dict[str, Any] | None,
        **core_options: Any,
    ) -> None:
        core_ssl, core_ssl_params = tls_arguments(ssl, ssl_params)
        self._core = _native.Client(
            client_id,
            server,
            port,
            user=user,
            password=password,
            keepalive=keepalive,
            ssl=core_ssl,
            ssl_params=core_ssl_params,
            **core_options,
        )
        self.client_id = client_id
        self.server = server
        self.port = self._core.port
        self.keepalive = keepalive
        self.ssl = ssl
        self.ssl_params = ssl_params

    def __repr__(self) -> str:
        return _describe(self, self._core)

    def _connected(self, session_present: bool) -> int:
        """What connect() returns (the session-present flag, 0 or 1). An empty client id has
        become the one the broker assigned (MQTT 5), which reconnects reuse."""
        if not self.client_id:
            self.client_id = self._core.client_id
        return int(session_present)

    def set_last_will(
        self,
        topic: Text,
        msg: Payload,
        retain: bool = False,
        qos: int = 0,
        *,
        properties: WillProperties | None = None,
    ) -> None:
        """The will the broker publishes if the link dies; used by the next connect().
        ``properties`` (MQTT 5): a publish's, and ``will_delay_interval``."""
        self._core.set_will(topic, msg, qos, bool(retain), properties)

    @property
    def connack_properties(self) -> ConnackProperties:
        """What the broker's last CONNACK said (MQTT 5; ``{}`` under MQTT 3.1.1)."""
        return self._core.connack_properties

    def outbox_size(self) -> int:
        """Messages in the outbox on disk (``persistence=``) not yet acknowledged; 0 without."""
        return self._core.outbox_size()

    def stats(self) -> Stats:
        """The client's counters: messages and bytes sent and received, reconnects, the last
        error, what is in flight and queued (docs/api.md). Cheap: call it as often as you like."""
        return cast(Stats, self._core.stats())


class _BlockingFlush:
    """``flush()`` of the blocking dialects (``umqtt.aio`` awaits it instead)."""

    _core: _native.Client

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every message of the outbox on disk is acknowledged (and deleted), up to
        ``timeout`` seconds (None: for ever). True once it is empty, False on timeout; True at
        once without an outbox."""
        return self._core.flush(timeout)


class _ClientBase(_CoreClient):
    """What the blocking and asyncio clients share: the QuecPython constructor and the core."""

    CONNECTEXCE = -1
    CONNECTSUCCESS = 0
    ARECONNECT = 1
    SEVCLOSE = 2
    DELAY = 2
    DEBUG = False
    # Set by disconnect()/close(): a lost link is then the user's doing, not an error to raise.
    _ended_by_user = False

    def __init__(
        self,
        client_id: Text,
        server: Text,
        port: int | str = 0,
        user: Text | None = None,
        password: Password | None = None,
        keepalive: int = 60,
        ssl: Any = False,
        ssl_params: dict[str, Any] | None = {},  # noqa: B006 - the device's signature
        reconn: bool = True,
        version: int = 4,
        pingmaxnum: int = 0,
        manage: bool = False,
        ipvtype: int = 0,
        **options: Unpack[_CoreOptions],
    ) -> None:
        if isinstance(keepalive, int) and 0 < keepalive < 5:
            raise ValueError(_KEEPALIVE_TOO_SHORT)
        super().__init__(
            client_id,
            server,
            port,
            user,
            password,
            keepalive,
            ssl,
            ssl_params,
            reconnect=bool(reconn),
            version=version,
            pingmaxnum=pingmaxnum,
            manage=bool(manage),
            ipvtype=ipvtype,
            **options,
        )
        self.reconn = reconn
        self.version = version
        self.pingmaxnum = pingmaxnum
        self.manage = manage
        self.ipvtype = ipvtype

    def get_mqttsta(self) -> int:
        """0 connected, 1 connecting, 2 closed by the server, -1 error or disconnected."""
        return self._core.mqttsta()

    def _ping(self) -> None:
        """What ping() does: a PINGREQ now (none while one waits for its PINGRESP). While the
        client reconnects by itself nothing is sent; when the link is gone (state -1 or 2) it
        raises MQTTConnectionLost."""
        if not self._core.ping() and self._core.mqttsta() in (self.CONNECTEXCE, self.SEVCLOSE):
            raise MQTTConnectionLost(f"not connected (state: {self._core.state})")

    def close(self) -> None:
        """Drops the connection without DISCONNECT: the broker publishes the will."""
        self._ended_by_user = True
        self._core.close()


def _drop_without_callback(topic: bytes, msg: bytes, *_: object) -> None:
    log.warning("message on %r dropped: no callback set (call set_callback())", topic)


class MQTTClient(_BlockingFlush, _ClientBase):
    """An MQTT 3.1.1 client with the QuecPython ``umqtt.MQTTClient`` API.

    Differences from the device are deliberate and documented in the README: server
    certificates are verified, QoS 2 works, ``publish``/``subscribe`` return True/False.
    """

    # Per-client state, set on the instance when it changes (the constructor is the base's).
    cb: MessageCallback | PropertiesCallback | None = None
    error_callback: ErrorCallback | None = None
    _notifier: threading.Thread | None = None
    _deliver: Callable[..., None] = staticmethod(_drop_without_callback)
    _with_properties = False

    @overload
    def set_callback(self, f: MessageCallback, properties: Literal[False] = False) -> None: ...
    @overload
    def set_callback(self, f: PropertiesCallback, properties: Literal[True]) -> None: ...

    def set_callback(self, f: Callable[..., Any], properties: bool = False) -> None:
        """``f(topic: bytes, msg: bytes)`` runs on the thread that calls wait_msg()/check_msg();
        with ``properties=True``, ``f(topic, msg, properties)`` (a dict: MQTT 5's properties)."""
        _require_callable(f, "callback")
        self.cb = f
        self._deliver = _logging_exceptions(f)
        self._with_properties = bool(properties)

    def error_register_cb(self, f: ErrorCallback) -> None:
        """``f(text)``: "reconnect_start", "reconnect_success", or the error when reconn=False."""
        _require_callable(f, "error callback")
        self.error_callback = f
        if self._notifier is None:
            self._notifier = threading.Thread(
                target=_relay_notices, args=(weakref.ref(self),), name="umqtt-notices", daemon=True
            )
            self._notifier.start()

    def connect(self, clean_session: bool = True) -> int:
        """Connects; returns the session-present flag. Raises MQTTConnectError (a ValueError)."""
        self._ended_by_user = False
        return self._connected(self._core.connect(bool(clean_session)))

    def publish(
        self,
        topic: Text,
        msg: Payload,
        retain: bool = False,
        qos: int = 0,
        *,
        properties: PublishProperties | None = None,
    ) -> bool:
        """True once QoS 0 is queued, QoS 1 PUBACKed or QoS 2 PUBCOMPed (with ``persistence=``:
        QoS 1/2 stored); False on a link failure, a full outbox or a refusal by the broker (logged
        with its reason code)."""
        return _succeeds(
            "publish to",
            topic,
            lambda: self._core.publish(topic, msg, qos, bool(retain), properties=properties),
        )

    def subscribe(self, topic: Text, qos: int = 0, **options: Unpack[_SubscribeOptions]) -> bool:
        """True when the broker grants the subscription; False on refusal or timeout (logged).
        ``options`` are MQTT 5's: no_local, retain_as_published, retain_handling, properties."""
        if self.cb is None:
            raise AssertionError("Subscribe callback is not set")
        return _succeeds("subscribe to", topic, lambda: self._core.subscribe(topic, qos, **options))

    def unsubscribe(self, topic: Text) -> bool:
        """True on UNSUBACK; the topic is not re-subscribed after a reconnect either way."""
        return _succeeds("unsubscribe from", topic, lambda: self._core.unsubscribe(topic))

    def check_msg(self) -> None:
        """Delivers every message that has arrived to the callback; never blocks."""
        self._deliver_messages(timeout=0.0)

    def wait_msg(self) -> None:
        """Blocks until at least one message was delivered (with reconn=True, across reconnects)."""
        self._deliver_messages(timeout=None)

    def _deliver_messages(self, timeout: float | None) -> None:
        try:
            self._core.deliver(self._deliver, timeout, properties=self._with_properties)
        except MQTTConnectionLost:
            if self._ended_by_user:
                return  # the device returns None after disconnect()
            raise

    def ping(self) -> None:
        """Writes a PINGREQ now, unless one waits for its PINGRESP; the core also sends one every
        keepalive. Raises MQTTConnectionLost when the link is gone."""
        self._ping()

    def disconnect(self) -> None:
        """Sends what was queued, then DISCONNECT (no will). Never raises."""
        self._ended_by_user = True
        try:
            self._core.disconnect()
        except Exception as e:
            log.warning("disconnect failed: %s", e)


def _succeeds(what: str, topic: Text, call: Callable[[], object]) -> bool:
    """Runs a request as the device does: False, with the reason logged, when the link fails, the
    acknowledgement does not come, or the broker refuses it (its reason code and name)."""
    try:
        call()
    except (MQTTConnectionLost, MQTTTimeout, MQTTOutboxError) as e:
        log.warning("%s %r failed: %s", what, topic, e)
        return False
    except MQTTException as e:
        if e.reason_code is None:
            raise
        log.warning("%s", e)
        return False
    return True


def _logging_exceptions(callback: Callable[..., Any]) -> Callable[..., None]:
    """The device logs a callback's exception and goes on; so do we."""

    def deliver(topic: bytes, msg: bytes, *properties: ReceivedProperties) -> None:
        try:
            callback(topic, msg, *properties)
        except Exception:
            log.exception("the message callback raised on topic %r; the client goes on", topic)

    return deliver


def _relay_notices(client_ref: weakref.ReferenceType[MQTTClient]) -> None:
    """Runs the error callback on its own daemon thread, as the device's ping thread does."""
    while True:
        client = client_ref()
        if client is None:
            return
        core = client._core
        del client
        text = core.next_notice(_NOTICE_POLL_SECONDS)
        client = client_ref()
        if text is None or client is None or client.error_callback is None:
            continue
        try:
            client.error_callback(text)
        except Exception:
            log.exception("the error callback raised")
        del client
