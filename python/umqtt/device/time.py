"""MicroPython's ``time`` on a PC: CPython's ``time`` plus the device's extras (``sleep_ms``,
``sleep_us``, ``ticks_ms``, ``ticks_us``, ``ticks_cpu``, ``ticks_diff``, ``ticks_add``).

Under ``python -m umqtt run`` a device script's ``import time`` gets this module; CPython's
own ``time`` is not touched."""

from __future__ import annotations

from time import *  # noqa: F403

from .utime import (
    sleep_ms as sleep_ms,
)
from .utime import (
    sleep_us as sleep_us,
)
from .utime import (
    ticks_add as ticks_add,
)
from .utime import (
    ticks_cpu as ticks_cpu,
)
from .utime import (
    ticks_diff as ticks_diff,
)
from .utime import (
    ticks_ms as ticks_ms,
)
from .utime import (
    ticks_us as ticks_us,
)
