"""The `mqtt_capture` fixture of the pytest plugin (issue 23): every message published on
`mqtt_broker`, as the broker delivered it, checked inside real pytest runs (`pytester`, in a
directory without this suite's conftest: the plugin comes from its entry point alone)."""

from __future__ import annotations

import textwrap
from typing import Any, Callable

import pytest
from umqtt._native import topic_matches
from umqtt.pytest_plugin import MessageCapture

pytest_plugins = ["pytester"]

# The README's example, verbatim.
README_EXAMPLE = """\
def test_status_is_reported(mqtt_client, mqtt_capture):
    device = mqtt_client()  # your code under test would publish this
    device.publish("devices/42/status", b"online", retain=True, qos=1)
    [status] = mqtt_capture.wait_for("devices/+/status")
    assert status.payload == b"online" and status.qos == 1
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=textwrap.dedent(source))
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", *args)


def test_readme_example_passes(pytester: pytest.Pytester) -> None:
    run(pytester, README_EXAMPLE).assert_outcomes(passed=1)


def test_qos_retain_order_and_clear(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture(scope="module")
        def kept(mqtt_broker):
            import umqtt
            c = umqtt.MQTTClient("kept-publisher", mqtt_broker.host, mqtt_broker.port)
            c.connect()
            c.publish("capture/kept", b"from before", retain=True, qos=1)
            yield
            c.publish("capture/kept", b"", retain=True, qos=1)  # clears it
            c.disconnect()

        def test_as_delivered(kept, mqtt_client, mqtt_capture):
            # Retained before the capture started: delivered on subscribing, retain set.
            [old] = mqtt_capture.wait_for("capture/kept")
            assert (old.payload, old.qos, old.retain) == (b"from before", 1, True)
            mqtt_capture.clear()
            assert mqtt_capture.messages == []
            c = mqtt_client(dialect="simple")
            c.publish("capture/a", b"zero", qos=0)
            c.publish("capture/b/c", b"two", qos=2)
            c.publish("capture/a", b"live", retain=True, qos=1)
            found = mqtt_capture.wait_for("capture/#", count=3)
            # A live message is delivered with retain clear under MQTT 3.1.1.
            got = [(m.topic, m.payload, m.qos, m.retain) for m in found]
            assert got == [
                ("capture/a", b"zero", 0, False),
                ("capture/b/c", b"two", 2, False),
                ("capture/a", b"live", 1, False),
            ]
            assert [m.payload for m in mqtt_capture.wait_for("capture/+")] == [b"zero", b"live"]
            assert isinstance(found[0].topic, str) and isinstance(found[0].payload, bytes)
            c.publish("capture/a", b"", retain=True, qos=1)

        def test_a_fresh_capture_per_test(mqtt_capture):
            assert [m for m in mqtt_capture.messages if m.topic.startswith("capture/a")] == []
        """,
    )
    result.assert_outcomes(passed=2)


def test_wait_for_fails_saying_what_it_saw(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_waits_for_the_wrong_topic(mqtt_client, mqtt_capture):
            mqtt_client().publish("sensors/1/temp", b"21.5", qos=1)
            mqtt_capture.wait_for("sensors/1/temp")
            mqtt_capture.wait_for("sensors/+/humidity", count=2, timeout=0.5)

        def test_nothing_published(mqtt_capture):
            mqtt_capture.wait_for(timeout=0.2)
        """,
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*mqtt_capture: 0 of 2 messages on 'sensors/+/humidity' within 0.5 s;"
            " 1 message(s) seen:",
            "*'sensors/1/temp' b'21.5' qos=1 retain=False",
            "*mqtt_capture: 0 of 1 messages within 0.2 s; nothing was published",
        ]
    )


def test_capture_in_this_suite(
    mqtt_capture: MessageCapture, mqtt_client: Callable[..., Any], topic: str
) -> None:
    """The fixture in the suite's own session, beside its other fixtures."""
    mqtt_client(dialect="robust").publish(topic, b"hi", qos=1)
    [message] = mqtt_capture.wait_for(topic)
    assert (message.payload, message.qos, message.retain) == (b"hi", 1, False)


def test_topic_filters_as_the_broker_matches_them() -> None:
    """The matching `wait_for` uses (the core's, also behind the command line's -T): its cases are
    Rust tests; here, the Python surface."""
    assert topic_matches("sensors/+/temp", "sensors/1/temp")
    assert topic_matches("sensors/#", "sensors")
    assert not topic_matches("#", "$SYS/broker/uptime")
    assert topic_matches("$SYS/#", "$SYS/broker/uptime")
    with pytest.raises(ValueError, match="invalid topic filter"):
        topic_matches("a/#/b", "a/x/b")
