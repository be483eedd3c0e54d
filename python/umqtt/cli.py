"""``python -m umqtt pub|sub``: publish or subscribe from a shell, like mosquitto_pub/mosquitto_sub;
``python -m umqtt run``: run a device script on the PC (see umqtt.runner);
``python -m umqtt bench``: the project's benchmark against a broker of yours.

python -m umqtt pub -t sensors/1 -m 21.5 -q 1
python -m umqtt sub -t 'sensors/#' -C 10 -v
python -m umqtt sub -t 'sensors/#' -F '%t %q %r %p' -T sensors/noisy
python -m umqtt run main.py
python -m umqtt bench -h broker.local -p 1883 --quick --libs umqtt
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import logging
import ssl
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Union

from . import MQTTException, __version__, runner
from . import _cli_properties as cli_properties
from ._native import topic_matches
from .aio import Message
from .aio import MQTTClient as AsyncClient
from .simple import MQTTClient

_EXIT_ERROR = 1
_EXIT_TIMEOUT = 27  # what mosquitto_sub exits with when -W expires
# -V as mosquitto_pub/mosquitto_sub name the protocol versions, or by their numbers in the
# protocol (umqtt's `version`), and that number.
_PROTOCOL_VERSIONS = {
    "mqttv31": 3,
    "31": 3,
    "3": 3,
    "mqttv311": 4,
    "311": 4,
    "4": 4,
    "mqttv5": 5,
    "5": 5,
}


def _protocol_version(name: str) -> int:
    try:
        return _PROTOCOL_VERSIONS[name.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown protocol version {name!r}: use mqttv311 (311, 4), mqttv5 (5) or mqttv31 "
            "(31, 3)"
        ) from None


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """Where and how to connect, named as mosquitto_pub/mosquitto_sub name them."""
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-h", "--host", default="localhost", help="broker host (localhost)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port (1883, 8883 with TLS)")
    parser.add_argument("-i", "--id", help="client id (default: a random one)")
    parser.add_argument("-u", "--username", help="user name")
    parser.add_argument("-P", "--pw", help="password")
    tls = parser.add_argument_group("TLS (any of these turns TLS on)")
    tls.add_argument("--tls", action="store_true", help="TLS, verified with the system's CAs")
    tls.add_argument("--cafile", help="CA certificate(s) to verify the broker with (PEM file)")
    tls.add_argument("--cert", help="client certificate for mutual TLS (PEM file)")
    tls.add_argument("--key", help="client private key for mutual TLS (PEM file)")
    tls.add_argument("--insecure", action="store_true", help="do not verify the broker")
    _repeatable(
        tls, "--alpn", "PROTOCOL", "offer this ALPN protocol (AWS IoT on 443: x-amzn-mqtt-ca)"
    )
    way = parser.add_argument_group("the way to the broker")
    way.add_argument(
        "--transport",
        choices=("tcp", "websockets", "unix"),
        help="tcp (default), websockets (wss with TLS) or unix (-h is the socket's path)",
    )
    way.add_argument(
        "--unix", metavar="PATH", help="connect to this Unix socket (--transport unix)"
    )
    way.add_argument("--ws-path", metavar="PATH", help="WebSocket path (/mqtt)")
    _repeatable(way, "--ws-header", "'NAME: VALUE'", "a header of the WebSocket upgrade request")
    way.add_argument(
        "--proxy",
        metavar="URL",
        help="through this proxy: http://[user:password@]host:port, socks5://... or "
        "socks5h://... (the proxy resolves the name)",
    )
    way.add_argument("--ipv6-only", action="store_true", help="connect over IPv6 only (ipvtype=1)")


def _repeatable(group: Any, flag: str, metavar: str, what: str, *names: str) -> None:
    group.add_argument(*names, flag, action="append", metavar=metavar, help=f"{what} (repeatable)")


def _common_options(parser: argparse.ArgumentParser) -> None:
    """Options both pub and sub take."""
    _connection_options(parser)
    parser.add_argument("-q", "--qos", type=int, default=0, choices=(0, 1, 2), help="QoS (0)")
    parser.add_argument("-k", "--keepalive", type=int, default=60, help="keepalive seconds (60)")
    parser.add_argument(
        "-V",
        "--protocol-version",
        type=_protocol_version,
        metavar="VERSION",
        help="mqttv311 (311 or 4; the default without -D), mqttv5 (5; the default with -D) or "
        "mqttv31 (31 or 3): MQTT 3.1.1, 5 or 3.1",
    )
    parser.add_argument(
        "-D",
        "--property",
        nargs="+",
        action="append",
        metavar="WORD",
        help="an MQTT 5 property, as mosquitto's: -D COMMAND NAME VALUE, or -D COMMAND "
        "user-property KEY VALUE; COMMAND: connect, will, and publish (pub) or subscribe (sub) "
        "(repeatable; implies -V mqttv5)",
    )
    parser.add_argument("-t", "--topic", action="append", help="topic (repeatable)")
    parser.add_argument(
        "-c",
        "--disable-clean-session",
        action="store_true",
        help="keep the session on the broker (subscriptions, QoS 1/2 messages); needs -i",
    )
    parser.add_argument(
        "-d", "--debug", action="store_true", help="print every packet sent and received"
    )
    will = parser.add_argument_group("will (what the broker publishes if the link dies)")
    will.add_argument("--will-topic", metavar="TOPIC", help="the will's topic")
    will.add_argument("--will-payload", metavar="TEXT", help="its message (empty by default)")
    will.add_argument("--will-qos", type=int, choices=(0, 1, 2), help="its QoS (0)")
    will.add_argument("--will-retain", action="store_true", help="retain it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m umqtt", description="MQTT from the command line, on the umqtt core."
    )
    parser.add_argument("--version", action="version", version=f"umqtt {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{pub,sub,run,doctor,bench}"
    )

    pub = commands.add_parser("pub", add_help=False, help="publish a message")
    _common_options(pub)
    body = pub.add_mutually_exclusive_group(required=True)
    body.add_argument("-m", "--message", help="the message")
    body.add_argument("-f", "--file", help="send this file's contents as the message")
    body.add_argument("-s", "--stdin-file", action="store_true", help="send stdin as the message")
    body.add_argument(
        "-l", "--stdin-line", action="store_true", help="send each line of stdin as a message"
    )
    body.add_argument("-n", "--null-message", action="store_true", help="send an empty message")
    pub.add_argument("-r", "--retain", action="store_true", help="retain the message")
    pub.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="publish N times (1; not with -l)"
    )

    sub = commands.add_parser("sub", add_help=False, help="print messages as they arrive")
    _common_options(sub)
    sub.add_argument("-C", "--count", type=int, metavar="N", help="exit after N messages")
    sub.add_argument("-W", "--timeout", type=float, metavar="S", help="exit after S seconds")
    sub.add_argument("-v", "--verbose", action="store_true", help="print 'topic payload'")
    sub.add_argument(
        "-F",
        "--format",
        metavar="FORMAT",
        help="print each message as FORMAT: %%t topic, %%p payload, %%q QoS, %%r retained (0/1), "
        "%%l payload length, %%x/%%X payload in hex, %%j JSON, %%I ISO 8601 time, %%U Unix "
        "time, %%%% a %%; MQTT 5 properties: %%P user properties (key:value ...), %%C content "
        "type, %%D correlation data, %%E message expiry interval, %%F payload format "
        "indicator, %%R response topic, %%S subscription identifier, %%A topic alias; "
        "\\n \\t \\r \\0 \\e \\\\ (overrides -v)",
    )
    sub.add_argument("--json", action="store_true", help="one JSON object per message (-F '%%j')")
    sub.add_argument("-N", action="store_true", dest="no_newline", help="no newline after each")
    sub.add_argument(
        "-R", action="store_true", dest="no_stale", help="skip retained (stale) messages"
    )
    _repeatable(sub, "--filter-out", "FILTER", "do not print topics matching FILTER", "-T")
    _repeatable(sub, "--unsubscribe", "FILTER", "unsubscribe from FILTER after subscribing", "-U")
    sub.add_argument(
        "-E",
        action="store_true",
        dest="exit_when_subscribed",
        help="exit once the subscriptions (and -U) are acknowledged",
    )

    run = commands.add_parser(
        "run",
        help="run a QuecPython/MicroPython device script on this PC",
        description="Run a device script unchanged: python -m umqtt run [OPTIONS] SCRIPT [ARGS...]",
    )
    runner.add_arguments(run)

    from . import doctor  # imports this module's option helpers, so not at the top

    doctor.add_parser(commands)

    from ._bench import run as bench

    benchmark = commands.add_parser(
        "bench",
        add_help=False,
        help="run the benchmark against a broker",
        description="The project's benchmark scenarios against the broker given (tables of "
        "msg/s, round trips and CPU per message, as benches/README.md shows them). Every client "
        "library that is installed runs; --libs umqtt runs umqtt's alone.",
    )
    benchmark.add_argument("--help", action="help", help="show this help and exit")
    benchmark.add_argument("-h", "--host", required=True, help="broker host")
    benchmark.add_argument("-p", "--port", type=int, default=1883, help="its MQTT port (1883)")
    benchmark.add_argument(
        "--ws-port", type=int, metavar="PORT", help="its WebSocket port (the WebSocket rows)"
    )
    bench.add_arguments(benchmark, None)
    return parser


def _tls(args: argparse.Namespace) -> tuple[bool, dict[str, Any]]:
    params: dict[str, Any] = {
        "ca_certs": args.cafile,
        "certfile": args.cert,
        "keyfile": args.key,
        "alpn_protocols": args.alpn,
    }
    if args.insecure:
        params["cert_reqs"] = ssl.CERT_NONE
    enabled = args.tls or args.insecure or any(v is not None for v in params.values())
    return enabled, params


def _route(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The server (-h, or the path of --unix) and the core's transport options that were given."""
    server = args.host
    options: dict[str, Any] = {}
    if args.unix is not None:
        server, options["transport"] = args.unix, "unix"
    elif args.transport is not None:
        options["transport"] = args.transport
    if args.ws_path is not None:
        options["ws_path"] = args.ws_path
    if args.ws_header:
        headers = [h.split(":", 1) for h in args.ws_header]
        if any(len(h) != 2 for h in headers):
            raise ValueError("--ws-header takes 'NAME: VALUE'")
        options["ws_headers"] = {name.strip(): value.strip() for name, value in headers}
    if args.proxy is not None:
        options["proxy"] = args.proxy
    if args.ipv6_only:
        options["ipvtype"] = 1
    return server, options


