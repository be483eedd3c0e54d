# Mutual TLS, device style: the client proves who it is with its own certificate and key (PEM
# text in ssl_params, as QuecPython scripts pass them) and checks the broker's certificate against
# ca.pem.
# Needs a broker with a TLS listener on 127.0.0.1:8883 that requires client certificates, and the
# files below in the current directory.
#
# Make the files with trustme (pip install trustme; its CLI `python -m trustme` writes only a
# server certificate, so use the library for the client certificate too):
#   python3 -c "
#   import trustme
#   ca = trustme.CA()
#   ca.cert_pem.write_to_path('ca.pem')
#   server = ca.issue_cert('127.0.0.1', 'localhost')
#   server.cert_chain_pems[0].write_to_path('server.pem')
#   server.private_key_pem.write_to_path('server.key')
#   client = ca.issue_cert('umqtt-tls-client')
#   client.cert_chain_pems[0].write_to_path('client.pem')
#   client.private_key_pem.write_to_path('client.key')"
# and start mosquitto with `mosquitto -c tls.conf`, tls.conf holding:
#   listener 8883 127.0.0.1
#   allow_anonymous true
#   cafile ca.pem
#   certfile server.pem
#   keyfile server.key
#   require_certificate true
# Unlike the device, the PC verifies the broker's certificate: "cadata" (or "ca_certs": path) names
# the CA to trust; "cert_reqs": ssl.CERT_NONE would skip the check, as the device does.
# 双向 TLS 示例：客户端用自己的证书和私钥（PEM 文本）登录，并用 ca.pem 校验服务器证书。
from umqtt import MQTTClient

CA_FILE = "ca.pem"  # 信任的 CA 证书 (the CA that signed the broker's certificate)
CERT_FILE = "client.pem"  # 客户端证书 (this client's certificate)
KEY_FILE = "client.key"  # 客户端私钥 (this client's private key: PKCS#1, PKCS#8 or SEC1)
TOPIC = b"/public/TEST/quecpython/tls"

state = 0


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def sub_cb(topic: bytes, msg: bytes) -> None:
    global state
    print("subscribe recv:")
    print(topic, msg)
    state = 1


ssl_params = {
    "cert": read(CERT_FILE),
    "key": read(KEY_FILE),
    "cadata": read(CA_FILE),
    "server_side": False,
    "do_handshake": True,
}

# 创建一个 TLS 的 mqtt 实例 (create an MQTT client over TLS; port 0 would also mean 8883)
c = MQTTClient("umqtt_tls_client", "127.0.0.1", 8883, ssl=True, ssl_params=ssl_params)
c.set_callback(sub_cb)
# 建立连接：TLS 握手失败时 connect() 会说明原因 (connect: a failed handshake says why)
c.connect()
c.subscribe(TOPIC, 1)
print("Connected to 127.0.0.1:8883 over mutual TLS, subscribed to", TOPIC.decode())
c.publish(TOPIC, b"hello over mutual TLS", qos=1)
print("Published to", TOPIC.decode())

while True:
    c.wait_msg()  # 阻塞函数，监听消息 (blocking: waits for a message)
    if state == 1:
        break

# 关闭连接 (close the connection)
c.disconnect()
