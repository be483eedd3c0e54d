# The MQTT side: one client, a reader thread that runs wait_msg(), commands handed to a callback.
import _thread
import log
from umqtt import MQTTClient

logger = log.getLogger("cloud")


class Cloud(object):
    def __init__(self, client_id, config, on_command):
        self.client_id = client_id
        self.on_command = on_command
        self.running = False
        self.client = MQTTClient(
            client_id, config["server"], config["port"], keepalive=config["keepalive"]
        )
        self.client.set_callback(self._message)
        self.client.error_register_cb(self._error)

    def topic(self, name):
        return "device/{}/{}".format(self.client_id, name)

    def _message(self, topic, msg):
        self.on_command(msg.decode())

    def _error(self, text):
        logger.warning("mqtt: {}".format(text))

    def _reader(self):
        while self.running:
            self.client.wait_msg()

    def start(self):
        self.client.connect()
        self.client.subscribe(self.topic("cmd"), 1)
        self.running = True
        _thread.start_new_thread(self._reader, ())
        logger.info("connected to {}:{} as {}".format(self.client.server, self.client.port, self.client_id))

    def send(self, name, text, qos=1):
        return self.client.publish(self.topic(name), text, qos=qos)

    def stop(self):
        self.running = False
        self.client.disconnect()
