"""atheris fuzz target (issue 7): option, argument and certificate parsing of the native core.

Each input is decoded (atheris.FuzzedDataProvider) into one call with arbitrary Python values:

- ctor:    umqtt._native.Client(client_id, server, port, **options) with any subset of options;
- dialect: umqtt.MQTTClient / umqtt.simple.MQTTClient / umqtt.aio.MQTTClient constructors;
- tls:     ssl=True, ssl_params={"cert", "key", "cadata", ...} where the PEM/DER values are real
           ones (made once with trustme) cut, spliced and mutated with the fuzzer's bytes;
- will:    set_will(topic, msg, qos, retain) on a client that never connected;
- offline: publish/subscribe/unsubscribe/deliver/next_notice/connect(timeout=...) on a client
           that never connected (network calls must raise MQTTException);
- net:     publish (QoS 0) and subscribe with fuzzed topics and payloads on a client connected to
           a real broker, when FUZZ_BROKER=host:port is set (scripts/fuzz.sh starts mosquitto).

A finding (the input is saved by libFuzzer and the run stops, unless its label is listed in
FUZZ_KNOWN) is:
- anything raised that is not an `Exception`: pyo3's PanicException is a BaseException;
- a crash or a hang (libFuzzer's -timeout);
- the password or a private key's PEM body appearing in an exception's text or a client's repr;
- FUZZ_STRICT=1 only: an exception class other than TypeError, ValueError or umqtt.MQTTException,
  or (net) a call the client accepted after which the broker dropped the connection.
Without FUZZ_STRICT those last two are printed once per kind (and written to $FUZZ_REPORT,
default target/fuzz/report.txt) and the run goes on, so one known issue does not hide the rest.

Run: scripts/fuzz.sh [seconds]   (or: python fuzz/fuzz_options.py -max_total_time=60 corpus/)
"""

from __future__ import annotations

import base64
import os
import re
import sys
import time
from typing import Any

import atheris

# The native core is not instrumented (it is a release build of the Rust extension), so
# coverage comes from the Python dialects and from this harness's own generators: instrumenting
# them makes libFuzzer keep inputs that reach new kinds of values and calls.
with atheris.instrument_imports():
    import umqtt
    import umqtt.aio
    import umqtt.simple
    from umqtt import _native

STRICT = os.environ.get("FUZZ_STRICT") == "1"
# Already-reported findings to note and step over (comma-separated): a panic whose label contains
# one of them, or a leak whose text does (e.g. "next_notice,cannot read"), so a long run can look
# for new ones; empty by default: every finding stops the run.
KNOWN = [k for k in os.environ.get("FUZZ_KNOWN", "").split(",") if k]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.environ.get("FUZZ_REPORT", os.path.join(ROOT, "target", "fuzz", "report.txt"))
PASSWORD = "fuzz-S3cr3t-\u2603-9c1e"  # distinctive: never in an error text or a repr
EXPECTED = (TypeError, ValueError, umqtt.MQTTException)

# --------------------------------------------------------------------------- seed material


def _pem_material() -> dict[str, bytes]:
    import trustme

    ca = trustme.CA()
    rsa_leaf = ca.issue_cert("client.example", key_type=trustme.KeyType.RSA)
    ec_leaf = ca.issue_cert("client.example", key_type=trustme.KeyType.ECDSA)
    return {
        "ca": ca.cert_pem.bytes(),
        "cert": rsa_leaf.cert_chain_pems[0].bytes(),
        "key": rsa_leaf.private_key_pem.bytes(),
        "ec_cert": ec_leaf.cert_chain_pems[0].bytes(),
        "ec_key": ec_leaf.private_key_pem.bytes(),
        "chain": b"".join(p.bytes() for p in rsa_leaf.cert_chain_pems),
    }


PEM = _pem_material()
PEM_LIST = list(PEM.values())
KEY_LINES = {
    line
    for name in ("key", "ec_key")
    for line in PEM[name].decode().splitlines()
    if len(line) >= 40 and not line.startswith("-----")
}


