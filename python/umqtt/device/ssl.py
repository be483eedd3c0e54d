"""MicroPython's ``ssl`` on a PC: CPython's ``ssl``, with MicroPython's ``SSLContext`` and
``wrap_socket``.

``SSLContext`` is a ``umqtt.SSLContext``: it remembers ``load_cert_chain``, so
``MQTTClient(..., ssl=context)`` presents the client certificate (mutual TLS works
unchanged). As in MicroPython, ``load_cert_chain``/``load_verify_locations`` take file
paths (``/usr/...`` mapped like ``uos``) or the certificate's bytes, PEM or DER. Servers are
verified by default, as by ``MQTTClient``; ``verify_mode = ssl.CERT_NONE`` opts out.

Under ``python -m umqtt run`` a device script's ``import ssl`` gets this module; CPython's
own ``ssl`` is not touched.
"""

from __future__ import annotations

import base64
import os
import ssl as _ssl
import tempfile
import weakref
from typing import Any

from .._sslcontext import SSLContext as _RememberingContext
from ._support import map_path


def _key_label(der: bytes) -> str:
    """The PEM label of a DER private key: after SEQUENCE and its version INTEGER, PKCS#8
    has a SEQUENCE (the algorithm), PKCS#1 (RSA) an INTEGER, SEC1 (EC) an OCTET STRING."""
    i = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)  # skip SEQUENCE tag and length
    i += 2 + der[i + 1]  # skip the version INTEGER
    return {0x30: "PRIVATE KEY", 0x02: "RSA PRIVATE KEY", 0x04: "EC PRIVATE KEY"}.get(
        der[i], "PRIVATE KEY"
    )


def to_pem(data: bytes, kind: str) -> bytes:
    """Certificate or key bytes as PEM (DER is converted)."""
    if data.lstrip().startswith(b"-----"):
        return data
    if kind == "cert":
        return _ssl.DER_cert_to_PEM_cert(data).encode()
    label = _key_label(data)
    body = base64.encodebytes(data).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def _content(value: Any) -> bytes:
    """A path's file content (``/usr/...`` mapped), or the bytes themselves."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    with open(map_path(value), "rb") as f:
        return f.read()


class SSLContext(_RememberingContext):
    """MicroPython's ``ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)``."""

    def load_cert_chain(self, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        """Paths or bytes (PEM or DER); the key may also be in ``certfile``."""
        folder = tempfile.mkdtemp(prefix="umqtt-ssl-")
        weakref.finalize(self, _remove_folder, folder)
        cert_path = os.path.join(folder, "cert.pem")
        with open(cert_path, "wb") as f:
            f.write(to_pem(_content(certfile), "cert"))
        key_path = None
        if keyfile is not None:
            key_path = os.path.join(folder, "key.pem")
            with open(key_path, "wb") as f:
                f.write(to_pem(_content(keyfile), "key"))
        super().load_cert_chain(cert_path, key_path, password)

    def load_verify_locations(
        self, cafile: Any = None, capath: Any = None, cadata: Any = None
    ) -> None:
        """A CA file's path (``/usr/...`` mapped), or ``cadata``: PEM text or DER bytes."""
        if cafile is not None:
            cadata = _content(cafile)
        if isinstance(cadata, (bytes, bytearray)) and cadata.lstrip().startswith(b"-----"):
            cadata = bytes(cadata).decode()  # CPython takes PEM as text, DER as bytes
        super().load_verify_locations(None, map_path(capath), cadata)


def _remove_folder(folder: str) -> None:
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)


def wrap_socket(
    sock: Any,
    server_side: bool = False,
    key: Any = None,
    cert: Any = None,
    cert_reqs: int = _ssl.CERT_REQUIRED,
    cadata: Any = None,
    server_hostname: str | None = None,
    do_handshake: bool = True,
    **kwargs: Any,
) -> _ssl.SSLSocket:
    """MicroPython's (and QuecPython's ``ussl``) ``wrap_socket``: ``key``/``cert`` are the
    client's PEM (or DER) text; the server is verified unless ``cert_reqs=CERT_NONE``."""
    if server_side:
        raise ValueError("wrap_socket(server_side=True) is not supported: this is a client")
    context = SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    context.load_default_certs()
    if cert_reqs == _ssl.CERT_NONE:
        context.check_hostname = False
        context.verify_mode = _ssl.CERT_NONE
    elif server_hostname is None:
        context.check_hostname = False
    if cadata is not None:
        context.load_verify_locations(cadata=cadata)
    if cert is not None or key is not None:
        cert_bytes = cert.encode() if isinstance(cert, str) else cert
        key_bytes = key.encode() if isinstance(key, str) else key
        context.load_cert_chain(cert_bytes, key_bytes)
    return context.wrap_socket(
        sock, server_hostname=server_hostname, do_handshake_on_connect=do_handshake
    )


def __getattr__(name: str) -> Any:
    """CPython's ``ssl`` for everything else (``CERT_NONE``, ``PROTOCOL_TLS_CLIENT``, ...)."""
    return getattr(_ssl, name)
