"""QuecPython's ``ussl``: ``wrap_socket(sock, server_hostname=None, cert=None, key=None)``
with PEM text as on the device. Unlike the device, the server is verified (system roots,
honouring ``SSL_CERT_FILE``, plus ``cadata``), as ``MQTTClient`` does;
``cert_reqs=ssl.CERT_NONE`` opts out."""

from __future__ import annotations

from ssl import CERT_NONE as CERT_NONE
from ssl import CERT_OPTIONAL as CERT_OPTIONAL
from ssl import CERT_REQUIRED as CERT_REQUIRED

from .ssl import SSLContext as SSLContext
from .ssl import wrap_socket as wrap_socket