_Client = Union[MQTTClient, AsyncClient]


def _client(args: argparse.Namespace, make: Callable[..., _Client], **more: Any) -> _Client:
    """A client of the class `make` with the connection options and the will of `args`."""
    use_tls, ssl_params = _tls(args)
    server, route = _route(args)
    client = make(
        client_id=args.id or f"umqtt-cli-{uuid.uuid4().hex[:8]}",
        server=server,
        port=args.port,
        user=args.username,
        password=args.pw,
        keepalive=args.keepalive,
        ssl=use_tls,
        ssl_params=ssl_params,
        version=args.protocol_version,
        connect_properties=args.properties.get("connect"),
        **route,
        **more,
    )
    if args.will_topic is not None:
        payload = "" if args.will_payload is None else args.will_payload
        client.set_last_will(
            args.will_topic,
            payload,
            args.will_retain,
            args.will_qos or 0,
            properties=args.properties.get("will"),
        )
    return client


def _check(args: argparse.Namespace) -> None:
    """What mosquitto_pub/mosquitto_sub refuse before connecting."""
    will_parts = args.will_payload is not None or args.will_qos is not None or args.will_retain
    if will_parts and args.will_topic is None:
        raise ValueError("--will-payload, --will-qos and --will-retain need --will-topic")
    if args.disable_clean_session and args.id is None:
        raise ValueError("-c (a session kept on the broker) needs a client id: -i ID")
    if args.command == "pub" and not args.topic:
        raise ValueError("give a topic: -t TOPIC")
    if args.command == "sub" and not args.topic and not args.unsubscribe:
        raise ValueError("give a topic: -t FILTER (or -U FILTER)")
    if args.command == "sub" and args.format is not None and args.json:
        raise ValueError("-F and --json both say how to print: give one")
    if args.property and args.protocol_version not in (None, 5):
        raise ValueError("-D (MQTT 5 properties) needs MQTT 5: -V mqttv5, or no -V")
    if args.will_topic is None and any(words[0].lower() == "will" for words in args.property or []):
        raise ValueError("-D will ... needs --will-topic")


