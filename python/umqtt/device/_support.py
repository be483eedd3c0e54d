"""What the device modules share: the device profile, the ``/usr/`` folder, the log, the
registry of live threads and timers, and the errors for what is not simulated."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import struct
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Callable, NoReturn, Union

log = logging.getLogger("umqtt.device")

StrPath = Union[str, "os.PathLike[str]"]

HOW_TO_PROVIDE = (
    "put your own {module}.py next to the script (a module of yours always wins over "
    "umqtt.device's), or see docs/device.md for the profile keys"
)


def not_simulated(module: str, name: str) -> AttributeError:
    """The error for a device function or attribute umqtt.device does not simulate."""
    if name.startswith("__") and name.endswith("__"):
        return AttributeError(f"module {module!r} has no attribute {name!r}")
    return AttributeError(
        f"{module}.{name} is not simulated by umqtt.device: " + HOW_TO_PROVIDE.format(module=module)
    )


def device_name(module_name: str) -> str:
    """``umqtt.device.machine`` -> ``machine``: the name device scripts import."""
    return module_name.rsplit(".", 1)[-1]


def _class_name(cls: type) -> str:
    return f"{device_name(cls.__module__)}.{cls.__qualname__}"


class _NotSimulatedType(type):
    """Missing class attributes (``UART.GPIO99``) say they are not simulated."""

    def __getattr__(cls, name: str) -> NoReturn:
        raise not_simulated(_class_name(cls), name)


class NotSimulatedMembers(metaclass=_NotSimulatedType):
    """A device class whose missing methods and attributes say they are not simulated (not a
    bare AttributeError), naming the device class."""

    def __getattr__(self, name: str) -> NoReturn:
        raise not_simulated(_class_name(type(self)), name)


# --------------------------------------------------------------------------- the profile


def _host_seed() -> bytes:
    """Stable per host: the machine id where there is one, else the MAC address."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, "rb") as f:
                text = f.read().strip()
            if text:
                return text
        except OSError:
            continue
    return str(uuid.getnode()).encode()


def _digits(seed: bytes, label: str, count: int) -> str:
    digest = hashlib.sha256(seed + label.encode()).hexdigest()
    return "".join(str(int(c, 16) % 10) for c in digest)[:count]


def luhn_digit(number: str) -> str:
    """The check digit that makes ``number`` + digit pass the Luhn test (IMEI, ICCID)."""
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def default_profile() -> dict[str, Any]:
    """The profile a device gets without --profile: identities derived from this host, so
    they stay the same from run to run on one machine and differ between machines."""
    seed = _host_seed()
    imei = "86" + _digits(seed, "imei", 12)
    iccid = "8986" + _digits(seed, "iccid", 15)
    mac = hashlib.sha256(seed + b"mac").digest()[:6]
    return {
        "model": "EC600N",
        "firmware": "EC600NCNLCR03A02M16_PY",
        "imei": imei + luhn_digit(imei),
        "sn": "SIM" + _digits(seed, "sn", 13),
        "product_id": "Quectel",
        "iccid": iccid + luhn_digit(iccid),
        "imsi": "46001" + _digits(seed, "imsi", 10),
        "phone_number": "",
        "sim_status": 1,
        "attached": None,
        "csq": 31,
        "ipv4": None,
        "dns": ["8.8.8.8", "114.114.114.114"],
        "operator": ["CHN-UNICOM", "UNICOM", "460", "01"],
        "unique_id": mac.hex(),
        "mac": ":".join(f"{b:02X}" for b in mac),
        "vbatt": 3800,
        "power_on_reason": 1,
        "heap_size": 512 * 1024,
        "timezone": None,
        "pins": {},
        "adc": {},
        "i2c": {},
        "spi": {},
        "uart": {},
        "dht": {"temperature": 21.5, "humidity": 45.0},
        "wlan": {"ssid": "umqtt-sim", "ifconfig": None},
    }


