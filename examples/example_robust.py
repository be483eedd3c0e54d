# umqtt.robust, after micropython-lib's example_sub_robust.py and example_resubscribe_robust.py,
# with a broker address of 127.0.0.1:18830 (the broker of scripts/demo.sh) and an end: it polls
# check_msg() with short sleeps for a bounded number of iterations, publishing to itself now and
# then. If the broker goes away meanwhile, publish() and check_msg() reconnect (every DELAY
# seconds), the subclass re-subscribes, and the loop carries on. Run it with
#   ./scripts/demo.sh examples/example_robust.py
import sys
import time
from typing import Any, Optional, Union

import umqtt.robust

SERVER = "127.0.0.1"
PORT = 18830
TOPIC = b"foo_topic/robust"
ITERATIONS = 50  # 50 x 0.1 s: ends by itself after about 5 s
received: list[bytes] = []


# umqtt.robust does not re-subscribe after reconnect() by itself: it reconnects with
# connect(False) and relies on the broker keeping the session. A broker that restarted may have
# lost it, so re-subscribe in connect() whenever no session was present.
class MyMQTTClient(umqtt.robust.MQTTClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics: list[Union[str, bytes]] = []

    def connect(self, clean_session: bool = True, timeout: Optional[float] = None) -> int:
        if not super().connect(clean_session, timeout):
            # Session was not restored - need to resubscribe
            for topic in self.topics:
                self.subscribe(topic)
            return False  # Session was not restored
        return True  # Session was restored

    # **options: the MQTT 5 keywords of subscribe() (no_local, properties, ...), passed on; an
    # override without them still runs, but mypy --strict calls it incompatible.
    def subscribe(self, topic: Union[str, bytes], qos: int = 1, **options: Any) -> None:
        print("Subscribing to", topic)
        super().subscribe(topic, qos, **options)
        if topic not in self.topics:
            self.topics.append(topic)


def sub_cb(topic: bytes, msg: bytes) -> None:
    received.append(msg)
    print((topic, msg))


c = MyMQTTClient("umqtt_robust", SERVER, PORT)
# Print diagnostic messages when retries/reconnects happen
c.DEBUG = True
c.set_callback(sub_cb)
c.connect()
c.subscribe(TOPIC)

sent = 0
for i in range(ITERATIONS):
    if i % 10 == 0:
        c.publish(TOPIC, b"tick %d" % i, qos=1)  # to ourselves
        sent += 1
    # Non-blocking: delivers a waiting message, or returns None at once
    c.check_msg()
    # Sleep to avoid 100% CPU usage (a real app would do useful work here)
    time.sleep(0.1)

c.disconnect()
print("sent", sent, "received", len(received))
sys.exit(0 if len(received) == sent else 1)
