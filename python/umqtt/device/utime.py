"""QuecPython / MicroPython ``utime``: real clocks; ``ticks_*`` wrap around like the device's.

``ticks_ms()``/``ticks_us()``/``ticks_cpu()`` count from 0 at import (the device counts from
boot) and wrap at 2**30, as MicroPython's do; use ``ticks_diff``/``ticks_add`` on them.
``time()`` is whole seconds since 1970 (an int), ``localtime()``/``gmtime()`` return the
device's 8-tuple ``(year, month, mday, hour, minute, second, weekday, yearday)`` in the
device's time zone (``setTimeZone``; the profile's ``timezone``, else the host's).
"""

from __future__ import annotations

import calendar
import time as _time
from typing import NoReturn

from ._support import device_name, not_simulated, profile

TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALFPERIOD = TICKS_PERIOD // 2

_boot_ns = _time.monotonic_ns()

DateTuple = tuple[int, int, int, int, int, int, int, int]


def ticks_ms() -> int:
    return ((_time.monotonic_ns() - _boot_ns) // 1_000_000) & TICKS_MAX


def ticks_us() -> int:
    return ((_time.monotonic_ns() - _boot_ns) // 1_000) & TICKS_MAX


def ticks_cpu() -> int:
    return ticks_us()


def ticks_add(ticks: int, delta: int) -> int:
    """``ticks`` moved by ``delta`` (may be negative), wrapped like the counters."""
    return (ticks + delta) & TICKS_MAX


def ticks_diff(ticks1: int, ticks2: int) -> int:
    """``ticks1 - ticks2`` across a wrap-around: a signed result in -2**29 .. 2**29-1."""
    return ((ticks1 - ticks2 + TICKS_HALFPERIOD) & TICKS_MAX) - TICKS_HALFPERIOD


def sleep(seconds: float) -> None:
    _time.sleep(seconds)


def sleep_ms(ms: float) -> None:
    _time.sleep(max(0.0, ms) / 1000)


def sleep_us(us: float) -> None:
    _time.sleep(max(0.0, us) / 1_000_000)


def time() -> int:
    """Whole seconds since 1970-01-01 UTC, an int as on the device."""
    return int(_time.time())


def time_ns() -> int:
    return _time.time_ns()


_timezone_hours: int | None = None


def getTimeZone() -> int:
    """The device's time zone in hours east of UTC (-12..12)."""
    if _timezone_hours is not None:
        return _timezone_hours
    configured = profile()["timezone"]
    if configured is not None:
        return int(configured)
    return round(-(_time.altzone if _time.localtime().tm_isdst > 0 else _time.timezone) / 3600)


def setTimeZone(offset: int) -> None:
    global _timezone_hours
    if not -12 <= offset <= 12:
        raise ValueError("time zone offset must be -12..12 hours")
    _timezone_hours = int(offset)


def _tuple(t: _time.struct_time) -> DateTuple:
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, t.tm_wday, t.tm_yday)


def gmtime(secs: float | None = None) -> DateTuple:
    return _tuple(_time.gmtime(time() if secs is None else secs))


def localtime(secs: float | None = None) -> DateTuple:
    """The device's 8-tuple for ``secs`` (default: now) in the device's time zone."""
    seconds = time() if secs is None else int(secs)
    return _tuple(_time.gmtime(seconds + getTimeZone() * 3600))


def mktime(date: tuple[int, ...]) -> int:
    """Seconds since 1970 for a local date tuple (the first six fields are used)."""
    year, month, mday, hour, minute, second = (int(x) for x in date[:6])
    utc = calendar.timegm((year, month, mday, hour, minute, second, 0, 0, 0))
    return utc - getTimeZone() * 3600


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
