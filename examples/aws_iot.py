# AWS IoT Core: mutual TLS with the device certificate the console issued, on port 8883, or on
# port 443 with the ALPN protocol AWS IoT expects there ("x-amzn-mqtt-ca") where only 443 is open.
# Set ENDPOINT (AWS IoT console, Settings: "Device data endpoint") and the three files, then:
#   python examples/aws_iot.py          (8883)
#   python examples/aws_iot.py 443      (443 with ALPN)
# The thing's policy must allow iot:Connect as CLIENT_ID and iot:Publish/Subscribe/Receive on TOPIC.
import sys
from typing import Any

from umqtt import MQTTClient

ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
CLIENT_ID = "thing-1"
TOPIC = "things/thing-1/hello"
TLS = {
    "certfile": "device.pem.crt",  # the device certificate
    "keyfile": "private.pem.key",  # its private key
    "ca_certs": "AmazonRootCA1.pem",  # the CA AWS IoT's certificates come from
}


def client(port: int) -> MQTTClient:
    ssl_params: dict[str, Any] = dict(TLS)
    if port == 443:
        ssl_params["alpn_protocols"] = ["x-amzn-mqtt-ca"]
    return MQTTClient(CLIENT_ID, ENDPOINT, port, keepalive=60, ssl=True, ssl_params=ssl_params)


def show(topic: bytes, msg: bytes) -> None:
    print(topic.decode(), msg.decode())


def main() -> None:
    c = client(int(sys.argv[1]) if len(sys.argv) > 1 else 8883)
    c.set_callback(show)
    c.connect()
    c.subscribe(TOPIC, 1)
    c.publish(TOPIC, b"hello from umqtt", qos=1)
    c.wait_msg()
    c.disconnect()


if __name__ == "__main__":
    main()
