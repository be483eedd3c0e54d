# A QuecPython project as it lives in /usr on an EC600/EC800 module: main.py plus its helpers,
# imported as usr.app_config and usr.cloud. It waits for the network, connects to the broker in
# /usr/config.json, sends itself a "ping" command, answers it, then reports its signal and battery
# three times on a timer and ends.
# On a PC: python -m umqtt run examples/quecpython_project/main.py (scripts/demo.sh does it).
import checkNet
import modem
import net
import osTimer
import ujson
import utime
import log
from misc import Power
from usr.app_config import load
from usr.cloud import Cloud

PROJECT_NAME = "umqtt_demo"
PROJECT_VERSION = "1.0.0"

log.basicConfig(level=log.INFO)
logger = log.getLogger("main")


class App(object):
    def __init__(self, config):
        self.config = config
        self.reports = 0
        self.cloud = Cloud(modem.getDevImei(), config, self.on_command)
        self.timer = osTimer()

    def on_command(self, command):
        logger.info("command: {}".format(command))
        if command == "ping":
            self.cloud.send("reply", "pong")
            if self.reports == 0:
                self.timer.start(self.config["report_ms"], 1, self.report)  # now report

    def report(self, arg):
        self.reports += 1
        telemetry = {"csq": net.csqQueryPoll(), "vbatt": Power.getVbatt(), "uptime_ms": utime.ticks_ms()}
        self.cloud.send("telemetry", ujson.dumps(telemetry))
        logger.info("report {}: {}".format(self.reports, telemetry))
        if self.reports >= self.config["reports"]:
            self.timer.stop()
            self.cloud.stop()
            logger.info("done")

    def start(self):
        self.cloud.start()
        self.cloud.client.publish(self.cloud.topic("cmd"), "ping", qos=1)  # a command to ourselves


if __name__ == "__main__":
    checknet = checkNet.CheckNetwork(PROJECT_NAME, PROJECT_VERSION)
    checknet.poweron_print_once()
    stage, state = checknet.wait_network_connected(30)
    if (stage, state) == (3, 1):
        App(load()).start()
    else:
        logger.error("network not ready: stage {}, state {}".format(stage, state))
