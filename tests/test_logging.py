"""Logging (issue 23): everything under the `umqtt` logger; every packet each way at DEBUG under
`umqtt.packets`, in paho-mqtt's words (MQTT 3.1.1 and MQTT 5, whose lines add reason codes and
properties as paho-mqtt's do); connection events at INFO (a loss at WARNING).

The core reads the levels at every connect and then once a second, so a test sets its levels
before connecting, or waits for a change to be seen. Records of packets come from whichever
thread runs the I/O: a test checks which lines arrived, not in which order. Secrets (passwords,
keys, proxy passwords, tokens) at every level are checked in test_secrets.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import umqtt
import umqtt.aio
from broker import Mosquitto, unique_id, wait_until

PACKETS = "umqtt.packets"


def lines(caplog: pytest.LogCaptureFixture, logger: str = PACKETS) -> list[str]:
    return [r.getMessage() for r in list(caplog.records) if r.name == logger]


def logged(caplog: pytest.LogCaptureFixture, pattern: str) -> bool:
    """Whether a packet line matches `pattern` (a regular expression, whole line)."""
    return any(re.fullmatch(pattern, line) for line in lines(caplog))


@pytest.mark.parametrize("version", [4, 5])
def test_every_packet_kind_both_ways_in_paho_words(
    broker: Mosquitto, topic: str, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    """CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0, 1 and 2 both ways with PUBACK,
    PUBREC, PUBREL and PUBCOMP both ways, PINGREQ/PINGRESP, UNSUBSCRIBE/UNSUBACK, DISCONNECT.
    MQTT 5 adds what paho-mqtt adds: properties (a PUBLISH's both ways), the CONNACK's and the
    DISCONNECT's reason code, the subscription options; and the UNSUBACK's reason codes."""
    caplog.set_level(logging.DEBUG, logger="umqtt")
    got: list[bytes] = []
    client_id = unique_id("log")
    c = umqtt.MQTTClient(client_id, broker.host, broker.port, keepalive=60, version=version)
    c.set_callback(lambda t, m: got.append(m))
    c.connect()
    v5 = version == 5
    extra = {"properties": {"user_properties": [("a", "1")]}} if v5 else {}
    try:
        assert c.subscribe(topic, 2)
        for qos in (0, 1, 2):
            assert c.publish(topic, b"hello", qos=qos, **extra)
        assert wait_until(lambda: (c.check_msg(), len(got) >= 3)[1], 10)
        # The QoS 2 message's PUBREL comes after our PUBREC; our PUBCOMP ends it.
        assert wait_until(lambda: logged(caplog, r"Sending PUBCOMP \(Mid: \d+\)"), 10)
        assert wait_until(lambda: (c.ping(), logged(caplog, "Received PINGRESP"))[1], 10)
        assert c.unsubscribe(topic)
    finally:
        c.disconnect()
    t = re.escape(f"'{topic}'") + (re.escape(", properties=[UserProperty : [('a', '1')]]") * v5)
    connect = re.escape(
        f"Sending CONNECT (u0, p0, wr0, wq0, wf0, c1, k60) client_id=b'{client_id}'"
    )
    options = "{QoS=2, noLocal=False, retainAsPublished=False, retainHandling=0}"
    expected = [
        connect + (r" properties=\[MaximumPacketSize : \d+\]" * v5),
        re.escape("Received CONNACK (0, 0x00 Success) properties=[") + r".*\]"
        if v5
        else re.escape("Received CONNACK (0, 0)"),
        re.escape(f"Sending SUBSCRIBE (d0, m1) [('{topic}', {options if v5 else 2})]"),
        re.escape("Received SUBACK (Mid: 1) [2]"),
        rf"Sending PUBLISH \(d0, q0, r0, m0\), {t}, \.\.\. \(5 bytes\)",
        rf"Sending PUBLISH \(d0, q1, r0, m2\), {t}, \.\.\. \(5 bytes\)",
        re.escape("Received PUBACK (Mid: 2)"),
        rf"Sending PUBLISH \(d0, q2, r0, m3\), {t}, \.\.\. \(5 bytes\)",
        re.escape("Received PUBREC (Mid: 3)"),
        re.escape("Sending PUBREL (Mid: 3)"),
        re.escape("Received PUBCOMP (Mid: 3)"),
        rf"Received PUBLISH \(d0, q0, r0, m0\), {t}, \.\.\. \(5 bytes\)",
        rf"Received PUBLISH \(d0, q1, r0, m\d+\), {t}, \.\.\. \(5 bytes\)",
        r"Sending PUBACK \(Mid: \d+\)",
        rf"Received PUBLISH \(d0, q2, r0, m\d+\), {t}, \.\.\. \(5 bytes\)",
        r"Sending PUBREC \(Mid: \d+\)",
        r"Received PUBREL \(Mid: \d+\)",
        r"Sending PUBCOMP \(Mid: \d+\)",
        "Sending PINGREQ",
        "Received PINGRESP",
        re.escape(f"Sending UNSUBSCRIBE (d0, m4) ['{topic}']"),
        re.escape("Received UNSUBACK (Mid: 4)" + " [0]" * v5),
        re.escape(
            "Sending DISCONNECT" + " reasonCode=0x00 Normal disconnection properties=[]" * v5
        ),
    ]
    missing = [p for p in expected if not logged(caplog, p)]
    assert not missing, "\n".join(["missing:", *missing, "logged:", *lines(caplog)])
    levels = {r.levelname for r in caplog.records if r.name == PACKETS}
    assert levels == {"DEBUG"}


@pytest.mark.parametrize("version", [4, 5])
def test_connect_flags_say_what_is_there_never_the_values(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    """u, p, wr, wq, wf, c, k as paho writes them; the user name, password and will stay out.
    MQTT 5: the CONNECT's properties too, its user properties by name only (a value may be a
    token)."""
    caplog.set_level(logging.DEBUG, logger="umqtt")
    client_id = unique_id("flags")
    v5 = {"version": 5, "connect_properties": {"user_properties": [("token", "tok-5e7a")]}}
    c = umqtt.MQTTClient(
        client_id,
        broker.host,
        broker.port,
        user="u-7f3a",
        password="p-9c1e",
        **(v5 if version == 5 else {}),
    )
    c.set_last_will("will/topic-5d2b", "will-msg-8e4f", retain=True, qos=1)
    c.connect(clean_session=False)
    c.disconnect()
    words = f"Sending CONNECT (u1, p1, wr1, wq1, wf1, c0, k60) client_id=b'{client_id}'"
    if version == 5:
        words += (
            " properties=[SessionExpiryInterval : 4294967295, UserProperty : [('token', ...)],"
            " MaximumPacketSize : 16777216]"
        )
    assert words in lines(caplog), lines(caplog)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for value in ("u-7f3a", "p-9c1e", "will/topic-5d2b", "will-msg-8e4f", "tok-5e7a"):
        assert value not in text


def test_a_message_without_payload_and_a_topic_with_odd_characters(
    broker: Mosquitto, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A retained empty message is paho's "(NULL payload)"; a quote or a backslash in a topic is
    escaped as Python's repr() does (control characters too, which only a broker could send:
    the core refuses them in topics), so a line cannot be broken or forged."""
    caplog.set_level(logging.DEBUG, logger="umqtt")
    odd = f"{topic}/it's\\here"
    c = umqtt.MQTTClient(unique_id(), broker.host, broker.port)
    c.connect()
    try:
        assert c.publish(odd, b"", retain=True, qos=1)
    finally:
        c.disconnect()
    quoted = f"'{topic}/it\\'s\\\\here'"
    words = f"Sending PUBLISH (d0, q1, r1, m1), {quoted} (NULL payload)"
    assert words in lines(caplog), lines(caplog)


