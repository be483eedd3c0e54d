# The echo demo (test.py) from QuecPython's umqtt guide, as a device runs it, with one change: the
# broker address. It talks to the broker that scripts/demo.sh starts on 127.0.0.1:18830 (the guide
# uses mq.tongxinmao.com). Run it with ./scripts/demo.sh.
# QuecPython umqtt 使用指导中的 echo 示例，仅修改了服务器地址。
from umqtt import MQTTClient

state = 0


def sub_cb(topic: bytes, msg: bytes) -> None:
    global state
    print("subscribe recv:")
    print(topic, msg)
    state = 1


# 创建一个mqtt实例 (create an MQTT client instance)
c = MQTTClient("umqtt_client", "127.0.0.1", "18830")
# 设置消息回调 (set the message callback)
c.set_callback(sub_cb)
# 建立连接 (connect)

c.connect()
# 订阅主题 (subscribe to a topic)
c.subscribe(b"/public/TEST/quecpython")
print("Connected to 127.0.0.1, subscribed to /public/TEST/quecpython topic")
# 发布消息 (publish a message)
c.publish(b"/public/TEST/quecpython", b"my name is Kingka!")
print("Publish topic: /public/TEST/quecpython, msg: my name is Quecpython")

while True:
    c.wait_msg()  # 阻塞函数，监听消息 (blocking: waits for a message)
    if state == 1:
        break

# 关闭连接 (close the connection)
c.disconnect()
