"""Secrets (issue 7): the password and the private key never show in `repr()` of a client (any
dialect), in an exception's text (a wrong password's CONNACK refusal, TLS key errors), or in
logs at any level, rumqttc's and rustls's own records (under `umqtt.`) and every packet logged
at DEBUG (issue 23) included; nor do a proxy's password, a WebSocket header's token or the
token in a pre-signed WebSocket path.

The secrets are distinctive (they cannot occur by chance) and plain ASCII, so a Rust `Debug`
print of a CONNECT packet or of `MqttOptions` (which hold the password) would show them verbatim.
The log check runs in a subprocess whose root logger is set to DEBUG before umqtt is imported, so
every record is forwarded. It also checks that the packet records did arrive, CONNECTs with a
user name and password among them, so an empty capture cannot pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
from broker import Mosquitto, unique_id

PASSWORD = "pw-Zq81-umqtt-SECRET-4c7e9d"  # never anywhere but in the CONNECT packet
WRONG = "pw-Kx42-umqtt-WRONG-b3a0f1"  # a wrong password: no more printable than the right one
USER = "carol"
PROXY_PASSWORD = "px-Hb27-umqtt-PROXY-5f0c3a"  # the proxies' (in the proxy URL)
HEADER_TOKEN = "tk-Wd63-umqtt-HEADER-9a1e7b"  # a WebSocket header's (fixed, and from a callable)
PATH_TOKEN = "tk-Rm58-umqtt-PRESIGNED-2c4d8f"  # in a pre-signed ws_path's query
TESTS = Path(__file__).parent


def key_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM private key (the secret part)."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def windows(secret: str, width: int = 16) -> set[str]:
    """Every `width`-character piece of `secret`: a leak of any part of a key body shows."""
    flat = secret.replace("\n", "")
    return {flat[i : i + width] for i in range(0, max(1, len(flat) - width + 1))}


def assert_no_secret(where: str, text: str, secrets: list[str], key: bytes | None = None) -> None:
    for secret in secrets:
        assert secret not in text, f"{where} shows a secret ({secret[:6]}...): {text[:500]}"
    if key is not None:
        pieces = windows("".join(key_lines(key)))
        leaked = [p for p in pieces if p in text]
        assert not leaked, f"{where} shows part of the private key ({leaked[:2]}): {text[:500]}"


def exception_texts(exc: BaseException) -> str:
    """str, repr, args and notes of an exception and of every exception chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), repr(e.args), repr(getattr(e, "__notes__", None))]
        todo += [e.__cause__, e.__context__]
    return "\n".join(texts)


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    ca = trustme.CA()
    leaf = ca.issue_cert("client.example")
    other = ca.issue_cert("other.example")
    return {
        "ca": ca.cert_pem.bytes(),
        "cert": leaf.cert_chain_pems[0].bytes(),
        "key": leaf.private_key_pem.bytes(),
        "other_key": other.private_key_pem.bytes(),
    }