def der_of(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
    try:
        return base64.b64decode(body)
    except ValueError:
        return body


# --------------------------------------------------------------------------- value generators


@atheris.instrument_func
def text(fdp: atheris.FuzzedDataProvider, n: int = 40) -> str:
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, n))


@atheris.instrument_func
def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """Any Python value a caller might pass by mistake (or on purpose)."""
    kind = fdp.ConsumeIntInRange(0, 19)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-3, 70000)
    if kind == 3:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 20))
    if kind == 4:
        return fdp.ConsumeFloat()
    if kind == 5:
        return text(fdp)
    if kind == 6:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 20))  # may hold lone surrogates
    if kind == 7:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    if kind == 8:
        return bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 10)))
    if kind == 9:
        return memoryview(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 10)))
    if kind == 10 and depth < 2:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if kind == 11 and depth < 2:
        return {text(fdp, 8): value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    if kind == 12:
        return object()
    if kind == 13:
        return str(fdp.ConsumeInt(4))  # a decimal string
    if kind == 14:
        return mutated_pem(fdp)
    if kind == 15:
        ch = fdp.PickValueInList(["x", "\u00e9", "\u20ac", "\U0001f600", "+", "/", "\x00", "\t"])
        return ch * fdp.ConsumeIntInRange(65530, 65540)
    if kind == 16:
        return fdp.PickValueInList([float("nan"), float("inf"), -float("inf"), 1e300, -0.0, 5e-324])
    if kind == 17:
        return fdp.PickValueInList([2**63, 2**64, -(2**63) - 1, 2**31, 2**32, 2**16, 2**128])
    if kind == 18:
        return topic_like(fdp)
    return fdp.ConsumeIntInRange(0, 2)


@atheris.instrument_func
def topic_like(fdp: atheris.FuzzedDataProvider) -> Any:
    parts = [
        fdp.PickValueInList(
            ["a", "b", "+", "#", "", "$SYS", "$share", "é", "\x00", "\x7f", "\uffff"]
        )
        + text(fdp, 4)
        for _ in range(fdp.ConsumeIntInRange(1, 5))
    ]
    topic = "/".join(parts)
    return topic.encode("utf-8", "surrogatepass") if fdp.ConsumeBool() else topic


@atheris.instrument_func
def mutated_pem(fdp: atheris.FuzzedDataProvider) -> Any:
    """A real PEM or DER blob, cut, spliced with fuzz bytes, or concatenated with another."""
    base = fdp.PickValueInList(PEM_LIST)
    how = fdp.ConsumeIntInRange(0, 8)
    if how == 0:
        out = base
    elif how == 1:
        out = base[: fdp.ConsumeIntInRange(0, len(base))]
    elif how == 2:
        at = fdp.ConsumeIntInRange(0, len(base))
        out = base[:at] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) + base[at:]
    elif how == 3:
        at = fdp.ConsumeIntInRange(0, len(base))
        n = fdp.ConsumeIntInRange(0, 16)
        out = base[:at] + fdp.ConsumeBytes(n) + base[at + n :]
    elif how == 4:
        out = base + fdp.PickValueInList(PEM_LIST)
    elif how == 5:
        der = der_of(base)
        at = fdp.ConsumeIntInRange(0, len(der))
        n = fdp.ConsumeIntInRange(0, 8)
        out = der[:at] + fdp.ConsumeBytes(n) + der[at + n :]
    elif how == 6:
        der = der_of(base)
        out = der[: fdp.ConsumeIntInRange(0, len(der))]
    elif how == 7:
        # a PEM whose base64 body is re-encoded from mutated DER: parses as PEM, then fails as X.509
        der = bytearray(der_of(base))
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            if der:
                der[fdp.ConsumeIntInRange(0, len(der) - 1)] = fdp.ConsumeIntInRange(0, 255)
        label = b"CERTIFICATE" if b"CERTIFICATE" in base else b"PRIVATE KEY"
        body = base64.encodebytes(bytes(der))
        out = b"-----BEGIN " + label + b"-----\n" + body + b"-----END " + label + b"-----\n"
    else:
        out = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    return out.decode("latin-1") if fdp.ConsumeBool() else out


