"""MicroPython / QuecPython ``uos``: CPython's ``os``, with the device's ``/usr`` mapped.

Paths that start with ``/usr/`` (and ``/usr`` itself) go to the folder that stands for the
device's file system: the script's folder under ``python -m umqtt run`` (or ``--fs DIR``),
the current directory otherwise (``umqtt.device.set_usr_root``). ``..`` cannot climb out of
it. Every other path is CPython's. Device extras: ``ilistdir``, ``uname()`` (the profile's
model and firmware), ``statvfs``, ``urandom``. Under ``python -m umqtt run`` a device
script's ``import os`` gets this module; CPython's own ``os`` is not touched."""

from __future__ import annotations

import os as _os
from collections.abc import Iterator
from typing import Any, NamedTuple

from ._support import map_path, profile


def listdir(path: Any = ".") -> list[Any]:
    return _os.listdir(map_path(path))


def ilistdir(path: Any = ".") -> Iterator[tuple[str, int, int, int]]:
    """``(name, type, inode, size)``: type 0x4000 for a folder, 0x8000 for a file."""
    with _os.scandir(map_path(path)) as entries:
        for entry in entries:
            info = entry.stat()
            kind = 0x4000 if entry.is_dir() else 0x8000
            yield (entry.name, kind, entry.inode(), 0 if kind == 0x4000 else info.st_size)


def mkdir(path: Any, mode: int = 0o777) -> None:
    _os.mkdir(map_path(path), mode)


def makedirs(name: Any, mode: int = 0o777, exist_ok: bool = False) -> None:
    _os.makedirs(map_path(name), mode, exist_ok)


def rmdir(path: Any) -> None:
    _os.rmdir(map_path(path))


def remove(path: Any) -> None:
    _os.remove(map_path(path))


unlink = remove


def rename(old: Any, new: Any) -> None:
    _os.rename(map_path(old), map_path(new))


def replace(old: Any, new: Any) -> None:
    _os.replace(map_path(old), map_path(new))


def stat(path: Any) -> _os.stat_result:
    return _os.stat(map_path(path))


def statvfs(path: Any) -> _os.statvfs_result:
    return _os.statvfs(map_path(path))


def chdir(path: Any) -> None:
    _os.chdir(map_path(path))


class uname_result(NamedTuple):
    sysname: str
    nodename: str
    release: str
    version: str
    machine: str


def uname() -> uname_result:
    """The device's: ``sysname`` and ``machine`` are the profile's model, ``release`` its
    firmware."""
    model = str(profile()["model"])
    firmware = str(profile()["firmware"])
    return uname_result(model, model, firmware, firmware, model)


def __getattr__(name: str) -> Any:
    """CPython's ``os`` for everything else (``path``, ``getcwd``, ``urandom``, ...)."""
    return getattr(_os, name)
