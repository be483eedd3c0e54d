"""QuecPython's ``net``: radio registration and signal, simulated from the device profile.

Registered (state 1, LTE) with signal ``csq`` (default 31) while the simulated radio is
attached (the profile's ``attached``; by default when this host has a default route);
otherwise not registered (state 0) and ``csqQueryPoll()`` is 99 ("unknown"), as on a module
without signal."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from ._support import device_name, log, network_attached, not_simulated, profile

_LAC = 0x5A1F
_CELL_ID = 0x0C45D03
_RAT_LTE = 7
_modem_fun = 1


def _registered() -> bool:
    return network_attached() and _modem_fun == 1 and profile()["sim_status"] == 1


def csqQueryPoll() -> int:
    """Signal strength 0..31, or 99 when unknown (not registered)."""
    return int(profile()["csq"]) if _registered() else 99


def getState() -> tuple[list[int], list[int]]:
    """``([voice_state, lac, cid, rat, reject_cause, psc], [data_state, ...])``; state 1 is
    registered to the home network, 0 not registered."""
    state = 1 if _registered() else 0
    return ([state, _LAC, _CELL_ID, _RAT_LTE, 0, -1], [state, _LAC, _CELL_ID, _RAT_LTE, 0, -1])


def getSignal(sinrEnable: int = 0) -> tuple[list[int], list[int]]:
    """``([rssi, bitErrorRate, rscp, ecno], [rssi, rsrp, rsrq, cqi])`` derived from ``csq``."""
    csq = csqQueryPoll()
    if csq == 99:
        return ([99, 99, 255, 255], [-140, -140, -20, 0])
    rssi = -113 + 2 * csq
    return ([99, 99, 255, 255], [rssi, rssi - 20, -10, 15])


def getConfig() -> tuple[int, int]:
    """``(mode, roaming)``: LTE only, no roaming."""
    return (5, 0)


def setConfig(mode: int, roaming: int = 0) -> int:
    log.info("net.setConfig(%s, %s)", mode, roaming)
    return 0


def getNetMode() -> tuple[int, str, str, int]:
    """``(selection_mode, mcc, mnc, act)``."""
    _, _, mcc, mnc = profile()["operator"]
    return (0, str(mcc), str(mnc), _RAT_LTE)


def operatorName() -> Any:
    """``(long_eons, short_eons, mcc, mnc)`` from the profile's ``operator``, or -1."""
    return tuple(profile()["operator"]) if _registered() else -1


def getCellInfo() -> tuple[list[Any], list[Any], list[Any]]:
    """``(gsm, umts, lte)``: one LTE serving cell."""
    _, _, mcc, mnc = profile()["operator"]
    rsrp = getSignal()[1][1]
    lte = [(0, _CELL_ID, int(mcc), int(mnc), 0, _LAC, 1650, rsrp, -10)] if _registered() else []
    return ([], [], lte)


currentCellInfo = getCellInfo


def getServingCi() -> int:
    return _CELL_ID if _registered() else -1


def getServingLac() -> int:
    return _LAC if _registered() else -1


def getServingMcc() -> int:
    return int(profile()["operator"][2]) if _registered() else -1


def getServingMnc() -> int:
    return int(profile()["operator"][3]) if _registered() else -1


def getModemFun() -> int:
    """1: full functionality; 0 or 4 after setModemFun (the radio is then off)."""
    return _modem_fun


def setModemFun(fun: int, rst: int = 0) -> int:
    global _modem_fun
    log.info("net.setModemFun(%s)", fun)
    _modem_fun = int(fun)
    return 0


def nitzTime() -> Any:
    return -1


def setCallback(handler: Callable[[Any], Any]) -> int:
    """Accepted; the simulated registration never changes by itself, so it is not called."""
    return 0


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
