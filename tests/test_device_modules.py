"""umqtt.device: each device module's real behaviour, and its simulation as the profile sets it."""

from __future__ import annotations

import http.server
import importlib
import json
import logging
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import umqtt.device
from umqtt.device import (
    _thread,
    checkNet,
    dataCall,
    dht,
    machine,
    misc,
    modem,
    net,
    network,
    ql_fs,
    queue,
    request,
    sim,
    sys_bus,
    uio,
    uos,
    usocket,
    utime,
    uzlib,
)
from umqtt.device import log as device_log
from umqtt.device._support import luhn_digit
from umqtt.testing import wait_until


@pytest.fixture(autouse=True)
def default_profile(tmp_path: Path) -> Iterator[None]:
    """Every test starts from the default profile, with /usr in its own temporary folder."""
    umqtt.device.set_profile(None)
    umqtt.device.set_usr_root(tmp_path)
    yield
    umqtt.device.stop_timers()
    umqtt.device.set_profile(None)
    umqtt.device.set_usr_root(None)


# --------------------------------------------------------------------------- utime


def test_ticks_diff_wraps_like_the_device() -> None:
    top = utime.TICKS_MAX  # 2**30 - 1: the counters wrap after it
    assert top == 0x3FFFFFFF
    assert utime.ticks_add(top, 1) == 0
    assert utime.ticks_add(5, -10) == top - 4
    assert utime.ticks_diff(utime.ticks_add(top, 6), top) == 6  # across the wrap
    assert utime.ticks_diff(top, utime.ticks_add(top, 6)) == -6
    assert utime.ticks_diff(0, top) == 1
    half = utime.TICKS_HALFPERIOD
    assert utime.ticks_diff(half - 1, 0) == half - 1
    assert utime.ticks_diff(half, 0) == -half  # past half a period the sign flips, as on the device


def test_ticks_count_real_time() -> None:
    start_ms, start_us = utime.ticks_ms(), utime.ticks_us()
    utime.sleep_ms(30)
    assert 30 <= utime.ticks_diff(utime.ticks_ms(), start_ms) < 30_000
    assert 30_000 <= utime.ticks_diff(utime.ticks_us(), start_us)
    assert 0 <= utime.ticks_ms() <= utime.TICKS_MAX


def test_time_is_whole_seconds_and_localtime_the_device_tuple() -> None:
    now = utime.time()
    assert isinstance(now, int) and abs(now - time.time()) < 2
    umqtt.device.set_profile({"timezone": 8})
    assert utime.getTimeZone() == 8
    assert utime.localtime(0) == (1970, 1, 1, 8, 0, 0, 3, 1)  # a Thursday, the 1st day
    assert utime.gmtime(0) == (1970, 1, 1, 0, 0, 0, 3, 1)
    assert utime.mktime(utime.localtime(1_700_000_000)) == 1_700_000_000
    with pytest.raises(ValueError):
        utime.setTimeZone(13)


def test_time_extras_leave_cpython_time_alone() -> None:
    device_time = importlib.import_module("umqtt.device.time")
    assert device_time.sleep_ms is utime.sleep_ms and device_time.monotonic is time.monotonic
    assert not hasattr(time, "sleep_ms")


# --------------------------------------------------------------------------- timers and threads


def test_ostimer_fires_periodically_until_stopped() -> None:
    osTimer = importlib.import_module("umqtt.device.osTimer")
    calls: list[Any] = []
    t = osTimer()
    assert t.start(20, 1, calls.append) == 0
    assert wait_until(lambda: len(calls) >= 3, 5)
    assert t.stop() == 0
    seen = len(calls)
    time.sleep(0.1)
    assert len(calls) in (seen, seen + 1)  # at most one callback was already running
    assert calls[0] is None  # the device calls callback(None)


def test_ostimer_one_shot_and_a_raising_callback(caplog: pytest.LogCaptureFixture) -> None:
    osTimer = importlib.import_module("umqtt.device.osTimer")
    fired = threading.Event()

    def boom(arg: Any) -> None:
        fired.set()
        raise RuntimeError("callback failed")

    osTimer().start(10, 0, boom)
    assert fired.wait(5)
    assert wait_until(lambda: "a timer callback raised" in caplog.text, 5)


def test_machine_timer_both_spellings() -> None:
    ticks: list[Any] = []
    micropython_timer = machine.Timer(0)
    micropython_timer.init(period=20, mode=machine.Timer.PERIODIC, callback=ticks.append)
    assert wait_until(lambda: len(ticks) >= 2, 5)
    micropython_timer.deinit()
    assert ticks[0] is micropython_timer  # MicroPython passes the timer
    once: list[Any] = []
    quec = machine.Timer(machine.Timer.Timer1)
    quec.start(period=10, mode=quec.ONE_SHOT, callback=once.append)
    assert wait_until(lambda: len(once) == 1, 5)
    quec.stop()


