"""The command line at mosquitto_pub/mosquitto_sub's level (issue 23): every option against the
test broker, beside mosquitto's own clients where they print or send the same (the reference):
pub -r -f -l -s -n, the will options, -c with -i, -d (every packet on stderr); sub -F (the
%-sequences both know, byte for byte), --json, -T, -U, -R, -N, -E; and `bench`.

Most commands run in-process through cli.main() (stdout/stderr captured, stdin replaced); a
client that must die without DISCONNECT, so that its will goes out, runs in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from broker import Mosquitto, unique_id, wait_until
from umqtt import cli
from umqtt.testing import find_executable


def where(broker: Mosquitto) -> list[str]:
    return ["-h", broker.host, "-p", str(broker.port)]


def mosquitto(tool: str, *args: str, stdin: bytes | None = None) -> bytes:
    """Runs mosquitto_pub or mosquitto_sub; returns what it printed."""
    binary = find_executable(tool)
    if binary is None:
        pytest.skip(f"{tool} is not installed (apt-get install mosquitto-clients)")
    done = subprocess.run([binary, *args], input=stdin, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# --------------------------------------------------------------------------- pub


def test_pub_retain(broker: Mosquitto, topic: str, make_peer: Callable[..., Any]) -> None:
    assert cli.main(["pub", *where(broker), "-t", topic, "-m", "kept", "-r", "-q", "1"]) == 0
    peer = make_peer(broker)
    peer.subscribe(topic, 1)
    [got] = peer.wait_for(topic)
    assert (got.payload, got.retain) == (b"kept", True)
    assert cli.main(["pub", *where(broker), "-t", topic, "-n", "-r"]) == 0  # clears it


def test_pub_file_stdin_and_null(
    broker: Mosquitto, peer: Any, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer.subscribe(topic, 1)
    binary = bytes(range(256)) * 4
    (tmp_path / "msg.bin").write_bytes(binary)
    assert (
        cli.main(["pub", *where(broker), "-t", topic, "-q", "1", "-f", str(tmp_path / "msg.bin")])
        == 0
    )
    feed_stdin(monkeypatch, b"all\nof it\n")
    assert cli.main(["pub", *where(broker), "-t", topic, "-q", "1", "-s"]) == 0
    assert cli.main(["pub", *where(broker), "-t", topic, "-q", "1", "-n"]) == 0
    got = [m.payload for m in peer.wait_for(topic, 3)]
    assert got == [binary, b"all\nof it\n", b""]


def test_pub_stdin_lines_as_mosquitto_pub_sends_them(
    broker: Mosquitto, make_peer: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """-l: one message per line, without its newline; an empty line is an empty message."""
    lines = b"first\n\nthird line\nno newline at the end"
    ours, theirs = unique_id("cli/l/ours"), unique_id("cli/l/theirs")
    peer = make_peer(broker)
    peer.subscribe(ours, 1)
    peer.subscribe(theirs, 1)
    feed_stdin(monkeypatch, lines)
    assert cli.main(["pub", *where(broker), "-t", ours, "-q", "1", "-l"]) == 0
    mosquitto("mosquitto_pub", *where(broker), "-t", theirs, "-q", "1", "-l", stdin=lines)
    reference = [m.payload for m in peer.wait_for(theirs, 4)]
    assert [m.payload for m in peer.wait_for(ours, len(reference))] == reference
    assert reference[:3] == [b"first", b"", b"third line"]


def test_pub_debug_prints_every_packet_on_stderr(
    broker: Mosquitto, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client_id = unique_id("cli-d")
    args = ["pub", *where(broker), "-i", client_id, "-t", topic, "-m", "hi", "-q", "1", "-d"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err.splitlines()
    for line in (
        f"Sending CONNECT (u0, p0, wr0, wq0, wf0, c1, k60) client_id=b'{client_id}'",
        "Received CONNACK (0, 0)",
        f"connected to 127.0.0.1:{broker.port}",
        f"Sending PUBLISH (d0, q1, r0, m1), '{topic}', ... (2 bytes)",
        "Received PUBACK (Mid: 1)",
        "Sending DISCONNECT",
    ):
        assert line in err, err
    # Without -d, nothing of the kind.
    assert cli.main(["pub", *where(broker), "-t", topic, "-m", "hi"]) == 0
    assert capsys.readouterr().err == ""


def test_persistent_session_with_c_needs_i(
    broker: Mosquitto, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["pub", *where(broker), "-t", topic, "-m", "x", "-c"]) == 1
    assert "-c" in capsys.readouterr().err
    client_id = unique_id("cli-c")
    assert cli.main(["pub", *where(broker), "-t", topic, "-m", "x", "-c", "-i", client_id]) == 0
    assert broker.connect_flags(client_id).startswith("p2, c0")


def test_will_options(broker: Mosquitto, make_peer: Callable[..., Any], tmp_path: Path) -> None:
    """A sub killed without DISCONNECT: the broker publishes its will, as given (QoS 1, retained);
    the CONNECT said so (-d)."""
    will = unique_id("cli/will")
    peer = make_peer(broker)
    peer.subscribe(will, 1)
    args = ["sub", *where(broker), "-t", unique_id("cli/quiet"), "-d", "--will-topic", will]
    args += ["--will-payload", "gone", "--will-qos", "1", "--will-retain"]
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "umqtt", *args], stderr=err)
    try:
        assert wait_until(lambda: "Received SUBACK" in stderr.read_text(), 20), stderr.read_text()
        assert "(u0, p0, wr1, wq1, wf1, c1, k60)" in stderr.read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    [got] = peer.wait_for(will, timeout=20)
    assert (got.payload, got.qos) == (b"gone", 1)
    later = make_peer(broker)
    later.subscribe(will, 1)
    [kept] = later.wait_for(will)
    assert kept.retain
    later.publish(will, b"", retain=True)


def test_will_parts_need_a_will_topic(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["pub", *where(broker), "-t", "t", "-m", "x", "--will-qos", "1"]) == 1
    assert "--will-topic" in capsys.readouterr().err


# --------------------------------------------------------------------------- sub


def retained(broker: Mosquitto, topic: str, payload: bytes, qos: int = 1) -> None:
    mosquitto(
        "mosquitto_pub", *where(broker), "-t", topic, "-q", str(qos), "-r", "-s", stdin=payload
    )


def clear(broker: Mosquitto, topic: str) -> None:
    mosquitto("mosquitto_pub", *where(broker), "-t", topic, "-r", "-n")


def sub_output(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> bytes:
    assert cli.main(["sub", *args]) == 0
    return capsysbinary.readouterr().out


def test_sub_formats_as_mosquitto_sub_prints_them(
    broker: Mosquitto, topic: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    payload = b"caf\xc3\xa9 \x00\xff 21.5"
    retained(broker, topic, payload, qos=2)
    try:
        fmt = r"%t|%p|%q|%r|%l|%x|%X|%%|\t|\\|end"
        common = [*where(broker), "-t", topic, "-q", "2", "-C", "1", "-W", "10"]
        ours = sub_output(capsysbinary, *common, "-F", fmt)
        assert ours == mosquitto("mosquitto_sub", *common, "-F", fmt)
        assert ours.startswith(topic.encode() + b"|" + payload + b"|2|1|")
        # -N: no newline after the message, -v: topic and payload.
        assert sub_output(capsysbinary, *common, "-N") == mosquitto("mosquitto_sub", *common, "-N")
        assert sub_output(capsysbinary, *common, "-v") == mosquitto("mosquitto_sub", *common, "-v")
    finally:
        clear(broker, topic)


def test_sub_json_lines(
    broker: Mosquitto, topic: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """--json (and -F %j): mosquitto_sub's object per line (tst, topic, qos, retain, payloadlen,
    payload); a binary payload as base64."""
    retained(broker, topic, b"hello world", qos=1)
    try:
        common = [*where(broker), "-t", topic, "-q", "1", "-C", "1", "-W", "10"]
        ours = json.loads(sub_output(capsysbinary, *common, "--json"))
        theirs = json.loads(mosquitto("mosquitto_sub", *common, "-F", "%j"))
        # The time differs, and the packet id (`mid`, mosquitto_sub's own) is not printed.
        assert {k: v for k, v in ours.items() if k != "tst"} == {
            k: v for k, v in theirs.items() if k not in ("tst", "mid")
        }
        assert ours["payload"] == "hello world" and ours["retain"] == 1
        assert ours["tst"][:4].isdigit() and ours["tst"][4] == "-"
    finally:
        clear(broker, topic)
    retained(broker, topic, b"\xff\xfe", qos=0)
    try:
        common = [*where(broker), "-t", topic, "-C", "1", "-W", "10", "-F", "%j"]
        assert json.loads(sub_output(capsysbinary, *common))["payload_base64"] == "//4="
    finally:
        clear(broker, topic)


def run_sub(args: list[str]) -> tuple[threading.Event, list[int]]:
    """cli.main(["sub", ...]) on a thread; its exit status lands in the list."""
    done, status = threading.Event(), []

    def sub() -> None:
        status.append(cli.main(["sub", *args]))
        done.set()

    threading.Thread(target=sub, daemon=True).start()
    return done, status


def test_sub_filter_out_and_no_stale(
    broker: Mosquitto, peer: Any, topic: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-T drops topics matching its filters; -R drops retained messages; neither counts for -C."""
    retained(broker, f"{topic}/ok", b"stale")
    try:
        args = [*where(broker), "-t", f"{topic}/#", "-v", "-C", "2", "-W", "20", "-R"]
        args += ["-T", f"{topic}/noisy/#", "-T", f"{topic}/+/loud"]
        done, status = run_sub(args)

        def published_all() -> bool:
            for sub_topic, payload in (("noisy/x", b"n"), ("a/loud", b"l"), ("ok", b"fresh")):
                peer.publish(f"{topic}/{sub_topic}", payload, qos=1)
            return done.wait(0.2)

        assert wait_until(published_all, 20) and status == [0]
        lines = capsysbinary.readouterr().out.splitlines()
        assert lines == [f"{topic}/ok fresh".encode()] * 2
    finally:
        clear(broker, f"{topic}/ok")


