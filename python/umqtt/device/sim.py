"""QuecPython's ``sim``: the SIM card, from the device profile (``iccid``, ``imsi``,
``phone_number``, ``sim_status``). PIN operations succeed and are logged."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from ._support import device_name, log, not_simulated, profile


def getStatus() -> int:
    """1: ready (0: no card; the device's other codes through the profile's ``sim_status``)."""
    return int(profile()["sim_status"])


def _when_ready(key: str) -> str | int:
    return str(profile()[key]) if getStatus() == 1 else -1


def getIccid() -> str | int:
    return _when_ready("iccid")


def getImsi() -> str | int:
    return _when_ready("imsi")


def getPhoneNumber() -> str | int:
    return _when_ready("phone_number")


def getCurSimid() -> int:
    return 0


def switchCard(simId: int) -> int:
    log.info("sim.switchCard(%s)", simId)
    return 0


def _pin_operation(name: str) -> Callable[..., int]:
    def operation(*args: Any) -> int:
        log.info("sim.%s()", name)
        return 0

    operation.__name__ = name
    return operation


enablePin = _pin_operation("enablePin")
disablePin = _pin_operation("disablePin")
verifyPin = _pin_operation("verifyPin")
changePin = _pin_operation("changePin")
unblockPin = _pin_operation("unblockPin")


def setCallback(usrFun: Callable[[Any], Any]) -> int:
    """Accepted; the simulated card is never removed or inserted, so it is not called."""
    return 0


def setSwitchcardCallback(usrFun: Callable[[Any], Any]) -> int:
    return 0


def getSimDet() -> tuple[int, int]:
    return (0, 0)


def setSimDet(switch: int, triggerLevel: int) -> int:
    return 0


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
