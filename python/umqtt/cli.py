"""``python -m umqtt pub|sub``: publish or subscribe from a shell, like mosquitto_pub/mosquitto_sub;
``python -m umqtt run``: run a device script on the PC (see umqtt.runner).

python -m umqtt pub -t sensors/1 -m 21.5 -q 1
python -m umqtt sub -t 'sensors/#' -C 10 -v
python -m umqtt run main.py
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from . import MQTTException, __version__, runner
from .simple import MQTTClient

_EXIT_ERROR = 1
_EXIT_TIMEOUT = 27  # what mosquitto_sub exits with when -W expires
# -V as mosquitto_pub/mosquitto_sub name the protocol versions, and the client's `version`.
_PROTOCOL_VERSIONS = {"mqttv31": 3, "31": 3, "mqttv311": 4, "311": 4, "mqttv5": 5, "5": 5}


def _protocol_version(name: str) -> int:
    try:
        return _PROTOCOL_VERSIONS[name.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown protocol version {name!r}: use mqttv311 (311) or mqttv31 (31)"
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


def _repeatable(group: Any, flag: str, metavar: str, what: str) -> None:
    group.add_argument(flag, action="append", metavar=metavar, help=f"{what} (repeatable)")


def _common_options(parser: argparse.ArgumentParser) -> None:
    """Options both pub and sub take."""
    _connection_options(parser)
    parser.add_argument("-q", "--qos", type=int, default=0, choices=(0, 1, 2), help="QoS (0)")
    parser.add_argument("-k", "--keepalive", type=int, default=60, help="keepalive seconds (60)")
    parser.add_argument(
        "-V",
        "--protocol-version",
        type=_protocol_version,
        default=4,
        metavar="VERSION",
        help="mqttv311 (or 311, the default) or mqttv31 (31): MQTT 3.1.1 or 3.1",
    )
    parser.add_argument("-t", "--topic", action="append", required=True, help="topic (repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m umqtt", description="MQTT from the command line, on the umqtt core."
    )
    parser.add_argument("--version", action="version", version=f"umqtt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{pub,sub,run,doctor}")

    pub = commands.add_parser("pub", add_help=False, help="publish a message")
    _common_options(pub)
    body = pub.add_mutually_exclusive_group(required=True)
    body.add_argument("-m", "--message", help="the message")
    body.add_argument("-f", "--file", help="send this file's contents as the message")
    body.add_argument("-s", "--stdin-file", action="store_true", help="send stdin as the message")
    body.add_argument("-n", "--null-message", action="store_true", help="send an empty message")
    pub.add_argument("-r", "--retain", action="store_true", help="retain the message")
    pub.add_argument("--repeat", type=int, default=1, metavar="N", help="publish N times (1)")

    sub = commands.add_parser("sub", add_help=False, help="print messages as they arrive")
    _common_options(sub)
    sub.add_argument("-C", "--count", type=int, metavar="N", help="exit after N messages")
    sub.add_argument("-W", "--timeout", type=float, metavar="S", help="exit after S seconds")
    sub.add_argument("-v", "--verbose", action="store_true", help="print 'topic payload'")

    run = commands.add_parser(
        "run",
        help="run a QuecPython/MicroPython device script on this PC",
        description="Run a device script unchanged: python -m umqtt run [OPTIONS] SCRIPT [ARGS...]",
    )
    runner.add_arguments(run)

    from . import doctor  # imports this module's option helpers, so not at the top

    doctor.add_parser(commands)
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


def _client(args: argparse.Namespace) -> MQTTClient:
    use_tls, ssl_params = _tls(args)
    server, route = _route(args)
    return MQTTClient(
        args.id or f"umqtt-cli-{uuid.uuid4().hex[:8]}",
        server,
        args.port,
        user=args.username,
        password=args.pw,
        keepalive=args.keepalive,
        ssl=use_tls,
        ssl_params=ssl_params,
        version=args.protocol_version,
        **route,
    )


def _message(args: argparse.Namespace) -> bytes:
    if args.file is not None:
        with open(args.file, "rb") as f:
            return f.read()
    if args.stdin_file:
        return sys.stdin.buffer.read()
    if args.null_message:
        return b""
    return str(args.message).encode()


def _publish(args: argparse.Namespace) -> int:
    message = _message(args)
    client = _client(args)
    client.connect()
    try:
        for _ in range(args.repeat):
            for topic in args.topic:
                client.publish(topic, message, args.retain, args.qos)
    finally:
        client.disconnect()
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    received = 0

    def show(topic: bytes, payload: bytes) -> None:
        nonlocal received
        received += 1
        out = sys.stdout.buffer
        out.write(topic + b" " + payload + b"\n" if args.verbose else payload + b"\n")
        out.flush()

    client = _client(args)
    client.set_callback(show)
    client.connect()
    try:
        for topic in args.topic:
            client.subscribe(topic, args.qos)
        # -W counts from here, as mosquitto_sub's does, however many messages arrive meanwhile.
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        while args.count is None or received < args.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return _EXIT_TIMEOUT
            # The core's delivery call takes a timeout; MicroPython's wait_msg() does not.
            if client._core.deliver(show, left, 1) is None:
                return _EXIT_TIMEOUT
    finally:
        client.disconnect()
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
    run = _publish if args.command == "pub" else _subscribe
    try:
        return run(args)
    except (MQTTException, OSError, ValueError, TypeError) as e:
        print(f"umqtt {args.command}: {e}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        return 130
