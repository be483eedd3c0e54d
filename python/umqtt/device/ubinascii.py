"""MicroPython's ``ubinascii``: CPython's ``binascii``; ``b2a_base64`` takes MicroPython's
``newline`` argument, as CPython's does."""

from __future__ import annotations

from binascii import *  # noqa: F403
