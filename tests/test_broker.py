"""Self-tests of the test infrastructure (broker.py and the paho peer); they need no umqtt."""

from __future__ import annotations

import time

import paho.mqtt.client as paho
import pytest
from broker import ALICE, Mosquitto, port_accepts, unique_id, wait_until


def test_broker_listens_and_logs(broker, peer, topic):
    """The shared broker accepts clients and its log records what they do."""
    assert peer.subscribe(topic, qos=1) == 1
    peer.publish(topic, b"hello", qos=1)
    assert [m.payload for m in peer.wait_for(topic)] == [b"hello"]
    assert broker.wait_for_log(f"'{topic}', ... (5 bytes)")


def test_auth_broker_checks_passwords(auth_broker):
    """The auth broker answers a wrong password with CONNACK 5."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique_id("bad"))
    c.username_pw_set(ALICE[0], "wrong")
    codes = []
    c.on_connect = lambda cl, u, flags, rc, props: codes.append(rc.value)
    c.connect(auth_broker.host, auth_broker.port)
    c.loop_start()
    try:
        assert wait_until(lambda: codes, 5)
        assert codes[0] in (5, 0x87)  # paho may map 5 to the MQTT 5 "not authorized"
    finally:
        c.loop_stop()


def test_auth_broker_refuses_forbidden_subscription(auth_broker, make_peer):
    """dynsec makes the SUBACK 0x80 for forbidden/# and grants other topics."""
    p = make_peer(auth_broker, username=ALICE[0], password=ALICE[1])
    assert p.subscribe("forbidden/x", qos=1) == 0x80
    assert p.subscribe("allowed/x", qos=1) == 1


def test_restart_on_same_port_after_kill(fresh_broker):
    """kill() then start() brings the broker back on the same port; stop() ends it."""
    port = fresh_broker.port
    fresh_broker.kill()
    assert not port_accepts(fresh_broker.host, port)
    fresh_broker.start()
    assert fresh_broker.port == port and port_accepts(fresh_broker.host, port)
    fresh_broker.stop()
    assert not fresh_broker.running


def test_pause_makes_a_silent_link(fresh_broker, make_peer, topic):
    """pause() stops the broker answering; resume() lets it go on."""
    p = make_peer(fresh_broker)
    fresh_broker.pause()
    info = p.client.publish(topic, b"x", qos=1)
    time.sleep(0.5)
    assert not info.is_published()
    fresh_broker.resume()
    info.wait_for_publish(5)
    assert info.is_published()


def test_extra_config_lines_are_used(tmp_path):
    """extra_config lines end up in the broker's config."""
    b = Mosquitto(tmp_path, extra_config=["max_keepalive 100"])
    try:
        assert "max_keepalive 100" in b.conf_path.read_text()
        assert b.running
    finally:
        b.kill()


@pytest.mark.parametrize("signal_name", ["stop", "kill"])
def test_log_survives_restarts(fresh_broker, signal_name):
    """The log keeps growing across restarts, and log_size() marks a point in it."""
    mark = fresh_broker.log_size()
    getattr(fresh_broker, signal_name)()
    fresh_broker.start()
    assert "running" in fresh_broker.log_text(since=mark)