def test_thread_extras() -> None:
    release = threading.Event()
    ident = _thread.start_new_thread(release.wait, (5,))
    assert _thread.threadIsRunning(ident)
    release.set()
    assert wait_until(lambda: not _thread.threadIsRunning(ident), 5)
    assert _thread.stack_size(8448) == 0  # the device's size: accepted
    assert _thread.stack_size() == 8448
    _thread.stack_size(0)
    assert _thread.get_heap_size() == 512 * 1024
    lock = _thread.allocate_lock()  # CPython's, through the module
    assert lock.acquire() and lock.locked()
    _thread.delete_lock(lock)
    sem = _thread.allocate_semphore(2)
    sem.acquire()
    assert sem.getCnt() == (2, 1)
    with pytest.raises(TypeError):
        _thread.start_new_thread(print, [1])


def test_stop_thread_ends_a_running_loop() -> None:
    def spin() -> None:
        while True:
            time.sleep(0.01)

    ident = _thread.start_new_thread(spin, ())
    _thread.stop_thread(ident)
    assert wait_until(lambda: not _thread.threadIsRunning(ident), 5)


# --------------------------------------------------------------------------- the simulated radio


def test_network_ready_when_attached() -> None:
    umqtt.device.set_profile({"attached": True})
    assert checkNet.waitNetworkReady(30) == (3, 1)
    assert checkNet.CheckNetwork("p", "1.0").wait_network_connected(30) == (3, 1)
    assert net.csqQueryPoll() == 31
    assert net.getState()[1][0] == 1
    info = dataCall.getInfo(1, 0)
    assert isinstance(info, tuple) and info[:2] == (1, 0)
    state, reconnect, address, _, _ = info[2]
    assert (state, reconnect) == (1, 0) and socket.inet_aton(address)
    assert len(dataCall.getInfo(1, 2)) == 4  # IPv4 and IPv6 lists


def test_network_down_as_the_profile_says() -> None:
    umqtt.device.set_profile({"attached": False, "csq": 20})
    started = time.monotonic()
    assert checkNet.waitNetworkReady(1) == (2, 0)  # waits the timeout, as the device does
    assert time.monotonic() - started >= 0.9
    assert net.csqQueryPoll() == 99
    assert dataCall.getInfo(1, 0) == (1, 0, [0, 0, "0.0.0.0", "0.0.0.0", "0.0.0.0"])
    umqtt.device.set_profile({"sim_status": 0})
    assert checkNet.waitNetworkReady(1) == (1, 0)
    assert sim.getIccid() == -1


def test_deactivate_reports_to_the_callback() -> None:
    umqtt.device.set_profile({"attached": True})
    events: list[Any] = []
    dataCall.setCallback(events.append)
    dataCall.deactivate(1)
    assert events == [(1, 0)] and dataCall.getInfo(1, 0)[2][0] == 0  # type: ignore[index]
    assert dataCall.activate(1) == 0 and dataCall.getInfo(1, 0)[2][0] == 1  # type: ignore[index]


def test_identities_are_stable_valid_and_from_the_profile() -> None:
    imei, iccid = modem.getDevImei(), sim.getIccid()
    assert len(imei) == 15 and imei[-1] == luhn_digit(imei[:-1])
    assert isinstance(iccid, str) and len(iccid) == 20 and iccid[-1] == luhn_digit(iccid[:-1])
    umqtt.device.set_profile(None)
    assert modem.getDevImei() == imei  # the same on this host, run after run
    assert len(machine.unique_id()) == 6
    umqtt.device.set_profile({"imei": "861234567890123", "model": "EC800M", "vbatt": 3600})
    assert modem.getDevImei() == "861234567890123"
    assert modem.getDevModel() == "EC800M" and uos.uname().machine == "EC800M"
    assert misc.Power.getVbatt() == 3600


def test_profile_file_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"iccid": "89860000000000000001", "csq": 7}))
    umqtt.device.set_profile(path)
    assert sim.getIccid() == "89860000000000000001"
    umqtt.device.set_profile({"attached": True})
    with pytest.raises(ValueError, match=r"unknown device profile key.*imie.*known keys"):
        umqtt.device.set_profile({"imie": "x"})


# --------------------------------------------------------------------------- peripherals


