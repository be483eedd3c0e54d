"""MicroPython's (and QuecPython's) ``machine``: simulated peripherals, real timers.

Writes and settings are logged under ``umqtt.device``; reads come from the device profile
(``pins``, ``adc``, ``i2c``, ``spi``, ``uart``; see docs/device.md), else zeros, so a script
that reads a sensor runs. ``Timer`` is a real timer (``init``/``deinit`` as in MicroPython,
``start``/``stop`` as in QuecPython). ``reset()`` restarts the device: under
``python -m umqtt run`` the script ends with a message (or starts again with ``--restart``).
Both constructors work: ``Pin(2, Pin.OUT)`` and ``Pin(Pin.GPIO1, Pin.OUT, Pin.PULL_DISABLE, 0)``,
``UART(1, baudrate=9600)`` and ``UART(UART.UART2, 115200, 8, 0, 1, 0)``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, NoReturn

from . import utime
from ._support import NotSimulatedMembers, device_name, log, not_simulated, profile, restart
from ._timer import RunningTimer


def _as_bytes(value: Any) -> bytes:
    """A profile value as bytes: a list of ints, hex text ("0a1b"), or text."""
    if isinstance(value, list):
        return bytes(value)
    text = str(value)
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text.encode()


# --------------------------------------------------------------------------- Pin


class Pin(NotSimulatedMembers):
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_DISABLE = PULL_NONE = 0
    PULL_PU = PULL_UP = 1
    PULL_PD = PULL_DOWN = 2
    IRQ_FALLING = 1
    IRQ_RISING = 2

    def __init__(
        self,
        id: Any,
        mode: int = IN,
        pull: int = PULL_NONE,
        value: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.id = id
        self.mode = mode
        self.pull = pull
        self._level = int(profile().lookup("pins", id, 0))
        self._irq: Callable[[Any], Any] | None = None
        if value is None:
            value = kwargs.get("level")
        if value is not None:
            self.value(value)
        log.info("Pin %s: mode %s, pull %s", id, mode, pull)

    def value(self, level: int | None = None) -> int | None:
        """Reads the level (an input's from the profile ``pins``, else 0; an output's as
        last written) or writes it (logged)."""
        if level is None:
            return self._level
        self._level = 1 if level else 0
        log.info("Pin %s = %d", self.id, self._level)
        return None

    def __call__(self, level: int | None = None) -> int | None:
        return self.value(level)

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    def read(self) -> int:
        return self._level

    def write(self, level: int) -> int:
        self.value(level)
        return 0

    def setDirection(self, mode: int) -> int:
        self.mode = mode
        return 0

    def init(self, mode: int = IN, pull: int = PULL_NONE, value: int | None = None) -> None:
        self.mode, self.pull = mode, pull
        if value is not None:
            self.value(value)

    def irq(
        self,
        handler: Callable[[Any], Any] | None = None,
        trigger: int = IRQ_FALLING | IRQ_RISING,
        **kwargs: Any,
    ) -> None:
        """Remembers the handler; a simulated pin never changes by itself, so it is not called."""
        self._irq = handler

    def __repr__(self) -> str:
        return f"Pin({self.id})"


class ExtInt(NotSimulatedMembers):
    """QuecPython's external interrupt: accepted; a simulated pin never fires it."""

    IRQ_RISING = 0
    IRQ_FALLING = 1
    IRQ_RISING_FALLING = 2
    PULL_DISABLE = 0
    PULL_PU = 1
    PULL_PD = 2

    def __init__(
        self, gpio: int, mode: int, pull: int, callback: Callable[[Any], Any], *args: Any
    ) -> None:
        self.gpio = gpio
        self.callback = callback

    def enable(self) -> int:
        return 0

    def disable(self) -> int:
        return 0

    def line(self) -> int:
        return self.gpio

    def read_count(self, is_reset: int = 0) -> list[int]:
        return [0, 0]


# --------------------------------------------------------------------------- buses


