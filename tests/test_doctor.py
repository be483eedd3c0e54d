"""`python -m umqtt doctor` (umqtt.doctor) against real broken setups: which step fails, the words
of the diagnosis, the exit status, and that the password never shows, in the text and in --json.

Every setup is real: mosquitto brokers (anonymous, with passwords, with TLS and with certificates
made here: for another name, expired), a closed port, a port whose full accept queue drops SYNs
(as a firewall does), a port that accepts TCP and never answers, and a client that keeps its id.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from umqtt import cli
from umqtt.testing import free_port, unique_id, wait_until

SECRET = "pw-d0c70r-7e5c9a"  # a password no output can contain by chance
STEPS = ["resolve", "tcp", "tls", "connect", "roundtrip", "keepalive", "client_id"]


@dataclass
class Diagnosis:
    """One doctor run, as text and as --json."""

    status: int
    text: str
    report: dict[str, Any]

    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.report["steps"] if s["name"] == name)

    @property
    def failed(self) -> str:
        [failed] = [s["name"] for s in self.report["steps"] if s["status"] == "fail"]
        return failed

    def words(self, name: str) -> str:
        """The result, cause and fix of a step as --json has them."""
        s = self.step(name)
        return " ".join(str(s[k]) for k in ("result", "cause", "fix"))


def diagnose(capsys: pytest.CaptureFixture[str], *args: str) -> Diagnosis:
    """Runs the doctor twice, as text and as --json; both must agree and hide the password."""
    status = cli.main(["doctor", *args])
    out, err = capsys.readouterr()
    json_status = cli.main(["doctor", *args, "--json"])
    json_out, json_err = capsys.readouterr()
    assert status == json_status, (out, json_out)
    for shown in (out, err, json_out, json_err):
        assert SECRET not in shown
    report = json.loads(json_out)
    assert [s["name"] for s in report["steps"]] == STEPS
    assert report["ok"] is (status == 0)
    return Diagnosis(status, out + err, report)


def at(broker: Any, port: int | None = None) -> list[str]:
    return ["-h", broker.host, "-p", str(port or broker.port)]


# --------------------------------------------------------------------------- setups


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, server certificates from it (for another name; expired), and an unrelated CA."""
    directory = tmp_path_factory.mktemp("doctor-certificates")
    ca = trustme.CA()
    issued = {
        "other-name": ca.issue_cert("other.example"),
        "expired": ca.issue_cert(
            "127.0.0.1",
            not_before=datetime.datetime(2020, 1, 1),
            not_after=datetime.datetime(2021, 1, 1),
        ),
    }
    paths = {"ca": directory / "ca.pem", "stranger-ca": directory / "stranger-ca.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    trustme.CA().cert_pem.write_to_path(str(paths["stranger-ca"]))
    for name, cert in issued.items():
        paths[name] = directory / f"{name}.pem"
        paths[f"{name}-key"] = directory / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(paths[name]))
        cert.private_key_pem.write_to_path(str(paths[f"{name}-key"]))
    return paths


def tls_broker_with(factory: Any, certificates: dict[str, Path], name: str) -> Any:
    """A broker whose only listener speaks TLS with the certificate `name`."""
    return factory(
        extra_config=[
            f"certfile {certificates[name]}",
            f"keyfile {certificates[name + '-key']}",
        ]
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them) and never reads."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # every connection of a run stays queued: room for them all
        yield listener.getsockname()[1]


