# micropython-lib's umqtt.simple subscribe example (example_sub.py), with a broker address of
# 127.0.0.1:18830 (the broker of scripts/demo.sh) and an end: it publishes COUNT messages to its
# own topic and stops after receiving them. Run it with
#   ./scripts/demo.sh examples/example_sub.py
# While it runs you may also publish to it, e.g.
#   mosquitto_pub -h 127.0.0.1 -p 18830 -t foo_topic -m hi
import sys

from umqtt.simple import MQTTClient

SERVER = "127.0.0.1"
PORT = 18830
TOPIC = b"foo_topic"
COUNT = 3
received = 0


# Received messages from subscriptions will be delivered to this callback
def sub_cb(topic: bytes, msg: bytes) -> None:
    global received
    received += 1
    print((topic, msg))


def main(server: str = SERVER, port: int = PORT) -> None:
    c = MQTTClient("umqtt_sub", server, port)
    c.set_callback(sub_cb)
    c.connect()
    c.subscribe(TOPIC, 1)
    for i in range(COUNT):
        c.publish(TOPIC, b"message %d" % i, qos=1)  # to ourselves, so that the loop ends
    while received < COUNT:
        # Blocking wait for one message; returns its PUBLISH header byte (0x30 | qos << 1 | retain)
        op = c.wait_msg()
        if op is not None:
            print("wait_msg returned", hex(op))
    c.disconnect()
    print("received", received, "messages")


if __name__ == "__main__":
    main()
    sys.exit(0 if received >= COUNT else 1)
