use std::sync::Arc;

use futures_util::{FutureExt, SinkExt};
use tokio_stream::StreamExt;
use tokio_util::codec::Framed;

use crate::framed::{AsyncReadWrite, Frames, QuickAck, QuickAckSocket};

use super::mqttbytes::v5::Packet;
use super::{mqttbytes, Codec, Incoming, MqttState, PacketObserver, StateError};

/// Network transforms packets <-> frames efficiently. It takes
/// advantage of pre-allocation, buffering and vectorization when
/// appropriate to achieve performance
pub struct Network {
    /// Frame MQTT packets from network connection
    framed: Frames<Codec>,
    /// Maximum readv count
    max_readb_count: usize,
    /// umqtt patch: the TCP socket under `framed`, to keep its ACKs from being delayed.
    quick_ack: Option<QuickAck>,
    /// umqtt patch: told of every packet written and read.
    observer: Option<Arc<dyn PacketObserver>>,
}
impl Network {
    pub fn new(socket: impl AsyncReadWrite + 'static, max_incoming_size: Option<u32>) -> Network {
        let socket = Box::new(socket) as Box<dyn AsyncReadWrite>;
        let codec = Codec {
            max_incoming_size,
            max_outgoing_size: None,
        };
        let framed = Framed::new(socket, codec);

        Network {
            framed,
            max_readb_count: 10,
            quick_ack: None,
            observer: None,
        }
    }

    /// umqtt patch: see `crate::framed::QuickAck` (Linux only).
    pub(crate) fn with_quick_ack_socket(mut self, socket: Option<QuickAckSocket>) -> Self {
        self.quick_ack = QuickAck::on(socket);
        self
    }

    /// umqtt patch: see `MqttOptions::set_packet_observer`.
    pub(crate) fn with_observer(mut self, observer: Option<Arc<dyn PacketObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// umqtt patch: tells the observer of a packet read.
    fn observe_incoming(&self, packet: &Packet) {
        if let Some(observer) = &self.observer {
            observer.incoming(packet);
        }
    }

    pub fn set_max_outgoing_size(&mut self, max_outgoing_size: Option<u32>) {
        self.framed.codec_mut().max_outgoing_size = max_outgoing_size;
    }

    /// Reads and returns a single packet from network
    pub async fn read(&mut self) -> Result<Incoming, StateError> {
        let read = QuickAck::next_packet(&mut self.quick_ack, &mut self.framed).await;
        QuickAck::read_done(&mut self.quick_ack, &self.framed, false);
        match read {
            Some(Ok(packet)) => {
                self.observe_incoming(&packet);
                Ok(packet)
            }
            Some(Err(mqttbytes::Error::InsufficientBytes(_))) => unreachable!(),
            Some(Err(e)) => Err(StateError::Deserialization(e)),
            None => Err(StateError::ConnectionAborted),
        }
    }

    /// Read packets in bulk. This allow replies to be in bulk. This method is used
    /// after the connection is established to read a bunch of incoming packets
    pub async fn readb(&mut self, state: &mut MqttState) -> Result<(), StateError> {
        // wait for the first read
        let mut res = QuickAck::next_packet(&mut self.quick_ack, &mut self.framed).await;
        let mut count = 1;
        loop {
            match res {
                Some(Ok(packet)) => {
                    self.observe_incoming(&packet);
                    // umqtt patch: a broker sends one CONNACK, in the handshake (MQTT 5 3.2);
                    // another one set this connection's limits again, unnoticed.
                    if matches!(packet, Packet::ConnAck(_)) {
                        return Err(StateError::WrongPacket);
                    }
                    if let Some(outgoing) = state.handle_incoming_packet(packet)? {
                        self.write(outgoing).await?;
                    }

                    count += 1;
                    if count >= self.max_readb_count {
                        break;
                    }
                }
                Some(Err(mqttbytes::Error::InsufficientBytes(_))) => unreachable!(),
                Some(Err(e)) => return Err(StateError::Deserialization(e)),
                None => return Err(StateError::ConnectionAborted),
            }
            // do not wait for subsequent reads
            match self.framed.next().now_or_never() {
                Some(r) => res = r,
                _ => break,
            };
        }
        let awaiting_reply = state.inflight > 0 || state.await_pingresp;
        QuickAck::read_done(&mut self.quick_ack, &self.framed, awaiting_reply);
        Ok(())
    }

    /// Serializes packet into write buffer
    pub async fn write(&mut self, packet: Packet) -> Result<(), StateError> {
        if let Some(observer) = &self.observer {
            observer.outgoing(&packet);
        }
        self.framed
            .feed(packet)
            .await
            .map_err(StateError::Deserialization)
    }

    pub async fn flush(&mut self) -> Result<(), StateError> {
        // umqtt patch: through `QuickAck::flush`.
        QuickAck::flush(&mut self.quick_ack, &mut self.framed)
            .await
            .map_err(StateError::Deserialization)
    }
}

// umqtt patch: a CONNACK after the handshake.
#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_connack_after_the_handshake_is_a_wrong_packet() {
        let (client, mut broker) = tokio::io::duplex(64);
        let mut network = Network::new(client, None);
        let mut state = MqttState::new(10, false);
        broker.write_all(&[0x20, 0x03, 0x00, 0x00, 0x00]).await.unwrap();
        let read = network.readb(&mut state).await;
        assert!(matches!(read, Err(StateError::WrongPacket)), "{read:?}");
    }
}