def test_peripherals_read_the_profile_and_log_writes(caplog: pytest.LogCaptureFixture) -> None:
    umqtt.device.set_profile(
        {
            "pins": {"18": 1},
            "adc": {"0": 1650},
            "i2c": {"0x44/0x00": "6d9c", "0x44": [1, 2]},
            "uart": {"2": "hello\nworld"},
            "dht": {"temperature": 23.4, "humidity": 51},
        }
    )
    caplog.set_level(logging.INFO, logger="umqtt.device")
    assert machine.Pin(18, machine.Pin.IN).value() == 1
    assert machine.Pin(machine.Pin.GPIO5, machine.Pin.OUT).read() == 0  # not in the profile
    led = machine.Pin(2, machine.Pin.OUT)
    led.on()
    assert led.value() == 1 and "Pin 2 = 1" in caplog.text
    assert machine.ADC(0).read_u16() == 32767 and misc.ADC().read(0) == 1650
    bus = machine.I2C(0)
    assert bus.readfrom_mem(0x44, 0x00, 2) == b"\x6d\x9c"
    assert bus.readfrom(0x44, 3) == b"\x01\x02\x01"
    assert bus.readfrom(0x45, 2) == b"\x00\x00"  # nothing there: zeros
    assert bus.scan() == [0x44]
    uart = machine.UART(machine.UART.UART2, 115200, 8, 0, 1, 0)
    assert uart.any() == 11 and uart.readline() == b"hello\n" and uart.read(100) == b"world"
    assert uart.read(10) == b""
    signalled: list[Any] = []
    machine.UART(2).set_callback(signalled.append)  # data "arrives": the device calls back
    assert wait_until(lambda: signalled == [[0, 2, 11]], 5)
    uart.write("AT\r\n")
    assert "UART 2 write b'AT\\r\\n'" in caplog.text
    sensor = dht.DHT22(machine.Pin(4))
    sensor.measure()
    assert (sensor.temperature(), sensor.humidity()) == (23.4, 51.0)


def test_wlan_connects_in_simulation() -> None:
    umqtt.device.set_profile({"attached": True})
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    assert not wlan.isconnected()
    wlan.connect("home", "secret")
    assert wlan.isconnected() and wlan.status() == network.STAT_GOT_IP
    assert socket.inet_aton(wlan.ifconfig()[0])


def test_power_restart_raises_device_restart() -> None:
    with pytest.raises(umqtt.device.DeviceRestart) as raised:
        misc.Power.powerRestart()
    assert raised.value.call == "misc.Power.powerRestart()"
    with pytest.raises(umqtt.device.DeviceRestart) as raised:
        machine.reset()
    assert raised.value.call == "machine.reset()"


# --------------------------------------------------------------------------- files


def test_usr_paths_stay_inside_the_folder(tmp_path: Path) -> None:
    assert ql_fs.touch("/usr/config/app.json", {"server": "127.0.0.1"}) == 0
    assert (tmp_path / "config" / "app.json").is_file()
    assert ql_fs.read_json("/usr/config/app.json") == {"server": "127.0.0.1"}
    assert ql_fs.path_exists("/usr/config") and not ql_fs.path_exists("/usr/nothing")
    uos.mkdir("/usr/etc")
    with uio.open("/usr/../../etc/notes.txt", "w") as f:  # `..` cannot climb out
        f.write("x")
    assert (tmp_path / "etc" / "notes.txt").read_text() == "x"
    assert sorted(uos.listdir("/usr")) == ["config", "etc"]
    kinds = {name: kind for name, kind, *_ in uos.ilistdir("/usr")}
    assert kinds == {"config": 0x4000, "etc": 0x4000}
    uos.rename("/usr/etc/notes.txt", "/usr/notes.txt")
    assert uos.stat("/usr/notes.txt")[6] == 1
    uos.remove("/usr/notes.txt")
    assert uos.getcwd() == os.getcwd()  # CPython's own for everything else
    assert os.path.exists("/usr") and uos.listdir("/") == os.listdir("/")  # other paths unchanged
    assert ql_fs.read_json("/usr/missing.json") is None
    (tmp_path / "plain.txt").write_text("not json")
    assert ql_fs.read_json("/usr/plain.txt") == "not json"


# --------------------------------------------------------------------------- data and messaging


def test_queue_sys_bus_log_and_zlib(capsys: pytest.CaptureFixture[str]) -> None:
    q = queue.Queue(maxsize=2)  # the device's keyword (its documentation says max_size)
    q.put(1)
    assert q.size() == 1 and not q.empty() and q.get() == 1
    got: list[Any] = []
    sys_bus.subscribe("event", lambda topic, msg: got.append((topic, msg)))
    sys_bus.publish("event", {"n": 1})
    assert wait_until(lambda: got == [("event", {"n": 1})], 5)
    assert sys_bus.unsubscribe("event") and sys_bus.sub_table() == {}
    device_log.basicConfig(level=device_log.INFO)
    logger = device_log.getLogger("UART")
    logger.debug("hidden")
    logger.info("write msg:%s", "Hello")
    assert capsys.readouterr().out == "INFO:UART:write msg:Hello\n"
    packed = zlib.compress(b"payload" * 10)
    assert uzlib.decompress(packed) == b"payload" * 10
    assert uzlib.DecompIO(uio.BytesIO(packed)).read() == b"payload" * 10


