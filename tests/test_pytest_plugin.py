"""The pytest plugin shipped in the wheel (issue 6): `umqtt.pytest_plugin`, loaded through its
`pytest11` entry point, and the broker helper it is built on (`umqtt.testing`).

Most checks run a separate pytest session with `pytester` in a directory of its own (no conftest
of this suite), as a user's project would: the plugin must come from the entry point alone. The
broker log is the witness for what the client factory sends at teardown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
import umqtt
import umqtt.robust
from umqtt import testing

pytest_plugins = ["pytester"]

# The README's example, verbatim.
README_EXAMPLE = """\
def test_publish(mqtt_broker, mqtt_client):
    client = mqtt_client()  # connected to mqtt_broker.host:mqtt_broker.port
    assert client.publish("sensors/1", b"21.5", qos=1)  # True once the broker has it
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=textwrap.dedent(source))
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "-rs", *args)


# --------------------------------------------------------------------------- through pytester


def test_readme_example_passes(pytester: pytest.Pytester) -> None:
    result = run(pytester, README_EXAMPLE)
    result.assert_outcomes(passed=1)


def test_skips_with_install_hint_when_mosquitto_is_not_on_path(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run(
        pytester,
        """
        def test_broker(mqtt_broker):
            raise AssertionError("must not run")

        def test_client(mqtt_client):
            mqtt_client()
            raise AssertionError("must not run")

        def test_factory(mqtt_broker_factory):
            mqtt_broker_factory(users={"alice": "pw"})
            raise AssertionError("must not run")

        def test_no_broker():
            pass
        """,
    )
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(
        ["SKIPPED [[]*] *: mosquitto is not installed: apt-get install mosquitto (Debian/Ubuntu)*"]
    )


def test_password_auth_and_mutual_tls(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        import umqtt

        @pytest.mark.parametrize("dialect", ["quecpython", "simple", "robust"])
        def test_tls_round_trip(mqtt_broker_factory, mqtt_client, dialect):
            broker = mqtt_broker_factory(
                users={"alice": "s3cret"}, tls=True, require_certificate=True
            )
            assert (broker.host, broker.username, broker.password) == (
                "127.0.0.1", "alice", "s3cret"
            )
            assert broker.tls_port not in (None, broker.port)
            for path in (broker.ca_path, broker.client_cert_path, broker.client_key_path):
                assert path.read_text().startswith("-----BEGIN ")
            got = []
            client = mqtt_client(
                broker=broker, tls=True, dialect=dialect, callback=lambda t, m: got.append((t, m))
            )
            client.subscribe("plugin/tls", 1)
            client.publish("plugin/tls", b"over TLS", qos=1)
            client.wait_msg()
            assert got == [(b"plugin/tls", b"over TLS")]
            assert "u'alice'" in broker.connect_flags(client.client_id)
            assert broker.wait_for_log(f"on port {broker.tls_port}.")

        def test_wrong_password_is_refused(mqtt_client, mqtt_broker_factory):
            broker = mqtt_broker_factory(users={"alice": "s3cret"})
            with pytest.raises(umqtt.MQTTConnectError) as refused:
                mqtt_client(broker=broker, password="wrong")
            assert refused.value.rc == 5
            with pytest.raises(umqtt.MQTTConnectError):
                mqtt_client(broker=broker, user=None, password=None)
            assert mqtt_client(broker=broker).get_mqttsta() == 0

        def test_mutual_tls_needs_the_client_certificate(mqtt_broker_factory, mqtt_client):
            broker = mqtt_broker_factory(tls=True, require_certificate=True)
            with pytest.raises(umqtt.MQTTConnectError):
                mqtt_client(broker=broker, tls=True, ssl_params={"ca_certs": str(broker.ca_path)})

        def test_acl_and_extra_config(mqtt_broker_factory):
            broker = mqtt_broker_factory(
                users={"bob": "pw"}, acl="user bob\\ntopic read #\\n",
                extra_config=["max_keepalive 100"],
            )
            text = broker.conf_path.read_text()
            assert "max_keepalive 100" in text and "acl_file" in text
        """,
    )
    result.assert_outcomes(passed=6)


def test_client_factory_disconnects_at_teardown(pytester: pytest.Pytester) -> None:
    """Every client the factory made sends DISCONNECT after its test, passed or failed (an
    asyncio client too, made unconnected); a failed test's report carries the tail of the broker
    log."""
    result = run(
        pytester,
        """
        import asyncio
        import json
        from pathlib import Path

        def test_passes(mqtt_broker, mqtt_client):
            Path("broker.json").write_text(json.dumps({"log": str(mqtt_broker.log_path)}))
            mqtt_client(client_id="plugin-teardown-quecpython")
            mqtt_client(client_id="plugin-teardown-robust", dialect="robust")
            aio = mqtt_client(client_id="plugin-teardown-aio", dialect="aio")
            assert aio.get_mqttsta() == -1  # returned unconnected
            assert asyncio.run(aio.connect()) == 0
            assert not mqtt_broker.log_lines("Received DISCONNECT")

        def test_fails(mqtt_client):
            mqtt_client(client_id="plugin-teardown-simple", dialect="simple")
            raise AssertionError("on purpose")
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*mosquitto log (mqtt_broker, last 60 lines)*"])
    log = Path(json.loads((pytester.path / "broker.json").read_text())["log"]).read_text()
    for dialect in ("quecpython", "robust", "aio", "simple"):
        assert f"Received DISCONNECT from plugin-teardown-{dialect}" in log, log[-3000:]


def test_plugin_is_lazy(pytester: pytest.Pytester) -> None:
    """A session whose tests use no fixture of the plugin starts no broker and does not even
    import umqtt.testing (the plugin comes from the entry point: no conftest here)."""
    pytester.makeconftest(
        """
        import json, sys, threading

        def pytest_sessionfinish(session):
            plugin = session.config.pluginmanager.get_plugin("umqtt")
            with open("state.json", "w") as f:
                json.dump({
                    "plugin": getattr(plugin, "__name__", None),
                    "testing": "umqtt.testing" in sys.modules,
                    "threads": [t.name for t in threading.enumerate()],
                }, f)
        """
    )
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
    state = json.loads((pytester.path / "state.json").read_text())
    assert state["plugin"] == "umqtt.pytest_plugin"
    assert state["testing"] is False
    assert state["threads"] == ["MainThread"]


def test_importing_the_plugin_starts_nothing() -> None:
    code = (
        "import sys, threading, umqtt.pytest_plugin\n"
        "print('umqtt.testing' in sys.modules, threading.active_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.split() == ["False", "1"]


# --------------------------------------------------------------------------- directly


@pytest.mark.parametrize("dialect", ["quecpython", "simple", "robust"])
def test_client_factory_in_this_suite(
    mqtt_broker: testing.Mosquitto, mqtt_client: Callable[..., Any], dialect: str
) -> None:
    got: list[tuple[bytes, bytes]] = []
    client = mqtt_client(dialect=dialect, callback=lambda t, m: got.append((t, m)))
    topic = testing.unique_id("plugin")
    client.subscribe(topic, 1)
    client.publish(topic, b"hi", qos=1)
    client.wait_msg()
    assert got == [(topic.encode(), b"hi")]
    assert mqtt_broker.host == "127.0.0.1" and mqtt_broker.port > 0
    assert (mqtt_broker.username, mqtt_broker.password, mqtt_broker.ca_path) == (None,) * 3


def test_unknown_dialect_is_refused(mqtt_client: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="dialect"):
        mqtt_client(dialect="paho")


class QuickRobust(umqtt.robust.MQTTClient):
    DELAY = 0.1


def test_client_class_makes_a_subclass_of_a_dialect(
    mqtt_broker: testing.Mosquitto, mqtt_client: Callable[..., Any]
) -> None:
    """client_class= makes the test's own subclass, connected like its dialect's client."""
    client = mqtt_client(client_class=QuickRobust, client_id=testing.unique_id("own-class"))
    assert type(client) is QuickRobust
    assert "c1" in mqtt_broker.connect_flags(client.client_id).split(", ")
    assert type(mqtt_client(client_class=umqtt.MQTTClient, dialect="quecpython")) is (
        umqtt.MQTTClient
    )


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        pytest.param({"client_class": dict}, TypeError, "subclass", id="not-a-client"),
        pytest.param({"client_class": "robust"}, TypeError, "subclass", id="not-a-class"),
        pytest.param(
            {"client_class": QuickRobust, "dialect": "quecpython"},
            ValueError,
            "not of dialect",
            id="class-of-another-dialect",
        ),
        pytest.param({"dialect": "aio", "connect": True}, ValueError, "await", id="aio-connect"),
        pytest.param(
            {"dialect": "aio", "callback": print}, ValueError, "messages", id="aio-callback"
        ),
    ],
)
def test_options_that_cannot_work_are_refused(
    mqtt_client: Callable[..., Any], options: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        mqtt_client(**options)


def test_tls_without_trustme_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # import trustme -> ImportError
    with pytest.raises(RuntimeError, match="pip install trustme"):
        testing.Mosquitto(tmp_path, tls=True, binary="/nonexistent/mosquitto", start=False)


def test_missing_mosquitto_raises_with_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(testing.MosquittoNotFound, match="apt-get install mosquitto"):
        testing.Mosquitto()


def test_sbin_next_to_bin_on_path_is_searched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Debian's /usr/sbin/mosquitto is found with only /usr/bin on PATH."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "sbin").mkdir()
    fake = tmp_path / "sbin" / "mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert testing.find_mosquitto() == str(fake)


def test_with_block_stops_and_cleans_up() -> None:
    try:
        broker = testing.Mosquitto()
    except testing.MosquittoNotFound as e:
        pytest.skip(str(e))
    with broker:
        assert testing.port_accepts(broker.host, broker.port)
        client = umqtt.MQTTClient(testing.unique_id(), broker.host, broker.port)
        client.connect()
        client.disconnect()
        assert broker.wait_for_log("Received DISCONNECT from")
    assert not broker.running
    assert not broker.dir.exists()
