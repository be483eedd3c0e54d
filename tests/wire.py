"""MQTT 3.1.1 (and a few MQTT 5) bytes, and a scripted broker that speaks them: for what
mosquitto will not do (or what it does, as seen on the wire).

Tests run against a real mosquitto. A few need a broker that misbehaves on purpose: one that
sends garbage or oversized packets, floods the client, holds an acknowledgement back, or sends
what a broker rarely sends (DUP set, any packet id). `ScriptedBroker` is that broker, and the
functions here encode the packets it sends (and decode the ones it reads).

`ScriptedBroker(script)` accepts one connection on 127.0.0.1, reads the client's CONNECT,
answers with `handshake` (a CONNACK unless the test wants another answer), then runs
`script(broker)` on its own thread. Without a script, the test itself reads and sends from its
thread. The socket stays open until close(): a client must notice a bad packet by the packet
itself, not by the end of the stream.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Callable

# First bytes (packet type << 4 | flags) of the packets the tests send or expect.
CONNECT = 0x10
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x62
PUBCOMP = 0x70
SUBACK = 0x90
PINGREQ = 0xC0

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"  # no session present, return code 0
PINGRESP = b"\xd0\x00"


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    """A packet: the first byte, the remaining length, the body."""
    return bytes([first]) + remaining_length(len(body)) + body


def ack(first: int, pkid: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP (`first`) for packet id `pkid`."""
    return packet(first, struct.pack("!H", pkid))


