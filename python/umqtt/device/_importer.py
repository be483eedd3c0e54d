"""How device code finds its modules: ``import utime`` (the device modules, after the user's
own), ``from usr.helper import x`` (the project's folder) and, for a project run by
``python -m umqtt run``, the device's view of ``os``, ``time``, ``_thread`` and a few more.

Three pieces:
- ``DeviceFinder`` (at the end of ``sys.meta_path``, so any module of the user's wins):
  ``utime`` -> ``umqtt.device.utime``, the very same module object; a known device module we
  do not simulate is an ImportError that says so.
- ``ProjectFinder`` (at the front): ``usr`` is the project's folder as a package, and the
  folder's own modules load from it. With ``device_builtins`` they execute with those
  builtins, which is how a project (and nothing else in the process) sees ``open()`` mapping
  ``/usr/`` and ``import os`` giving the device's ``uos``.
- ``device_builtins()``: the builtins of a project's modules.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

from ._support import map_path

# name a device script imports -> module in umqtt.device
DEVICE_MODULES: dict[str, str] = {
    name: name
    for name in (
        # QuecPython
        "utime checkNet dataCall net sim modem misc osTimer log ql_fs uos ujson usocket ussl "
        "ubinascii uhashlib ustruct usys ucollections uio ure uzlib sys_bus ntptime request pm "
        "fota "
        # MicroPython
        "machine network micropython esp dht webrepl uasyncio"
    ).split()
}
DEVICE_MODULES.update(urandom="random", uselect="select", uerrno="errno", uarray="array")
# Names CPython has too: under `run` a project's import of these gets the device's module
# (unless the project ships its own); install() leaves them CPython's.
PLAIN_NAME_MODULES: dict[str, str] = {
    "os": "uos",
    "time": "time",
    "_thread": "_thread",
    "queue": "queue",
    "ssl": "ssl",
    "gc": "gc",
    "asyncio": "uasyncio",
}
# Device modules umqtt.device does not simulate: importing one says so.
NOT_SIMULATED = frozenset(
    (
        "app_fota app_fota_download atcmd audio ble bt camera cellLocator ethernet gnss lvgl "
        "qrcode quecgnss securedata SecureData sensor sms system uping uwebsocket voiceCall "
        "wifilocator wifiScan wifi_scan "
        "bluetooth ubluetooth btree cryptolib ucryptolib espnow framebuf neopixel onewire "
        "ds18x20 pyb rp2 uctypes"
    ).split()
)


def _not_simulated_error(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"device module {name!r} is not simulated by umqtt.device: put your own {name}.py on "
        "the path (next to the script under `python -m umqtt run`); a module of yours always "
        "wins over umqtt.device's",
        name=name,
    )


def device_module(name: str) -> Any:
    """The module object behind a device name (the same object every time)."""
    target = DEVICE_MODULES[name]
    if target == name:
        return importlib.import_module(f"umqtt.device.{target}")
    return importlib.import_module(target)  # urandom -> random: CPython's is the device's


class _AliasLoader(importlib.abc.Loader):
    """Loads ``utime`` as the existing ``umqtt.device.utime`` object, keeping its own spec."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.spec = getattr(module, "__spec__", None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.module

    def exec_module(self, module: Any) -> None:
        if self.spec is not None:
            module.__spec__ = self.spec  # module_from_spec set the alias's spec on it


class DeviceFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if "." in fullname:
            return None
        if fullname in NOT_SIMULATED:
            raise _not_simulated_error(fullname)
        if fullname not in DEVICE_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(device_module(fullname)))


# --------------------------------------------------------------------------- the project


class _ProjectLoader(importlib.machinery.SourceFileLoader):
    """A project module: executed with the device's builtins when there are some."""

    def __init__(self, fullname: str, path: str, device_builtins: dict[str, Any] | None):
        super().__init__(fullname, path)
        self.device_builtins = device_builtins

    def exec_module(self, module: types.ModuleType) -> None:
        if self.device_builtins is not None:
            module.__dict__["__builtins__"] = self.device_builtins
        super().exec_module(module)


