"""MicroPython's ``ure``: CPython's ``re`` (a superset of the device's)."""

from __future__ import annotations

from re import *  # noqa: F403
