"""The device modules of QuecPython and MicroPython, on a PC (``python -m umqtt run``).

Each device module is a plain module here, ``umqtt.device.<name>``: real where a PC can be
(clocks, threads, timers, sockets, files, JSON, hashes), a documented simulation where it
cannot (radio, SIM, modem identities, GPIO, buses, power), configured by a device profile
(``set_profile``). docs/device.md lists what each does.

For a pytest suite that imports device code::

    import umqtt.device

    umqtt.device.install()          # `import utime`, `import machine`, ... now work
    umqtt.device.install(usr="src") # also `from usr.helper import x` from the folder src
    umqtt.device.uninstall()        # undoes it

``install()`` only makes the device modules importable: it replaces nothing of CPython's
(``time``, ``os``, ``_thread``, ``queue``, ``ssl``, ``gc`` and ``asyncio`` stay CPython's:
their device versions are ``umqtt.device.time`` etc.; under ``python -m umqtt run`` a device
script gets them by their plain names). A module of the user's on ``sys.path`` always wins
over ours. A device module we do not simulate fails to import with a message that says so.
"""

from __future__ import annotations

from ._importer import (
    DEVICE_MODULES,
    NOT_SIMULATED,
    PLAIN_NAME_MODULES,
    install,
    uninstall,
)
from ._support import (
    DeviceRestart,
    Profile,
    profile,
    set_profile,
    set_usr_root,
    stop_timers,
    usr_root,
)

__all__ = [
    "DEVICE_MODULES",
    "NOT_SIMULATED",
    "PLAIN_NAME_MODULES",
    "DeviceRestart",
    "Profile",
    "install",
    "profile",
    "set_profile",
    "set_usr_root",
    "stop_timers",
    "uninstall",
    "usr_root",
]
