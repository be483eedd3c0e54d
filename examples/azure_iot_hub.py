# Azure IoT Hub with a device's symmetric key: the password is a SAS token, which expires, so it
# is a callable: the client calls it at every connect and reconnect for a fresh one.
# MQTT on port 8883, or over WebSocket on port 443 where only 443 is open:
#   python examples/azure_iot_hub.py            (8883)
#   python examples/azure_iot_hub.py websockets (443, wss://HUB/$iothub/websocket)
# Set HUB, DEVICE and KEY (the device's primary key, from the portal).
import base64
import hashlib
import hmac
import sys
import time
import urllib.parse

from umqtt import MQTTClient

HUB = "my-hub.azure-devices.net"
DEVICE = "sensor-1"
KEY = "base64 device key from the portal"
TOKEN_SECONDS = 3600


def sas_token() -> str:
    """A shared access signature for this device, valid for TOKEN_SECONDS."""
    uri = urllib.parse.quote(f"{HUB}/devices/{DEVICE}", safe="")
    expiry = int(time.time()) + TOKEN_SECONDS
    mac = hmac.new(base64.b64decode(KEY), f"{uri}\n{expiry}".encode(), hashlib.sha256)
    signature = urllib.parse.quote(base64.b64encode(mac.digest()), safe="")
    return f"SharedAccessSignature sr={uri}&sig={signature}&se={expiry}"


def client(websockets: bool) -> MQTTClient:
    user = f"{HUB}/{DEVICE}/?api-version=2021-04-12"
    if websockets:
        return MQTTClient(
            DEVICE,
            HUB,
            443,
            user=user,
            password=sas_token,
            ssl=True,
            ssl_params={},
            transport="websockets",
            ws_path="/$iothub/websocket",
        )
    return MQTTClient(DEVICE, HUB, 8883, user=user, password=sas_token, ssl=True, ssl_params={})


def main() -> None:
    c = client(sys.argv[1:] == ["websockets"])
    c.connect()
    # Device-to-cloud messages go to devices/{device}/messages/events/.
    c.publish(f"devices/{DEVICE}/messages/events/", b'{"temperature": 21.5}', qos=1)
    c.disconnect()


if __name__ == "__main__":
    main()
