"""Device projects (tests/device_scripts/) run by `python -m umqtt run` against a mosquitto the
suite starts, with only the broker address changed; the broker's side is checked."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from umqtt.testing import Mosquitto, wait_until

SCRIPTS = Path(__file__).parent / "device_scripts"
DEADLINE = 30.0


class Watcher:
    """A umqtt client subscribed to a topic filter, recording (topic, payload)."""

    def __init__(self, mqtt_client: Callable[..., Any], topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt_client(callback=self._record)
        assert self.client.subscribe(topic, 1)

    def _record(self, topic: bytes, msg: bytes) -> None:
        self.messages.append((topic.decode(), msg))

    def wait_for(self, predicate: Callable[[str, bytes], bool]) -> list[tuple[str, bytes]]:
        def matching() -> list[tuple[str, bytes]]:
            self.client.check_msg()
            return [m for m in self.messages if predicate(*m)]

        assert wait_until(matching, DEADLINE, 0.05), f"not seen; got {self.messages[-5:]}"
        return matching()


@pytest.fixture
def started() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts `python -m umqtt run ARGS...`; kills what is still running at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "umqtt", "run", *map(str, args)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, out, err


def test_quecpython_dtu_project(
    tmp_path: Path,
    mqtt_broker: Mosquitto,
    mqtt_client: Callable[..., Any],
    started: Callable[..., subprocess.Popen[str]],
) -> None:
    project = tmp_path / "dtu"
    shutil.copytree(SCRIPTS / "quecpython_dtu", project)
    config_path = project / "dtu_config.json"
    config = json.loads(config_path.read_text())
    config.update(server=mqtt_broker.host, port=mqtt_broker.port)  # the one change
    config_path.write_text(json.dumps(config))
    imei = "861111111111119"
    profile = tmp_path / "device.json"
    profile.write_text(
        json.dumps({"imei": imei, "csq": 25, "attached": True, "uart": {"2": "hello dtu"}})
    )
    watcher = Watcher(mqtt_client, f"dtu/{imei}/#")

    dtu = started("--profile", profile, "main.py", cwd=project)

    status = watcher.wait_for(lambda topic, msg: topic == f"dtu/{imei}/status")[0][1]
    assert json.loads(status)["csq"] == 25 and json.loads(status)["imei"] == imei
    assert watcher.wait_for(lambda topic, msg: topic == f"dtu/{imei}/up") == [
        (f"dtu/{imei}/up", b"hello dtu")  # what the (simulated) serial port received
    ]
    assert mqtt_broker.wait_for_log(f"as {imei}", timeout=DEADLINE)  # connected with its IMEI
    watcher.client.publish(f"dtu/{imei}/down", b"reboot", qos=1)
    code, out, err = finish(dtu)
    assert code == 0, err
    assert "misc.Power.powerRestart() was called" in err
    assert "PROJECT_NAME     : QuecPython_DTU" in out
    assert "INFO:DTU:boot 1" in out and "INFO:DTU:reboot requested" in out
    assert json.loads(config_path.read_text())["boots"] == 1  # ql_fs wrote /usr/dtu_config.json


def test_micropython_umqtt_simple_script(
    tmp_path: Path,
    mqtt_broker: Mosquitto,
    mqtt_client: Callable[..., Any],
    started: Callable[..., subprocess.Popen[str]],
) -> None:
    project = tmp_path / "node"
    shutil.copytree(SCRIPTS / "micropython_simple", project)
    profile = tmp_path / "board.json"
    profile.write_text(
        json.dumps({"unique_id": "a1b2c3d4e5f6", "dht": {"temperature": 22.5, "humidity": 40}})
    )
    watcher = Watcher(mqtt_client, "sensors/#")

    node = started(
        "--profile", profile, "main.py", mqtt_broker.host, str(mqtt_broker.port), cwd=project
    )

    topic = "sensors/esp32-a1b2c3d4e5f6"
    assert watcher.wait_for(lambda t, msg: t == topic)[0][1] == b"22.5,40.0"
    assert (topic + "/online", b"1") in watcher.wait_for(lambda t, msg: t.endswith("/online"))
    watcher.client.publish(topic + "/cmd", b"led on", qos=1)
    watcher.client.publish(topic + "/cmd", b"stop", qos=1)
    code, out, err = finish(node)
    assert code == 0, err
    assert out.splitlines()[0] == f"connected to {mqtt_broker.host} as esp32-a1b2c3d4e5f6"
    assert "command: b'led on'" in out and "command: b'stop'" in out
    assert watcher.wait_for(lambda t, msg: t == topic + "/online" and msg == b"0")
    assert mqtt_broker.wait_for_log("Received DISCONNECT from esp32-a1b2c3d4e5f6")


def test_example_project(
    tmp_path: Path,
    mqtt_broker: Mosquitto,
    mqtt_client: Callable[..., Any],
    started: Callable[..., subprocess.Popen[str]],
) -> None:
    """examples/quecpython_project, which scripts/demo.sh runs, with its broker address changed."""
    project = tmp_path / "example"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "quecpython_project", project)
    config = json.loads((project / "config.json").read_text())
    config.update(server=mqtt_broker.host, port=mqtt_broker.port, report_ms=100)
    (project / "config.json").write_text(json.dumps(config))
    watcher = Watcher(mqtt_client, "device/+/#")

    code, out, err = finish(started(project / "main.py", cwd=tmp_path))

    assert code == 0, err
    assert "INFO:main:command: ping" in out, out
    assert out.endswith("INFO:main:done\n"), out
    replies = watcher.wait_for(lambda topic, msg: topic.endswith("/reply"))
    assert [msg for _, msg in replies] == [b"pong"]
    reports = watcher.wait_for(lambda topic, msg: topic.endswith("/telemetry"))
    assert len(reports) == 3 and json.loads(reports[0][1])["csq"] == 31
