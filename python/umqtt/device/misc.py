"""QuecPython's ``misc``: power, PWM, ADC, USB and power key, simulated.

``Power.powerRestart()`` restarts the device: under ``python -m umqtt run`` the script ends
with a message naming the call (or starts again with ``--restart``); ``Power.powerDown()``
ends it. Every action is logged under ``umqtt.device``; readings come from the profile
(``vbatt``, ``power_on_reason``, ``adc``)."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from . import machine
from ._support import NotSimulatedMembers, device_name, log, not_simulated, profile, restart


class Power(NotSimulatedMembers):
    @staticmethod
    def powerRestart() -> NoReturn:
        restart("misc.Power.powerRestart()")

    @staticmethod
    def powerDown() -> NoReturn:
        restart("misc.Power.powerDown()")

    @staticmethod
    def powerOnReason() -> int:
        """The profile's ``power_on_reason`` (1: the power key)."""
        return int(profile()["power_on_reason"])

    @staticmethod
    def powerDownReason() -> int:
        return 1

    @staticmethod
    def getVbatt() -> int:
        """The profile's ``vbatt`` in mV."""
        return int(profile()["vbatt"])


class PowerKey(NotSimulatedMembers):
    def powerKeyEventRegister(self, usrFun: Callable[[Any], Any]) -> int:
        """Accepted; nobody presses a simulated power key."""
        return 0


class PWM(NotSimulatedMembers):
    PWM0, PWM1, PWM2, PWM3 = 0, 1, 2, 3
    ABOVE_MS, ABOVE_1US, ABOVE_10US, ABOVE_BELOW_US = 0, 1, 2, 3

    def __init__(self, PWMn: int, ABOVE_xx: int, highTime: int, cycleTime: int) -> None:
        self.channel = PWMn
        self.high = highTime
        self.cycle = cycleTime

    def open(self) -> int:
        log.info("PWM %s on: high %s of %s", self.channel, self.high, self.cycle)
        return 0

    def close(self) -> int:
        log.info("PWM %s off", self.channel)
        return 0


class ADC(machine.ADC):
    """QuecPython's ``misc.ADC()``: ``open()``, ``read(ADC.ADC0)`` (mV from the profile)."""


class USB(NotSimulatedMembers):
    def getStatus(self) -> int:
        return 1

    def setCallback(self, usrFun: Callable[[Any], Any]) -> int:
        return 0


def antennaSecRXOffCtrl(*args: Any) -> int:
    return 0


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
