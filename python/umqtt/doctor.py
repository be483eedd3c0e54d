"""``python -m umqtt doctor``: why a connection to a broker fails, step by step.

The doctor walks the path a client takes, up to the first step that fails, and names that
step's cause and fix: 1. name resolution (every address), 2. TCP to each address, 3. TLS (when
asked, or when a plain client fails on a port that answers TLS), 4. the MQTT CONNECT, 5. a QoS 1
round trip on a private topic, 6. the keepalive, 7. with ``--check-client-id``: whether another
client uses the same client id. Through a proxy (``--proxy``), steps 1 and 2 are about the proxy,
and TLS is judged from the core's handshake alone (the broker cannot be probed directly); over a
Unix socket (``--unix``), step 2 tries the socket and step 1 has nothing to resolve.

The verdicts of steps 3 to 7 are the core's own: they run on ``umqtt.simple.MQTTClient`` with the
settings a client would use, and quote its messages. Plain sockets only resolve the name and try
TCP, as the core does; Python's ``ssl`` module only reads what the core does not show (the
certificate the broker presents) or tells what a failing port speaks.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import sys
import tempfile
import textwrap
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from . import MQTTConnectError, MQTTConnectionLost, MQTTException, MQTTTimeout
from .cli import _connection_options, _route, _tls
from .simple import MQTTClient

SCHEMA = "umqtt-doctor/1"
PASS, FAIL, SKIP = "pass", "fail", "skip"
TITLES = {
    "resolve": "name resolution",
    "tcp": "TCP",
    "tls": "TLS",
    "connect": "MQTT CONNECT",
    "roundtrip": "QoS 1 round trip",
    "keepalive": "keepalive",
    "client_id": "client id",
}
# The doctor's client pings every second and is watched for two and a half pings: the core ends a
# link whose PINGREQ is still unanswered when the next one is due (pingmaxnum=0), and a broker
# drops a client it has heard nothing from for 1.5 keepalives.
KEEPALIVE = 1
KEEPALIVE_WATCH = 2.5
EXIT_FAILED = 1
EXIT_USAGE = 2
_POLL = 0.05
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}
_OUTCOME_WORDS = {
    "connected": "connected",
    "refused": "refused",
    "timeout": "timed out",
    "unreachable": "unreachable",
    "error": "failed",
}
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}
# How the core's messages start when a proxy refused or failed (src/errors.rs).
_PROXY_FAILURES = (
    "the proxy refused",
    "SOCKS5 proxy",
    "cannot reach the proxy",
    "did not open a tunnel",
    "failed at the proxy",
)
_MARKS = {PASS: "✓", FAIL: "✗", SKIP: "–"}
_ASCII_MARKS = {PASS: "ok", FAIL: "XX", SKIP: "--"}  # for a terminal that cannot show those
_FIX_ACL = (
    "allow this user to publish and subscribe to the topic (mosquitto: `acl_file` or the "
    "dynamic-security plugin), or pick a topic it may use with -t"
)


# --------------------------------------------------------------------------- the command


def add_parser(commands: Any) -> None:
    """The ``doctor`` subcommand, with the connection options of pub/sub (umqtt.cli)."""
    parser = commands.add_parser(
        "doctor",
        add_help=False,
        help="say why a connection fails, step by step",
        description="Walks the path to the broker (name, TCP, TLS, CONNECT, round trip, "
        "keepalive) and names the cause and the fix of the first step that fails. "
        "Exit status: 0 when every step passed, 1 when one failed, 2 for bad options.",
    )
    _connection_options(parser)
    parser.add_argument(
        "--check-client-id",
        action="store_true",
        help="also check whether another client uses the id of -i (this disconnects that "
        "client for a moment; its session is kept)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds to wait at each step, and for the other client of --check-client-id (5)",
    )
    parser.add_argument("-t", "--topic", help="round-trip topic (umqtt-doctor/<random>)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """Runs the doctor for the parsed options; returns the exit status."""
    if args.check_client_id and not args.id:
        print("umqtt doctor: --check-client-id needs -i ID, the id to check", file=sys.stderr)
        return EXIT_USAGE
    use_tls, ssl_params = _tls(args)
    try:
        server, route = _route(args)
        doctor = Doctor(
            server.strip(),
            args.port,
            route=route,
            tls=use_tls,
            ssl_params=ssl_params,
            user=args.username,
            password=args.pw,
            client_id=args.id,
            check_client_id=args.check_client_id,
            timeout=args.timeout,
            topic=args.topic,
        )
    except (ValueError, TypeError) as e:  # the core's verdict on the options (port, PEM files)
        print(f"umqtt doctor: {e}", file=sys.stderr)
        return EXIT_USAGE
    printer = None if args.json else _Printer(sys.stdout)
    try:
        if printer is not None:
            printer.header(doctor)
        steps = doctor.run(None if printer is None else printer.step)
    except KeyboardInterrupt:
        return 130
    if printer is None:
        json.dump(doctor.report(steps), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        printer.footer(steps)
    return EXIT_FAILED if any(s.status == FAIL for s in steps) else 0


def _notice(text: str) -> None:
    """What the user must know before a step acts: on stderr, so that --json stays clean."""
    sys.stdout.flush()
    print(f"note: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- records


@dataclass
class Step:
    """One step of the report; its JSON form (as_json) is documented in docs/api.md."""

    number: int
    name: str
    status: str = SKIP
    seconds: float | None = None
    result: str = ""
    cause: str | None = None
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.name]

    def passed(self, result: str, **details: Any) -> None:
        self.status, self.result = PASS, result
        self.details.update(details)

    def failed(self, result: str, cause: str, fix: str, **details: Any) -> None:
        self.status, self.result, self.cause, self.fix = FAIL, result, cause, fix
        self.details.update(details)

    def skipped(self, result: str, **details: Any) -> None:
        self.status, self.result = SKIP, result
        self.details.update(details)

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "seconds": None if self.seconds is None else round(self.seconds, 6),
            "result": self.result,
            "cause": self.cause,
            "fix": self.fix,
            "details": self.details,
        }


@dataclass
class TcpAttempt:
    """One TCP connection to one resolved address."""

    family: int
    sockaddr: tuple[Any, ...]
    outcome: str = ""  # connected, refused, timeout, unreachable, error
    seconds: float = 0.0
    error: str | None = None

    @property
    def address(self) -> str:
        return str(self.sockaddr[0])

    def endpoint(self) -> str:
        host = f"[{self.address}]" if self.family == socket.AF_INET6 else self.address
        return f"{host}:{self.sockaddr[1]}"

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "family": "IPv6" if self.family == socket.AF_INET6 else "IPv4",
            "outcome": self.outcome,
            "seconds": round(self.seconds, 6),
            "error": self.error,
        }


@dataclass
class TlsAnswer:
    """What a port answered to a TLS ClientHello (Python's ssl module, not verifying)."""

    speaks_tls: bool | None  # None: no answer in time
    seconds: float
    version: str | None = None
    certificates: list[dict[str, Any]] = field(default_factory=list)  # leaf first
    error: str | None = None

    @property
    def leaf(self) -> dict[str, Any]:
        return self.certificates[0] if self.certificates else {}


@dataclass
class Connected:
    """What connect() of the core said: its message, the CONNACK code."""

    seconds: float
    at: float = field(default_factory=time.monotonic)  # when connect() returned
    session_present: bool | None = None
    error: str | None = None
    rc: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reached_mqtt(self) -> bool:
        """The broker answered the CONNECT (accepting or refusing): TCP and TLS worked."""
        return self.ok or self.rc is not None

    def kind(self) -> str:
        """What failed, told from the core's messages (src/errors.rs, src/tls.rs)."""
        text = self.error or ""
        if self.rc is not None:
            return "refused"
        if text.startswith("TLS"):
            return "tls"
        if "timed out" in text:
            return "timeout"
        if "WebSocket upgrade" in text or "'mqtt' subprotocol" in text:
            return "websocket"
        if any(w in text for w in _PROXY_FAILURES):
            return "proxy"
        if any(w in text for w in ("reset by peer", "closed by peer", "closed the connection")):
            return "closed"
        return "other"


def _link_up(client: MQTTClient) -> bool:
    """Whether the client's link is up, asking the broker nothing (ping() sends a PINGREQ)."""
    return client._core.mqttsta() == 0


def _connect(client: MQTTClient, clean_session: bool = True) -> Connected:
    started = time.monotonic()
    try:
        present = client.connect(clean_session)
    except MQTTException as e:
        # umqtt.simple raises MQTTException(rc), or an OSError, from the core's MQTTConnectError.
        core = e.__cause__ if isinstance(e.__cause__, MQTTConnectError) else e
        return Connected(time.monotonic() - started, error=str(core), rc=getattr(core, "rc", None))
    return Connected(time.monotonic() - started, session_present=bool(present))


# --------------------------------------------------------------------------- the walk


class Doctor:
    """The walk for one set of connection options; ``run()`` once."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        route: dict[str, Any] | None = None,
        tls: bool = False,
        ssl_params: dict[str, Any] | None = None,
        user: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        check_client_id: bool = False,
        timeout: float = 5.0,
        topic: str | None = None,
    ) -> None:
        self.host = host
        self.port = port  # 0 until the first client is built: the core picks 1883 or 8883
        # The core's transport options (transport, ws_path, ws_headers, proxy, ipvtype).
        self.route = dict(route or {})
        self.unix = self.route.get("transport") == "unix"
        self.tls = tls
        self.ssl_params = dict(ssl_params or {})
        self.user = user
        self._password = password
        self.timeout = timeout
        # With --check-client-id only step 7 uses the id, after saying so: a client using it
        # is disturbed once, and its session is kept.
        self.checked_id = client_id if check_client_id else None
        self.client_id = (None if check_client_id else client_id) or _random_id()
        self.topic = topic or f"umqtt-doctor/{uuid.uuid4().hex}"
        # Built now, so that bad options (port, PEM files) are refused by the core's own rules
        # before any step runs.
        self._client = self._new_client(self.client_id)
        self.port = self._client.port
        self.proxy = _Proxy.parse(self.route.get("proxy"))

    @property
    def target(self) -> str:
        if self.unix:
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def way(self) -> str:
        """How the client gets there, in words ("" for plain TCP)."""
        words = {"websockets": " over WebSocket", "unix": " (a Unix socket)"}
        way = words.get(self.route.get("transport", ""), "")
        return way + ("" if self.proxy is None else f" via the proxy {self.proxy.shown}")

    def trusted(self) -> str:
        """What the client verifies the broker's certificate with, in words."""
        if self.ssl_params.get("cert_reqs") == ssl.CERT_NONE:
            return "nothing (--insecure: the certificate is not verified)"
        cafile = self.ssl_params.get("ca_certs")
        return "the system's CA certificates" + (f" and --cafile {cafile}" if cafile else "")

    def _new_client(self, client_id: str, *, plain_anonymous: bool = False) -> MQTTClient:
        """A client of the core with the user's settings; plain_anonymous: without TLS and
        credentials, to test a port without ever sending the password in the clear."""
        use_tls = self.tls and not plain_anonymous
        return MQTTClient(
            client_id,
            self.host,
            self.port,
            user=None if plain_anonymous else self.user,
            password=None if plain_anonymous else self._password,
            keepalive=KEEPALIVE,
            ssl=use_tls,
            ssl_params=self.ssl_params if use_tls else {},
            connect_timeout=self.timeout,
            ack_timeout=self.timeout,
            **self.route,
        )

    def run(
        self,
        on_step: Callable[[Step], None] | None = None,
        notice: Callable[[str], None] = _notice,
    ) -> list[Step]:
        """Runs the steps in order, up to the first that fails; ``on_step`` gets each step as
        soon as it is final; ``notice`` gets what the user must know before a step acts."""
        steps = [Step(number, name) for number, name in enumerate(TITLES, 1)]
        reported = 0

        def report() -> None:
            nonlocal reported
            while reported < len(steps) and steps[reported].result:
                if on_step is not None:
                    on_step(steps[reported])
                reported += 1

        self._walk({s.name: s for s in steps}, report, notice)
        failed = next((s for s in steps if s.status == FAIL), None)
        for s in steps:
            if not s.result:
                s.skipped(f"not run: step {failed.number} failed" if failed else "not run")
        report()
        return steps

    def _walk(
        self, steps: dict[str, Step], report: Callable[[], None], notice: Callable[[str], None]
    ) -> None:
        used: TcpAttempt | None = None
        if self.unix:
            steps["resolve"].skipped(f"{self.host} is a Unix socket (no name to resolve)")
            report()
            reached = self._unix_socket(steps["tcp"])
            report()
            if not reached:
                return
        else:
            addresses = self._resolve(steps["resolve"])
            report()
            used = self._tcp(steps["tcp"], addresses) if addresses else None
            report()
            if used is None:
                return
        connected = self._tls_and_connect(steps["tls"], steps["connect"], used)
        report()
        if connected is None:
            return
        try:
            if self._roundtrip(steps["roundtrip"]):
                report()
                self._keepalive(steps["keepalive"], connected)
        finally:
            self._client.disconnect()
        report()
        if steps["keepalive"].status != PASS:
            return
        if self.checked_id is None:
            steps["client_id"].skipped("not asked (--check-client-id -i ID checks an id)")
            return
        notice(
            f"checking client id {self.checked_id!r}: a client connected with it now is "
            "disconnected for a moment (its session is kept: clean_session=False)"
        )
        self._check_client_id(steps["client_id"], self.checked_id)

    # -- 1. name resolution

    def _resolve(self, step: Step) -> list[TcpAttempt]:
        """The broker's name, or the proxy's when there is one (it resolves the broker's)."""
        host, port = (self.host, self.port) if self.proxy is None else self.proxy.address
        via = "" if self.proxy is None else f"via the proxy {self.proxy.shown}: "
        started = time.monotonic()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            step.seconds = time.monotonic() - started
            step.failed(
                f"{via}cannot resolve {host}: {e}",
                f"no address for the name {host!r}: a typing error, a name that does not "
                "exist (yet), or this machine's DNS does not answer",
                "check the host name (-h, or the proxy's in --proxy), or try an IP address; "
                "check this machine's DNS settings",
                addresses=[],
            )
            return []
        step.seconds = time.monotonic() - started
        attempts: dict[tuple[Any, ...], TcpAttempt] = {}
        for family, _, _, _, sockaddr in infos:
            attempts.setdefault(tuple(sockaddr), TcpAttempt(family, tuple(sockaddr)))
        found = [a.address for a in attempts.values()]
        if _is_address(host):
            step.passed(f"{via}{host} is an address (no lookup)", addresses=found)
        else:
            step.passed(f"{via}{host} → {', '.join(found)}", addresses=found)
        return list(attempts.values())

    def _unix_socket(self, step: Step) -> bool:
        """Step 2 for a Unix socket: whether something accepts connections on it."""
        started = time.monotonic()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.host)
        except OSError as e:
            step.seconds = time.monotonic() - started
            missing = isinstance(e, FileNotFoundError)
            step.failed(
                f"{self.host}: {e}",
                "no such socket: the path is wrong, or the broker is not running"
                if missing
                else "nothing accepts connections on this socket (a broker that stopped leaves "
                "its socket file behind), or this user may not open it",
                "check the path; mosquitto listens on a Unix socket with `listener 0 PATH`",
            )
            return False
        step.seconds = time.monotonic() - started
        step.passed(f"{self.host} accepts connections")
        return True

    # -- 2. TCP

    def _tcp(self, step: Step, attempts: list[TcpAttempt]) -> TcpAttempt | None:
        """Tries every address (at once); returns the one the client would use. The core tries
        them in order, moving on after a refusal but waiting on one that does not answer."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(len(attempts), 8)) as pool:
            list(pool.map(lambda a: _connect_tcp(a, self.timeout), attempts))
        step.seconds = time.monotonic() - started
        result = ", ".join(f"{a.endpoint()} {_OUTCOME_WORDS[a.outcome]}" for a in attempts)
        details = {"attempts": [a.as_json() for a in attempts]}
        used = next((a for a in attempts if a.outcome in ("connected", "timeout")), None)
        if used is not None and used.outcome == "connected":
            step.passed(result, **details)
            return used
        causes: list[str] = []
        fixes: list[str] = []
        for attempt in attempts:
            if attempt.outcome != "connected":
                cause, fix = self._tcp_failure(attempt)
                causes += [cause] if cause not in causes else []
                fixes += [fix] if fix not in fixes else []
        if any(a.outcome == "connected" for a in attempts):
            causes.append(
                "the client tries the addresses in order and waits on one that does not "
                "answer until its connect timeout"
            )
        step.failed(result, "; ".join(causes), "; ".join(fixes), **details)
        return None

    def _tcp_failure(self, attempt: TcpAttempt) -> tuple[str, str]:
        where = attempt.endpoint()
        if self.proxy is not None:
            return (
                f"the proxy {self.proxy.shown} cannot be reached at {where} "
                f"({_OUTCOME_WORDS[attempt.outcome]}: {attempt.error})",
                "check the proxy's host and port in --proxy, and that this machine may use it",
            )
        if attempt.outcome == "refused":
            return (
                f"nothing listens on {where}: is the broker running, and does it listen on "
                "this interface? mosquitto 2 listens only on localhost unless a `listener` "
                "line says otherwise",
                f"start the broker; in mosquitto.conf, add `listener {self.port}` (every "
                "interface) with a `password_file` (or `allow_anonymous true`) and restart "
                "it; check the port (-p)",
            )
        if attempt.outcome == "timeout":
            return (
                f"{where} did not answer within {self.timeout:g} s: a firewall or cloud "
                "security group drops the packets (or the address is wrong)",
                f"allow incoming TCP port {self.port} in the server's firewall (ufw allow "
                f"{self.port}/tcp; firewall-cmd --add-port={self.port}/tcp) and in the cloud "
                "server's security group; check the address",
            )
        if attempt.outcome == "unreachable":
            return (
                f"no route to {attempt.address} ({attempt.error})",
                "check the address and this machine's network (an IPv6 address needs IPv6 "
                "on this machine)",
            )
        return f"{where}: {attempt.error}", "check the address and this machine's network"

    # -- 3. TLS and 4. CONNECT

    def _tls_and_connect(
        self, tls: Step, connect: Step, used: TcpAttempt | None
    ) -> Connected | None:
        """Steps 3 and 4 from one connect() of the core. Python's ssl module reads the
        certificate (TLS asked), or tells a TLS port when a plain client fails on it; not
        through a proxy nor over a Unix socket (used is None), where the core's verdict is all."""
        if used is None or self.proxy is not None:
            outcome = _connect(self._client)
            if self.tls:
                if not self._tls_verdict_unprobed(tls, outcome):
                    return None
            elif self.unix:
                tls.skipped("a Unix socket carries no TLS", asked=False)
            else:
                tls.skipped(
                    "not asked (--tls, --cafile, --cert, --insecure turn it on)", asked=False
                )
            connect.seconds = outcome.seconds
            return outcome if self._connect_verdict(connect, outcome) else None
        answer = self._tls_probe(used) if self.tls else None
        outcome = _connect(self._client)
        if self.tls:
            assert answer is not None
            if not self._tls_verdict(tls, answer, outcome):
                return None
        else:
            if not outcome.reached_mqtt:
                answer = self._tls_probe(used)
            if answer is not None and answer.speaks_tls:
                tls.seconds = answer.seconds
                names = ", ".join(_bare_names(answer.leaf)) or "?"
                tls.failed(
                    f"port {self.port} answers TLS ({answer.version or 'a TLS alert'}, a "
                    f"certificate for {names}); without TLS the client failed: {outcome.error}",
                    f"port {self.port} expects TLS, and the client connected without it",
                    "add --tls (and --cafile CA.pem when the broker's certificate comes from a "
                    "private CA), or use the broker's plain MQTT port (usually 1883)",
                    asked=False,
                    speaks_tls=True,
                    version=answer.version,
                    certificates=answer.certificates,
                    client_error=outcome.error,
                )
                return None
            tls.skipped(
                "not asked (--tls, --cafile, --cert, --insecure turn it on)"
                + ("; the port does not answer TLS either" if answer is not None else ""),
                asked=False,
                speaks_tls=None if answer is None else answer.speaks_tls,
            )
        connect.seconds = outcome.seconds
        return outcome if self._connect_verdict(connect, outcome) else None

    def _tls_verdict_unprobed(self, step: Step, outcome: Connected) -> bool:
        """TLS asked through a proxy: the core's handshake is the only witness."""
        step.seconds = outcome.seconds
        details: dict[str, Any] = {"asked": True, "verified_with": self.trusted()}
        if outcome.reached_mqtt:
            step.passed(
                f"the handshake through the proxy passed; checked against {self.trusted()}",
                **details,
            )
            return True
        if outcome.kind() != "tls":
            step.skipped("not reached: the connection failed before TLS (step 4)", **details)
            return True
        cause, fix = self._certificate_problem(TlsAnswer(True, outcome.seconds), outcome)
        step.failed(outcome.error or "", cause, fix, client_error=outcome.error, **details)
        return False

    def _tls_probe(self, used: TcpAttempt) -> TlsAnswer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        certfile, keyfile = self.ssl_params.get("certfile"), self.ssl_params.get("keyfile")
        if certfile and keyfile:
            try:  # lets a broker that demands a client certificate finish the handshake
                context.load_cert_chain(certfile, keyfile)
            except (OSError, ssl.SSLError):
                pass  # the core says what is wrong with them
        started = time.monotonic()
        try:
            with socket.socket(used.family, socket.SOCK_STREAM) as raw:
                raw.settimeout(self.timeout)
                raw.connect(used.sockaddr)
                name = None if _is_address(self.host) else self.host
                with context.wrap_socket(raw, server_hostname=name) as tls_socket:
                    chain = [_describe_certificate(der) for der in _chain(tls_socket)]
                    seconds = time.monotonic() - started
                    return TlsAnswer(True, seconds, tls_socket.version(), chain)
        except (socket.timeout, TimeoutError) as e:
            return TlsAnswer(None, time.monotonic() - started, error=str(e) or "timed out")
        except ssl.SSLError as e:
            # An alert is a TLS answer (such as "certificate required"); WRONG_VERSION_NUMBER
            # and the like say that the reply was not TLS.
            alert = "ALERT" in str(e.reason or "").upper()
            return TlsAnswer(alert, time.monotonic() - started, error=str(e))
        except OSError as e:  # reset or closed on the ClientHello: not a TLS server
            return TlsAnswer(False, time.monotonic() - started, error=str(e))

    def _tls_verdict(self, step: Step, answer: TlsAnswer, outcome: Connected) -> bool:
        """TLS asked: whether the core's handshake and verification passed, and why not."""
        step.seconds = answer.seconds
        details: dict[str, Any] = {
            "asked": True,
            "speaks_tls": answer.speaks_tls,
            "version": answer.version,
            "verified_with": self.trusted(),
            "certificates": answer.certificates,
            "client_error": None if outcome.reached_mqtt else outcome.error,
        }
        if outcome.reached_mqtt or (answer.speaks_tls and outcome.kind() != "tls"):
            step.passed(
                f"{answer.version}, {_summary(answer.leaf)}; checked against {self.trusted()}",
                **details,
            )
            return True
        if answer.speaks_tls is None:
            step.failed(
                f"no answer to the TLS handshake within {self.timeout:g} s",
                "TCP works but nothing answers like a TLS server: another service listens on "
                "this port, or the broker is stuck",
                "check the port (-p): the broker's TLS port is usually 8883",
                **details,
            )
        elif not answer.speaks_tls:
            self._not_tls(step, answer, outcome, details)
        else:
            step.failed(outcome.error or "", *self._certificate_problem(answer, outcome), **details)
        return False

    def _not_tls(
        self, step: Step, answer: TlsAnswer, outcome: Connected, details: dict[str, Any]
    ) -> None:
        """TLS asked, and the port does not speak it: does it speak plain MQTT?"""
        plain = self._new_client(_random_id(), plain_anonymous=True)
        heard = _connect(plain)
        if heard.ok:
            plain.disconnect()
        details["plain_mqtt"] = heard.reached_mqtt
        details["probe_error"] = answer.error
        if heard.reached_mqtt:
            step.failed(
                outcome.error or "",
                f"port {self.port} speaks plain MQTT, not TLS: it answered an MQTT CONNECT sent "
                "without TLS (and without user name and password)",
                "connect without TLS (drop --tls, --cafile, --cert, --key, --insecure), or use "
                "the broker's TLS port (usually 8883: mosquitto's `listener` with `certfile`)",
                **details,
            )
        else:
            step.failed(
                outcome.error or "",
                f"port {self.port} speaks neither TLS nor plain MQTT",
                "check the port (-p): the broker's TLS port is usually 8883",
                **details,
            )

    def _certificate_problem(self, answer: TlsAnswer, outcome: Connected) -> tuple[str, str]:
        """The cause and the fix of a failed verification: the core's verdict, told with the
        certificate it was about."""
        error, leaf = outcome.error or "", answer.leaf
        names = _bare_names(leaf)
        if "not valid for that host name" in error:
            if not names and leaf.get("subject"):
                return (
                    f"the certificate names its host only in its subject ({leaf['subject']}), "
                    "which TLS clients ignore: the names belong in its subjectAltName",
                    f"re-issue the broker's certificate with {self.host} in its subjectAltName "
                    f"(openssl: -addext 'subjectAltName=DNS:{self.host}', or IP:...)",
                )
            return (
                f"the certificate is for {', '.join(names) or '?'}, not for {self.host}",
                "connect with -h set to a name the certificate covers"
                + (f" ({names[0]})" if names else "")
                + f", or re-issue the certificate with {self.host} in its subjectAltName",
            )
        if "has expired" in error:
            return (
                f"the certificate expired on {leaf.get('not_after', '?')}"
                + _days_ago(leaf.get("not_after")),
                "renew the broker's certificate (mosquitto: the file its `certfile` names) and "
                "restart the broker; or, if this machine's clock is wrong (it reads "
                f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}), set it right",
            )
        if "not valid yet" in error:
            return (
                f"the certificate is valid only from {leaf.get('not_before', '?')}",
                "check this machine's clock, or re-issue the certificate",
            )
        if "not signed by a trusted CA" in error:
            if leaf and leaf.get("subject") == leaf.get("issuer"):
                return (
                    f"the certificate is self-signed ({leaf.get('subject')}), and the client "
                    f"trusts {self.trusted()}",
                    "pass the broker's certificate itself with --cafile FILE (the file "
                    "mosquitto's `certfile` names), or issue one from a CA you pass with --cafile",
                )
            issuer = leaf.get("issuer", "a CA")
            return (
                f"the certificate is issued by {issuer}, which is not among what the client "
                f"trusts ({self.trusted()})",
                f"pass the certificate of the CA {issuer} with --cafile FILE (on mosquitto, the "
                "file its `cafile` line names)",
            )
        if "ALPN" in error:
            return (
                "the broker chose none of the ALPN protocols offered (--alpn): on this port it "
                "expects another one, or another protocol altogether",
                "offer the protocol the broker expects on this port (AWS IoT on port 443: "
                "--alpn x-amzn-mqtt-ca), or use its MQTT port (8883) without --alpn",
            )
        if "client certificate" in error:
            return (
                "the broker demands a client certificate it trusts",
                "pass --cert FILE --key FILE: a client certificate and its key, from a CA the "
                "broker trusts (mosquitto: `require_certificate true` with its `cafile`)",
            )
        return (
            "the TLS handshake failed",
            "check the TLS options (--cafile, --cert, --key) against the broker's TLS setup",
        )

    def _connect_verdict(self, step: Step, outcome: Connected) -> bool:
        details = {
            "rc": outcome.rc,
            "session_present": outcome.session_present,
            "error": outcome.error,
        }
        if outcome.ok:
            present = "yes" if outcome.session_present else "no"
            step.passed(
                f"accepted (CONNACK 0) as {self.client_id}, session present: {present}", **details
            )
            return True
        kind = outcome.kind()
        if outcome.rc is not None:
            cause, fix = self._refusal(outcome.rc, self.client_id)
        elif kind == "proxy":
            cause = "the proxy did not open the way to the broker (its answer is quoted above)"
            fix = (
                "check --proxy (its user name and password), and that the proxy may connect to "
                f"{self.target} (an HTTP proxy often allows port 443 only)"
            )
        elif kind == "websocket":
            cause = (
                "the server did not accept the WebSocket upgrade: a wrong path (--ws-path), "
                "a missing token (--ws-header, -P), or not a WebSocket listener"
            )
            fix = (
                "check the broker's WebSocket path and authentication (mosquitto: a `listener` "
                "with `protocol websockets`)"
            )
        elif kind == "timeout":
            cause = (
                "TCP works but nothing answers like an MQTT broker: no CONNACK within "
                f"{self.timeout:g} s (another service on this port, a stuck broker, or a proxy "
                "that accepts connections and forwards them nowhere)"
            )
            fix = (
                "check which program listens on the port (on the server: ss -ltnp) and that it "
                "is the broker's MQTT port (mosquitto: its `listener` lines)"
            )
        elif not self.user and self._password:
            cause = (
                "a password without a user name, which MQTT 3.1.1 forbids: the client refuses "
                "to send it (mosquitto would close the connection as a protocol error)"
            )
            fix = "pass the user name with -u along with -P"
        elif kind == "closed":
            cause = (
                "the port closed the connection on the MQTT CONNECT, without a CONNACK: it is "
                "not an MQTT port (a WebSocket listener?), or the broker drops this client "
                "(max_connections, a plugin)"
            )
            fix = "check the port (-p), and the broker's log for this connection"
        else:
            cause = "the reply was not an MQTT CONNACK: another protocol answers on this port"
            fix = "check the port (-p): the broker's MQTT port is usually 1883 (8883 with TLS)"
        step.failed(outcome.error or "", cause, fix, **details)
        return False

    def _refusal(self, rc: int, client_id: str) -> tuple[str, str]:
        """The usual causes of a CONNACK refusal, and their fixes."""
        if rc in (4, 5) and self.user is None:
            return (
                "anonymous access is off: the broker wants a user name and password "
                "(mosquitto 2 refuses anonymous clients unless `allow_anonymous true`)",
                "pass -u USER -P PASSWORD (a user of the broker's `password_file`); or, on a "
                "test broker only, set `allow_anonymous true`",
            )
        if rc in (4, 5):
            return (
                f"the broker refused user {self.user!r}: a wrong password, a user it does not "
                "know, or one not allowed to connect (mosquitto answers 5 to each)",
                "check the user name and password; on mosquitto, `mosquitto_passwd -b FILE "
                "USER PASSWORD` sets a password (then reload the broker)",
            )
        if rc == 2:
            return (
                f"the broker rejects the client id {client_id!r}: too long, or with characters "
                "it does not allow (MQTT 3.1.1 only promises 1 to 23 letters and digits), a "
                "prefix rule (mosquitto: `clientid_prefixes`), or a keepalive above its "
                "`max_keepalive`",
                "use a short client id of letters and digits (-i)",
            )
        if rc == 1:
            return (
                "the broker does not accept MQTT 3.1.1 (it may speak only MQTT 5)",
                "turn MQTT 3.1.1 on in the broker",
            )
        if rc == 3:
            return (
                "the broker says it cannot serve now (overloaded, starting or stopping)",
                "look at the broker's log; try again later",
            )
        return f"CONNACK return code {rc}", "look at the broker's log"

    # -- 5. round trip

    def _roundtrip(self, step: Step) -> bool:
        token = uuid.uuid4().hex.encode()
        received: list[bytes] = []

        def collect(topic: bytes, msg: bytes) -> None:
            received.append(msg)

        client = self._client
        client.set_callback(collect)
        started = time.monotonic()
        details: dict[str, Any] = {"topic": self.topic, "qos": None}
        try:
            client.subscribe(self.topic, 1)
            client.publish(self.topic, token, qos=1)
            deadline = started + self.timeout
            while token not in received and time.monotonic() < deadline:
                # The core's delivery takes a timeout (MicroPython's wait_msg() does not); it
                # returns the PUBLISH header byte, QoS in bits 1-2.
                header = client._core.deliver(collect, deadline - time.monotonic(), 1)
                if header is not None and token in received:
                    details["qos"] = (header >> 1) & 3
        except MQTTTimeout as e:
            step.failed(
                str(e),
                "the broker did not acknowledge the SUBSCRIBE or the QoS 1 PUBLISH in time",
                "look at the broker's log; a slow link needs a longer --timeout",
                **details,
            )
        except MQTTConnectionLost as e:
            step.failed(
                str(e),
                "the broker closed the connection on a SUBSCRIBE or PUBLISH (some brokers do "
                "so for a topic the user may not use)",
                _FIX_ACL,
                **details,
            )
        except MQTTException as e:  # umqtt.simple raises MQTTException(0x80) for a refusal
            step.failed(
                f"the broker refused the subscription to {self.topic} (SUBACK {e})",
                "an access rule (ACL) denies this user that topic",
                _FIX_ACL,
                **details,
            )
        else:
            if token in received:
                step.passed(f"subscribed, published and received on {self.topic}", **details)
            else:
                step.failed(
                    f"published with QoS 1 (PUBACK received), but nothing came back within "
                    f"{self.timeout:g} s",
                    "the broker acknowledged the PUBLISH and did not deliver it: an access rule "
                    "denies publishing or reading the topic (mosquitto acknowledges a denied "
                    "PUBLISH and drops it)",
                    _FIX_ACL,
                    **details,
                )
        step.seconds = time.monotonic() - started
        return step.status == PASS

    # -- 6. keepalive

    def _keepalive(self, step: Step, connected: Connected) -> None:
        client = self._client
        details = {"keepalive": KEEPALIVE, "watched": KEEPALIVE_WATCH}
        while time.monotonic() - connected.at < KEEPALIVE_WATCH and _link_up(client):
            time.sleep(_POLL)
        try:
            client.check_msg()  # raises with the core's reason when the link is gone
            client.publish(self.topic, b"", qos=1)
        except (MQTTException, OSError) as e:
            step.seconds = time.monotonic() - connected.at
            if "pingreq" in str(e).lower():
                cause = f"the broker did not answer a PINGREQ within {KEEPALIVE} s"
            else:
                cause = (
                    f"the connection ended after {step.seconds:.1f} s: the broker (or a proxy, "
                    "NAT or load balancer on the way) closes idle links, or another client took "
                    "the client id over"
                )
            step.failed(str(e), cause, "look at the broker's log for this client id", **details)
            return
        step.seconds = time.monotonic() - connected.at
        step.passed(
            f"PINGREQs answered: connected for {step.seconds:.1f} s at keepalive {KEEPALIVE} s",
            **details,
        )

    # -- 7. client id

    def _check_client_id(self, step: Step, client_id: str) -> None:
        """Takes the id over (clean_session=False keeps its session) and watches whether its
        owner takes it back: what two clients with one id do to each other for ever."""
        client = self._new_client(client_id)
        outcome = _connect(client, clean_session=False)
        details: dict[str, Any] = {
            "client_id": client_id,
            "session_present": outcome.session_present,
            "taken_over": False,
            "watched": self.timeout,
        }
        if not outcome.ok:
            step.seconds = outcome.seconds
            if outcome.rc is not None:
                cause, fix = self._refusal(outcome.rc, client_id)
            else:
                cause, fix = "the connection with this id failed", "see steps 2 to 4"
            step.failed(outcome.error or "", cause, fix, **details)
            return
        started = time.monotonic()
        try:
            while time.monotonic() - started < self.timeout:
                if not _link_up(client):
                    details["taken_over"] = True
                    break
                time.sleep(_POLL)
        finally:
            client.disconnect()  # DISCONNECT with clean_session=False: the session stays
        step.seconds = time.monotonic() - started
        if not outcome.session_present and not details["taken_over"]:
            # There was no session to keep: leave none behind either.
            _connect(client)
            client.disconnect()
        if details["taken_over"]:
            step.failed(
                f"another client took the id {client_id!r} back after {step.seconds:.1f} s",
                "two clients connect with the same client id: the broker closes the older "
                "connection whenever the other one connects, so each keeps losing its link and "
                "reconnecting (the endless 'connection lost, retrying')",
                "give every client its own client id; mosquitto's log shows the other one: "
                f"'Client {client_id} already connected, closing old connection'",
                **details,
            )
            return
        held = "; the broker kept a session for it" if outcome.session_present else ""
        step.passed(f"nobody took {client_id!r} back within {self.timeout:g} s{held}", **details)

    # -- the report

    def report(self, steps: list[Step]) -> dict[str, Any]:
        """The --json document (docs/api.md); it never holds the password."""
        return {
            "schema": SCHEMA,
            "ok": all(s.status != FAIL for s in steps),
            "target": {
                "host": self.host,
                "port": self.port,
                "tls": self.tls,
                "transport": self.route.get("transport", "tcp"),
                "proxy": None if self.proxy is None else self.proxy.shown,
                "client_id": self.client_id,
                "checked_client_id": self.checked_id,
                "username": self.user,
                "password_given": self._password is not None,
            },
            "steps": [s.as_json() for s in steps],
        }


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class _Proxy:
    """A --proxy URL's address, and how it is shown: never with its password."""

    address: tuple[str, int]
    shown: str

    @staticmethod
    def parse(url: str | None) -> _Proxy | None:
        """None without a proxy; the core has checked the URL already (in the constructor)."""
        if not url:
            return None
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port or 0
        user = f"{urllib.parse.unquote(parts.username)}@" if parts.username else ""
        where = f"[{host}]" if ":" in host else host
        return _Proxy((host, port), f"{parts.scheme}://{user}{where}:{port}")


