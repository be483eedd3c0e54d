"""The native core of umqtt (Rust: rumqttc on tokio). Private: use the dialects instead."""

from typing import Any, Callable, Optional, Union

__version__: str
MQTT_MAX_PACKET_SIZE: int

class MQTTException(Exception):
    """Base class of every error umqtt raises."""

class MQTTConnectError(MQTTException, ValueError):
    """connect() failed: DNS, TCP, TLS, timeout or a CONNACK refusal (then `rc` is its code)."""

    rc: Optional[int]

class MQTTConnectionLost(MQTTException, ConnectionError):
    """The connection to the broker is gone."""

    rc: Optional[int]

class MQTTTimeout(MQTTException, TimeoutError):
    """The broker did not acknowledge in time."""

    rc: Optional[int]

_Text = Union[str, bytes]
_Payload = Union[str, bytes, bytearray, memoryview]

class Client:
    def __init__(
        self,
        client_id: _Text,
        server: _Text,
        port: Union[int, str],
        *,
        user: Optional[_Text] = None,
        password: Optional[_Text] = None,
        keepalive: Optional[int] = None,
        tls: bool = False,
        reconnect: bool = True,
        connect_timeout: float = 20.0,
        ack_timeout: float = 10.0,
        max_packet_size: int = 16777216,
        reconnect_delay: float = 1.0,
        reconnect_max_delay: float = 30.0,
    ) -> None: ...
    def set_will(
        self,
        topic: Optional[_Text],
        msg: Optional[_Payload] = None,
        retain: bool = False,
        qos: Optional[int] = None,
    ) -> None: ...
    def connect(self, clean_session: bool = True, timeout: Optional[float] = None) -> bool: ...
    def publish(
        self,
        topic: _Text,
        msg: _Payload,
        qos: Optional[int] = None,
        retain: bool = False,
        timeout: Optional[float] = None,
    ) -> None: ...
    def subscribe(
        self, topic: _Text, qos: Optional[int] = None, timeout: Optional[float] = None
    ) -> int: ...
    def unsubscribe(self, topic: _Text, timeout: Optional[float] = None) -> None: ...
    def deliver(
        self,
        callback: Callable[[bytes, bytes], Any],
        timeout: Optional[float] = None,
        max: int = ...,
    ) -> int: ...
    def next_notice(self, timeout: float = 0.0) -> Optional[str]: ...
    def pending_messages(self) -> int: ...
    def mqttsta(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def keepalive(self) -> int: ...
    @property
    def ever_connected(self) -> bool: ...
    def disconnect(self) -> None: ...
    def close(self) -> None: ...
