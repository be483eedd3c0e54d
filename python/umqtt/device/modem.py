"""QuecPython's ``modem``: the module's identities, from the device profile (``imei``,
``model``, ``sn``, ``firmware``, ``product_id``, ``mac``; stable per host by default)."""

from __future__ import annotations

from typing import NoReturn

from ._support import device_name, not_simulated, profile


def getDevImei() -> str:
    return str(profile()["imei"])


def getDevModel() -> str:
    return str(profile()["model"])


def getDevSN() -> str:
    return str(profile()["sn"])


def getDevFwVersion() -> str:
    return str(profile()["firmware"])


def getDevProductId() -> str:
    return str(profile()["product_id"])


def getDevMAC() -> str:
    return str(profile()["mac"])


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
