"""MQTT 5 properties, as the dicts umqtt takes and gives (``version=5``): one ``TypedDict`` per
kind, every key optional. Keys are the MQTT 5 specification's names in snake case; the core
checks every value (a ``TypeError`` or ``ValueError`` names the key) before anything is sent.

    from umqtt.properties import PublishProperties

    properties: PublishProperties = {"message_expiry_interval": 60, "content_type": "json"}
    client.publish("sensors/1", b"{}", qos=1, properties=properties)

Under ``version=4`` and ``3`` every argument that takes these is a ``ValueError`` (it needs
``version=5``), and the dicts umqtt gives (``connack_properties``, received properties) are empty.
"""

from __future__ import annotations

from typing import TypedDict, Union

__all__ = [
    "ConnackProperties",
    "ConnectProperties",
    "PublishProperties",
    "ReceivedProperties",
    "SubscribeProperties",
    "UserProperties",
    "WillProperties",
]

#: ``user_properties``: (name, value) pairs, in order; a name may repeat.
UserProperties = list[tuple[str, str]]
_Binary = Union[bytes, bytearray, memoryview, str]


class ConnectProperties(TypedDict, total=False):
    """``connect_properties=``: what the client asks for in its CONNECT."""

    #: Seconds the broker keeps the session after the connection ends (0xFFFFFFFF: for ever).
    #: Unless given, ``clean_session=False`` asks for 0xFFFFFFFF and ``True`` for none.
    session_expiry_interval: int
    #: QoS 1/2 messages the broker may send before the client acknowledges them (1-65535).
    receive_maximum: int
    #: The largest packet the client accepts (default: the constructor's ``max_packet_size``).
    maximum_packet_size: int
    #: Topic aliases the broker may use in what it sends (0: none).
    topic_alias_maximum: int
    #: Ask for ``response_information`` in the CONNACK (request/response).
    request_response_information: bool
    #: Let the broker send reason strings and user properties on failures (default: yes).
    request_problem_information: bool
    user_properties: UserProperties


class PublishProperties(TypedDict, total=False):
    """A publish's ``properties=``."""

    #: 1: the payload is UTF-8 text; 0: bytes.
    payload_format_indicator: int
    #: Seconds after which the broker no longer delivers the message.
    message_expiry_interval: int
    #: Give the topic every time: the core sends it only when the alias is new on the connection,
    #: and never uses an alias above the broker's ``topic_alias_maximum`` (1-65535).
    topic_alias: int
    #: Where a reply is to go (request/response).
    response_topic: str
    #: Binary data that ties a reply to its request.
    correlation_data: _Binary
    user_properties: UserProperties
    #: A MIME type, or whatever the application agrees on.
    content_type: str


class WillProperties(TypedDict, total=False):
    """``set_last_will(..., properties=)``: a publish's (no ``topic_alias``) and the delay."""

    #: Seconds the broker waits after the connection is lost before it publishes the will.
    will_delay_interval: int
    payload_format_indicator: int
    message_expiry_interval: int
    response_topic: str
    correlation_data: _Binary
    user_properties: UserProperties
    content_type: str


class SubscribeProperties(TypedDict, total=False):
    """A subscription's ``properties=``."""

    #: 1-268435455: every message delivered through this subscription carries it.
    subscription_identifier: int
    user_properties: UserProperties


class ReceivedProperties(TypedDict, total=False):
    """A received message's properties: only what its PUBLISH carried."""

    payload_format_indicator: int
    message_expiry_interval: int
    topic_alias: int
    response_topic: str
    correlation_data: bytes
    user_properties: UserProperties
    #: The identifiers of the subscriptions the message matched.
    subscription_identifiers: list[int]
    content_type: str


class ConnackProperties(TypedDict, total=False):
    """``client.connack_properties``: what the broker's CONNACK said (MQTT 5 3.2.2.3)."""

    session_expiry_interval: int
    receive_maximum: int
    maximum_qos: int
    retain_available: bool
    maximum_packet_size: int
    #: The client id the broker gave a client that connected with an empty one.
    assigned_client_identifier: str
    topic_alias_maximum: int
    reason_string: str
    user_properties: UserProperties
    wildcard_subscription_available: bool
    subscription_identifiers_available: bool
    shared_subscription_available: bool
    #: Replaces the client's keepalive.
    server_keep_alive: int
    #: The base of response topics (``request_response_information``).
    response_information: str
    server_reference: str
    authentication_method: str
    authentication_data: bytes
