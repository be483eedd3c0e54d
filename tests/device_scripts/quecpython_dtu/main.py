# A QuecPython DTU: serial data up to MQTT, commands down from MQTT, a heartbeat on a timer.
import checkNet
import dataCall
import net
import osTimer
import ujson
import utime
import _thread
import log
from machine import UART
from misc import Power
from queue import Queue
from usr.settings import Settings
from usr.mqtt_iot import MqttIot

PROJECT_NAME = "QuecPython_DTU"
PROJECT_VERSION = "1.0.0"

log.basicConfig(level=log.INFO)
logger = log.getLogger("DTU")


class Dtu(object):
    def __init__(self, settings):
        self.settings = settings
        self.commands = Queue()
        uart = settings.get("uart")
        self.uart = UART(uart["port"], uart["baudrate"], 8, 0, 1, 0)
        self.cloud = MqttIot(
            settings.imei,
            settings.get("server"),
            settings.get("port"),
            settings.get("keepalive"),
            settings.get("downlink_topic"),
            self.on_downlink,
        )
        self.timer = osTimer()

    def on_downlink(self, topic, msg):
        self.commands.put(msg)

    def heartbeat(self, arg):
        status = {
            "imei": self.settings.imei,
            "csq": net.csqQueryPoll(),
            "ip": dataCall.getInfo(1, 0)[2][2],
            "uptime_ms": utime.ticks_ms(),
        }
        self.cloud.send(self.settings.get("status_topic"), ujson.dumps(status), qos=0)

    def uplink(self):
        while True:
            data = self.uart.read(1024)
            if data:
                logger.info("uplink {} bytes".format(len(data)))
                self.cloud.send(self.settings.get("uplink_topic"), data)
            utime.sleep_ms(50)

    def downlink(self):
        while True:
            command = self.commands.get()
            if command == b"reboot":
                logger.info("reboot requested")
                self.timer.stop()
                Power.powerRestart()
            self.uart.write(command)

    def run(self):
        self.cloud.init()
        self.timer.start(self.settings.get("heartbeat_ms"), 1, self.heartbeat)
        _thread.start_new_thread(self.uplink, ())
        _thread.start_new_thread(self.downlink, ())


if __name__ == "__main__":
    checknet = checkNet.CheckNetwork(PROJECT_NAME, PROJECT_VERSION)
    checknet.poweron_print_once()
    stagecode, subcode = checknet.wait_network_connected(30)
    if stagecode == 3 and subcode == 1:
        settings = Settings()
        logger.info("boot {}".format(settings.save_boot()))
        Dtu(settings).run()
    else:
        logger.error("network not ready: {} {}".format(stagecode, subcode))
