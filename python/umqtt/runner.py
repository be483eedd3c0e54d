"""``python -m umqtt run [OPTIONS] SCRIPT [ARGS...]``: a QuecPython or MicroPython device
script, run unchanged on CPython.

The script runs as ``__main__`` with ``sys.argv == [SCRIPT, *ARGS]``; its folder is
importable, also as the package ``usr`` (QuecPython keeps scripts in ``/usr``); the device
modules come from ``umqtt.device``; ``/usr/...`` paths in ``open()`` and the ``os``/``uos``
file functions go to ``--fs DIR`` (default: the script's folder). Only the project's own
code (the script and the modules loaded from its folder) sees the device's ``open``, ``os``,
``time``, ``_thread``, ``queue``, ``ssl``, ``gc`` and ``asyncio``; nothing changes for any
other code in the process.

The process lives as long as the device would: after the script's main code returns, it
waits while threads started with ``_thread`` or running timers (``osTimer``,
``machine.Timer``) are alive. Exit status: 0, or the script's ``sys.exit`` status; 1 with a
traceback when it raises; 130 on Ctrl-C. ``machine.reset()`` and
``misc.Power.powerRestart()`` end it with a message naming the call (status 0), or, with
``--restart``, start it again from the top (a fresh process, as a device reboots).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Sequence
from typing import Any

from . import device
from .device import _importer, _support

EXIT_INTERRUPTED = 130
_RESTARTS_ENV = "UMQTT_RUN_RESTARTS"
_WAIT_POLL_SECONDS = 0.05
_RESTART_SIGNAL_WAIT_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``run``, for the command line's sub-command."""
    parser.add_argument(
        "--profile", metavar="FILE", help="device profile: JSON (see docs/device.md)"
    )
    parser.add_argument(
        "--fs", metavar="DIR", help="folder that stands for the device's /usr (the script's)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the simulated device's actions (GPIO, buses, power, radio) on stderr",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="machine.reset()/powerRestart() start the script again instead of ending it",
    )
    parser.add_argument("script", metavar="SCRIPT", help="the device script (e.g. main.py)")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")


class _Restart:
    """Which call restarted the device, set from any thread. A restart from another thread
    interrupts the main thread (a real SIGINT to it, so a blocking call there returns at once);
    the runner then waits for that interruption before it goes on, so it cannot surface later."""

    def __init__(self) -> None:
        self.call: str | None = None
        self.interrupt_pending = False
        self._lock = threading.Lock()

    def __call__(self, call: str) -> None:
        with self._lock:
            if self.call is not None:
                return
            self.call = call
            main = threading.main_thread()
            if threading.current_thread() is not main and main.ident is not None:
                self.interrupt_pending = True
                signal.pthread_kill(main.ident, signal.SIGINT)

    def interrupted(self) -> None:
        """The main thread got its KeyboardInterrupt."""
        self.interrupt_pending = False


def _preload_device_modules() -> None:
    """Imports every device module before the project's folder comes onto the path, so they
    bind CPython's modules even where the project ships one of the same name."""
    for name in _importer.DEVICE_MODULES:
        _importer.device_module(name)
    for name in _importer.PLAIN_NAME_MODULES.values():
        importlib.import_module(f"umqtt.device.{name}")


def _forget_project_modules(folder: str) -> None:
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name == "usr" or name.startswith("usr.") or path.startswith(folder + os.sep):
            del sys.modules[name]


def _print_traceback(error: BaseException) -> None:
    """The script's traceback, without the runner's own frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)


def _exit_status(error: SystemExit) -> int:
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def run(
    script: str,
    args: Sequence[str] = (),
    *,
    fs: str | None = None,
    profile: Any = None,
) -> tuple[int, str | None]:
    """Runs ``script`` as the device would; returns ``(exit status, restart call)``, the
    call being e.g. ``"machine.reset()"`` when the script restarted the device (else None).
    Restores ``sys.argv``, ``sys.path`` and the import system when it returns."""
    path = os.path.abspath(script)
    folder = os.path.dirname(path)
    with open(path, "rb") as f:
        source = f.read()
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        traceback.print_exception(type(e), e, None)
        return 1, None
    _support.set_profile(profile)
    _support.set_usr_root(fs if fs is not None else folder)
    _preload_device_modules()

    project = _importer.ProjectFinder(folder)
    project.device_builtins = _importer.device_builtins(project)
    restart = _Restart()
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __builtins__=project.device_builtins, __spec__=None)

    saved_argv, saved_path = sys.argv, list(sys.path)
    saved_main = sys.modules.get("__main__")
    device.install()
    sys.meta_path.insert(0, project)
    sys.path.insert(0, folder)
    sys.argv = [script, *args]
    sys.modules["__main__"] = main
    _support.set_restart_hook(restart)
    try:
        status = _run_main(code, main, restart)
    finally:
        _support.set_restart_hook(None)
        _support.stop_timers()
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        sys.meta_path[:] = [f for f in sys.meta_path if f is not project]
        device.uninstall()
        _forget_project_modules(folder)
    return status, restart.call


def _run_main(code: types.CodeType, main: types.ModuleType, restart: _Restart) -> int:
    """The script's main code, then the wait for its threads and timers."""
    try:
        exec(code, main.__dict__)
        while restart.call is None and _support.busy():
            time.sleep(_WAIT_POLL_SECONDS)
        if restart.interrupt_pending:
            time.sleep(_RESTART_SIGNAL_WAIT_SECONDS)  # its KeyboardInterrupt ends this sleep
    except _support.DeviceRestart as e:
        restart.call = e.call
    except KeyboardInterrupt:
        restart.interrupted()
        if restart.call is None:
            print("KeyboardInterrupt", file=sys.stderr)
            return EXIT_INTERRUPTED
    except SystemExit as e:
        return _exit_status(e)
    except BaseException as e:
        _print_traceback(e)
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    """``python -m umqtt run``: runs the script; on a device restart, ends (or with
    ``--restart`` re-executes this command: a fresh process, as a device reboots)."""
    profile = None
    if args.profile is not None:
        try:
            profile = _support.Profile.from_file(args.profile)
        except (OSError, ValueError) as e:
            print(f"umqtt run: {e}", file=sys.stderr)
            return 2
    if not os.path.isfile(args.script):
        print(f"umqtt run: no such script: {args.script}", file=sys.stderr)
        return 2
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        _support.log.addHandler(handler)
        _support.log.setLevel(logging.INFO)
    status, restart_call = run(args.script, args.args, fs=args.fs, profile=profile)
    if restart_call is not None:
        if args.restart:
            _reexec(args, restart_call)
        print(
            f"umqtt run: {restart_call} was called: the device restarts here, so the script "
            "ends (run with --restart to start it again from the top)",
            file=sys.stderr,
        )
        status = 0
    if restart_call is not None or status == EXIT_INTERRUPTED:
        # Ends every thread, as a device reset or Ctrl-C does.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _reexec(args: argparse.Namespace, restart_call: str) -> None:
    count = int(os.environ.get(_RESTARTS_ENV, "0")) + 1
    print(f"umqtt run: {restart_call}: restarting (restart {count})", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[_RESTARTS_ENV] = str(count)
    command = [sys.executable, "-m", "umqtt", "run", "--restart"]
    if args.profile is not None:
        command += ["--profile", os.path.abspath(args.profile)]
    if args.fs is not None:
        command += ["--fs", os.path.abspath(args.fs)]
    os.execv(sys.executable, [*command, os.path.abspath(args.script), *args.args])