def _random_id() -> str:
    return f"umqtt-doctor-{uuid.uuid4().hex[:8]}"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _connect_tcp(attempt: TcpAttempt, timeout: float) -> None:
    started = time.monotonic()
    try:
        with socket.socket(attempt.family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(attempt.sockaddr)
        attempt.outcome = "connected"
    except ConnectionRefusedError as e:
        attempt.outcome, attempt.error = "refused", str(e)
    except (socket.timeout, TimeoutError) as e:
        attempt.outcome, attempt.error = "timeout", str(e) or "timed out"
    except OSError as e:
        attempt.outcome = "unreachable" if e.errno in _UNREACHABLE else "error"
        attempt.error = str(e)
    attempt.seconds = time.monotonic() - started


def _chain(tls_socket: ssl.SSLSocket) -> list[bytes]:
    """The certificates the broker sent, leaf first (only the leaf before Python 3.13)."""
    unverified = getattr(tls_socket, "get_unverified_chain", None)
    chain = unverified() if unverified is not None else None
    if chain:
        return [bytes(c) for c in chain]
    leaf = tls_socket.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _describe_certificate(der: bytes) -> dict[str, Any]:
    """Subject, issuer, names and validity of a certificate, decoded by the standard library's
    own decoder (the one getpeercert() uses), which reads a file; its SHA-256 fingerprint."""
    described: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest()}
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:  # a Python without it (none so far): the fingerprint only
        return described
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(der))
        decoded: dict[str, Any] = decode(path)
    except (OSError, ValueError):
        return described
    finally:
        os.unlink(path)
    described["subject"] = _distinguished_name(decoded.get("subject", ()))
    described["issuer"] = _distinguished_name(decoded.get("issuer", ()))
    described["names"] = [
        f"{'IP' if kind == 'IP Address' else kind}:{value}"
        for kind, value in decoded.get("subjectAltName", ())
    ]
    for key, name in (("not_before", "notBefore"), ("not_after", "notAfter")):
        if name in decoded:
            when = datetime.datetime.fromtimestamp(
                ssl.cert_time_to_seconds(decoded[name]), datetime.timezone.utc
            )
            described[key] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return described