@pytest.fixture
def dropping_port() -> Iterator[int]:
    """A port that drops SYNs, as a firewall does: its accept queue (backlog 0) is full."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        with socket.socket() as probe:
            probe.settimeout(0.3)
            if probe.connect_ex(listener.getsockname()) == 0:
                pytest.skip("this kernel does not drop SYNs when the accept queue is full")
        yield listener.getsockname()[1]


# --------------------------------------------------------------------------- healthy


def test_a_working_broker_passes_every_step_in_a_few_seconds(mqtt_broker, capsys):
    started = time.monotonic()
    status = cli.main(["doctor", *at(mqtt_broker)])
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert status == 0
    for number, title in [(1, "name resolution"), (2, "TCP"), (4, "MQTT CONNECT")]:
        assert f"✓ {number} {title}" in out
    assert "✓ 5 QoS 1 round trip" in out and "subscribed, published and received" in out
    assert "✓ 6 keepalive" in out and "PINGREQs answered" in out
    assert "– 3 TLS" in out and "not asked" in out
    assert "– 7 client id" in out
    assert out.rstrip().endswith("Every step passed.")
    assert elapsed < 20, f"the doctor took {elapsed:.1f} s on a healthy local broker"


def test_json_of_a_broker_with_passwords_has_the_schema_and_never_the_password(
    mqtt_broker_factory, capsys
):
    broker = mqtt_broker_factory(users={"alice": SECRET})
    status = cli.main(["doctor", *at(broker), "-u", "alice", "-P", SECRET, "--json"])
    out, err = capsys.readouterr()
    assert status == 0 and SECRET not in out + err
    report = json.loads(out)
    assert report["schema"] == "umqtt-doctor/1" and report["ok"] is True
    assert report["target"] == {
        "host": "127.0.0.1",
        "port": broker.port,
        "tls": False,
        "transport": "tcp",
        "proxy": None,
        "client_id": report["target"]["client_id"],
        "checked_client_id": None,
        "username": "alice",
        "password_given": True,
    }
    for number, step in enumerate(report["steps"], 1):
        assert set(step) == {
            "number",
            "name",
            "title",
            "status",
            "seconds",
            "result",
            "cause",
            "fix",
            "details",
        }
        assert step["number"] == number
        assert step["status"] in ("pass", "skip")
    by_name = {s["name"]: s for s in report["steps"]}
    assert by_name["connect"]["details"] == {"rc": None, "session_present": False, "error": None}
    assert by_name["roundtrip"]["details"]["qos"] == 1
    assert by_name["tcp"]["details"]["attempts"][0]["outcome"] == "connected"


# --------------------------------------------------------------------------- name and TCP


def test_a_name_that_cannot_resolve_fails_step_1(capsys):
    d = diagnose(capsys, "-h", "x" * 64 + ".invalid", "-u", "alice", "-P", SECRET)
    assert d.status == 1 and d.failed == "resolve"
    assert "cannot resolve" in d.words("resolve") and "check the host name" in d.words("resolve")
    assert d.step("tcp")["result"] == "not run: step 1 failed"


def test_a_closed_port_is_refused_and_the_listener_line_named(capsys):
    port = free_port()
    d = diagnose(capsys, "-h", "127.0.0.1", "-p", str(port), "-u", "alice", "-P", SECRET)
    assert d.status == 1 and d.failed == "tcp"
    words = d.words("tcp")
    assert f"127.0.0.1:{port} refused" in words
    assert "nothing listens" in words and "is the broker running" in words
    assert "mosquitto 2 listens only on localhost unless a `listener` line" in words
    assert f"`listener {port}`" in words
    assert "✗ 2 TCP" in d.text and "cause:" in d.text and "fix:" in d.text
    assert "3 to 7 not run: step 2 failed" in d.text


def test_a_closed_ipv6_port_is_refused_too(capsys):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    d = diagnose(capsys, "-h", "::1", "-p", str(port))
    assert d.status == 1 and d.failed == "tcp"
    assert f"[::1]:{port} refused" in d.words("tcp")
    assert d.step("tcp")["details"]["attempts"][0]["family"] == "IPv6"


def test_dropped_packets_time_out_and_the_firewall_is_named(dropping_port, capsys):
    d = diagnose(capsys, "-h", "127.0.0.1", "-p", str(dropping_port), "--timeout", "0.5")
    assert d.status == 1 and d.failed == "tcp"
    words = d.words("tcp")
    assert "timed out" in words and "firewall or cloud security group" in words
    assert f"allow incoming TCP port {dropping_port}" in words and "security group" in words


def test_a_port_that_never_answers_is_not_an_mqtt_broker(silent_port, capsys):
    d = diagnose(capsys, "-h", "127.0.0.1", "-p", str(silent_port), "--timeout", "0.5")
    assert d.status == 1 and d.failed == "connect"
    assert d.step("tcp")["status"] == "pass"
    assert "does not answer TLS either" in d.step("tls")["result"]
    assert "TCP works but nothing answers like an MQTT broker" in d.words("connect")
    assert "timed out" in d.step("connect")["result"]  # the core's own words


# --------------------------------------------------------------------------- TLS


def test_a_tls_listener_reached_without_tls_asks_for_tls(mqtt_broker_factory, capsys):
    broker = mqtt_broker_factory(tls=True)
    d = diagnose(capsys, *at(broker, broker.tls_port), "-u", "alice", "-P", SECRET)
    assert d.status == 1 and d.failed == "tls"
    words = d.words("tls")
    assert f"port {broker.tls_port} answers TLS" in words and "expects TLS" in words
    assert "add --tls" in words and "--cafile" in words
    assert "certificate for 127.0.0.1, localhost" in words
    assert d.step("tls")["details"]["speaks_tls"] is True


def test_a_plain_listener_reached_with_tls_says_it_speaks_plain_mqtt(mqtt_broker_factory, capsys):
    broker = mqtt_broker_factory(tls=True)
    cafile = str(broker.ca_path)
    d = diagnose(capsys, *at(broker), "--cafile", cafile, "-u", "alice", "-P", SECRET)
    assert d.status == 1 and d.failed == "tls"
    words = d.words("tls")
    assert words.startswith("TLS handshake with")  # the core's verdict
    assert f"port {broker.port} speaks plain MQTT, not TLS" in words
    assert "connect without TLS" in words and "8883" in words
    assert d.step("tls")["details"]["plain_mqtt"] is True


@pytest.mark.parametrize(
    ("certificate", "verdict", "diagnosis", "leaf"),
    [
        (
            "other-name",
            "not valid for that host name",
            [
                "the certificate is for other.example, not for 127.0.0.1",
                "-h set to a name the certificate covers (other.example)",
            ],
            {"names": ["DNS:other.example"]},
        ),
        (
            "expired",
            "has expired",
            ["the certificate expired on 2021-01-01", "days ago", "renew the broker's certificate"],
            {"not_after": "2021-01-01T00:00:00Z"},
        ),
    ],
)
def test_a_bad_server_certificate_is_explained(
    mqtt_broker_factory, certificates, capsys, certificate, verdict, diagnosis, leaf
):
    broker = tls_broker_with(mqtt_broker_factory, certificates, certificate)
    d = diagnose(capsys, *at(broker), "--cafile", str(certificates["ca"]))
    assert d.status == 1 and d.failed == "tls"
    words = d.words("tls")
    assert verdict in words  # the core's verdict
    for phrase in diagnosis:
        assert phrase in words
    described = d.step("tls")["details"]["certificates"][0]
    assert {key: described[key] for key in leaf} == leaf


def test_an_untrusted_issuer_says_which_ca_to_pass(mqtt_broker_factory, certificates, capsys):
    broker = mqtt_broker_factory(tls=True)
    stranger = str(certificates["stranger-ca"])
    d = diagnose(capsys, *at(broker, broker.tls_port), "--cafile", stranger)
    assert d.status == 1 and d.failed == "tls"
    words = d.words("tls")
    assert "not signed by a trusted CA" in words  # the core's verdict
    assert "issued by O=trustme" in words and f"--cafile {stranger}" in words
    assert "with --cafile FILE" in words


def test_tls_with_the_right_ca_passes_and_describes_the_certificate(mqtt_broker_factory, capsys):
    broker = mqtt_broker_factory(tls=True)
    args = [*at(broker, broker.tls_port), "--cafile", str(broker.ca_path), "--json"]
    assert cli.main(["doctor", *args]) == 0
    tls = json.loads(capsys.readouterr().out)["steps"][2]
    assert tls["status"] == "pass" and tls["details"]["verified_with"].endswith(str(broker.ca_path))
    [leaf, *_] = tls["details"]["certificates"]
    assert set(leaf["names"]) == {"IP:127.0.0.1", "DNS:localhost"}
    assert leaf["issuer"].startswith("O=trustme") and len(leaf["sha256"]) == 64


def test_a_broker_that_demands_a_client_certificate_asks_for_one(mqtt_broker_factory, capsys):
    broker = mqtt_broker_factory(tls=True, require_certificate=True)
    d = diagnose(capsys, *at(broker, broker.tls_port), "--cafile", str(broker.ca_path))
    assert d.status == 1 and d.failed == "tls"
    words = d.words("tls")
    assert "rejected the handshake" in words  # the core's verdict
    assert "demands a client certificate" in words and "--cert FILE --key FILE" in words


# --------------------------------------------------------------------------- CONNECT


@pytest.fixture
def password_broker(mqtt_broker_factory):
    return mqtt_broker_factory(users={"alice": "the-right-one"})


def test_anonymous_access_off_asks_for_credentials(password_broker, capsys):
    d = diagnose(capsys, *at(password_broker))
    assert d.status == 1 and d.failed == "connect"
    assert d.step("connect")["details"]["rc"] == 5
    words = d.words("connect")
    assert "CONNACK return code 5" in words  # the core's verdict
    assert "anonymous access is off" in words and "-u USER -P PASSWORD" in words


def test_a_wrong_password_is_named_and_never_shown(password_broker, capsys):
    d = diagnose(capsys, *at(password_broker), "-u", "alice", "-P", SECRET)
    assert d.status == 1 and d.failed == "connect"
    words = d.words("connect")
    assert "refused user 'alice'" in words and "wrong password" in words
    assert "user 'alice' with a password" in d.text


def test_a_password_without_a_user_name_is_named(mqtt_broker, capsys):
    d = diagnose(capsys, *at(mqtt_broker), "-P", SECRET)
    assert d.status == 1 and d.failed == "connect"
    words = d.words("connect")
    assert "a password without a user name" in words and "-u" in words


# --------------------------------------------------------------------------- client id


def test_two_clients_with_one_id_are_caught_after_a_notice(mqtt_broker, mqtt_client):
    """The device reconnects by itself (as in "Lost connection, retrying"): the doctor's takeover
    is taken back. It says so before, connects with clean_session=False, and the device ends up
    connected again."""
    device_id = unique_id("device")
    device = mqtt_client(client_id=device_id, reconnect_delay=0.2, clean_session=False)
    command = [sys.executable, "-m", "umqtt", "doctor", *at(mqtt_broker)]
    command += ["-i", device_id, "--check-client-id", "--timeout", "10"]
    command += ["-u", "alice", "-P", SECRET]  # the anonymous broker ignores them
    done = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
    )
    out = done.stdout
    assert done.returncode == 1, out
    assert SECRET not in out
    notice = out.index(f"note: checking client id '{device_id}'")
    assert "its session is kept: clean_session=False" in out
    assert notice < out.index("✗ 7 client id")
    assert f"another client took the id '{device_id}' back" in out
    assert "connection lost, retrying" in out and "its own client id" in out
    assert mqtt_broker.log_lines(f" as {device_id} (", "c0, k1")  # the doctor's CONNECT
    assert wait_until(lambda: device.get_mqttsta() == 0, 10)


def test_an_id_nobody_uses_passes_and_leaves_no_session(mqtt_broker, mqtt_client, capsys):
    free_id = unique_id("unused")
    status = cli.main(["doctor", *at(mqtt_broker), "-i", free_id, "--check-client-id"])
    captured = capsys.readouterr()
    assert status == 0, captured.out
    assert f"note: checking client id '{free_id}'" in captured.err
    assert "✓ 7 client id" in captured.out and "nobody took" in captured.out
    # Steps 4 to 6 used an id of their own: only step 7 connected as free_id.
    assert len(mqtt_broker.log_lines(f" as {free_id} (")) == 2  # the check, then the cleanup
    probe = mqtt_client(client_id=free_id, dialect="simple", connect=False)
    assert probe.connect(clean_session=False) == 0  # no session was left behind


# --------------------------------------------------------------------------- bad options


def test_bad_options_exit_2_with_a_message(capsys):
    assert cli.main(["doctor", "--check-client-id"]) == 2
    assert "--check-client-id needs -i ID" in capsys.readouterr().err
    missing = "/nonexistent/ca.pem"
    assert cli.main(["doctor", "--cafile", missing, "-P", SECRET]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and missing in err and SECRET not in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["doctor", "--timeout", "0"])
    assert exit_info.value.code == 2