def test_unsubscribe_from_a_kept_session(broker: Mosquitto, peer: Any, topic: str) -> None:
    """-c -i ID -E makes a session subscribed to the topic; -U removes the subscription, so a
    QoS 1 message published meanwhile is not kept for the client (mosquitto_sub's -U, -E)."""
    client_id = unique_id("cli-u")
    kept = [*where(broker), "-c", "-i", client_id, "-q", "1"]
    assert cli.main(["sub", *kept, "-t", topic, "-E"]) == 0
    peer.publish(topic, b"kept for you", qos=1)
    assert cli.main(["sub", *kept, "-U", topic, "-C", "1", "-W", "10"]) == 0  # the queued one
    peer.publish(topic, b"nobody's", qos=1)
    assert cli.main(["sub", *kept, "-U", topic, "-W", "1"]) == 27
    assert cli.main(["sub", *where(broker), "-i", client_id, "-U", topic, "-E"]) == 0  # clean


def test_bad_format_and_missing_topic_are_refused(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sub", *where(broker), "-t", "t", "-F", "%Z"]) == 1
    assert "-F: %Z is not supported" in capsys.readouterr().err
    assert cli.main(["sub", *where(broker), "-W", "1"]) == 1
    assert "-t" in capsys.readouterr().err
    assert cli.main(["sub", *where(broker), "-t", "a/#/b"]) == 1
    assert "invalid topic filter" in capsys.readouterr().err
    assert cli.main(["sub", *where(broker), "-t", "t", "-T", "a/#/b"]) == 1
    assert "invalid topic filter" in capsys.readouterr().err


# --------------------------------------------------------------------------- bench


def test_bench_against_a_broker_of_ours(broker: Mosquitto) -> None:
    """`bench -h -p`: the benchmark's tables for a broker it did not start (tiny counts here)."""
    args = [sys.executable, "-m", "umqtt", "bench", *where(broker), "--quick"]
    args += ["--only", "rtt", "--libs", "umqtt"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "| Round trip QoS0 64 B: p50 | µs |" in done.stdout
    assert f"the broker at 127.0.0.1:{broker.port}" in done.stdout
    assert "FAILED" not in done.stderr and "no --ws-port" in done.stderr