class Profile:
    """The device profile: JSON keys over the defaults (docs/device.md lists them)."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values = default_profile()
        if values:
            unknown = sorted(set(values) - set(self.values))
            if unknown:
                raise ValueError(
                    f"unknown device profile key(s) {', '.join(unknown)}; "
                    f"known keys: {', '.join(sorted(self.values))}"
                )
            self.values.update(values)

    @classmethod
    def from_file(cls, path: StrPath) -> Profile:
        with open(path, encoding="utf-8") as f:
            try:
                values = json.load(f)
            except ValueError as e:
                raise ValueError(f"device profile {os.fspath(path)!r} is not JSON: {e}") from e
        if not isinstance(values, dict):
            raise ValueError(f"device profile {os.fspath(path)!r} must be a JSON object")
        return cls(values)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def lookup(self, section: str, key: object, default: Any) -> Any:
        """``profile[section][key]``, where JSON keys are strings: 18, "18" and "0x12"
        all find an entry written as "18" (or as "0x12")."""
        table = self.values[section]
        candidates = [key, str(key)]
        if isinstance(key, int):
            candidates += [hex(key), f"0x{key:02x}"]
        for candidate in candidates:
            if candidate in table:
                return table[candidate]
        return default


_profile = Profile()


def profile() -> Profile:
    return _profile


def set_profile(new: Profile | Mapping[str, Any] | StrPath | None) -> Profile:
    """Makes ``new`` (a Profile, a dict of keys, a JSON file, or None for the defaults)
    the profile every device module reads."""
    global _profile
    if new is None or isinstance(new, Mapping):
        _profile = Profile(new)
    elif isinstance(new, Profile):
        _profile = new
    else:
        _profile = Profile.from_file(new)
    return _profile


def _default_route_interface() -> str | None:
    """The interface of this host's default route (Linux's /proc/net/route), or None."""
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 1 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def network_attached() -> bool:
    """The simulated radio is attached when the profile says so, or (``"attached": null``)
    when this host has a default route, as a module with signal has a data link."""
    attached = _profile["attached"]
    if attached is not None:
        return bool(attached)
    return _default_route_interface() is not None or not os.path.exists("/proc/net/route")


def _host_address() -> str:
    """This host's IPv4 address on its default route's interface, asked of the kernel
    (SIOCGIFADDR: nothing is sent, no name is resolved); 127.0.0.1 when there is none."""
    interface = _default_route_interface()
    if interface is None:
        return "127.0.0.1"
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("256s", interface.encode()[:15])
            reply = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, request)
        return socket.inet_ntoa(reply[20:24])
    except (ImportError, OSError):
        return "127.0.0.1"


_SIOCGIFADDR = 0x8915


def host_ipv4() -> str:
    """The address the simulated data call reports: the profile's ``ipv4``, else this
    host's own."""
    configured = _profile["ipv4"]
    return str(configured) if configured else _host_address()


# --------------------------------------------------------------------------- the /usr/ folder

_usr_root: str | None = None


def set_usr_root(folder: StrPath | None) -> None:
    """Where ``/usr/...`` paths go (``run --fs``; default: the script's folder)."""
    global _usr_root
    _usr_root = None if folder is None else os.path.abspath(os.fspath(folder))


def usr_root() -> str:
    """The folder that stands for the device's ``/usr`` (the current directory when no
    script set one, e.g. under pytest)."""
    return _usr_root if _usr_root is not None else os.getcwd()


def map_path(path: Any) -> Any:
    """``/usr`` and ``/usr/...`` to the same path under usr_root(); every other path, and
    anything that is not a path (a file descriptor), unchanged. ``..`` cannot climb out."""
    if isinstance(path, bytes):
        mapped = map_path(os.fsdecode(path))
        return os.fsencode(mapped) if isinstance(mapped, str) else mapped
    if not isinstance(path, (str, os.PathLike)):
        return path
    text = os.fspath(path)
    if not isinstance(text, str) or not (text == "/usr" or text.startswith("/usr/")):
        return path
    inside = os.path.normpath("/" + text[len("/usr") :]).lstrip("/")
    return os.path.join(usr_root(), inside) if inside else usr_root()


# --------------------------------------------------------------------------- threads and timers

_live_lock = threading.Lock()
_threads: dict[int, threading.Thread] = {}
_timers: set[Any] = set()


def track_thread(thread: threading.Thread) -> None:
    with _live_lock:
        _threads[thread.ident or 0] = thread


def thread_by_id(ident: int) -> threading.Thread | None:
    with _live_lock:
        return _threads.get(ident)


def timer_started(timer: Any) -> None:
    with _live_lock:
        _timers.add(timer)


def timer_stopped(timer: Any) -> None:
    with _live_lock:
        _timers.discard(timer)


def busy() -> bool:
    """True while a thread started with ``_thread`` or a running timer would keep the
    device's program going."""
    with _live_lock:
        for ident, thread in list(_threads.items()):
            if not thread.is_alive():
                del _threads[ident]
        return bool(_timers) or any(t.is_alive() for t in _threads.values())


def stop_timers() -> None:
    """Stops every running timer (the runner's end, or a test's cleanup)."""
    with _live_lock:
        timers = list(_timers)
    for timer in timers:
        timer.stop()


# --------------------------------------------------------------------------- power


class DeviceRestart(SystemExit):
    """Raised by machine.reset() and misc.Power.powerRestart(): the device restarts. Under
    ``python -m umqtt run`` the script ends with a message (or restarts with --restart)."""

    def __init__(self, call: str) -> None:
        super().__init__(0)
        self.call = call


_restart_hook: Callable[[str], None] | None = None


def set_restart_hook(hook: Callable[[str], None] | None) -> None:
    """The runner's hook: told which call restarted the device, from whatever thread."""
    global _restart_hook
    _restart_hook = hook


def restart(call: str) -> NoReturn:
    """What a device restart does here: logged, the runner told, the calling thread ended
    (another thread than the main one with a plain SystemExit, which threads end on quietly)."""
    log.warning("%s: the device restarts", call)
    if _restart_hook is not None:
        _restart_hook(call)
    if _restart_hook is not None and threading.current_thread() is not threading.main_thread():
        raise SystemExit(0)
    raise DeviceRestart(call)