def publish(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    *,
    pkid: int = 1,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    """A PUBLISH; the packet id is sent only for QoS > 0. Any `qos` is encoded, 3 too."""
    raw = topic.encode() if isinstance(topic, str) else topic
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = struct.pack("!H", len(raw)) + raw + (struct.pack("!H", pkid) if qos else b"")
    return packet(first, body + payload)


def connect(client_id: str, keepalive: int = 60) -> bytes:
    """A CONNECT for MQTT 3.1.1 with a clean session and no will, user or password."""
    raw = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", keepalive)
    return packet(CONNECT, body + struct.pack("!H", len(raw)) + raw)


def parse_publish(first: int, body: bytes, version: int = 4) -> tuple[bytes, int | None, bytes]:
    """(topic, packet id or None at QoS 0, payload) of a PUBLISH the client sent (an MQTT 5 one,
    its properties skipped, with `version=5`)."""
    assert first >> 4 == PUBLISH >> 4, f"expected PUBLISH, got {first:#x}"
    (length,) = struct.unpack("!H", body[:2])
    topic, rest = body[2 : 2 + length], body[2 + length :]
    pkid = int(struct.unpack("!H", rest[:2])[0]) if first & 0x06 else None
    if pkid is not None:
        rest = rest[2:]
    if version == 5:
        size, used = read_variable_int(rest, 0)
        rest = rest[used + size :]
    return topic, pkid, rest


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """The next packet on `conn`: (first byte, body)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the client closed the connection")
            data += chunk
        return data

    first = exactly(1)[0]
    length, shift = 0, 0
    while True:
        byte = exactly(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return first, exactly(length)


# --------------------------------------------------------------------------- MQTT 5

# Property identifiers (MQTT 5 2.2.2.2) the tests use.
TOPIC_ALIAS = 0x23
TOPIC_ALIAS_MAXIMUM = 0x22
RECEIVE_MAXIMUM = 0x21
REASON_STRING = 0x1F


def variable_int(n: int) -> bytes:
    """MQTT 5's variable byte integer (the encoding of a remaining length)."""
    return remaining_length(n)


def properties(*encoded: bytes) -> bytes:
    """A property list: its length, then the properties (see `u16_property`)."""
    body = b"".join(encoded)
    return variable_int(len(body)) + body


def u16_property(identifier: int, value: int) -> bytes:
    return bytes([identifier]) + struct.pack("!H", value)


def connack5(props: bytes = b"\x00", code: int = 0, session_present: bool = False) -> bytes:
    """An MQTT 5 CONNACK with `props` (an encoded property list: `properties(...)`)."""
    return packet(0x20, bytes([int(session_present), code]) + props)


def publish5(
    topic: str | bytes, payload: bytes, *, alias: int | None = None, qos: int = 0, pkid: int = 1
) -> bytes:
    """An MQTT 5 PUBLISH, with a topic alias when `alias` is given (an empty topic uses it)."""
    raw = topic.encode() if isinstance(topic, str) else topic
    props = properties(u16_property(TOPIC_ALIAS, alias)) if alias is not None else b"\x00"
    head = struct.pack("!H", len(raw)) + raw + (struct.pack("!H", pkid) if qos else b"")
    return packet(PUBLISH | (qos << 1), head + props + payload)


def connack_accepted(version: int) -> bytes:
    """The CONNACK that accepts a client of `version` (3 or 4: MQTT 3.1(.1); 5: MQTT 5)."""
    return connack5() if version == 5 else CONNACK_ACCEPTED


def publish_at(
    version: int, topic: str | bytes, payload: bytes, qos: int = 0, *, pkid: int = 1
) -> bytes:
    """A PUBLISH as a broker of `version` sends it (`publish` or `publish5`, no properties)."""
    if version == 5:
        return publish5(topic, payload, qos=qos, pkid=pkid)
    return publish(topic, payload, qos, pkid=pkid)


def parse_publish5(first: int, body: bytes) -> tuple[bytes, int | None, bytes, bytes]:
    """(topic, topic alias or None, the raw property list, payload) of an MQTT 5 PUBLISH."""
    assert first >> 4 == PUBLISH >> 4, f"expected PUBLISH, got {first:#x}"
    (length,) = struct.unpack("!H", body[:2])
    topic, rest = body[2 : 2 + length], body[2 + length :]
    if first & 0x06:
        rest = rest[2:]
    size, used = read_variable_int(rest, 0)
    props, payload = rest[used : used + size], rest[used + size :]
    aliases = [value for identifier, value in parse_properties(props) if identifier == TOPIC_ALIAS]
    alias = struct.unpack("!H", aliases[0])[0] if aliases else None
    return topic, alias, props, payload


def read_variable_int(data: bytes, at: int) -> tuple[int, int]:
    """The variable byte integer at `at` in `data`, and the offset after it."""
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


# Properties of a fixed size (MQTT 5 2.2.2.2): identifier -> bytes.
FIXED_SIZE = {
    0x01: 1,  # payload format indicator
    0x02: 4,  # message expiry interval
    0x11: 4,  # session expiry interval
    0x17: 1,  # request problem information
    0x18: 4,  # will delay interval
    0x19: 1,  # request response information
    0x21: 2,  # receive maximum
    0x22: 2,  # topic alias maximum
    0x23: 2,  # topic alias
    0x27: 4,  # maximum packet size
}
SESSION_EXPIRY_INTERVAL = 0x11
MAXIMUM_PACKET_SIZE = 0x27
USER_PROPERTY = 0x26


def parse_properties(props: bytes) -> list[tuple[int, bytes]]:
    """A property list's (identifier, value as encoded) pairs, in order."""
    found, i = [], 0
    while i < len(props):
        identifier = props[i]
        length = _property_length(identifier, props[i + 1 :])
        found.append((identifier, props[i + 1 : i + 1 + length]))
        i += 1 + length
    return found


def parse_connect5(body: bytes) -> tuple[int, int, list[tuple[int, bytes]]]:
    """(connect flags, keepalive, properties) of an MQTT 5 CONNECT's body."""
    assert body[:7] == b"\x00\x04MQTT\x05", f"not an MQTT 5 CONNECT: {body[:7]!r}"
    flags, keepalive = body[7], struct.unpack("!H", body[8:10])[0]
    size, used = read_variable_int(body, 10)
    return flags, keepalive, parse_properties(body[used : used + size])


def utf8_pair(key: str, value: str) -> bytes:
    """A user property's value as encoded: two length-prefixed UTF-8 strings."""
    return b"".join(struct.pack("!H", len(s.encode())) + s.encode() for s in (key, value))


def _property_length(identifier: int, rest: bytes) -> int:
    """How many bytes follow a property's identifier."""
    if identifier in FIXED_SIZE:
        return FIXED_SIZE[identifier]
    if identifier == 0x0B:  # subscription identifier: a variable byte integer
        return next(i for i, byte in enumerate(rest) if not byte & 0x80) + 1
    (length,) = struct.unpack("!H", rest[:2])  # strings, binary data
    if identifier == 0x26:  # user property: two strings
        (second,) = struct.unpack("!H", rest[2 + length : 4 + length])
        return 4 + length + second
    return 2 + length


# --------------------------------------------------------------------------- the broker


Script = Callable[["ScriptedBroker"], None]


class ScriptedBroker:
    """One connection: CONNECT in, `handshake` out (None: nothing), then `script(self)` on the
    broker's thread (None: the test reads and sends itself). The socket stays open until close().

    connected: set once the handshake was sent. done: set once the script returned (or the
    handshake failed); `error` is what it raised, None if it returned. sent: bytes sent so far.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        script: Script | None = None,
        handshake: bytes | None = CONNACK_ACCEPTED,
        listener: socket.socket | None = None,
    ):
        """`listener`: serve this connection on a listening socket of the test's (the next
        connection to a port an earlier ScriptedBroker served); close() leaves it open."""
        self.script = script
        self.handshake = handshake
        self._own_listener = listener is None
        self.listener = socket.create_server((self.host, 0)) if listener is None else listener
        self.port: int = self.listener.getsockname()[1]
        self.sent = 0
        #: The body of the client's CONNECT, once it came (see `parse_connect5`).
        self.connect_body = b""
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.done = threading.Event()
        self._closed = threading.Event()
        self._conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="scripted-broker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(30)
            conn, _ = self.listener.accept()
            conn.settimeout(30)
            self._conn = conn
            first, self.connect_body = read_packet(conn)
            assert first == CONNECT, f"expected CONNECT, got {first:#x}"
            if self.handshake:
                self._write(conn, self.handshake)
            self.connected.set()
            if self.script is not None:
                self.script(self)
        except BaseException as e:  # the client hanging up is expected in most scripts
            self.error = e
        finally:
            self.done.set()
        # Keep the socket open: the client must notice the bad bytes, not the end of the stream.
        self._closed.wait(60)

    def _connection(self, timeout: float) -> socket.socket:
        if not self.connected.wait(timeout) or self._conn is None:
            raise TimeoutError(f"no client connected within {timeout} s")
        return self._conn

    def read(self, timeout: float = 30.0) -> tuple[int, bytes]:
        """The client's next packet (first byte, body); a PINGREQ is answered and skipped."""
        conn = self._connection(timeout)
        conn.settimeout(timeout)
        while True:
            first, body = read_packet(conn)
            if first != PINGREQ:
                return first, body
            self.send(PINGRESP)

    def expect(self, first: int, timeout: float = 30.0) -> bytes:
        """The body of the client's next packet, which must start with `first`."""
        got, body = self.read(timeout)
        assert got == first, f"expected {first:#x}, got {got:#x} {body.hex()}"
        return body

    def send(self, data: bytes) -> None:
        self._write(self._connection(10.0), data)

    def _write(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def flood(self, data: bytes, total: int, pause: float = 0.0) -> None:
        """Send `data` again and again, `pause` s apart, until `total` bytes were sent (or the
        client hung up: send raises then)."""
        while self.sent < total and not self._closed.is_set():
            self.send(data)
            if pause:
                time.sleep(pause)

    def hang_up(self) -> None:
        """Shut the connection down (both directions) without closing the listener."""
        with contextlib.suppress(OSError):
            self._connection(10.0).shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        for s in (self._conn, self.listener if self._own_listener else None):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self.thread.join(5)
