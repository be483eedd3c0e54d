"""MicroPython's ``umqtt.robust`` (micropython-lib 1.0) on the umqtt core: ``umqtt.simple`` plus
reconnect-and-retry on ``OSError`` in ``publish``, ``wait_msg`` and ``check_msg``."""

from __future__ import annotations

import time

from . import Payload, Text, simple
from .properties import PublishProperties
from .simple import MQTTException

__all__ = ["MQTTClient", "MQTTException"]


class MQTTClient(simple.MQTTClient):
    DELAY = 2
    DEBUG = False

    def delay(self, i: int) -> None:
        time.sleep(self.DELAY)

    def log(self, in_reconnect: bool, e: BaseException) -> None:
        if self.DEBUG:
            if in_reconnect:
                print(f"mqtt reconnect: {e!r}")
            else:
                print(f"mqtt: {e!r}")

    def reconnect(self) -> int:
        """Calls ``self.connect(False)`` until it succeeds (subclasses may override connect)."""
        i = 0
        while True:
            try:
                return self.connect(False)
            except OSError as e:
                self.log(True, e)
                i += 1
                self.delay(i)

    def publish(
        self,
        topic: Text,
        msg: Payload,
        retain: bool = False,
        qos: int = 0,
        *,
        properties: PublishProperties | None = None,
    ) -> None:
        while True:
            try:
                return super().publish(topic, msg, retain, qos, properties=properties)
            except OSError as e:
                self.log(False, e)
            self.reconnect()

    def wait_msg(self) -> int | None:
        while True:
            try:
                return super().wait_msg()
            except OSError as e:
                self.log(False, e)
            self.reconnect()

    def check_msg(self, attempts: int = 2) -> int | None:
        while attempts:
            try:
                return super().check_msg()
            except OSError as e:
                self.log(False, e)
                self.reconnect()
            attempts -= 1
        return None
