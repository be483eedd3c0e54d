"""QuecPython's ``ql_fs``: file helpers on the real file system, ``/usr/...`` mapped like
``uos`` (so a project's ``/usr/config.json`` is the file next to its script)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, NoReturn

from ._support import device_name, log, map_path, not_simulated


def path_exists(file_path: str) -> bool:
    return os.path.exists(map_path(file_path))


def path_dirname(file_path: str) -> str:
    return os.path.dirname(file_path)


def path_getsize(file_path: str) -> int:
    return os.path.getsize(map_path(file_path))


def mkdirs(dir_path: str) -> None:
    os.makedirs(map_path(dir_path), exist_ok=True)


def rmdirs(dir_path: str) -> None:
    shutil.rmtree(map_path(dir_path))


def touch(file: str, data: Any) -> int:
    """Writes ``data`` as JSON to ``file`` (creating its folder); 0, or -1 on failure."""
    path = map_path(file)
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
    except (OSError, TypeError, ValueError) as e:
        log.warning("ql_fs.touch(%r) failed: %s", file, e)
        return -1
    return 0


def read_json(file: str) -> Any:
    """The file's JSON; its text when it is not JSON; None when it cannot be read."""
    try:
        with open(map_path(file), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def file_copy(dst: str, src: str) -> bool:
    shutil.copyfile(map_path(src), map_path(dst))
    return True


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