def test_request_and_usocket_are_real() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/status"
        reply = request.get(url)
        assert reply.status_code == 200 and reply.json() == {"path": "/status"}
        assert "".join(request.get(url, sizeof=4).text) == '{"path": "/status"}'
        sock = usocket.socket(usocket.AF_INET, usocket.SOCK_STREAM)
        sock.setsockopt(usocket.SOL_SOCKET, usocket.TCP_KEEPALIVE, 1)  # QuecPython's option
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        sock.connect(usocket.getaddrinfo("127.0.0.1", server.server_port)[0][-1])
        sock.write(b"GET /x HTTP/1.0\r\n\r\n")
        assert sock.readline().startswith(b"HTTP/1.0 200")
        assert sock.read().endswith(b'{"path": "/x"}')
        sock.close()
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- what is missing


def test_missing_functions_say_they_are_not_simulated() -> None:
    with pytest.raises(AttributeError, match=r"machine\.RTCAlarm is not simulated.*machine\.py"):
        machine.RTCAlarm  # noqa: B018
    with pytest.raises(AttributeError, match=r"net\.getCellLocation is not simulated"):
        net.getCellLocation  # noqa: B018
    with pytest.raises(AttributeError, match=r"machine\.Pin\.pwm is not simulated"):
        machine.Pin(1).pwm  # noqa: B018
    assert not hasattr(machine, "__path__")  # dunder probes stay plain AttributeErrors


def test_install_makes_device_modules_importable_and_uninstall_forgets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "utime" not in sys.modules
    umqtt.device.install()
    try:
        import utime as imported  # type: ignore[import-not-found]

        assert imported is utime
        osTimer = importlib.import_module("osTimer")
        assert osTimer is importlib.import_module("umqtt.device.osTimer")  # the class itself
        with pytest.raises(ImportError, match=r"'audio' is not simulated by umqtt\.device"):
            importlib.import_module("audio")
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("no_such_device_module")
        assert importlib.import_module("time") is time  # CPython's: install() patches nothing
        # A module of the user's wins over ours.
        (tmp_path / "checkNet.py").write_text("MINE = True\n")
        (tmp_path / "helper.py").write_text("VALUE = 7\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        assert importlib.import_module("checkNet").MINE
        umqtt.device.install(usr=tmp_path)
        assert importlib.import_module("usr.helper").VALUE == 7
    finally:
        umqtt.device.uninstall()
    assert "utime" not in sys.modules and "usr.helper" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("utime")
    sys.modules.pop("checkNet", None)


def test_the_small_modules(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from umqtt.device import (
        esp,
        fota,
        gc,
        micropython,
        ntptime,
        pm,
        uasyncio,
        ubinascii,
        uhashlib,
        ujson,
        ustruct,
        usys,
        webrepl,
    )

    caplog.set_level(logging.INFO, logger="umqtt.device")
    assert ubinascii.hexlify(b"\x01\xab", ":") == b"01:ab"
    assert uhashlib.sha256(b"x").digest() == __import__("hashlib").sha256(b"x").digest()
    assert ustruct.unpack("<H", ustruct.pack("<H", 513)) == (513,)
    assert ujson.loads(ujson.dumps({"a": [1]})) == {"a": [1]}
    assert micropython.const(5) == 5 and micropython.native(len) is len
    scheduled = threading.Event()
    micropython.schedule(lambda arg: scheduled.set(), None)
    assert scheduled.wait(5)
    assert ntptime.settime() == 0 and "the host clock is used" in caplog.text
    lock = pm.create_wakelock("net", 3)
    assert pm.wakelock_lock(lock) == 0 and pm.get_wakelock_num() == 1
    pm.delete_wakelock(lock)
    progress: list[Any] = []
    assert fota.fota().httpDownload("http://example.invalid/fw.bin", "", progress.append) == 0
    assert progress == [(0, 100)] and "nothing downloaded" in caplog.text
    webrepl.start(password="x")
    assert esp.flash_size() > 0 and gc.mem_free() == 512 * 1024
    assert usys.argv is sys.argv  # live: the real sys's
    try:
        raise ValueError("shown")
    except ValueError as e:
        usys.print_exception(e)
    assert "ValueError: shown" in capsys.readouterr().out

    async def waits() -> float:
        started = time.monotonic()
        await uasyncio.sleep_ms(20)
        return time.monotonic() - started

    assert uasyncio.run(waits()) >= 0.02
