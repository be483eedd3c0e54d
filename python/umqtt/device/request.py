"""QuecPython's ``request``: real HTTP(S) on CPython's ``urllib``.

``get``/``post``/``put``/``patch``/``delete``/``head`` return a ``Response`` with
``status_code``, ``headers``, ``text`` and ``content`` (generators of chunks, as on the
device) and ``json()``. HTTPS verifies the server like ``MQTTClient``
(``ssl_params={"cert_reqs": ssl.CERT_NONE}`` opts out)."""

from __future__ import annotations

import json as _json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any


class Response:
    def __init__(self, status_code: int, headers: dict[str, str], body: bytes, sizeof: int) -> None:
        self.status_code = status_code
        self.headers = headers
        self._body = body
        self._chunk = max(1, sizeof)

    @property
    def content(self) -> Iterator[bytes]:
        for i in range(0, len(self._body), self._chunk):
            yield self._body[i : i + self._chunk]

    @property
    def text(self) -> Iterator[str]:
        text = self._body.decode("utf-8", errors="replace")
        for i in range(0, len(text), self._chunk):
            yield text[i : i + self._chunk]

    def json(self) -> Any:
        return _json.loads(self._body)


def _context(ssl_params: dict[str, Any] | None) -> ssl.SSLContext:
    params = ssl_params or {}
    context = ssl.create_default_context(cafile=params.get("ca_certs"), cadata=params.get("cadata"))
    if params.get("cert_reqs") == ssl.CERT_NONE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def request(
    method: str,
    url: str,
    data: Any = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
    decode: bool = True,
    sizeof: int = 255,
    timeout: float = 30,
    ssl_params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Response:
    body: bytes | None = None
    all_headers = dict(headers or {})
    if json is not None:
        body = _json.dumps(json).encode()
        all_headers.setdefault("Content-Type", "application/json")
    elif data is not None:
        body = data.encode() if isinstance(data, str) else bytes(data)
    req = urllib.request.Request(url, data=body, headers=all_headers, method=method)
    context = _context(ssl_params) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as reply:
            return Response(reply.status, dict(reply.headers), reply.read(), sizeof)
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read(), sizeof)


def get(url: str, **kwargs: Any) -> Response:
    return request("GET", url, **kwargs)


def post(url: str, data: Any = None, **kwargs: Any) -> Response:
    return request("POST", url, data=data, **kwargs)


def put(url: str, data: Any = None, **kwargs: Any) -> Response:
    return request("PUT", url, data=data, **kwargs)


def patch(url: str, data: Any = None, **kwargs: Any) -> Response:
    return request("PATCH", url, data=data, **kwargs)


def delete(url: str, **kwargs: Any) -> Response:
    return request("DELETE", url, **kwargs)


def head(url: str, **kwargs: Any) -> Response:
    return request("HEAD", url, **kwargs)
