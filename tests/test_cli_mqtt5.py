"""The command line at MQTT 5 (issue 25): mosquitto's -D (MQTT 5 properties) on pub, sub and the
will, what implies and what refuses MQTT 5, sub -F's property sequences (%P %C %D %E %F %R %S %A)
and --json's `properties`, beside mosquitto_pub/mosquitto_sub where they are installed (the
reference), byte for byte where the two print the same.

What arrived is checked by a paho MQTT 5 peer, or on the wire by the scripted broker
(tests/wire.py) for what only the broker sees (the CONNECT's and the SUBSCRIBE's properties).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import wire
from broker import Mosquitto, unique_id
from conftest import paho_properties
from paho.mqtt.packettypes import PacketTypes
from test_cli_options import mosquitto, sub_output, where
from umqtt import cli
from umqtt.testing import find_executable

# One of each property mosquitto_pub takes for PUBLISH (but the topic alias, which mosquitto does
# not pass on), a user property repeated.
PUBLISH_PROPERTIES = [
    *["-D", "publish", "user-property", "unit", "C"],
    *["-D", "PUBLISH", "user-property", "unit", "F"],
    *["-D", "publish", "User-Property", "site", "north 2"],
    *["-D", "publish", "content-type", "text/plain"],
    *["-D", "publish", "correlation-data", "req-42"],
    *["-D", "publish", "payload-format-indicator", "1"],
    *["-D", "publish", "response-topic", "replies/1"],
]
PUBLISHED = {
    "user_properties": [("unit", "C"), ("unit", "F"), ("site", "north 2")],
    "content_type": "text/plain",
    "correlation_data": b"req-42",
    "payload_format_indicator": 1,
    "response_topic": "replies/1",
}


def test_pub_sends_the_properties_mosquitto_pub_sends(
    broker: Mosquitto, make_peer: Callable[..., Any], topic: str
) -> None:
    """-D publish ...: every property arrives as given (command and name in any case, as
    mosquitto's), the same as from mosquitto_pub with the same arguments; -D implies MQTT 5."""
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(f"{topic}/#", 1)
    client_id = unique_id("cli-d")
    expiry = ["-D", "publish", "message-expiry-interval", "3600"]
    args = [*where(broker), "-q", "1", "-m", "x", *PUBLISH_PROPERTIES, *expiry]
    assert cli.main(["pub", *args, "-t", f"{topic}/ours", "-i", client_id]) == 0
    assert broker.connect_flags(client_id).startswith("p5")
    [ours] = peer.wait_for(f"{topic}/ours")
    received = dict(ours.properties)
    # The broker passes on what is left of the interval: a second may have gone.
    assert 3590 <= received.pop("message_expiry_interval") <= 3600
    assert received == PUBLISHED
    mosquitto("mosquitto_pub", *args, "-t", f"{topic}/theirs")
    [theirs] = peer.wait_for(f"{topic}/theirs")
    reference = dict(theirs.properties)
    assert 3590 <= reference.pop("message_expiry_interval") <= 3600
    assert received == reference


@pytest.fixture
def retained_with_properties(broker: Mosquitto, topic: str) -> Any:
    """A retained MQTT 5 message on `topic` with PUBLISH_PROPERTIES (published with umqtt pub);
    removed at the end."""
    args = [*where(broker), "-t", topic, "-q", "1", "-r"]
    assert cli.main(["pub", *args, "-m", "21.5", *PUBLISH_PROPERTIES]) == 0
    yield
    assert cli.main(["pub", *args, "-n", "-V", "5"]) == 0


def test_sub_prints_properties_as_mosquitto_sub(
    broker: Mosquitto,
    topic: str,
    retained_with_properties: None,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """-F's MQTT 5 sequences: user properties as key:value one space apart, in order with the
    repeat; nothing for a property the message lacks (here %E, %S and %A); under MQTT 3.1.1 none."""
    fmt = "%t|%P|%C|%D|%F|%R|%E|%S|%A|end"
    common = [*where(broker), "-t", topic, "-q", "1", "-C", "1", "-W", "10", "-F", fmt]
    ours = sub_output(capsysbinary, *common, "-V", "mqttv5")
    assert (
        ours
        == f"{topic}|unit:C unit:F site:north 2|text/plain|req-42|1|replies/1||||end\n".encode()
    )
    assert sub_output(capsysbinary, *common) == f"{topic}|||||||||end\n".encode()
    assert ours == mosquitto("mosquitto_sub", *common, "-V", "mqttv5")


def test_sub_json_carries_the_properties_as_mosquitto_sub(
    broker: Mosquitto,
    topic: str,
    retained_with_properties: None,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """--json at MQTT 5: mosquitto_sub's `properties` object (its names; user properties as an
    object whose keys repeat, in order), here with the subscription identifier -D subscribe
    asked for (%S prints it too). The order of the properties is each tool's own."""
    identifier = ["-D", "subscribe", "subscription-identifier", "7"]
    common = [*where(broker), "-t", topic, "-q", "1", "-C", "1", "-W", "10", *identifier]
    ours = sub_output(capsysbinary, *common, "--json")
    assert sub_output(capsysbinary, *common, "-F", "%S") == b"7\n"

    def fields(line: bytes) -> dict[str, Any]:
        pairs = dict(json.loads(line, object_pairs_hook=list))
        pairs["properties"] = sorted(pairs["properties"])
        del pairs["tst"]
        pairs.pop("mid", None)  # mosquitto_sub's packet id
        return pairs

    assert fields(ours) == {
        "topic": topic,
        "qos": 1,
        "retain": 1,
        "payloadlen": 4,
        "properties": [
            ("content-type", "text/plain"),
            ("correlation-data", "req-42"),
            ("payload-format-indicator", 1),
            ("response-topic", "replies/1"),
            ("subscription-identifier", 7),
            ("user-properties", [("unit", "C"), ("unit", "F"), ("site", "north 2")]),
        ],
        "payload": "21.5",
    }
    assert fields(ours) == fields(mosquitto("mosquitto_sub", *common, "-F", "%j"))


def test_sub_prints_what_is_left_of_the_message_expiry_interval(
    broker: Mosquitto, make_peer: Callable[..., Any], topic: str, capsysbinary: Any
) -> None:
    """%E: the interval as the broker sent it, what is left of it (a retained message's ages)."""
    properties = paho_properties(PacketTypes.PUBLISH, message_expiry_interval=3600)
    make_peer(broker, mqtt5=True).publish(topic, b"x", qos=1, retain=True, properties=properties)
    try:
        common = [*where(broker), "-t", topic, "-C", "1", "-W", "10", "-F", "%E"]
        assert 3590 <= int(sub_output(capsysbinary, *common, "-V", "5")) <= 3600
    finally:
        make_peer(broker).publish(topic, b"", qos=1, retain=True)


def read_subscribe5(body: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(packet id, properties) of an MQTT 5 SUBSCRIBE's body."""
    (pkid,) = struct.unpack("!H", body[:2])
    size, used = wire.read_variable_int(body, 2)
    return pkid, wire.parse_properties(body[used : used + size])


def test_connect_and_subscribe_properties_go_on_the_wire(scripted_broker: Any) -> None:
    """-D connect ... into the CONNECT (the session expiry, limits, flags and user properties as
    given), -D subscribe user-property into the SUBSCRIBE."""
    subscribes: list[tuple[int, list[tuple[int, bytes]]]] = []

    def answer_subscribe(b: wire.ScriptedBroker) -> None:
        pkid, props = read_subscribe5(b.expect(0x82))
        subscribes.append((pkid, props))
        b.send(wire.packet(wire.SUBACK, struct.pack("!H", pkid) + b"\x00\x01"))
        b.expect(0xE0)  # DISCONNECT

    b = scripted_broker(answer_subscribe, handshake=wire.connack5())
    args = ["sub", "-h", b.host, "-p", str(b.port), "-t", "t", "-q", "1", "-E"]
    args += ["-D", "connect", "session-expiry-interval", "60"]
    args += ["-D", "connect", "receive-maximum", "7", "-D", "connect", "topic-alias-maximum", "3"]
    args += ["-D", "connect", "maximum-packet-size", "50000"]
    args += ["-D", "connect", "request-response-information", "1"]
    args += ["-D", "connect", "request-problem-information", "0"]
    args += ["-D", "connect", "user-property", "fleet", "north"]
    args += ["-D", "subscribe", "user-property", "why", "test"]
    assert cli.main(args) == 0
    assert b.done.wait(10) and b.error is None, b.error
    _, _, props = wire.parse_connect5(b.connect_body)
    assert sorted(props) == sorted(
        [
            (wire.SESSION_EXPIRY_INTERVAL, struct.pack("!I", 60)),
            (wire.RECEIVE_MAXIMUM, struct.pack("!H", 7)),
            (wire.MAXIMUM_PACKET_SIZE, struct.pack("!I", 50000)),
            (wire.TOPIC_ALIAS_MAXIMUM, struct.pack("!H", 3)),
            (0x19, b"\x01"),  # request response information
            (0x17, b"\x00"),  # request problem information
            (wire.USER_PROPERTY, wire.utf8_pair("fleet", "north")),
        ]
    ), props
    [(_, subscribe_props)] = subscribes
    assert subscribe_props == [(wire.USER_PROPERTY, wire.utf8_pair("why", "test"))]


def test_will_properties_arrive_with_the_will(
    broker: Mosquitto, make_peer: Callable[..., Any], tmp_path: Path
) -> None:
    """-D will ...: a sub killed without DISCONNECT; its will carries the properties."""
    will = unique_id("cli/will5")
    peer = make_peer(broker, mqtt5=True)
    peer.subscribe(will, 1)
    client_id = unique_id("cli-will5")
    args = ["sub", *where(broker), "-i", client_id, "-t", unique_id("cli/quiet")]
    args += ["--will-topic", will]
    args += ["--will-payload", "gone", "--will-qos", "1"]
    args += ["-D", "will", "user-property", "cause", "test", "-D", "will", "content-type", "text"]
    args += ["-D", "will", "will-delay-interval", "0", "-D", "will", "response-topic", "r"]
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "umqtt", *args], stderr=err)
    try:
        assert broker.wait_for_log(f"Received SUBSCRIBE from {client_id}", timeout=20)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    [got] = peer.wait_for(will, timeout=20)
    assert got.payload == b"gone"
    assert got.properties == {
        "user_properties": [("cause", "test")],
        "content_type": "text",
        "response_topic": "r",
    }


def refused(options: str, says: str, mosquitto_refuses: bool, name: str) -> Any:
    """A case: the options (split on spaces), what our error says, whether mosquitto_pub refuses
    them too."""
    return pytest.param(options.split(), says, mosquitto_refuses, id=name)


AUTH_REFUSED = "enhanced authentication (AUTH) is not supported"
REFUSED = [
    refused("-D publish will-delay-interval 5", "publish takes content-type,", True, "not-publish"),
    refused("-D bogus x y", "pub takes properties for connect, publish, will", True, "no-command"),
    refused("-D publish content-type", "give -D publish content-type VALUE", True, "short"),
    refused("-D publish user-property k", "give -D publish user-property KEY VALUE", True, "pair"),
    refused("-D pubrel user-property a b", "PUBREL without properties", True, "pubrel"),
    refused("-D publish message-expiry-interval soon", "is a number", False, "not-a-number"),
    refused("-D connect request-problem-information 2", "is 0 or 1", False, "flag"),
    # mosquitto_pub sends the method, and the broker refuses it.
    refused("-D connect authentication-method SCRAM-SHA-1", AUTH_REFUSED, False, "auth-method"),
    refused("-D auth authentication-data x", AUTH_REFUSED, False, "auth"),
    refused("-D disconnect session-expiry-interval 5", "DISCONNECT without", False, "disconnect"),
    # mosquitto_pub: the later of -V and -D wins.
    refused("-V mqttv311 -D publish content-type x", "needs MQTT 5", False, "with-mqtt311"),
    refused("-D will content-type x", "-D will ... needs --will-topic", False, "will"),
    refused(
        "-D connect receive-maximum 0",
        "connect_properties['receive_maximum'] must be between 1 and 65535",
        False,
        "out-of-range",
    ),
]


@pytest.mark.parametrize(("words", "says", "mosquitto_refuses"), REFUSED)
def test_a_wrong_property_is_refused_before_connecting(
    broker: Mosquitto,
    topic: str,
    capsys: pytest.CaptureFixture[str],
    words: list[str],
    says: str,
    mosquitto_refuses: bool,
) -> None:
    """Exit status 1 and a message naming the -D and what is wrong; nothing reaches the broker.
    Where mosquitto_pub refuses the same, it does so too (its own words)."""
    client_id = unique_id("cli-bad")
    mark = broker.log_size()
    args = [*where(broker), "-i", client_id, "-t", topic, "-m", "x", *words]
    assert cli.main(["pub", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("umqtt pub: ") and says in err, err
    assert not broker.log_lines(client_id, since=mark)
    binary = find_executable("mosquitto_pub")
    if mosquitto_refuses and binary is not None:
        done = subprocess.run([binary, *args], capture_output=True, timeout=30)
        assert done.returncode == 1, done
