"""The command line's ``-D COMMAND NAME VALUE`` (``-D COMMAND user-property NAME VALUE``): MQTT 5
properties as mosquitto_pub/mosquitto_sub name them (their manual's "PROPERTIES"), turned into the
dicts umqtt takes (`umqtt.properties`). Checking the values (types, ranges) is the core's."""

from __future__ import annotations

from typing import Any

# Values are text, but for these (numbers; the two request flags are 0/1 in mosquitto's, booleans
# in umqtt's) and correlation-data (its UTF-8).
_NUMBERS = {
    "maximum-packet-size",
    "message-expiry-interval",
    "payload-format-indicator",
    "receive-maximum",
    "session-expiry-interval",
    "subscription-identifier",
    "topic-alias",
    "topic-alias-maximum",
    "will-delay-interval",
}
_FLAGS = {"request-problem-information", "request-response-information"}
_MESSAGE = {
    "content-type",
    "correlation-data",
    "message-expiry-interval",
    "payload-format-indicator",
    "response-topic",
    "user-property",
}
# What umqtt takes for each command (mosquitto's less authentication-method/-data).
COMMANDS: dict[str, set[str]] = {
    "connect": {
        "maximum-packet-size",
        "receive-maximum",
        "request-problem-information",
        "request-response-information",
        "session-expiry-interval",
        "topic-alias-maximum",
        "user-property",
    },
    "publish": _MESSAGE | {"topic-alias"},
    # (mosquitto_sub takes a subscription identifier too, though its manual does not say so)
    "subscribe": {"subscription-identifier", "user-property"},
    "will": _MESSAGE | {"will-delay-interval"},
}
# Which commands each tool takes, as mosquitto_pub and mosquitto_sub do.
TOOL_COMMANDS = {
    "pub": ("connect", "publish", "pubrel", "disconnect", "auth", "will"),
    "sub": ("connect", "subscribe", "unsubscribe", "disconnect", "auth", "will"),
}
_NOT_SUPPORTED = {
    "auth": "enhanced authentication (AUTH) is not supported",
    "authentication-method": "enhanced authentication (AUTH) is not supported",
    "authentication-data": "enhanced authentication (AUTH) is not supported",
    "pubrel": "umqtt sends PUBREL without properties",
    "disconnect": "umqtt sends DISCONNECT without properties",
    "unsubscribe": "umqtt sends UNSUBSCRIBE without properties",
}


def parse(tool: str, given: list[list[str]]) -> dict[str, dict[str, Any]]:
    """Each -D's words -> {command: properties}, e.g. {"publish": {"content_type": "text"}};
    ValueError naming the -D that is wrong and why."""
    found: dict[str, dict[str, Any]] = {}
    for words in given:
        command, name, values = _split(tool, words)
        value = _value("-D " + " ".join(words), name, values)
        properties = found.setdefault(command, {})
        if name == "user-property":
            properties.setdefault("user_properties", []).append(value)
        else:  # mosquitto's names are umqtt's keys with hyphens (COMMANDS lists them)
            properties[name.replace("-", "_")] = value
    return found


def _split(tool: str, words: list[str]) -> tuple[str, str, list[str]]:
    shown = "-D " + " ".join(words)
    if len(words) < 2:
        raise ValueError(f"{shown}: give -D COMMAND NAME VALUE (user-property: KEY VALUE)")
    command, name, values = words[0].lower(), words[1].lower(), words[2:]
    if command not in TOOL_COMMANDS[tool]:
        known = ", ".join(c for c in TOOL_COMMANDS[tool] if c in COMMANDS)
        raise ValueError(f"{shown}: {tool} takes properties for {known}, not {words[0]!r}")
    for reason in (_NOT_SUPPORTED.get(command), _NOT_SUPPORTED.get(name)):
        if reason is not None:
            raise ValueError(f"{shown}: {reason}")
    if name not in COMMANDS[command]:
        known = ", ".join(sorted(COMMANDS[command]))
        raise ValueError(f"{shown}: {command} takes {known}; not {words[1]!r}")
    form = "KEY VALUE" if name == "user-property" else "VALUE"
    if len(values) != len(form.split()):
        raise ValueError(f"{shown}: give -D {command} {name} {form}")
    return command, name, values


def _value(shown: str, name: str, values: list[str]) -> Any:
    if name == "user-property":
        return (values[0], values[1])
    [text] = values
    if name == "correlation-data":
        return text.encode()
    if name not in _NUMBERS and name not in _FLAGS:
        return text
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{shown}: {name} is a number") from None
    if name not in _FLAGS:
        return number
    if number not in (0, 1):
        raise ValueError(f"{shown}: {name} is 0 or 1")
    return bool(number)
