# micropython-lib's umqtt.simple publish example (example_pub.py), unchanged apart from the broker
# address: it talks to the broker that scripts/demo.sh starts on 127.0.0.1:18830. Run it with
#   ./scripts/demo.sh examples/example_pub.py
# and watch with e.g.: mosquitto_sub -h 127.0.0.1 -p 18830 -t foo_topic -v
from umqtt.simple import MQTTClient

SERVER = "127.0.0.1"
PORT = 18830


def main(server: str = SERVER, port: int = PORT) -> None:
    c = MQTTClient("umqtt_pub", server, port)
    c.connect()
    for i in range(3):
        # publish() returns None, and raises OSError if the message could not be sent
        c.publish(b"foo_topic", b"hello %d" % i)
        print("published hello", i)
    # QoS 1: returns once the broker has acknowledged it (PUBACK)
    c.publish(b"foo_topic", b"hello at QoS 1", qos=1)
    print("published hello at QoS 1")
    c.disconnect()


if __name__ == "__main__":
    main()
