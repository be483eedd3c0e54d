"""QuecPython's ``osTimer``: ``import osTimer`` gives the timer class itself, as on the
device (``t = osTimer(); t.start(1000, 1, callback); t.stop()``). Real timers: the callback
runs on a timer thread, ``callback(None)``, on time; an exception in it is logged under
``umqtt.device`` and the timer goes on."""

from __future__ import annotations

import sys
from typing import Any, Callable

from ._support import NotSimulatedMembers
from ._timer import RunningTimer


class osTimer(NotSimulatedMembers):
    def __init__(self) -> None:
        self._running: RunningTimer | None = None

    def start(self, initialTime: int, cyclialEn: int, callback: Callable[[Any], Any]) -> int:
        """Calls ``callback(None)`` after ``initialTime`` ms, then every ``initialTime`` ms
        when ``cyclialEn`` is 1. Starting a running timer restarts it. Returns 0."""
        if not callable(callback):
            raise TypeError("osTimer.start: callback must be callable")
        self.stop()
        self._running = RunningTimer(initialTime, bool(cyclialEn), callback, None)
        return 0

    def stop(self) -> int:
        """Stops the timer (a callback already running finishes). Returns 0."""
        if self._running is not None:
            self._running.stop()
            self._running = None
        return 0

    def delete_timer(self) -> int:
        return self.stop()


# ``import osTimer`` must give the class: the module replaces itself with it, as the device's
# built-in does. ``umqtt.device.osTimer.osTimer`` still names the class.
osTimer.osTimer = osTimer  # type: ignore[attr-defined]
sys.modules[__name__] = osTimer  # type: ignore[assignment]
