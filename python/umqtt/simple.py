"""MicroPython's ``umqtt.simple`` (micropython-lib 1.8) on the umqtt core.

Raises where MicroPython raises: ``MQTTException(rc)`` for a CONNACK refusal, ``OSError`` for
network failures (``MQTTConnectionLost`` and ``MQTTTimeout`` are ``OSError`` subclasses), and the
callback's own exceptions. What ``connect()`` refuses before sending anything (what MQTT forbids:
an empty client id with ``clean_session=False``, a password without a user name) raises
``MQTTConnectError``, an ``MQTTException`` and a ``ValueError``: not an ``OSError``, so that
``umqtt.robust`` does not retry it for ever. No automatic reconnect; keepalive pings, when
``keepalive`` is set, are sent by the core (MicroPython leaves that to the application).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, overload

from . import (
    MessageCallback,
    Password,
    Payload,
    PropertiesCallback,
    Text,
    _BlockingFlush,
    _CoreClient,
    _MicroPythonOptions,
    _require_callable,
    _SubscribeOptions,
)
from ._native import MQTTConnectError, MQTTConnectionLost, MQTTException
from .properties import PublishProperties

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MQTTClient", "MQTTException"]


def _refusal_as_code(call: Callable[[], object]) -> None:
    """Runs a request; a refusal by the broker raises MQTTException(code), as MicroPython's
    ``umqtt.simple`` raises MQTTException(0x80) for a refused subscription."""
    try:
        call()
    except MQTTException as e:
        if e.reason_code is None or isinstance(e, OSError):
            raise
        raise _with_code(MQTTException(e.reason_code), e.reason_code) from e


def _with_code(error: MQTTException, code: int) -> MQTTException:
    error.reason_code = error.rc = code
    return error


def _no_callback(topic: bytes, msg: bytes, *_: object) -> None:
    raise MQTTException("a message arrived but no callback is set: call set_callback() first")


class MQTTClient(_BlockingFlush, _CoreClient):
    """``MQTTClient(client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
    ssl_params={})``; keyword-only ``version`` (4: MQTT 3.1.1, 3: MQTT 3.1) and the options of
    ``umqtt.MQTTClient`` (connect_timeout, ack_timeout, max_packet_size, transport, proxy, ...,
    and ipvtype)."""

    def __init__(
        self,
        client_id: Text,
        server: Text,
        port: int | str = 0,
        user: Text | None = None,
        password: Password | None = None,
        keepalive: int = 0,
        ssl: Any = None,
        ssl_params: dict[str, Any] | None = {},  # noqa: B006 - MicroPython's signature
        *,
        version: int = 4,
        **options: Unpack[_MicroPythonOptions],
    ) -> None:
        super().__init__(
            client_id,
            server,
            port,
            user,
            password,
            keepalive,
            ssl,
            ssl_params,
            reconnect=False,
            version=version,
            **options,
        )
        self.user = user
        self.pswd = password
        self.cb: MessageCallback | PropertiesCallback | None = None
        self._with_properties = False

    @overload
    def set_callback(self, f: MessageCallback, properties: Literal[False] = False) -> None: ...
    @overload
    def set_callback(self, f: PropertiesCallback, properties: Literal[True]) -> None: ...

    def set_callback(self, f: Callable[..., Any], properties: bool = False) -> None:
        """``f(topic, msg)``; with ``properties=True``, ``f(topic, msg, properties)`` (a dict:
        MQTT 5's properties)."""
        _require_callable(f, "callback")
        self.cb = f
        self._with_properties = bool(properties)

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> int:
        """Returns the session-present flag. Refusal: MQTTException(rc); network: OSError;
        refused before sending (what MQTT forbids): MQTTConnectError, a ValueError."""
        self._core.check_connect(bool(clean_session))
        try:
            return self._connected(self._core.connect(bool(clean_session), timeout))
        except MQTTConnectError as e:
            if e.reason_code is not None:
                raise _with_code(MQTTException(e.reason_code), e.reason_code) from e
            raise MQTTConnectionLost(str(e)) from e

    def disconnect(self) -> None:
        self._core.disconnect()

    def ping(self) -> None:
        """Writes a PINGREQ now, unless one waits for its PINGRESP (keepalive pings are also
        automatic). Raises OSError when not connected."""
        if not self._core.ping():
            raise MQTTConnectionLost(f"not connected (state: {self._core.state})")

    def publish(
        self,
        topic: Text,
        msg: Payload,
        retain: bool = False,
        qos: int = 0,
        *,
        properties: PublishProperties | None = None,
    ) -> None:
        """Returns once QoS 0 is queued, QoS 1 PUBACKed or QoS 2 PUBCOMPed (with
        ``persistence=``: QoS 1/2 stored); raises otherwise (a full outbox: MQTTOutboxError; a
        refusal by the broker: MQTTException(reason code))."""
        _refusal_as_code(
            lambda: self._core.publish(topic, msg, qos, bool(retain), properties=properties)
        )

    def subscribe(self, topic: Text, qos: int = 0, **options: Unpack[_SubscribeOptions]) -> None:
        """Waits for SUBACK; a refusal raises MQTTException(code): 0x80 under MQTT 3.1.1.
        ``options`` are MQTT 5's: no_local, retain_as_published, retain_handling, properties."""
        if self.cb is None:
            raise AssertionError("Subscribe callback is not set")
        _refusal_as_code(lambda: self._core.subscribe(topic, qos, **options))

    def unsubscribe(self, topic: Text) -> None:
        _refusal_as_code(lambda: self._core.unsubscribe(topic))

    def wait_msg(self) -> int | None:
        """Delivers one message to the callback and returns its PUBLISH header byte.
        Raises OSError when the connection is lost; the callback's exceptions propagate."""
        return self._core.deliver(self._callback(), None, 1, self._with_properties)

    def check_msg(self) -> int | None:
        """Like wait_msg(), but returns None at once when no message is waiting."""
        return self._core.deliver(self._callback(), 0.0, 1, self._with_properties)

    def _callback(self) -> Callable[..., Any]:
        return _no_callback if self.cb is None else self.cb