def _settle(args: argparse.Namespace) -> None:
    """What the options decide together: the protocol version (MQTT 5 with -D, as mosquitto's
    clients, else MQTT 3.1.1) and `args.properties`, each -D command's ({} without -D)."""
    if args.protocol_version is None:
        args.protocol_version = 5 if args.property else 4
    args.properties = cli_properties.parse(args.command, args.property or [])


@contextlib.contextmanager
def _packets_to_stderr(enabled: bool) -> Iterator[None]:
    """-d: umqtt's records, every packet (DEBUG) and the connection's events, on stderr."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("umqtt")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _messages(args: argparse.Namespace) -> Iterator[bytes]:
    """The messages to publish: one (-m, -f, -s, -n), or one per line of stdin (-l) as it comes,
    without its newline (an empty line is an empty message, as mosquitto_pub sends it)."""
    if args.stdin_line:
        for line in sys.stdin.buffer:
            yield line[:-1] if line.endswith(b"\n") else line
        return
    if args.file is not None:
        with open(args.file, "rb") as f:
            message = f.read()
    elif args.stdin_file:
        message = sys.stdin.buffer.read()
    elif args.null_message:
        message = b""
    else:
        message = str(args.message).encode()
    for _ in range(args.repeat):
        yield message


def _publish(args: argparse.Namespace) -> int:
    if args.stdin_line and args.repeat != 1:
        raise ValueError("--repeat is for one message (-m, -f, -s, -n), not -l")
    messages = _messages(args)
    if not args.stdin_line:
        messages = iter(list(messages))  # read the file or stdin before connecting
    client = _client(args, MQTTClient)
    assert isinstance(client, MQTTClient)
    client.connect(clean_session=not args.disable_clean_session)
    try:
        for message in messages:
            for topic in args.topic:
                properties = args.properties.get("publish")
                client.publish(topic, message, args.retain, args.qos, properties=properties)
    finally:
        client.disconnect()
    return 0


# -F: what each %-sequence prints of a message, and the \-escapes.
_Field = Callable[[Message], bytes]


def _iso_time() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")


def _json(message: Message) -> bytes:
    """%j: mosquitto_sub's JSON object (without its packet id `mid`), with an MQTT 5 message's
    `properties` as mosquitto_sub names them; a payload (or correlation data) that is not UTF-8 as
    base64 (`payload_base64`: mosquitto_sub writes its bytes, which is not JSON)."""
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    fields: list[tuple[str, Any]] = [
        ("tst", stamp),
        ("topic", message.topic),
        ("qos", message.qos),
        ("retain", int(message.retain)),
        ("payloadlen", len(message.payload)),
    ]
    if message.properties:
        fields.append(("properties", _json_properties(dict(message.properties))))
    fields.append(_text_or_base64("payload", message.payload))
    return _json_object(fields).encode()


# umqtt's property keys -> mosquitto_sub's names in %j.
_JSON_PROPERTY_NAMES = {
    "subscription_identifiers": "subscription-identifier",
    "topic_alias": "topic-alias",
    "response_topic": "response-topic",
    "user_properties": "user-properties",
    "content_type": "content-type",
    "correlation_data": "correlation-data",
    "payload_format_indicator": "payload-format-indicator",
    "message_expiry_interval": "message-expiry-interval",
}


def _json_properties(properties: dict[str, Any]) -> list[tuple[str, Any]]:
    """%j's `properties`: user properties as an object whose keys may repeat, as mosquitto_sub's
    (a pair list, see `_json_object`); the first subscription identifier, as mosquitto_sub's."""
    found: list[tuple[str, Any]] = []
    for key, value in properties.items():
        name = _JSON_PROPERTY_NAMES[key]
        if key == "subscription_identifiers":
            found.append((name, value[0]))
        elif key == "correlation_data":
            found.append(_text_or_base64(name, value))
        else:
            found.append((name, value))
    return found


