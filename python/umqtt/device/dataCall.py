"""QuecPython's ``dataCall``: the cellular data link (PDP context), simulated.

Profile 1 is active while the simulated radio is attached (``net``); its address is the
profile's ``ipv4``, else this host's. ``activate``/``deactivate``/``setPDPContext`` are
remembered and logged."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from . import net
from ._support import device_name, host_ipv4, log, not_simulated, profile

_contexts: dict[int, tuple[int, str, str, str, int]] = {1: (0, "", "", "", 0)}
_deactivated: set[int] = set()
_callback: Callable[[Any], Any] | None = None


def _active(profile_id: int) -> bool:
    return profile_id in _contexts and profile_id not in _deactivated and net._registered()


def setPDPContext(
    profileID: int, ipType: int, apn: str, username: str, password: str, authType: int
) -> int:
    _contexts[profileID] = (ipType, apn, username, password, authType)
    log.info("dataCall.setPDPContext(%s, apn=%r)", profileID, apn)
    return 0


def getPDPContext(profileID: int) -> tuple[int, str, str, str, int] | int:
    return _contexts.get(profileID, -1)


def setAutoActivate(profileID: int, enable: int) -> int:
    return 0


def setAutoConnect(profileID: int, enable: int) -> int:
    return 0


def setDNSServer(profileID: int, simID: int, priDNS: str, secDNS: str) -> int:
    profile().values["dns"] = [priDNS, secDNS]
    return 0


def activate(profileID: int) -> int:
    _contexts.setdefault(profileID, (0, "", "", "", 0))
    _deactivated.discard(profileID)
    log.info("dataCall.activate(%s)", profileID)
    return 0 if net._registered() else -1


def deactivate(profileID: int) -> int:
    _deactivated.add(profileID)
    log.info("dataCall.deactivate(%s)", profileID)
    if _callback is not None:
        _callback((profileID, 0))
    return 0


def start(
    profileidx: int,
    iptype: int = 0,
    apn: str = "",
    username: str = "",
    password: str = "",
    authtype: int = 0,
    cur_simid: Any = None,
) -> int:
    setPDPContext(profileidx, iptype, apn, username, password, authtype)
    return activate(profileidx)


def setCallback(fun: Callable[[Any], Any]) -> int:
    """``fun((profileID, state))`` on a deactivate (the simulated link never drops by itself)."""
    global _callback
    _callback = fun
    return 0


def getInfo(profileID: int, ipType: int) -> tuple[Any, ...] | int:
    """``(profileID, ipType, [state, reconnect, addr, priDNS, secDNS])``; with ipType 2 a
    second list for IPv6. Not active: ``[0, 0, '0.0.0.0', '0.0.0.0', '0.0.0.0']``."""
    if ipType not in (0, 1, 2):
        return -1
    dns1, dns2 = (str(d) for d in profile()["dns"][:2])
    if _active(profileID):
        v4 = [1, 0, host_ipv4(), dns1, dns2]
        v6 = [0, 0, "::", "::", "::"]
    else:
        v4 = [0, 0, "0.0.0.0", "0.0.0.0", "0.0.0.0"]
        v6 = [0, 0, "::", "::", "::"]
    if ipType == 0:
        return (profileID, ipType, v4)
    if ipType == 1:
        return (profileID, ipType, v6)
    return (profileID, ipType, v4, v6)


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
