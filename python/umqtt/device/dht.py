"""MicroPython's ``dht``: DHT11/DHT22 sensors whose readings come from the profile's
``dht`` entry (``temperature`` in °C, ``humidity`` in %)."""

from __future__ import annotations

from typing import Any

from ._support import NotSimulatedMembers, profile


class DHTBase(NotSimulatedMembers):
    def __init__(self, pin: Any) -> None:
        self.pin = pin
        self._values = (0.0, 0.0)

    def measure(self) -> None:
        reading = profile()["dht"]
        self._values = (float(reading["temperature"]), float(reading["humidity"]))

    def temperature(self) -> float:
        return self._values[0]

    def humidity(self) -> float:
        return self._values[1]


class DHT11(DHTBase):
    def temperature(self) -> float:
        return float(round(self._values[0]))

    def humidity(self) -> float:
        return float(round(self._values[1]))


class DHT22(DHTBase):
    pass
