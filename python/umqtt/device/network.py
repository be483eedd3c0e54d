"""MicroPython's ``network``: a simulated Wi-Fi interface. ``WLAN(network.STA_IF)``
connects at once (to the profile's ``wlan.ssid`` or whatever is asked) while the simulated
radio is attached (see ``net``); ``ifconfig()`` reports this host's address."""

from __future__ import annotations

from typing import Any, NoReturn

from ._support import (
    NotSimulatedMembers,
    device_name,
    host_ipv4,
    log,
    network_attached,
    not_simulated,
    profile,
)

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3


class WLAN(NotSimulatedMembers):
    def __init__(self, interface_id: int = STA_IF) -> None:
        self.interface_id = interface_id
        self._active = False
        self._ssid: str | None = None

    def active(self, is_active: bool | None = None) -> bool:
        if is_active is not None:
            self._active = bool(is_active)
            log.info("WLAN %s active=%s", self.interface_id, self._active)
        return self._active

    def connect(self, ssid: str | None = None, key: str | None = None, **kwargs: Any) -> None:
        self._ssid = ssid if ssid is not None else str(profile()["wlan"]["ssid"])
        log.info("WLAN connect to %r", self._ssid)

    def disconnect(self) -> None:
        self._ssid = None

    def isconnected(self) -> bool:
        return self._ssid is not None and network_attached()

    def status(self, param: str | None = None) -> Any:
        if param == "rssi":
            return -50
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE

    def ifconfig(self, config: tuple[str, str, str, str] | None = None) -> tuple[str, ...]:
        """``(ip, netmask, gateway, dns)``; the profile's ``wlan.ifconfig`` when given."""
        configured = profile()["wlan"].get("ifconfig")
        if configured:
            return tuple(configured)
        ip = host_ipv4() if self.isconnected() else "0.0.0.0"
        return (ip, "255.255.255.0", ip.rsplit(".", 1)[0] + ".1", str(profile()["dns"][0]))

    def config(self, *args: Any, **kwargs: Any) -> Any:
        if args == ("mac",):
            return bytes.fromhex(str(profile()["unique_id"]))
        if args == ("essid",) or args == ("ssid",):
            return self._ssid or str(profile()["wlan"]["ssid"])
        return None

    def scan(self) -> list[tuple[bytes, bytes, int, int, int, int]]:
        ssid = str(profile()["wlan"]["ssid"]).encode()
        return [(ssid, bytes(6), 1, -50, AUTH_WPA2_PSK, 0)]


def hostname(name: str | None = None) -> str:
    return name or str(profile()["model"])


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
