"""QuecPython's / MicroPython's ``ntptime``: the host's clock is already set, so
``settime()`` only logs and succeeds (nothing is sent to the NTP server)."""

from __future__ import annotations

from ._support import log
from .utime import time as _device_time

host = "ntp.aliyun.com"
timeout = 1


def sethost(new_host: str) -> int:
    global host
    host = new_host
    return 0


def settime(timezone: int = 0) -> int:
    log.info("ntptime.settime(): the host clock is used (server %s not asked)", host)
    return 0


def time() -> int:
    """Seconds since 1970, from the host clock."""
    return _device_time()