OPTION_NAMES = [
    "user",
    "password",
    "keepalive",
    "ssl",
    "ssl_params",
    "reconnect",
    "version",
    "ping_grace",
    "manage",
    "connect_timeout",
    "ack_timeout",
    "max_packet_size",
    "reconnect_delay",
    "reconnect_max_delay",
]
TLS_KEYS = [
    "cert",
    "key",
    "cadata",
    "server_hostname",
    "server_side",
    "do_handshake",
    "certfile",
    "keyfile",
    "ca_certs",
    "cert_reqs",
    "bogus",
]

# --------------------------------------------------------------------------- oracles

_seen: set[str] = set()


def note(kind: str, detail: str) -> None:
    """Report an unexpected-but-not-fatal outcome once per kind (and in STRICT mode, fail)."""
    if STRICT:
        raise AssertionError(f"{kind}: {detail}")
    if kind in _seen:
        return
    _seen.add(kind)
    line = f"[fuzz] {kind}: {detail}"
    print(line, file=sys.stderr, flush=True)
    try:
        os.makedirs(os.path.dirname(REPORT), exist_ok=True)
        with open(REPORT, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


# The secrets of the current input: the password (when passed as the password) and the base64
# lines of whatever was passed as the private key. A value passed in another argument's place may
# be echoed in that argument's error message; that is not a leak.
_secrets: list[str] = []


def secret_key_lines(key: Any) -> list[str]:
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    if not isinstance(key, str):
        return []
    return [line for line in key.splitlines() if line in KEY_LINES]


def check_secret(where: str, text_: str) -> None:
    for secret in _secrets:
        if secret in text_:
            what = "the password" if secret == PASSWORD else "a private key's PEM body"
            if any(k in text_ for k in KNOWN):
                note(f"KNOWN LEAK: {what} in {where.split(':')[0]}", text_[:120])
                return
            raise AssertionError(f"{what} appears in {where}: {text_[:300]!r}")


@atheris.instrument_func
def judge(label: str, exc: BaseException) -> None:
    """Every failure must be an Exception of a documented class, free of secrets."""
    if not isinstance(exc, Exception):
        if any(k in label for k in KNOWN):
            note(f"KNOWN PANIC in {label}", f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        raise AssertionError(
            f"{label}: {type(exc).__module__}.{type(exc).__name__} is not an Exception: {exc}"
        ) from exc
    check_secret(f"{label}: {type(exc).__name__}", f"{exc} {exc!r} {getattr(exc, '__notes__', '')}")
    if not isinstance(exc, EXPECTED):
        message = re.sub(r"\d+", "N", str(exc))[:80]
        note(f"{label}: {type(exc).__name__}({message})", f"{type(exc).__name__}: {str(exc)[:200]}")


def attempt(label: str, fn: Any) -> Any:
    try:
        return fn()
    except BaseException as exc:  # the oracle decides
        judge(label, exc)
        return None


# --------------------------------------------------------------------------- targets


@atheris.instrument_func
def options(fdp: atheris.FuzzedDataProvider) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for name in OPTION_NAMES:
        if fdp.ConsumeIntInRange(0, 3) == 0:
            kw[name] = value(fdp)
    if "password" in kw and fdp.ConsumeBool():
        kw["password"] = PASSWORD
    if kw.get("password") == PASSWORD:
        _secrets.append(PASSWORD)
    if isinstance(kw.get("ssl_params"), dict):
        _secrets.extend(secret_key_lines(kw["ssl_params"].get("key")))
    return kw


@atheris.instrument_func
def fuzz_ctor(fdp: atheris.FuzzedDataProvider) -> None:
    args = [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    kw = options(fdp)
    client = attempt("Client()", lambda: _native.Client(*args, **kw))
    if client is not None:
        check_secret("repr(Client)", repr(client))


@atheris.instrument_func
def fuzz_dialect(fdp: atheris.FuzzedDataProvider) -> None:
    cls = fdp.PickValueInList([umqtt.MQTTClient, umqtt.simple.MQTTClient, umqtt.aio.MQTTClient])
    args = [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    kw = {
        n: value(fdp)
        for n in ("keepalive", "version", "pingmaxnum", "max_packet_size")
        if fdp.ConsumeIntInRange(0, 3) == 0
    }
    if cls is umqtt.simple.MQTTClient:
        kw.pop("pingmaxnum", None)
    kw["password"] = PASSWORD
    _secrets.append(PASSWORD)
    client = attempt(f"{cls.__module__}.MQTTClient()", lambda: cls(*args, **kw))
    if client is not None:
        check_secret("repr(dialect client)", repr(client))


@atheris.instrument_func
def tls_value(fdp: atheris.FuzzedDataProvider, key: str) -> Any:
    choice = fdp.ConsumeIntInRange(0, 5)
    if key in ("cert", "key", "cadata") and choice < 4:
        return mutated_pem(fdp)
    if key == "cert_reqs" and choice < 4:
        return fdp.ConsumeIntInRange(-1, 3)
    return value(fdp)


@atheris.instrument_func
def fuzz_tls(fdp: atheris.FuzzedDataProvider) -> None:
    params: dict[Any, Any] = {}
    for key in TLS_KEYS:
        if fdp.ConsumeIntInRange(0, 2) == 0:
            params[key] = tls_value(fdp, key)
    for key in ("cert", "key", "cadata"):
        if fdp.ConsumeBool():
            params[key] = tls_value(fdp, key)
    if fdp.ConsumeIntInRange(0, 9) == 0:
        key = value(fdp)
        try:
            params[key] = value(fdp) if fdp.ConsumeBool() else None
        except TypeError:
            params[repr(key)] = None  # an unhashable key: a dict cannot hold it anyway
    _secrets.append(PASSWORD)
    # A private key's text is a secret where a key or a key's path belongs (scripts mix up the
    # device's `key`, PEM text, and CPython's `keyfile`/`certfile`, paths): errors must not echo
    # it. The same text given as, say, server_hostname may be echoed as that argument's value.
    secret_places = ("key", "keyfile", "certfile", "ca_certs")
    echoable = {
        line
        for name, v in params.items()
        if name not in secret_places
        for line in secret_key_lines(v)
    }
    for name in secret_places:
        _secrets.extend(line for line in secret_key_lines(params.get(name)) if line not in echoable)
    client = attempt(
        "Client(ssl=True)",
        lambda: _native.Client(
            "fuzz", "127.0.0.1", 8883, user="u", password=PASSWORD, ssl=True, ssl_params=params
        ),
    )
    if client is not None:
        check_secret("repr(TLS client)", repr(client))


_idle: Any = None


def idle_client() -> Any:
    global _idle
    if _idle is None:
        _idle = _native.Client(
            "fuzz-idle",
            "127.0.0.1",
            1,
            user="u",
            password=PASSWORD,
            max_packet_size=64 * 1024,
            ack_timeout=0.5,
            connect_timeout=0.5,
        )
    return _idle


@atheris.instrument_func
def fuzz_will(fdp: atheris.FuzzedDataProvider) -> None:
    _secrets.append(PASSWORD)
    c = idle_client()
    args = [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if args and fdp.ConsumeBool():
        args[0] = topic_like(fdp)
    attempt("set_will()", lambda: c.set_will(*args))
    c.set_will(None, b"")


@atheris.instrument_func
def fuzz_offline(fdp: atheris.FuzzedDataProvider) -> None:
    _secrets.append(PASSWORD)
    c = idle_client()
    method = fdp.PickValueInList(
        ["publish", "subscribe", "unsubscribe", "deliver", "next_notice", "connect", "state"]
    )
    args = [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if method in ("publish", "subscribe", "unsubscribe") and args and fdp.ConsumeBool():
        args[0] = topic_like(fdp)
    if method == "deliver":
        args = [lambda t, m: None, *args[:2]]
    if method == "next_notice" and args:
        # the notice queue of an idle client never ends: a long finite wait would only look like
        # a hang; huge and non-finite values stay (they must raise, not panic)
        t = args[0]
        if isinstance(t, (int, float)) and not isinstance(t, bool) and 0.05 < t < 1e16:
            args[0] = 0.0
    if method == "connect":
        # only bad timeouts: a valid call would try to connect to 127.0.0.1:1 (refused, fast)
        args = [value(fdp), value(fdp)]
    if method == "state":
        attempt("state", lambda: (c.state, c.mqttsta(), c.pending_messages(), repr(c)))
        return
    started = time.monotonic()
    result = attempt(f"{method}() before connect", lambda: getattr(c, method)(*args))
    if method in ("publish", "subscribe", "unsubscribe") and result is not None:
        note(f"{method}() before connect returned", repr(result)[:80])
    if time.monotonic() - started > 3:
        note(f"{method}() before connect was slow", f"{time.monotonic() - started:.1f} s")


# ---- net: a real broker


_net: Any = None


def net_client() -> Any:
    global _net
    if _net is None or _net.mqttsta() != 0:
        host, port = os.environ["FUZZ_BROKER"].rsplit(":", 1)
        _net = _native.Client(
            f"fuzz-net-{os.getpid()}",
            host,
            int(port),
            reconnect=False,
            user="u",
            password=PASSWORD,
            max_packet_size=256 * 1024,
            ack_timeout=2,
            connect_timeout=5,
        )
        _net.connect()
    return _net


@atheris.instrument_func
def fuzz_net(fdp: atheris.FuzzedDataProvider) -> None:
    if "FUZZ_BROKER" not in os.environ:
        return fuzz_offline(fdp)
    _secrets.append(PASSWORD)
    c = net_client()
    topic = topic_like(fdp) if fdp.ConsumeIntInRange(0, 3) else value(fdp)
    if fdp.ConsumeBool():
        payload = (
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2048)) if fdp.ConsumeBool() else value(fdp)
        )
        qos = fdp.PickValueInList([0, 0, 0, 1, value(fdp)])
        call, label = (lambda: c.publish(topic, payload, qos)), "publish()"
    else:
        qos = fdp.PickValueInList([0, 1, 2, value(fdp)])
        call, label = (lambda: c.subscribe(topic, qos)), "subscribe()"
    try:
        call()
        outcome = "sent"
    except (umqtt.MQTTConnectionLost, umqtt.MQTTTimeout):
        outcome = "lost"  # it passed validation, then the link went
    except BaseException as exc:
        judge(label, exc)
        outcome = "rejected"
    if outcome == "sent":
        deadline = time.monotonic() + 0.05
        while c.mqttsta() == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
    if outcome != "rejected" and c.mqttsta() != 0:
        note(
            f"{label} passed validation, then the broker dropped the link",
            f"topic={topic!r:.120} ({outcome}) state={c.state}",
        )
    # drain whatever arrived, so the inbox stays small
    try:
        c.deliver(lambda t, m: None, 0.0)
    except BaseException as exc:
        judge("deliver()", exc)


TARGETS = [fuzz_ctor, fuzz_dialect, fuzz_tls, fuzz_will, fuzz_offline, fuzz_net]


def TestOneInput(data: bytes) -> None:
    _secrets.clear()
    fdp = atheris.FuzzedDataProvider(data)
    target = TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)]
    target(fdp)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
