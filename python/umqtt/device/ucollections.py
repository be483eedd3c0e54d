"""MicroPython's ``ucollections``: CPython's ``collections`` (``namedtuple``,
``OrderedDict``, ``deque(iterable, maxlen)``)."""

from __future__ import annotations

from collections import *  # noqa: F403
