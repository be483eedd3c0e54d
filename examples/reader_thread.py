# A reader thread, device style: on a module one starts it with _thread.start_new_thread(); here
# a threading.Thread loops c.wait_msg() while the main thread publishes at QoS 1 on the same
# client. publish() returns True once the broker has acknowledged (PUBACK), False if it could not.
# Needs the broker of scripts/demo.sh on 127.0.0.1:18830:
#   ./scripts/demo.sh examples/reader_thread.py
# 读线程示例：子线程循环 wait_msg() 接收消息，主线程以 QoS 1 发布消息。
import sys
import threading
from typing import Any

from umqtt import MQTTClient

TOPIC = b"/public/TEST/quecpython/reader"
COUNT = 5
received: list[bytes] = []
print_lock = threading.Lock()  # keeps the two threads' lines from mixing


def log(*args: Any) -> None:
    with print_lock:
        print(*args)


def sub_cb(topic: bytes, msg: bytes) -> None:
    log("reader thread recv:", topic, msg)
    received.append(msg)


def reader() -> None:
    # 设备上常写作 while True: c.wait_msg() (on a device this is often an endless loop)
    while len(received) < COUNT:
        c.wait_msg()  # 阻塞函数，监听消息 (blocking: waits for a message)


# 创建一个mqtt实例 (create an MQTT client instance)
c = MQTTClient("umqtt_reader_thread", "127.0.0.1", "18830")
c.set_callback(sub_cb)
c.connect()
print("subscribed:", c.subscribe(TOPIC, 1))

# 启动读线程 (start the reader thread)
t = threading.Thread(target=reader, name="mqtt-reader", daemon=True)
t.start()

# 主线程发布消息 (the main thread publishes)
for i in range(COUNT):
    ok = c.publish(TOPIC, "message " + str(i), qos=1)
    log("publish message", i, "QoS 1 ->", ok)

t.join(10)
print("received", len(received), "of", COUNT, "messages")

# 关闭连接 (disconnect)
c.disconnect()
if len(received) < COUNT:
    sys.exit(1)
