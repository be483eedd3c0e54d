"""QuecPython's ``pm`` (power management): wake locks and sleep, simulated and logged."""

from __future__ import annotations

import itertools
from typing import Any, NoReturn

from ._support import device_name, log, not_simulated

_ids = itertools.count(1)
_locks: dict[int, str] = {}


def create_wakelock(lock_name: str, name_size: int = 0) -> int:
    lock_id = next(_ids)
    _locks[lock_id] = lock_name
    return lock_id


def delete_wakelock(lpm_fd: int) -> int:
    _locks.pop(lpm_fd, None)
    return 0


def wakelock_lock(lpm_fd: int) -> int:
    log.info("pm: wake lock %s held", _locks.get(lpm_fd, lpm_fd))
    return 0


def wakelock_unlock(lpm_fd: int) -> int:
    log.info("pm: wake lock %s released", _locks.get(lpm_fd, lpm_fd))
    return 0


def get_wakelock_num() -> int:
    return len(_locks)


def autosleep(sleep_flag: int) -> int:
    log.info("pm.autosleep(%s)", sleep_flag)
    return 0


def set_psm_time(*args: Any) -> bool:
    log.info("pm.set_psm_time%s", args)
    return True


def get_psm_time() -> list[int]:
    return [0, 0, 0, 0, 0]


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