class UART(NotSimulatedMembers):
    """A serial port: writes are logged; reads return what the profile's ``uart`` entry for
    this port holds (once), then nothing."""

    UART0, UART1, UART2, UART3, UART4 = 0, 1, 2, 3, 4

    def __init__(
        self,
        id: int,
        baudrate: int = 115200,
        bits: int = 8,
        parity: Any = 0,
        stop: int = 1,
        flow: int = 0,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.id = id
        self.baudrate = kwargs.get("baudrate", baudrate)
        self._rx = bytearray(_as_bytes(profile().lookup("uart", id, "")))
        self._lock = threading.Lock()
        self._callback: Callable[[Any], Any] | None = None
        log.info("UART %s opened at %s baud", id, self.baudrate)

    def init(self, baudrate: int = 115200, *args: Any, **kwargs: Any) -> None:
        self.baudrate = baudrate

    def deinit(self) -> None:
        log.info("UART %s closed", self.id)

    close = deinit

    def write(self, data: Any) -> int:
        payload = data.encode() if isinstance(data, str) else bytes(data)
        log.info("UART %s write %r", self.id, payload)
        return len(payload)

    def any(self) -> int:
        with self._lock:
            return len(self._rx)

    def read(self, nbytes: int = -1, *args: Any, **kwargs: Any) -> bytes:
        """Up to ``nbytes`` of what the profile gave this port (QuecPython: b'' when none;
        the device's timeout is not waited, as nothing more will come)."""
        with self._lock:
            count = len(self._rx) if nbytes is None or nbytes < 0 else nbytes
            data = bytes(self._rx[:count])
            del self._rx[:count]
        return data

    def readline(self) -> bytes:
        with self._lock:
            end = self._rx.find(b"\n")
            count = len(self._rx) if end < 0 else end + 1
            data = bytes(self._rx[:count])
            del self._rx[:count]
        return data

    def readinto(self, buf: Any, nbytes: int | None = None) -> int:
        data = self.read(len(buf) if nbytes is None else nbytes)
        buf[: len(data)] = data
        return len(data)

    def set_callback(self, fun: Callable[[Any], Any]) -> int:
        """``fun([0, port, count])`` when data arrives: once, soon, for what the profile gave
        this port (nothing else ever arrives)."""
        self._callback = fun
        pending = self.any()
        if pending:
            threading.Timer(0.01, fun, args=([0, self.id, pending],)).start()
        return 0

    def control_485(self, pin: Any, direction: int) -> int:
        return 0


class I2C(NotSimulatedMembers):
    """An I2C bus: writes are logged; ``readfrom``/``readfrom_mem`` return the profile's
    ``i2c`` bytes for that address (``"0x44"``, or ``"0x44/0x00"`` for a register), else
    zeros. ``scan()`` lists the addresses the profile names."""

    I2C0, I2C1, I2C2 = 0, 1, 2
    STANDARD_MODE, FAST_MODE = 0, 1

    def __init__(self, id: Any = 0, *args: Any, **kwargs: Any) -> None:
        self.id = id

    def _data(self, addr: int, count: int, register: int | None = None) -> bytes:
        key = f"0x{addr:02x}" if register is None else f"0x{addr:02x}/0x{register:02x}"
        data = _as_bytes(profile().lookup("i2c", key, "")) or b"\x00" * count
        return (data * (count // len(data) + 1))[:count]

    def scan(self) -> list[int]:
        return sorted({int(key.split("/")[0], 16) for key in profile()["i2c"]})

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        return self._data(addr, nbytes)

    def readfrom_into(self, addr: int, buf: Any, stop: bool = True) -> None:
        buf[:] = self._data(addr, len(buf))

    def writeto(self, addr: int, buf: Any, stop: bool = True) -> int:
        log.info("I2C %s write to 0x%02x: %r", self.id, addr, bytes(buf))
        return len(buf)

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, **kwargs: Any) -> bytes:
        return self._data(addr, nbytes, memaddr)

    def readfrom_mem_into(self, addr: int, memaddr: int, buf: Any, **kwargs: Any) -> None:
        buf[:] = self._data(addr, len(buf), memaddr)

    def writeto_mem(self, addr: int, memaddr: int, buf: Any, **kwargs: Any) -> None:
        log.info("I2C %s write to 0x%02x register 0x%02x: %r", self.id, addr, memaddr, bytes(buf))

    # QuecPython's spelling: read(slaveaddress, addr, addr_len, r_data, datalen, delay)
    def read(
        self, slaveaddress: int, addr: Any, addr_len: int, r_data: Any, datalen: int, delay: int = 0
    ) -> int:
        r_data[:datalen] = self._data(slaveaddress, datalen, bytes(addr)[0] if addr_len else None)
        return 0

    def write(self, slaveaddress: int, addr: Any, addr_len: int, data: Any, datalen: int) -> int:
        log.info("I2C %s write to 0x%02x: %r", self.id, slaveaddress, bytes(data)[:datalen])
        return 0


class SPI(NotSimulatedMembers):
    """An SPI bus: writes are logged; reads return the profile's ``spi`` bytes for this bus,
    else zeros."""

    MSB, LSB = 0, 1

    def __init__(self, id: Any = 0, *args: Any, **kwargs: Any) -> None:
        self.id = id

    def init(self, *args: Any, **kwargs: Any) -> None:
        pass

    def deinit(self) -> None:
        pass

    def _data(self, count: int) -> bytes:
        data = _as_bytes(profile().lookup("spi", self.id, "")) or b"\x00" * count
        return (data * (count // len(data) + 1))[:count]

    def read(self, nbytes: int, write: int = 0) -> bytes:
        return self._data(nbytes)

    def readinto(self, buf: Any, write: int = 0) -> None:
        buf[:] = self._data(len(buf))

    def write(self, buf: Any, *args: Any) -> int:
        log.info("SPI %s write %r", self.id, bytes(buf))
        return 0

    def write_readinto(self, write_buf: Any, read_buf: Any) -> None:
        self.write(write_buf)
        self.readinto(read_buf)


class ADC(NotSimulatedMembers):
    """An analog input: the profile's ``adc`` value for the pin or channel (millivolts for
    QuecPython's ``read``; ``read_u16`` scales 3300 mV to 65535), else 0."""

    ADC0, ADC1, ADC2, ADC3 = 0, 1, 2, 3

    def __init__(self, pin: Any = 0, *args: Any, **kwargs: Any) -> None:
        self.pin = getattr(pin, "id", pin)

    def _millivolts(self, channel: Any) -> int:
        return int(profile().lookup("adc", channel, 0))

    def open(self) -> int:
        return 0

    def close(self) -> int:
        return 0

    def read(self, channel: Any = None) -> int:
        return self._millivolts(self.pin if channel is None else channel)

    def read_u16(self) -> int:
        return min(65535, self._millivolts(self.pin) * 65535 // 3300)

    def read_uv(self) -> int:
        return self._millivolts(self.pin) * 1000


# --------------------------------------------------------------------------- time and power


class Timer(NotSimulatedMembers):
    """A real timer. MicroPython: ``Timer(0).init(period=1000, mode=Timer.PERIODIC,
    callback=f)``, ``deinit()``; QuecPython: ``Timer(Timer.Timer1).start(period=1000,
    mode=Timer.PERIODIC, callback=f)``, ``stop()``. The callback gets the timer."""

    ONE_SHOT = 0
    PERIODIC = 1
    Timer0, Timer1, Timer2, Timer3 = 0, 1, 2, 3

    def __init__(self, id: int = -1, *args: Any, **kwargs: Any) -> None:
        self.id = id
        self._running: RunningTimer | None = None
        if kwargs:
            self.init(**kwargs)

    def init(
        self,
        mode: int = PERIODIC,
        period: float = -1,
        callback: Callable[[Any], Any] | None = None,
        freq: float | None = None,
        **kwargs: Any,
    ) -> int:
        if freq is not None:
            period = 1000 / freq
        self.deinit()
        if callback is not None:
            self._running = RunningTimer(period, mode == self.PERIODIC, callback, self)
        return 0

    def start(
        self,
        period: float = 1000,
        mode: int = PERIODIC,
        callback: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> int:
        return self.init(mode=mode, period=period, callback=callback)

    def deinit(self) -> int:
        if self._running is not None:
            self._running.stop()
            self._running = None
        return 0

    stop = deinit


class WDT(NotSimulatedMembers):
    """A watchdog that never bites on a PC: feeding is accepted, missing a feed is logged."""

    def __init__(self, id: int = 0, timeout: int = 5000, **kwargs: Any) -> None:
        self.timeout = timeout
        self._fed = utime.ticks_ms()

    def feed(self) -> int:
        if utime.ticks_diff(utime.ticks_ms(), self._fed) > self.timeout:
            log.warning("watchdog fed late: the device would have restarted")
        self._fed = utime.ticks_ms()
        return 0

    def stop(self) -> int:
        return 0


class RTC(NotSimulatedMembers):
    """The clock: the host's, in the device's time zone."""

    def datetime(self, value: tuple[int, ...] | None = None) -> tuple[int, ...]:
        if value is not None:
            log.info("RTC set to %s (the host clock is not changed)", value)
            return tuple(value)
        y, mo, d, h, mi, s, wd, _ = utime.localtime()
        return (y, mo, d, wd, h, mi, s, 0)


# QuecPython names its pins Pin.GPIO1 .. Pin.GPIO48 (also on ExtInt, and on UART for an RS-485
# direction pin).
for _number in range(1, 49):
    for _cls in (Pin, ExtInt, UART):
        setattr(_cls, f"GPIO{_number}", _number)


def reset() -> NoReturn:
    restart("machine.reset()")


def soft_reset() -> NoReturn:
    restart("machine.soft_reset()")


def unique_id() -> bytes:
    """The profile's ``unique_id`` (hex), stable per host by default."""
    return bytes.fromhex(str(profile()["unique_id"]))


def freq(hz: int | None = None) -> int:
    return 240_000_000


def idle() -> None:
    utime.sleep_ms(1)


def lightsleep(ms: int | None = None) -> None:
    log.info("lightsleep(%s)", ms)
    if ms is not None:
        utime.sleep_ms(ms)


def deepsleep(ms: int | None = None) -> NoReturn:
    log.info("deepsleep(%s): the device restarts when it wakes", ms)
    if ms is not None:
        utime.sleep_ms(ms)
    restart("machine.deepsleep()")


def disable_irq() -> int:
    return 0


def enable_irq(state: int = 0) -> None:
    pass


def __getattr__(name: str) -> NoReturn:
    raise not_simulated(device_name(__name__), name)
