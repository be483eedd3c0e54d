"""``umqtt.SSLContext``: an ``ssl.SSLContext`` that remembers the client certificate loaded
into it, so a client can present it (MicroPython 1.23+ scripts pass such a context as
``ssl=``). The core reads a context's CA certificates and verify settings back from it;
a client certificate cannot be read back from a plain ``ssl.SSLContext``."""

from __future__ import annotations

import ctypes
import os
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

_CLIENT_CERT_HINT = (
    "a client certificate loaded into a plain ssl.SSLContext cannot be read back: create the "
    "context with umqtt.SSLContext(ssl.PROTOCOL_TLS_CLIENT) instead (it remembers "
    "load_cert_chain), or pass ssl=True, ssl_params={'certfile': ..., 'keyfile': ...} "
    "(or 'cert'/'key' as PEM text)"
)


class SSLContext(ssl.SSLContext):
    """``ssl.SSLContext`` plus ``client_certificate``: the ``(certfile, keyfile)`` of the
    last ``load_cert_chain``, which ``MQTTClient(ssl=context)`` presents to the broker."""

    client_certificate: tuple[str, str | None] | None = None

    def load_cert_chain(
        self,
        certfile: StrOrBytesPath,
        keyfile: StrOrBytesPath | None = None,
        password: Any = None,
    ) -> None:
        if password is not None:
            raise ValueError(
                "umqtt.SSLContext: an encrypted private key is not supported; "
                "decrypt it (openssl pkey -in key.pem -out plain.pem)"
            )
        super().load_cert_chain(certfile, keyfile)
        self.client_certificate = (
            os.fsdecode(certfile),
            None if keyfile is None else os.fsdecode(keyfile),
        )


def _openssl_has_certificate(context: ssl.SSLContext) -> bool:
    """Whether OpenSSL holds a certificate of this context's own (a client certificate).

    CPython offers no way to ask; its context object starts, after the object header, with
    the ``SSL_CTX *`` (``PySSLContext`` in Modules/_ssl.c, unchanged since 3.x began), and
    ``SSL_CTX_get0_certificate`` answers. False when OpenSSL's symbol cannot be found."""
    try:
        import _ssl

        get0 = ctypes.CDLL(_ssl.__file__).SSL_CTX_get0_certificate
    except (AttributeError, OSError, ImportError):
        return False
    get0.restype = ctypes.c_void_p
    get0.argtypes = [ctypes.c_void_p]
    ctx_pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    return ctx_pointer is not None and get0(ctx_pointer) is not None


def tls_arguments(ssl_arg: Any, ssl_params: Any) -> tuple[Any, Any]:
    """``ssl``/``ssl_params`` as the core takes them: a ``umqtt.SSLContext`` with a client
    certificate becomes ``ssl_params`` (its CAs, verify mode and certificate); a plain
    ``ssl.SSLContext`` holding a client certificate is an error naming both ways."""
    if not isinstance(ssl_arg, ssl.SSLContext):
        return ssl_arg, ssl_params
    chain = getattr(ssl_arg, "client_certificate", None)
    if chain is None:
        if _openssl_has_certificate(ssl_arg):
            raise ValueError(_CLIENT_CERT_HINT)
        return ssl_arg, ssl_params
    if ssl_arg.verify_mode != ssl.CERT_NONE and not ssl_arg.check_hostname:
        raise ValueError(
            "a umqtt.SSLContext with a client certificate and check_hostname=False cannot be "
            "used: pass ssl=True, ssl_params={'certfile': ..., 'keyfile': ..., "
            "'server_hostname': <the name on the broker's certificate>}"
        )
    certfile, keyfile = chain
    params: dict[str, Any] = {
        "certfile": certfile,
        "keyfile": keyfile if keyfile is not None else certfile,
        "cert_reqs": ssl_arg.verify_mode,
    }
    cas = [ssl.DER_cert_to_PEM_cert(der) for der in ssl_arg.get_ca_certs(binary_form=True)]
    if cas:
        params["cadata"] = "".join(cas)
    return True, params
