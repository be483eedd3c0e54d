"""MicroPython / QuecPython ``usocket``: CPython's ``socket``, whose sockets also have the
device's stream methods (``read``, ``readline``, ``readinto``, ``write``) and QuecPython's
``setsockopt(SOL_SOCKET, TCP_KEEPALIVE, minutes)`` (TCP keepalive after that many idle
minutes, on CPython's ``SO_KEEPALIVE``/``TCP_KEEPIDLE``)."""

from __future__ import annotations

import socket as _socket
from typing import Any

# QuecPython's option number is its own; any value that is no SOL_SOCKET option will do here.
TCP_KEEPALIVE = 0x7001


class socket(_socket.socket):
    def setsockopt(self, level: int, option: int, value: Any, *args: Any) -> None:
        if level == _socket.SOL_SOCKET and option == TCP_KEEPALIVE:
            super().setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1 if value else 0)
            if value and hasattr(_socket, "TCP_KEEPIDLE"):
                super().setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE, int(value) * 60)
            return
        super().setsockopt(level, option, value, *args)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all until the peer closes when ``size`` is -1)."""
        if size is not None and size >= 0:
            return self.recv(size)
        chunks: list[bytes] = []
        while True:
            chunk = self.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def readinto(self, buf: Any, nbytes: int | None = None) -> int:
        return self.recv_into(buf, nbytes or 0)

    def readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            c = self.recv(1)
            if not c:
                break
            line += c
        return bytes(line)

    def write(self, data: Any) -> int:
        self.sendall(data)
        return len(data)


def __getattr__(name: str) -> Any:
    """CPython's ``socket`` for everything else (``getaddrinfo``, ``AF_INET``, ...)."""
    return getattr(_socket, name)
