"""MicroPython's ``ustruct``: CPython's ``struct``."""

from __future__ import annotations

from struct import *  # noqa: F403
