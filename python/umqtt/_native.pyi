"""The native core of umqtt (Rust: rumqttc on tokio). Private: use the dialects instead."""

import asyncio
import os
from collections.abc import Coroutine, Generator, Mapping
from contextvars import Context
from typing import Any, Callable, TypeVar, final

from typing_extensions import Self

from umqtt.properties import (
    ConnackProperties,
    ConnectProperties,
    PublishProperties,
    ReceivedProperties,
    SubscribeProperties,
    WillProperties,
)

__all__ = [
    "Call",
    "Client",
    "LoopBridge",
    "MQTTConnectError",
    "MQTTConnectionLost",
    "MQTTException",
    "MQTTOutboxError",
    "MQTTTimeout",
    "Message",
    "__version__",
    "set_busy_poll",
    "topic_matches",
]

__version__: str

def set_busy_poll(microseconds: int) -> int: ...
def topic_matches(topic_filter: str | bytes, topic: str | bytes) -> bool: ...

class MQTTException(Exception):
    """Base class of every error umqtt raises."""

    #: The reason code it comes from (a CONNACK refusal, a refused request, a broker's
    #: DISCONNECT), else None; ``rc`` is the same (0.1's name).
    reason_code: int | None
    rc: int | None

class MQTTConnectError(MQTTException, ValueError):
    """connect() failed: DNS, TCP, TLS, timeout or a CONNACK refusal (its `reason_code`)."""

class MQTTConnectionLost(MQTTException, ConnectionError):
    """The connection to the broker is gone."""

class MQTTTimeout(MQTTException, TimeoutError):
    """The broker did not acknowledge in time."""

class MQTTOutboxError(MQTTException):
    """The outbox on disk (persistence=) cannot be used or cannot take the message: it is full,
    its file is not an outbox or is in use, or the disk failed."""

_Text = str | bytes
_Payload = str | bytes | bytearray | memoryview

@final
class Message:
    """A received message (made by the core only: it has no public constructor)."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...
    @property
    def dup(self) -> bool: ...
    @property
    def properties(self) -> ReceivedProperties: ...

_T = TypeVar("_T")

@final
class Call(Coroutine[Any, Any, _T]):
    """What an awaited call returns: an asyncio future (``asyncio.isfuture()`` is true) and a
    coroutine (``create_task`` takes it). Cancelling it drops its operation (cancel-safe)."""

    _asyncio_future_blocking: bool
    def __await__(self) -> Generator[Any, None, _T]: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, error: Any, value: Any = None, traceback: Any = None, /) -> Any: ...
    def close(self) -> None: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def add_done_callback(
        self, callback: Callable[[Call[_T]], object], /, *, context: Context | None = None
    ) -> None: ...
    def remove_done_callback(self, callback: Callable[[Call[_T]], object], /) -> int: ...
    def result(self) -> _T: ...
    def exception(self) -> BaseException | None: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def cancel(self, msg: Any | None = None) -> bool: ...

@final
class LoopBridge:
    """One asyncio event loop's end of the core: the loop watches ``fileno()`` and calls
    ``drain()`` when it is readable (``loop.add_reader``)."""

    def __new__(cls, event_loop: asyncio.AbstractEventLoop) -> Self: ...
    def fileno(self) -> int: ...
    def drain(self) -> None: ...
    def poll(self) -> None: ...

@final
class Client:
    """One MQTT connection, owned by the core's tokio runtime. Not subclassable."""

    def __new__(
        cls,
        client_id: _Text,
        server: _Text,
        port: int | str,
        *,
        user: _Text | None = None,
        password: _Text | Callable[[], _Text] | None = None,
        keepalive: int | None = None,
        ssl: Any = None,
        ssl_params: dict[str, Any] | None = None,
        reconnect: bool = True,
        version: int | None = None,
        pingmaxnum: int | None = None,
        manage: bool = False,
        # The defaults are the constructor's own (docs/api.md lists them).
        connect_timeout: float = ...,
        ack_timeout: float = ...,
        max_packet_size: int | None = ...,
        reconnect_delay: float = ...,
        reconnect_max_delay: float = ...,
        transport: str | None = None,
        ws_path: str | None = None,
        ws_headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        proxy: str | None = None,
        ipvtype: int | None = None,
        persistence: str | os.PathLike[str] | None = None,
        persistence_max_messages: int | None = None,
        persistence_max_bytes: int | None = None,
        persistence_sync: str | None = None,
        connect_properties: ConnectProperties | None = None,
    ) -> Self: ...
    def set_will(
        self,
        topic: _Text | None,
        msg: _Payload,
        qos: int | None = None,
        retain: bool = False,
        properties: WillProperties | None = None,
    ) -> None: ...
    def connect(self, clean_session: bool = True, timeout: float | None = None) -> bool: ...
    def check_connect(self, clean_session: bool) -> None: ...
    def publish(
        self,
        topic: _Text,
        msg: _Payload,
        qos: int | None = None,
        retain: bool = False,
        timeout: float | None = None,
        properties: PublishProperties | None = None,
    ) -> None: ...
    def subscribe(
        self,
        topic: _Text,
        qos: int | None = None,
        timeout: float | None = None,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int | None = None,
        properties: SubscribeProperties | None = None,
    ) -> int: ...
    def unsubscribe(self, topic: _Text, timeout: float | None = None) -> None: ...
    def deliver(
        self,
        callback: Callable[..., Any],
        timeout: float | None = None,
        max: int = ...,
        properties: bool = False,
    ) -> int | None: ...
    def next_notice(self, timeout: float = 0.0) -> str | None: ...
    def pending_messages(self) -> int: ...
    def stats(self) -> dict[str, int | str | None]: ...
    def mqttsta(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def connack_properties(self) -> ConnackProperties: ...
    @property
    def client_id(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def keepalive(self) -> int: ...
    def outbox_size(self) -> int: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def disconnect(self) -> None: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...
    # asyncio: futures of the bridge's event loop, to be called on that loop's thread
    def connect_async(
        self, bridge: LoopBridge, clean_session: bool = True, timeout: float | None = None
    ) -> Call[bool]: ...
    def publish_async(
        self,
        bridge: LoopBridge,
        topic: _Text,
        msg: _Payload,
        qos: int | None = None,
        retain: bool = False,
        timeout: float | None = None,
        properties: PublishProperties | None = None,
    ) -> Call[None]: ...
    def subscribe_async(
        self,
        bridge: LoopBridge,
        topic: _Text,
        qos: int | None = None,
        timeout: float | None = None,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int | None = None,
        properties: SubscribeProperties | None = None,
    ) -> Call[int]: ...
    def request_async(
        self,
        bridge: LoopBridge,
        topic: _Text,
        payload: _Payload,
        qos: int | None = None,
        timeout: float | None = None,
        properties: PublishProperties | None = None,
        response_topic: _Text | None = None,
    ) -> Call[Message]: ...
    def unsubscribe_async(
        self, bridge: LoopBridge, topic: _Text, timeout: float | None = None
    ) -> Call[None]: ...
    def message_ready_async(self, bridge: LoopBridge) -> Call[None]: ...
    def take_message(self, bridge: LoopBridge | None = None) -> Message | None: ...
    def flush_async(self, bridge: LoopBridge, timeout: float | None = None) -> Call[bool]: ...
    def disconnect_async(self, bridge: LoopBridge) -> Call[None]: ...
