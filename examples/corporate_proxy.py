# A broker reached through a corporate proxy: an HTTP proxy (CONNECT) or a SOCKS5 one. TLS runs
# end to end through the tunnel and is verified against the broker's name; the proxy's password
# never shows in logs, repr() or errors. A proxy that refuses says why (its HTTP status, or the
# SOCKS reply in words).
#   python examples/corporate_proxy.py http://me:s3cret@proxy.corp.example:3128
#   python examples/corporate_proxy.py socks5h://proxy.corp.example:1080
# Many HTTP proxies allow CONNECT to port 443 only: then use the broker's WebSocket port (443,
# transport="websockets") or its ALPN port 443 (see examples/aws_iot.py).
import sys

from umqtt import MQTTClient

BROKER = "test.mosquitto.org"
PORT = 8886  # test.mosquitto.org: TLS with a certificate the system trusts
TOPIC = "umqtt/example/proxy"


def main() -> None:
    proxy = sys.argv[1] if len(sys.argv) > 1 else "http://proxy.corp.example:3128"
    c = MQTTClient("umqtt-proxy-example", BROKER, PORT, ssl=True, ssl_params={}, proxy=proxy)
    print(c)  # shows the broker and the proxy, never the proxy's password
    c.connect()
    c.publish(TOPIC, b"through the proxy", qos=1)
    c.disconnect()


if __name__ == "__main__":
    main()