def _text_or_base64(name: str, data: bytes) -> tuple[str, str]:
    try:
        return name, data.decode()
    except UnicodeDecodeError:
        return f"{name}_base64", base64.b64encode(data).decode()


def _json_object(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object of `pairs`, in order, a name as often as it comes; a value that is a list
    of pairs is such an object too (user properties)."""

    def text(value: Any) -> str:
        if isinstance(value, list):
            return _json_object(value)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    return "{" + ",".join(f"{text(name)}:{text(value)}" for name, value in pairs) + "}"


def _unix_time() -> bytes:
    ns = time.time_ns()
    return f"{ns // 10**9}.{ns % 10**9:09d}".encode()


def _received(key: str, show: Callable[[Any], bytes]) -> _Field:
    """An MQTT 5 property of the message as `show` prints it; nothing when it has none."""

    def field(message: Message) -> bytes:
        value = message.properties.get(key)
        return b"" if value is None else show(value)

    return field


def _number(value: int) -> bytes:
    return b"%d" % value


def _user_properties(pairs: list[tuple[str, str]]) -> bytes:
    """%P as mosquitto_sub prints it: key:value, in order, repeats kept, one space apart."""
    return b" ".join(f"{name}:{value}".encode() for name, value in pairs)


_FIELDS: dict[str, _Field] = {
    "t": lambda m: m.topic.encode(),
    "p": lambda m: m.payload,
    "q": lambda m: b"%d" % m.qos,
    "r": lambda m: b"1" if m.retain else b"0",
    "l": lambda m: b"%d" % len(m.payload),
    "x": lambda m: m.payload.hex().encode(),
    "X": lambda m: m.payload.hex().upper().encode(),
    "j": _json,
    "I": lambda m: _iso_time().encode(),
    "U": lambda m: _unix_time(),
    "%": lambda m: b"%",
    # MQTT 5 properties (mosquitto_sub prints the first subscription identifier only).
    "A": _received("topic_alias", _number),
    "C": _received("content_type", str.encode),
    "D": _received("correlation_data", bytes),
    "E": _received("message_expiry_interval", _number),
    "F": _received("payload_format_indicator", _number),
    "P": _received("user_properties", _user_properties),
    "R": _received("response_topic", str.encode),
    "S": _received("subscription_identifiers", lambda ids: _number(ids[0]) if ids else b""),
}
_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "0": b"\0", "e": b"\x1b", "\\": b"\\"}


def _output_format(text: str) -> Callable[[Message], bytes]:
    """-F FORMAT compiled once: the bytes printed for a message (without the newline)."""
    parts: list[bytes | _Field] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c not in "%\\":
            parts.append(c.encode())
            i += 1
            continue
        key = text[i + 1 : i + 2]
        if c == "%" and key in _FIELDS:
            parts.append(_FIELDS[key])
        elif c == "\\" and key in _ESCAPES:
            parts.append(_ESCAPES[key])
        else:
            known = " ".join(f"%{k}" for k in _FIELDS) + " " + " ".join(f"\\{k}" for k in _ESCAPES)
            raise ValueError(f"-F: {c}{key} is not supported; this command knows {known}")
        i += 2

    def formatted(message: Message) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p(message) for p in parts)

    return formatted


def _printer(args: argparse.Namespace) -> Callable[[Message], bytes]:
    """What sub prints for a message: -F/--json, else -v's 'topic payload', else the payload."""
    if args.format is not None or args.json:
        return _output_format("%j" if args.json else args.format)
    if args.verbose:
        return lambda m: m.topic.encode() + b" " + m.payload
    return lambda m: m.payload


def _subscribe(args: argparse.Namespace) -> int:
    show = _printer(args)
    end = b"" if args.no_newline else b"\n"
    for topic_filter in args.filter_out or []:
        topic_matches(topic_filter, "")  # an invalid filter fails here, before connecting

    def wanted(message: Message) -> bool:
        if args.no_stale and message.retain:
            return False
        return not any(topic_matches(f, message.topic) for f in args.filter_out or [])

    async def run() -> int:
        client = _client(args, AsyncClient, reconn=False)
        assert isinstance(client, AsyncClient)
        await client.connect(clean_session=not args.disable_clean_session)
        try:
            for topic in args.topic or []:
                await client.subscribe(topic, args.qos, properties=args.properties.get("subscribe"))
            for topic in args.unsubscribe or []:
                await client.unsubscribe(topic)
            if args.exit_when_subscribed:
                return 0
            # -W counts from here, as mosquitto_sub's does, however many messages arrive.
            deadline = None if args.timeout is None else time.monotonic() + args.timeout
            printed = 0
            messages = client.messages()
            while args.count is None or printed < args.count:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return _EXIT_TIMEOUT
                try:
                    message = await asyncio.wait_for(messages.__anext__(), left)
                except asyncio.TimeoutError:
                    return _EXIT_TIMEOUT
                if wanted(message):
                    out = sys.stdout.buffer
                    out.write(show(message) + end)
                    out.flush()
                    printed += 1
        finally:
            await client.disconnect()
        return 0

    return asyncio.run(run())


def _bench(args: argparse.Namespace) -> int:
    from ._bench import run as bench

    remote = bench.RemoteBroker(args.host, args.port, args.ws_port)
    if not remote.alive():
        raise OSError(f"nothing accepts connections on {args.host}:{args.port}")
    if args.ws_port is None:
        print("note: no --ws-port: the WebSocket rows stay empty", file=sys.stderr)
    bench.run(args, lambda: remote, [bench.FLOOR])
    return 0


def _run_script(args: argparse.Namespace) -> int:
    """``run``: the runner reports the script's own errors itself (traceback, exit status)."""
    return runner.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run_script(args)
    if args.command == "doctor":
        from .doctor import run as diagnose

        return diagnose(args)
    try:
        if args.command == "bench":
            return _bench(args)
        _check(args)
        _settle(args)
        with _packets_to_stderr(args.debug):
            return _publish(args) if args.command == "pub" else _subscribe(args)
    except (MQTTException, OSError, ValueError, TypeError) as e:
        print(f"umqtt {args.command}: {e}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        return 130
