# Last will, device style: a "device" client sets a last will and then drops its connection
# without DISCONNECT (close()); the broker publishes the will to a second client that watches the
# will topic. Needs the broker of scripts/demo.sh on 127.0.0.1:18830:
#   ./scripts/demo.sh examples/last_will.py
# 遗嘱消息示例：设备客户端设置遗嘱后不发送 DISCONNECT 直接断开，服务器把遗嘱发给订阅者。
import sys
import time

from umqtt import MQTTClient

WILL_TOPIC = b"/public/TEST/quecpython/will"
state = 0


def sub_cb(topic: bytes, msg: bytes) -> None:
    global state
    print("will recv:")
    print(topic, msg)
    state = 1


# 第二个客户端：订阅遗嘱主题 (second client: subscribes to the will topic)
watcher = MQTTClient("umqtt_watcher", "127.0.0.1", "18830")
watcher.set_callback(sub_cb)
watcher.connect()
print("watcher subscribed:", watcher.subscribe(WILL_TOPIC, 1))

# 设备客户端：设置遗嘱后连接 (device client: set the last will, then connect)
device = MQTTClient("umqtt_device", "127.0.0.1", "18830")
device.set_last_will(WILL_TOPIC, b"umqtt_device is offline", retain=False, qos=1)
device.connect()
print("device connected, last will set on", WILL_TOPIC)

# 不发送 DISCONNECT 直接断开 (drop the link without DISCONNECT: the broker publishes the will)
device.close()
print("device closed without DISCONNECT")

# 等待遗嘱消息，最多 10 秒 (wait for the will, at most 10 s)
deadline = time.time() + 10
while state == 0 and time.time() < deadline:
    watcher.check_msg()  # 非阻塞 (never blocks)
    time.sleep(0.1)

# 关闭连接 (disconnect)
watcher.disconnect()
if state == 0:
    print("no will received within 10 s")
    sys.exit(1)
