"""python -m umqtt run: a device script as __main__, its folder as `usr`, /usr/ paths, exit
statuses, Ctrl-C, device restarts, a script's client at MQTT 3.1.1 and MQTT 5."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from umqtt import runner
from umqtt.testing import Mosquitto, unique_id

RUN_TIMEOUT = 60


def write(folder: Path, files: dict[str, str]) -> Path:
    """Writes a project (file name -> source, dedented); returns the folder's main.py."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder / "main.py"


def umqtt_run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "umqtt", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=cwd,
    )


def test_script_runs_as_main_with_its_arguments_and_usr_imports(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": """
                import sys
                from usr.helper import greet
                from usr import settings
                import helper
                print(__name__, sys.argv[1:], greet(), settings.NAME, helper.greet is greet)
            """,
            "helper.py": "def greet():\n    return 'hi'\n",
            "settings.py": "NAME = 'dtu'\n",
        },
    )
    done = umqtt_run(main, "--flag", "x y", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # `usr.helper` and `helper` are two modules, as on the device (/usr is on its path too).
    assert done.stdout == "__main__ ['--flag', 'x y'] hi dtu False\n"


def test_exit_statuses(tmp_path: Path) -> None:
    main = write(tmp_path, {"main.py": "import sys\nsys.exit(3)\n"})
    assert umqtt_run(main).returncode == 3
    main = write(
        tmp_path,
        {
            "main.py": "from usr.broken import explode\nexplode()\n",
            "broken.py": "def explode():\n    raise RuntimeError('sensor missing')\n",
        },
    )
    done = umqtt_run(main)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert 'broken.py", line 2, in explode' in done.stderr
    assert done.stderr.strip().endswith("RuntimeError: sensor missing")
    assert "runner.py" not in done.stderr  # the script's traceback, not ours


def test_a_syntax_error_is_reported_like_python(tmp_path: Path) -> None:
    main = write(tmp_path, {"main.py": "print('ok'\n"})
    done = umqtt_run(main)
    assert done.returncode == 1
    assert "SyntaxError" in done.stderr and "main.py" in done.stderr


def test_unknown_device_module_fails_with_the_way_out(tmp_path: Path) -> None:
    main = write(tmp_path, {"main.py": "import gnss\n"})
    done = umqtt_run(main)
    assert done.returncode == 1
    assert "device module 'gnss' is not simulated by umqtt.device" in done.stderr
    assert "put your own gnss.py" in done.stderr


def test_usr_paths_map_to_fs_and_only_for_the_project(tmp_path: Path) -> None:
    project, fs, elsewhere = tmp_path / "project", tmp_path / "fs", tmp_path / "lib"
    fs.mkdir()
    (fs / "config.json").write_text('{"server": "broker"}')
    write(elsewhere, {"outsider.py": "def read(path):\n    return open(path).read()\n"})
    main = write(
        project,
        {
            "main.py": f"""
                import sys, os, uos, ujson
                sys.path.append({str(elsewhere)!r})
                import outsider
                print(ujson.load(open('/usr/config.json'))['server'])
                os.mkdir('/usr/logs')
                print(sorted(uos.listdir('/usr')), os.path.isdir({str(fs / "logs")!r}))
                try:
                    outsider.read('/usr/config.json')  # not the project's code: not mapped
                except OSError as e:
                    print('outsider:', type(e).__name__)
            """
        },
    )
    done = umqtt_run("--fs", fs, main)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "broker",
        "['config.json', 'logs'] True",
        "outsider: FileNotFoundError",
    ]


def test_device_names_of_cpython_modules_only_inside_the_project(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "main.py": """
                import time, _thread, gc, queue, os, os.path
                from os.path import join
                assert os.path.join is join and hasattr(os, 'ilistdir')
                import logging
                import umqtt
                print(time.ticks_diff(time.ticks_ms(), time.ticks_ms()) <= 0, gc.mem_free() > 0)
                print(hasattr(_thread, 'stop_thread'), hasattr(queue.Queue(), 'size'))
                print(logging.OWN, hasattr(umqtt.log, 'warning'))
                import sys
                print(hasattr(sys.modules['time'], 'ticks_ms'))  # CPython's time is untouched
            """,
            "logging.py": "OWN = 'own logging'\n",
            "threading.py": "raise ImportError('the project threading.py reached umqtt')\n",
        },
    )
    # Started in the project's folder, which `python -m` puts first on sys.path.
    done = umqtt_run("main.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True True", "True True", "own logging True", "False"]


def test_profile_values_reach_the_script(tmp_path: Path) -> None:
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps({"imei": "869999999999999", "csq": 12, "attached": True}))
    main = write(
        tmp_path,
        {"main.py": "import modem, net\nprint(modem.getDevImei(), net.csqQueryPoll())\n"},
    )
    done = umqtt_run("--profile", profile, main)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "869999999999999 12\n"
    profile.write_text('{"imie": 1}')
    done = umqtt_run("--profile", profile, main)
    assert done.returncode == 2 and "unknown device profile key(s) imie" in done.stderr


def test_waits_for_threads_and_timers(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": """
                import _thread, utime, osTimer
                def worker():
                    utime.sleep_ms(300)
                    print('thread done')
                count = [0]
                def tick(arg):
                    count[0] += 1
                    if count[0] == 3:
                        timer.stop()
                        print('timer done')
                _thread.start_new_thread(worker, ())
                timer = osTimer()
                timer.start(50, 1, tick)
                print('main done')
            """
        },
    )
    done = umqtt_run(main)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "main done"
    assert sorted(done.stdout.splitlines()[1:]) == ["thread done", "timer done"]


def test_a_timer_that_stops_itself_finishes_its_callback(tmp_path: Path) -> None:
    """The program ends when the callback returns, not when it calls stop()."""
    main = write(
        tmp_path,
        {
            "main.py": """
                import utime, osTimer
                def tick(arg):
                    timer.stop()
                    utime.sleep_ms(300)  # the disconnect() of a real project
                    print('callback done')
                timer = osTimer()
                timer.start(10, 1, tick)
            """
        },
    )
    done = umqtt_run(main)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "callback done\n"


def test_ctrl_c_ends_everything(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": """
                import _thread, utime
                def forever():
                    while True:
                        utime.sleep(1)
                _thread.start_new_thread(forever, ())
                print('running', flush=True)
                while True:
                    utime.sleep(1)
            """
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "umqtt", "run", str(main)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(RUN_TIMEOUT) == runner.EXIT_INTERRUPTED
    finally:
        proc.kill()
        proc.communicate()


def test_a_device_script_connects_at_the_version_it_asks_for(
    tmp_path: Path, broker: Mosquitto, mqtt_version: int
) -> None:
    """A device script's `umqtt.MQTTClient(..., version=N)` under `umqtt run`: the broker sees
    that protocol (mosquitto logs p2 for MQTT 3.1.1, p5 for MQTT 5), and a message the script
    publishes to its own subscription comes back to its callback, at MQTT 5 with its user
    properties (`set_callback(f, properties=True)`)."""
    main = write(
        tmp_path,
        {
            "main.py": """
                import sys
                from umqtt import MQTTClient
                host, name = sys.argv[1], sys.argv[4]
                port, version = int(sys.argv[2]), int(sys.argv[3])
                got = []
                c = MQTTClient(name, host, port, version=version)
                if version == 5:
                    c.set_callback(lambda t, m, p: got.append((t, m, p)), properties=True)
                    extra = {"properties": {"user_properties": [("unit", "C")]}}
                else:
                    c.set_callback(lambda t, m: got.append((t, m)))
                    extra = {}
                c.connect()
                c.subscribe("run/" + name, 1)
                c.publish("run/" + name, b"21.5", qos=1, **extra)
                while not got:
                    c.wait_msg()
                c.disconnect()
                print(got)
            """
        },
    )
    name = unique_id("run-v")
    done = umqtt_run(main, broker.host, str(broker.port), str(mqtt_version), name)
    assert done.returncode == 0, done.stderr
    topic = f"run/{name}".encode()
    if mqtt_version == 5:
        expected = [(topic, b"21.5", {"user_properties": [("unit", "C")]})]
    else:
        expected = [(topic, b"21.5")]
    assert done.stdout == f"{expected}\n"
    assert broker.connect_flags(name).split(", ")[0] == {4: "p2", 5: "p5"}[mqtt_version]


def test_power_restart_ends_the_script_with_a_message(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": """
                import _thread, utime
                from misc import Power
                def watchdog():
                    utime.sleep_ms(100)
                    Power.powerRestart()
                _thread.start_new_thread(watchdog, ())
                while True:
                    utime.sleep(1)  # the main thread is blocked when the restart comes
            """
        },
    )
    started = time.monotonic()
    done = umqtt_run("--verbose", main)
    assert done.returncode == 0, done.stderr
    assert "umqtt.device: misc.Power.powerRestart(): the device restarts" in done.stderr
    assert "misc.Power.powerRestart() was called" in done.stderr
    assert "--restart" in done.stderr
    assert time.monotonic() - started < RUN_TIMEOUT / 2


def test_reset_from_a_timer_after_the_main_code_returned(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": """
                import machine, osTimer
                timer = osTimer()
                timer.start(20, 0, lambda arg: machine.reset())
                print('main done', flush=True)
            """
        },
    )
    done = umqtt_run(main)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "main done\n"
    assert "machine.reset() was called" in done.stderr and "Traceback" not in done.stderr


def test_restart_runs_the_script_again_from_the_top(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": """
                import machine, ql_fs
                state = ql_fs.read_json('/usr/boots.json') or {'boots': 0}
                state['boots'] += 1
                ql_fs.touch('/usr/boots.json', state)
                print('boot', state['boots'], flush=True)
                if state['boots'] < 3:
                    machine.reset()
            """
        },
    )
    done = umqtt_run("--restart", main)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["boot 1", "boot 2", "boot 3"]
    assert done.stderr.count("machine.reset(): restarting") == 2
    (tmp_path / "boots.json").unlink()
    done = umqtt_run(main)  # without --restart: once, then the message
    assert done.stdout.splitlines() == ["boot 1"]
    assert "machine.reset() was called" in done.stderr


def test_run_in_process_restores_the_interpreter(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "main.py": "import utime, sys\nfrom usr.helper import X\nRESULT = (X, sys.argv)\n",
            "helper.py": "X = 1\n",
        },
    )
    argv, path, meta_path = list(sys.argv), list(sys.path), list(sys.meta_path)
    assert runner.run(str(main), ["a"]) == (0, None)
    assert sys.argv == argv and sys.path == path and sys.meta_path == meta_path
    assert not any(name == "usr" or name.startswith("usr.") for name in sys.modules)
    assert "utime" not in sys.modules
    assert "helper" not in sys.modules


def test_console_script_and_help(tmp_path: Path) -> None:
    umqtt_command = Path(sys.executable).with_name("umqtt")
    if not umqtt_command.exists():
        pytest.skip("the umqtt console script is not installed next to this interpreter")
    main = write(tmp_path, {"main.py": "print('ok')\n"})
    done = subprocess.run(
        [str(umqtt_command), "run", str(main)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    done = subprocess.run(
        [str(umqtt_command), "run", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--profile FILE" in done.stdout and "--restart" in done.stdout
    assert os.path.basename(str(umqtt_command)) == "umqtt"
