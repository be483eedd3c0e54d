"""MicroPython's ``uhashlib``: CPython's ``sha256``, ``sha1`` and ``md5`` (``update``,
``digest``; also ``hexdigest``, which the device lacks)."""

from __future__ import annotations

from hashlib import md5 as md5
from hashlib import sha1 as sha1
from hashlib import sha256 as sha256