def test_turning_on_just_the_packets(broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """`umqtt.packets` at DEBUG alone: the packets, and nothing else of umqtt's below WARNING."""
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.DEBUG, logger=PACKETS)
    c = umqtt.MQTTClient(unique_id(), broker.host, broker.port)
    c.connect()
    c.disconnect()
    assert "Received CONNACK (0, 0)" in lines(caplog)
    others = [r for r in caplog.records if r.name != PACKETS and r.name.startswith("umqtt")]
    assert not [r for r in others if r.levelno < logging.WARNING], others


@pytest.mark.parametrize("version", [4, 5])
def test_no_packet_records_at_info_and_the_events_at_info(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    caplog.set_level(logging.INFO, logger="umqtt")
    c = umqtt.MQTTClient(unique_id(), broker.host, broker.port, version=version)
    c.set_callback(lambda t, m: None)
    c.connect()
    assert c.subscribe("log/info", 1)
    c.disconnect()
    assert lines(caplog) == []
    target = f"127.0.0.1:{broker.port}"
    info = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "umqtt"]
    assert ("INFO", f"connected to {target}") in info
    assert ("INFO", f"disconnected from {target}") in info


def test_a_level_raised_after_connect_is_seen_within_seconds(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Levels are read again once a second, not only at connect()."""
    caplog.set_level(logging.INFO, logger="umqtt")
    c = umqtt.MQTTClient(unique_id(), broker.host, broker.port)
    c.connect()
    try:
        assert lines(caplog) == []
        caplog.set_level(logging.DEBUG, logger="umqtt")
        assert wait_until(lambda: (c.ping(), "Received PINGRESP" in lines(caplog))[1], 10)
    finally:
        c.disconnect()


def test_connection_events(fresh_broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """connected, lost (WARNING), reconnecting, reconnected, disconnected, under `umqtt`."""
    caplog.set_level(logging.INFO, logger="umqtt")
    c = umqtt.MQTTClient(
        unique_id(),
        fresh_broker.host,
        fresh_broker.port,
        reconnect_delay=0.2,
        reconnect_max_delay=0.5,
    )
    target = f"127.0.0.1:{fresh_broker.port}"

    def said(level: str, pattern: str) -> bool:
        return any(
            r.name == "umqtt" and r.levelname == level and re.fullmatch(pattern, r.getMessage())
            for r in list(caplog.records)
        )

    c.connect()
    try:
        assert said("INFO", re.escape(f"connected to {target}"))
        fresh_broker.stop()
        lost = re.escape(f"connection to {target} lost: ") + ".*; reconnecting"
        assert wait_until(lambda: said("WARNING", lost), 10)
        assert wait_until(lambda: said("INFO", re.escape(f"reconnecting to {target}")), 10)
        fresh_broker.start()
        assert wait_until(lambda: said("INFO", re.escape(f"reconnected to {target}")), 15)
    finally:
        c.disconnect()
    assert said("INFO", re.escape(f"disconnected from {target}"))


def test_asyncio_client_logs_its_packets(
    broker: Mosquitto, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="umqtt")

    async def session() -> None:
        async with umqtt.aio.MQTTClient(unique_id(), broker.host, broker.port) as c:
            await c.publish(topic, b"abc", qos=1)

    asyncio.run(session())
    for words in (
        "Received CONNACK (0, 0)",
        f"Sending PUBLISH (d0, q1, r0, m1), '{topic}', ... (3 bytes)",
        "Received PUBACK (Mid: 1)",
        "Sending DISCONNECT",
    ):
        assert words in lines(caplog), lines(caplog)


def test_other_crates_records_are_under_umqtt(tmp_path: Path) -> None:
    """rustls's records (and rumqttc's) reach Python under `umqtt.`: a root logger at DEBUG
    in a fresh process sees no logger outside `umqtt` from the core."""
    script = textwrap.dedent(
        """
        import json, logging, sys, pathlib
        names = set()
        class Keep(logging.Handler):
            def emit(self, record):
                names.add(record.name)
        logging.getLogger().addHandler(Keep())
        logging.getLogger().setLevel(logging.DEBUG)
        import umqtt
        from umqtt.testing import Mosquitto
        with Mosquitto(pathlib.Path(sys.argv[1]), tls=True) as b:
            c = umqtt.MQTTClient("crates", "127.0.0.1", b.tls_port, ssl=True,
                                 ssl_params=b.ssl_params())
            c.connect()
            c.disconnect()
        print(json.dumps(sorted(names)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert "umqtt.packets" in names
    assert any(n.startswith("umqtt.rustls") for n in names), names
    assert [n for n in names if not n.startswith("umqtt")] == [], names
