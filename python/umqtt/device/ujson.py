"""MicroPython's ``ujson``: CPython's ``json`` (``dumps``, ``loads``, ``dump``, ``load``)."""

from __future__ import annotations

from json import *  # noqa: F403