@pytest.fixture(scope="module")
def carol_broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A broker that knows only carol, with PASSWORD."""
    b = Mosquitto(tmp_path_factory.mktemp("secrets-broker"), users={USER: PASSWORD})
    yield b
    b.kill()


# --------------------------------------------------------------------------- repr


DIALECTS = {
    "umqtt": umqtt.MQTTClient,
    "simple": umqtt.simple.MQTTClient,
    "robust": umqtt.robust.MQTTClient,
    "aio": umqtt.aio.MQTTClient,
}


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_repr_never_shows_password_or_key(dialect, pki, carol_broker):
    """repr() and str() of a client, of its core and of the exception-free TLS setup show
    neither the password nor any part of the private key, before and after connecting."""
    cls = DIALECTS[dialect]
    tls = cls(
        unique_id(),
        "127.0.0.1",
        8883,
        user=USER,
        password=PASSWORD,
        ssl=True,
        ssl_params={"cert": pki["cert"], "key": pki["key"], "cadata": pki["ca"]},
    )
    plain = cls(
        unique_id(), carol_broker.host, carol_broker.port, user=USER, password=PASSWORD.encode()
    )
    for c in (tls, plain):
        for text in (repr(c), str(c), repr(c._core), str(c._core)):
            assert_no_secret(f"repr of a {dialect} client", text, [PASSWORD], pki["key"])
    if dialect == "aio":
        import asyncio

        async def cycle() -> list[str]:
            await plain.connect()
            shown = [repr(plain)]
            await plain.disconnect()
            return [*shown, repr(plain)]

        shown = asyncio.run(cycle())
    else:
        if hasattr(plain, "set_callback"):
            plain.set_callback(lambda t, m: None)
        plain.connect()
        shown = [repr(plain), repr(plain._core)]
        plain.disconnect()
        shown += [repr(plain)]
    for text in shown:
        assert_no_secret(f"repr of a connected {dialect} client", text, [PASSWORD])


# --------------------------------------------------------------------------- exceptions


def _connect(c: Any) -> Any:
    if isinstance(c, umqtt.aio.MQTTClient):
        import asyncio

        return asyncio.run(c.connect())
    return c.connect()


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize(
    "password", [WRONG, WRONG.encode(), PASSWORD + "x"], ids=["str", "bytes", "longer"]
)
def test_wrong_password_refusal_never_shows_the_password(dialect, password, carol_broker):
    """A CONNACK refusal for a wrong password raises (MQTTConnectError in the QuecPython and
    asyncio dialects, MQTTException(rc) in the MicroPython ones) without the password, the one
    tried or the right one, anywhere in the exception or what it was chained from."""
    cls = DIALECTS[dialect]
    kw = {"reconn": False} if dialect in ("umqtt", "aio") else {}
    c = cls(unique_id(), carol_broker.host, carol_broker.port, user=USER, password=password, **kw)
    with pytest.raises(umqtt.MQTTException) as info:
        _connect(c)
    text = exception_texts(info.value)
    tried = password.decode() if isinstance(password, bytes) else password
    assert_no_secret(f"{dialect} refusal", text, [tried, PASSWORD])
    if dialect in ("umqtt", "aio"):
        assert info.value.rc in (4, 5), info.value
    else:
        assert info.value.args[0] in (4, 5), info.value.args


def test_bad_password_argument_errors_never_echo_it():
    """A password the constructor rejects (too long for MQTT, not UTF-8) is not echoed back."""
    long_secret = PASSWORD * 3000  # 81,000 bytes: over MQTT's 65,535
    for bad in (long_secret, PASSWORD.encode() + b"\xff\xfe"):
        try:
            umqtt.MQTTClient("x", "127.0.0.1", 1883, user=USER, password=bad)
        except Exception as e:
            assert_no_secret("a password error", exception_texts(e), [PASSWORD])
        # accepted: test_sweep.py says whether it should have been; nothing was shown here


def _corruptions(key: bytes) -> dict[str, bytes]:
    lines = key.splitlines()
    mid = len(lines) // 2
    return {
        "bad-character": key.replace(lines[mid], lines[mid][:10] + b"!" + lines[mid][11:]),
        "truncated": b"\n".join(lines[: mid + 1]) + b"\n",
        "no-end-marker": b"\n".join(lines[:-1]),
        "short-line": key.replace(lines[mid], lines[mid][:-3]),
        "wrong-label": key.replace(b"PRIVATE KEY", b"RSA PRIVATE KEY"),
        "garbage-der": b"-----BEGIN PRIVATE KEY-----\n"
        + lines[mid]
        + b"\n-----END PRIVATE KEY-----\n",
        "doubled-body": key.replace(lines[mid], lines[mid] * 2),
    }


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "str"])
def test_tls_key_errors_never_show_the_key(pki, tmp_path, as_text):
    """Every way a client key can be wrong (mismatched, corrupted, truncated, mislabelled),
    given inline (`key`) or as a file (`keyfile`), raises ValueError without any 16-character
    piece of the key in the message."""
    cases = {"mismatched": pki["other_key"], **_corruptions(pki["key"])}
    for name, bad in cases.items():
        keyfile = tmp_path / f"{name}.key"
        keyfile.write_bytes(bad)
        certfile = tmp_path / "client.pem"
        certfile.write_bytes(pki["cert"])
        for params in (
            {"cert": pki["cert"], "key": bad.decode() if as_text else bad},
            {"certfile": str(certfile), "keyfile": str(keyfile)},
        ):
            try:
                umqtt.MQTTClient("x", "127.0.0.1", 8883, ssl=True, ssl_params=params)
            except Exception as e:
                assert isinstance(e, ValueError), f"{name}: {e!r}"
                secret = pki["other_key"] if name == "mismatched" else pki["key"]
                assert_no_secret(f"TLS key error ({name})", exception_texts(e), [], secret)


@pytest.mark.parametrize("param", ["keyfile", "certfile", "ca_certs"])
@pytest.mark.parametrize("as_text", [True, False], ids=["str", "bytes"])
def test_key_text_given_where_a_path_belongs_is_not_echoed(pki, param, as_text):
    """The device's `key` takes PEM text and CPython's `keyfile` a path: a script that passes
    the key's text as `keyfile` (or as another path) gets a ValueError that does not repeat the
    text it could not open as a file, since that text is the private key."""
    key = pki["key"].decode() if as_text else pki["key"]
    with pytest.raises((ValueError, TypeError)) as info:
        umqtt.MQTTClient("x", "127.0.0.1", 8883, ssl=True, ssl_params={param: key})
    assert_no_secret(f"ssl_params[{param!r}] error", exception_texts(info.value), [], pki["key"])


# --------------------------------------------------------------------------- logs


LOG_SCENARIOS = r"""
import asyncio, json, logging, os, sys, time
sys.path.insert(0, os.environ["UMQTT_TESTS"])
cfg = json.loads(os.environ["UMQTT_SECRETS"])

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append({"name": record.name, "level": record.levelname, "text": self.format(record),
                        "args": repr(record.args), "msg": repr(record.msg)})
