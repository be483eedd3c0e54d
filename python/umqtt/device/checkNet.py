"""QuecPython's ``checkNet``: waits for the simulated network (see ``net``/``dataCall``).

``waitNetworkReady(timeout)`` returns ``(3, 1)`` at once when the simulated radio is attached
(the profile's ``attached``; by default, when this host has a default route). Otherwise it
waits ``timeout`` seconds, as the device does, and returns ``(1, status)`` when the profile's
``sim_status`` is not 1 (SIM not ready), else ``(2, 0)`` (not registered)."""

from __future__ import annotations

import time
from typing import NoReturn

from . import modem
from ._support import device_name, network_attached, not_simulated, profile


def waitNetworkReady(timeout: int = 60) -> tuple[int, int]:
    """``(stage, state)``: ``(3, 1)`` when the network is ready."""
    if not 1 <= int(timeout) <= 3600:
        raise ValueError("timeout must be 1..3600 seconds")
    if network_attached() and profile()["sim_status"] == 1:
        return (3, 1)
    time.sleep(timeout)
    status = int(profile()["sim_status"])
    return (1, status) if status != 1 else (2, 0)


class CheckNetwork:
    """The older API: ``CheckNetwork(PROJECT_NAME, PROJECT_VERSION)``."""

    def __init__(self, project_name: str, project_version: str) -> None:
        self.project_name = project_name
        self.project_version = project_version

    def poweron_print_once(self) -> None:
        print("==================================================")
        print(f"PROJECT_NAME     : {self.project_name}")
        print(f"PROJECT_VERSION  : {self.project_version}")
        print(f"FIRMWARE_VERSION : {modem.getDevFwVersion()}")
        print(f"POWERON_REASON   : {profile()['power_on_reason']}")
        print(f"SIM_CARD_STATUS  : {profile()['sim_status']}")
        print("==================================================")

    def wait_network_connected(self, timeout: int = 60) -> tuple[int, int]:
        return waitNetworkReady(timeout)


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
