# The cloud side of the DTU: an MQTT client with its own reader thread, as QuecPython DTUs have.
import _thread
import utime
import log
from umqtt import MQTTClient

logger = log.getLogger("MqttIot")


class MqttIot(object):
    def __init__(self, client_id, server, port, keepalive, downlink_topic, on_message):
        self.downlink_topic = downlink_topic
        self.on_message = on_message
        self.lock = _thread.allocate_lock()
        self.client = MQTTClient(client_id, server, port, keepalive=keepalive, reconn=True)
        self.client.set_callback(self.__callback)
        self.client.error_register_cb(self.__error)

    def __callback(self, topic, msg):
        logger.info("downlink {}: {}".format(topic.decode(), msg.decode()))
        self.on_message(topic.decode(), msg)

    def __error(self, err):
        logger.warning("mqtt error: {}".format(err))

    def init(self):
        self.client.connect()
        self.client.subscribe(self.downlink_topic, 1)
        logger.info("connected, subscribed to {}".format(self.downlink_topic))
        _thread.start_new_thread(self.__listen, ())

    def __listen(self):
        while True:
            try:
                self.client.wait_msg()
            except Exception as e:
                logger.error("wait_msg: {}".format(e))
                utime.sleep_ms(100)

    def send(self, topic, data, qos=1):
        with self.lock:
            return self.client.publish(topic, data, qos=qos)

    def status(self):
        return self.client.get_mqttsta()