handler = Keep(logging.DEBUG)
handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
root = logging.getLogger()
root.setLevel(logging.DEBUG)
root.addHandler(handler)

import umqtt, umqtt.simple, umqtt.robust, umqtt.aio  # after logging is configured
from broker import Mosquitto, free_port, unique_id, wait_until
from pathlib import Path

PASSWORD, WRONG, USER = cfg["password"], cfg["wrong"], cfg["user"]
seen = {"exceptions": [], "notices": [], "reprs": []}
def caught(fn):
    try:
        return fn()
    except BaseException as e:
        seen["exceptions"].append(f"{type(e).__name__}: {e!r} {e}")
        return None

work = Path(cfg["workdir"])
auth = Mosquitto(work / "auth", users={USER: PASSWORD})
tls = Mosquitto(work / "tls", users={USER: PASSWORD}, extra_config=[
    f"listener {cfg['tls_port']} 127.0.0.1", f"cafile {cfg['ca']}",
    f"certfile {cfg['server_cert']}", f"keyfile {cfg['server_key']}",
    "require_certificate true"])
ws = Mosquitto(work / "ws", websockets=True)
try:
    # 1. a normal session with every QoS (rumqttc logs the QoS 2 flow at debug level)
    got = []
    c = umqtt.MQTTClient(unique_id("s"), auth.host, auth.port, user=USER, password=PASSWORD,
                         reconnect_delay=0.2, reconnect_max_delay=0.5)
    c.set_callback(lambda t, m: got.append(m))
    c.error_register_cb(lambda text: seen["notices"].append(text))
    c.connect()
    c.subscribe("secrets/t", 2)
    for q in (0, 1, 2):
        c.publish("secrets/t", b"m%d" % q, qos=q)
    wait_until(lambda: (c.check_msg(), len(got) >= 3)[1], 5)
    seen["reprs"].append(repr(c))
    # 2. the broker restarts: reconnect attempts (failing while it is down, then succeeding)
    auth.stop(); time.sleep(0.8); auth.start()
    wait_until(lambda: c.get_mqttsta() == 0 and "reconnect_success" in seen["notices"], 10)
    c.publish("secrets/t", b"after", qos=2)
    # 3. the broker comes back with another password: reconnects refused with CONNACK 5
    auth.stop()
    auth2 = Mosquitto(work / "auth2", users={USER: WRONG}, port=auth.port)
    time.sleep(1.5)
    c.disconnect()
    auth2.kill()
    auth.start()
    # 4. wrong password in every dialect, and reconn=False losing its link
    wrong = {"user": USER, "password": WRONG}
    for make in (
        lambda: umqtt.MQTTClient(unique_id(), auth.host, auth.port, reconn=False, **wrong),
        lambda: umqtt.simple.MQTTClient(unique_id(), auth.host, auth.port, **wrong),
        lambda: umqtt.robust.MQTTClient(unique_id(), auth.host, auth.port, **wrong),
    ):
        w = make()
        caught(w.connect)
        seen["reprs"].append(repr(w))
    a = umqtt.aio.MQTTClient(unique_id(), auth.host, auth.port, reconn=False, **wrong)
    caught(lambda: asyncio.run(a.connect()))
    # 5. robust with DEBUG on prints repr(e) of what it retries
    class Robust(umqtt.robust.MQTTClient):
        DEBUG = True
        DELAY = 0.1
    r = Robust(unique_id(), auth.host, auth.port, user=USER, password=PASSWORD)
    r.set_callback(lambda t, m: None)
    r.connect()
    auth.stop(); time.sleep(0.3); auth.start()
    caught(lambda: r.publish("secrets/t", b"x", qos=1))
    r.disconnect()
    lost = umqtt.MQTTClient(unique_id(), auth.host, auth.port, user=USER, password=PASSWORD,
                            reconn=False)
    lost.set_callback(lambda t, m: None)
    lost.error_register_cb(lambda text: seen["notices"].append(text))
    lost.connect()
    auth.stop()
    caught(lost.wait_msg)
    auth.start()
    # 6. TLS with a client key: a good session, a refused one, an unverified one
    params = {"cert": cfg["client_cert"], "key": cfg["client_key"], "cadata": cfg["ca_pem"]}
    t = umqtt.MQTTClient(unique_id("tls"), "127.0.0.1", cfg["tls_port"], user=USER,
                         password=PASSWORD, ssl=True, ssl_params=params, reconn=False)
    t.set_callback(lambda tp, m: None)
    caught(t.connect)
    caught(lambda: t.publish("secrets/tls", b"x", qos=2))
    seen["reprs"].append(repr(t))
    caught(t.disconnect)
    nokey = umqtt.MQTTClient(unique_id("tls"), "127.0.0.1", cfg["tls_port"], user=USER,
                             password=PASSWORD, ssl=True, ssl_params={"cadata": cfg["ca_pem"]},
                             reconn=False, connect_timeout=5)
    caught(nokey.connect)
    unverified = umqtt.MQTTClient(unique_id("tls"), "127.0.0.1", cfg["tls_port"], user=USER,
                                  password=PASSWORD, ssl=True, reconn=False,
                                  ssl_params={**params, "cert_reqs": 0, "cadata": None})
    caught(unverified.connect)
    caught(unverified.disconnect)
    mismatched = {"cert": cfg["client_cert"], "key": cfg["other_key"]}
    caught(lambda: umqtt.MQTTClient("x", "127.0.0.1", 1, ssl=True, ssl_params=mismatched))
    # 7. through proxies with a password (right and wrong), and over WebSocket with a token in
    # a header (fixed and from a callable) and in a pre-signed path
    from transport_servers import MicroSocks, TinyProxy
    login = ("proxyuser", cfg["proxy_password"])
    for proxy in (TinyProxy(work, [auth.port], login), MicroSocks(work, login)):
        try:
            for pw in (cfg["proxy_password"], WRONG):
                url = f"{proxy.scheme}://proxyuser:{pw}@127.0.0.1:{proxy.port}"
                p = umqtt.MQTTClient(unique_id("px"), auth.host, auth.port, user=USER,
                                     password=PASSWORD, proxy=url, reconn=False)
                caught(p.connect)
                caught(lambda: p.publish("secrets/proxy", b"x", qos=1))
                seen["reprs"].append(repr(p))
                caught(p.disconnect)
        finally:
            proxy.close()
    signed = f"/mqtt?X-Amz-Security-Token={cfg['path_token']}&X-Amz-Signature=1"
    for headers in ({"Authorization": f"Bearer {cfg['header_token']}"},
                    lambda: {"Authorization": f"Bearer {cfg['header_token']}"}):
        w = umqtt.MQTTClient(unique_id("ws"), "127.0.0.1", ws.ws_port, transport="websockets",
                             ws_path=signed, ws_headers=headers, reconn=False)
        caught(w.connect)
        caught(lambda: w.publish("secrets/ws", b"x", qos=1))
        seen["reprs"].append(repr(w))
        caught(w.disconnect)
    gone = umqtt.MQTTClient(unique_id("ws"), "127.0.0.1", free_port(), transport="websockets",
                            ws_path=signed, ws_headers={"Authorization": cfg["header_token"]},
                            reconn=False, connect_timeout=5)
    caught(gone.connect)
