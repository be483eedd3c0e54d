"""The one timer behind ``osTimer`` and ``machine.Timer``: a real thread per running timer
that calls back on time (deadlines from a monotonic clock, so a periodic timer does not
drift), until stopped. A stopped timer counts as running until a callback in progress
returns."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ._support import log, timer_started, timer_stopped


class RunningTimer:
    def __init__(self, period_ms: float, periodic: bool, callback: Callable[[Any], Any], arg: Any):
        if period_ms < 0:
            raise ValueError("a timer's period must be >= 0 ms")
        self.period = period_ms / 1000
        self.periodic = periodic
        self.callback = callback
        self.arg = arg
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-timer", daemon=True)
        timer_started(self)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic()
        try:
            while True:
                deadline += self.period
                if self._stopped.wait(max(0.0, deadline - time.monotonic())):
                    return
                try:
                    self.callback(self.arg)
                except Exception:
                    log.exception("a timer callback raised")
                if not self.periodic:
                    return
                if self.period == 0:
                    time.sleep(0.001)  # a 0 ms periodic timer must not starve the process
        finally:
            timer_stopped(self)

    def stop(self) -> None:
        # The timer leaves the live set when its thread ends (above), not here: a callback that
        # stops its own timer keeps the program going until it returns (a runner that ended
        # there would cut the callback short).
        self._stopped.set()
