"""`python -m umqtt pub|sub` (umqtt.cli), run in-process through main(): what it prints, and its
exit statuses (0, 1 on an error, 27 when -W expires, as mosquitto_sub)."""

from __future__ import annotations

import threading
import time

from broker import free_port
from umqtt import cli


def where(broker) -> list[str]:
    return ["-h", broker.host, "-p", str(broker.port)]


def test_pub_reaches_a_subscriber(broker, peer, topic):
    peer.subscribe(topic, 1)
    assert cli.main(["pub", *where(broker), "-t", topic, "-m", "21.5", "-q", "1"]) == 0
    [got] = peer.wait_for(topic)
    assert (got.payload, got.qos) == (b"21.5", 1)


def test_sub_prints_topic_and_payload(broker, peer, topic, capsysbinary):
    peer.publish(topic, b"retained", qos=1, retain=True)
    args = ["sub", *where(broker), "-t", topic, "-v", "-C", "1", "-W", "10"]
    assert cli.main(args) == 0
    assert capsysbinary.readouterr().out == topic.encode() + b" retained\n"
    peer.publish(topic, b"", qos=1, retain=True)  # clear the retained message


def test_sub_timeout_without_messages_exits_27(broker, topic):
    started = time.monotonic()
    assert cli.main(["sub", *where(broker), "-t", topic, "-W", "0.5"]) == 27
    assert time.monotonic() - started < 5


def test_sub_timeout_counts_from_the_start_even_while_messages_keep_coming(
    broker, peer, topic, capsysbinary
):
    """-W is a total time, as mosquitto_sub's: a steady stream does not keep the command alive."""
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            peer.publish(topic, b"tick", qos=0)
            time.sleep(0.02)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        started = time.monotonic()
        assert cli.main(["sub", *where(broker), "-t", topic, "-W", "1"]) == 27
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        streamer.join(5)
    assert elapsed < 5, f"-W 1 returned after {elapsed:.1f} s"
    assert b"tick\n" in capsysbinary.readouterr().out


def test_unreachable_broker_exits_1_with_a_message(capsys):
    port = str(free_port())
    assert cli.main(["pub", "-h", "127.0.0.1", "-p", port, "-t", "t", "-m", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("umqtt pub: ") and f"127.0.0.1:{port}" in err