def _distinguished_name(rdns: Any) -> str:
    return ", ".join(f"{_SHORT_NAMES.get(k, k)}={v}" for rdn in rdns for k, v in rdn)


def _bare_names(certificate: dict[str, Any]) -> list[str]:
    return [n.split(":", 1)[1] for n in certificate.get("names", [])]


def _summary(certificate: dict[str, Any]) -> str:
    if "subject" not in certificate:
        return f"certificate sha256 {certificate.get('sha256', '?')[:16]}…"
    names = ", ".join(_bare_names(certificate)) or certificate["subject"]
    since, until = (str(certificate.get(k, "?"))[:10] for k in ("not_before", "not_after"))
    return f"certificate for {names} (issuer {certificate.get('issuer')}; valid {since} to {until})"


def _days_ago(iso: str | None) -> str:
    if not iso:
        return ""
    when = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
    days = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - when).days
    return f", {days} days ago" if days >= 0 else ""


# --------------------------------------------------------------------------- human output


class _Printer:
    """One line per step as it finishes; the cause and the fix under a failed one."""

    WIDTH = 100

    def __init__(self, out: Any) -> None:
        self.out = out
        self._collapsed = False
        try:
            "✓✗–→…".encode(getattr(out, "encoding", None) or "ascii")
            self.marks = _MARKS
        except (UnicodeEncodeError, LookupError):
            self.marks = _ASCII_MARKS

    def write(self, text: str) -> None:
        if self.marks is _ASCII_MARKS:
            text = text.replace("→", "->").replace("…", "...").encode("ascii", "replace").decode()
        self.out.write(text + "\n")
        self.out.flush()

    def header(self, doctor: Doctor) -> None:
        user = "no user name" if doctor.user is None else f"user {doctor.user!r}"
        if doctor._password is not None:
            user += " with a password"
        how = "TLS" if doctor.tls else "no TLS"
        checked = "" if doctor.checked_id is None else f", checking client id {doctor.checked_id}"
        self._fill(
            f"umqtt doctor: {doctor.target}{doctor.way()}, {how}, client id {doctor.client_id}, "
            f"{user}{checked}",
            14,
        )

    def step(self, step: Step) -> None:
        if step.status == SKIP and step.result.startswith("not run: "):
            # What follows a failed step is said once: "– 3 to 7 not run: step 2 failed".
            if self._collapsed:
                return
            self._collapsed = True
            if step.number < len(TITLES):
                self._fill(f"{self.marks[SKIP]} {step.number} to {len(TITLES)} {step.result}", 4)
                return
        took = "" if step.seconds is None else _duration(step.seconds)
        line = f"{self.marks[step.status]} {step.number} {step.title:<17}{took:>9}  {step.result}"
        self._fill(line, 32)
        for label, text in (("cause:", step.cause), ("fix:", step.fix)):
            if text:
                self._fill(f"    {label:<7}{text}", 11)

    def _fill(self, text: str, indent: int) -> None:
        self.write(
            textwrap.fill(
                text,
                self.WIDTH,
                subsequent_indent=" " * indent,
                break_on_hyphens=False,
                break_long_words=False,
            )
        )

    def footer(self, steps: list[Step]) -> None:
        failed = next((s for s in steps if s.status == FAIL), None)
        if failed is None:
            self.write("Every step passed.")
        else:
            self.write(f"Failed at step {failed.number} ({failed.title}).")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
