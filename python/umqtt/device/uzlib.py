"""MicroPython's ``uzlib``: ``decompress(data, wbits=15)`` and ``DecompIO(stream, wbits)``
on CPython's ``zlib`` (negative wbits: raw deflate; 16 + n: gzip, as in zlib)."""

from __future__ import annotations

import zlib
from typing import Any


def decompress(data: bytes, wbits: int = 15, bufsize: int = 0) -> bytes:
    return zlib.decompress(data, wbits or 15)


class DecompIO:
    """A stream that decompresses what it reads from ``stream``."""

    def __init__(self, stream: Any, wbits: int = 15) -> None:
        self._stream = stream
        self._inflate = zlib.decompressobj(wbits or 15)
        self._buffer = b""

    def read(self, size: int | None = -1) -> bytes:
        while size is None or size < 0 or len(self._buffer) < size:
            chunk = self._stream.read(4096)
            if not chunk:
                self._buffer += self._inflate.flush()
                break
            self._buffer += self._inflate.decompress(chunk)
        count = len(self._buffer) if size is None or size < 0 else size
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = b""
        while not line.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            line += c
        return line
