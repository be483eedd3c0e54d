# A MicroPython sensor node with umqtt.simple: publishes a DHT22 reading every second and obeys
# commands ("led on", "led off", "stop") on its command topic.
# Usage: main.py [BROKER [PORT]]
import sys
import time
import ubinascii
import machine
import dht
from umqtt.simple import MQTTClient

BROKER = sys.argv[1] if len(sys.argv) > 1 else "test.mosquitto.org"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
CLIENT_ID = b"esp32-" + ubinascii.hexlify(machine.unique_id())
TOPIC = b"sensors/" + CLIENT_ID
COMMANDS = TOPIC + b"/cmd"

led = machine.Pin(2, machine.Pin.OUT)
sensor = dht.DHT22(machine.Pin(4))
running = True


def on_command(topic, msg):
    global running
    print("command:", msg)
    if msg == b"led on":
        led.on()
    elif msg == b"led off":
        led.off()
    elif msg == b"stop":
        running = False


def main():
    client = MQTTClient(CLIENT_ID, BROKER, PORT, keepalive=30)
    client.set_callback(on_command)
    client.set_last_will(TOPIC + b"/online", b"0", retain=True)
    client.connect()
    client.publish(TOPIC + b"/online", b"1", retain=True)
    client.subscribe(COMMANDS)
    print("connected to %s as %s" % (BROKER, CLIENT_ID.decode()))
    last = time.ticks_ms() - 1000
    try:
        while running:
            client.check_msg()
            if time.ticks_diff(time.ticks_ms(), last) >= 1000:
                last = time.ticks_ms()
                sensor.measure()
                reading = b"%.1f,%.1f" % (sensor.temperature(), sensor.humidity())
                client.publish(TOPIC, reading)
            time.sleep_ms(20)
        client.publish(TOPIC + b"/online", b"0", retain=True)
    finally:
        client.disconnect()


main()