class _UsrPackageLoader(importlib.abc.Loader):
    """``usr``: the project folder as a package with no code of its own (the device's
    ``/usr`` has no ``__init__.py``)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class ProjectFinder(importlib.abc.MetaPathFinder):
    """``usr``/``usr.*`` and the folder's top-level modules and packages, from ``folder``."""

    def __init__(self, folder: str, device_builtins: dict[str, Any] | None = None) -> None:
        self.folder = os.path.abspath(folder)
        self.device_builtins = device_builtins

    def source(self, directory: str, name: str) -> tuple[str | None, bool]:
        """(path of the module's source, is a package) in ``directory``, or (None, False)."""
        package = os.path.join(directory, name, "__init__.py")
        if os.path.isfile(package):
            return package, True
        module = os.path.join(directory, name + ".py")
        if os.path.isfile(module):
            return module, False
        return None, False

    def owns(self, name: str) -> bool:
        """Whether the folder has a top-level module or package called ``name``."""
        return self.source(self.folder, name)[0] is not None

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "usr":
            spec = importlib.machinery.ModuleSpec("usr", _UsrPackageLoader(), is_package=True)
            spec.submodule_search_locations = [self.folder]
            return spec
        parent, _, name = fullname.rpartition(".")
        if parent:
            directories = [d for d in (path or ()) if self._inside(d)]
        else:
            directories = [self.folder]
        for directory in directories:
            source, is_package = self.source(directory, name)
            if source is not None:
                return importlib.util.spec_from_file_location(
                    fullname,
                    source,
                    loader=_ProjectLoader(fullname, source, self.device_builtins),
                    submodule_search_locations=[os.path.dirname(source)] if is_package else None,
                )
        return None

    def _inside(self, directory: str) -> bool:
        directory = os.path.abspath(directory)
        return directory == self.folder or directory.startswith(self.folder + os.sep)

    def load_shadowing(self, name: str) -> types.ModuleType:
        """The project's own module ``name`` where the process already has a module of that
        name (the project's ``logging.py``): loaded for the project, leaving the process's
        ``sys.modules[name]`` (which umqtt and CPython use) as it is."""
        spec = self.find_spec(name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def device_builtins(project: ProjectFinder) -> dict[str, Any]:
    """The builtins a project's code runs with: ``open`` maps ``/usr/``, and ``import`` gives
    the device's module for names CPython has too (``os`` -> ``uos``, ``time``, ...) and the
    project's own module where the process has one of that name already."""
    real_import = builtins.__import__
    real_open = builtins.open
    shadowed: dict[str, types.ModuleType] = {}

    def device_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        return real_open(map_path(file), *args, **kwargs)

    def device_import(
        name: str,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> Any:
        if level == 0:
            top = name.partition(".")[0]
            if project.owns(top):
                if top in sys.modules and not _from_project(sys.modules[top], project):
                    if top not in shadowed:
                        shadowed[top] = project.load_shadowing(top)
                    return shadowed[top]
            elif top in PLAIN_NAME_MODULES:
                if name != top:
                    submodule = importlib.import_module(name)  # CPython's os.path, ...
                    if fromlist:
                        return submodule  # `from os.path import join`
                return importlib.import_module(f"umqtt.device.{PLAIN_NAME_MODULES[top]}")
        return real_import(name, globals, locals, fromlist, level)

    names = dict(builtins.__dict__)
    names["open"] = device_open
    names["__import__"] = device_import
    return names


def _from_project(module: types.ModuleType, project: ProjectFinder) -> bool:
    return isinstance(getattr(module, "__loader__", None), _ProjectLoader) or (
        getattr(module, "__file__", None) or ""
    ).startswith(project.folder + os.sep)


# --------------------------------------------------------------------------- install


def install(usr: Any = None) -> None:
    """Makes the device modules importable (after any of the user's own); with ``usr`` (a
    folder), also ``usr``/``usr.*`` from it. Patches nothing. Safe to call again."""
    if not any(isinstance(f, DeviceFinder) for f in sys.meta_path):
        sys.meta_path.append(DeviceFinder())
    if usr is not None:
        _remove_finders(ProjectFinder)
        sys.meta_path.insert(0, ProjectFinder(os.fspath(usr)))


def _remove_finders(kind: type) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, kind)]


def uninstall() -> None:
    """Undoes install(): the device names and ``usr`` are no longer importable, and the
    modules imported through them are forgotten (``umqtt.device.*`` themselves stay)."""
    _remove_finders(DeviceFinder)
    _remove_finders(ProjectFinder)
    for name, module in list(sys.modules.items()):
        alias = name in DEVICE_MODULES and _is_device_module(module, name)
        if alias or name == "usr" or name.startswith("usr."):
            del sys.modules[name]


def _is_device_module(module: Any, name: str) -> bool:
    """Whether ``sys.modules[name]`` is our alias (not a module of the user's)."""
    target = DEVICE_MODULES[name]
    return module is sys.modules.get(f"umqtt.device.{target}" if target == name else target)