finally:
    auth.kill()
    tls.kill()
    ws.kill()
time.sleep(0.3)  # let the notice thread and the runtime log what they still have
json.dump({"records": records, **seen}, open(cfg["out"], "w"))
print("scenarios done", len(records))
"""


def test_logs_at_debug_never_show_password_or_key(tmp_path, pki):
    """Every log record of every logger (umqtt, rumqttc, rustls, ...) at DEBUG and above, the
    error-callback notices, the exceptions caught and stdout/stderr (umqtt.robust's DEBUG prints)
    of a run through sessions, reconnects, refusals and TLS with a client key: no password (the
    right one or a wrong one) and no piece of the private key anywhere."""
    from broker import free_port

    server = trustme.CA()
    ca = trustme.CA()
    server_leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = {
        "ca": ca.cert_pem.bytes(),
        "server_cert": server_leaf.cert_chain_pems[0].bytes(),
        "server_key": server_leaf.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    client_leaf = ca.issue_cert("client.example")
    client_key = client_leaf.private_key_pem.bytes()
    cfg = {
        "password": PASSWORD,
        "wrong": WRONG,
        "user": USER,
        "workdir": str(tmp_path),
        "tls_port": free_port(),
        "ca": str(tmp_path / "ca.pem"),
        "server_cert": str(tmp_path / "server_cert.pem"),
        "server_key": str(tmp_path / "server_key.pem"),
        "ca_pem": files["ca"].decode(),
        "client_cert": client_leaf.cert_chain_pems[0].bytes().decode(),
        "client_key": client_key.decode(),
        "other_key": server.issue_cert("x.example").private_key_pem.bytes().decode(),
        "proxy_password": PROXY_PASSWORD,
        "header_token": HEADER_TOKEN,
        "path_token": PATH_TOKEN,
        "out": str(tmp_path / "out.json"),
    }
    env = {
        **os.environ,
        "UMQTT_SECRETS": json.dumps(cfg),
        "UMQTT_TESTS": str(TESTS),
        "RUST_BACKTRACE": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOG_SCENARIOS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"scenarios failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    out = json.loads((tmp_path / "out.json").read_text())
    records = out["records"]

    # The capture is live: the packet records arrived at DEBUG, CONNECTs with a user name and a
    # password among them, and the other crates' records too, under umqtt (none outside it).
    names = {r["name"] for r in records}
    connects = [
        r for r in records if r["name"] == "umqtt.packets" and "CONNECT (u1, p1" in r["text"]
    ]
    assert connects and {r["level"] for r in connects} == {"DEBUG"}, sorted(names)
    assert any(n.startswith("umqtt.rustls") for n in names), sorted(names)
    assert not [n for n in names if n.startswith(("rumqttc", "rustls", "tungstenite"))], names
    # The proxies and the WebSocket listener did let those clients in (with the query hidden).
    connected = [r["text"] for r in records if r["text"].startswith("umqtt INFO connected to ")]
    for way in ("through the proxy http://proxyuser@", "through the proxy socks5://proxyuser@"):
        assert any(way in text for text in connected), connected
    assert sum(text.endswith("/mqtt?...") for text in connected) == 2, connected
    assert "reconnect_success" in out["notices"], out["notices"]
    assert any("refused" in e or "rc" in e or "4" in e for e in out["exceptions"]), out[
        "exceptions"
    ]

    key_material = [client_key, cfg["other_key"].encode()]
    everything = {
        "log records": "\n".join(
            f"{r['name']} {r['level']} {r['text']} {r['args']} {r['msg']}" for r in records
        ),
        "error-callback notices": "\n".join(out["notices"]),
        "exceptions": "\n".join(out["exceptions"]),
        "reprs": "\n".join(out["reprs"]),
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }
    for where, text in everything.items():
        for secret in (PASSWORD, WRONG, PROXY_PASSWORD, HEADER_TOKEN, PATH_TOKEN):
            for form in (secret, secret.encode().hex(), repr(secret.encode())[2:-1]):
                assert form not in text, (
                    f"{where} shows a secret:\n"
                    + "\n".join(line for line in text.splitlines() if form in line)[:3000]
                )
        for key in key_material:
            assert_no_secret(where, text, [], key)
