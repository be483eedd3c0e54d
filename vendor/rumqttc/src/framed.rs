use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::mqttbytes::{self, v4::*};
use crate::{Incoming, MqttState, StateError};

/// umqtt patch: the descriptor of a TCP socket, for `Network::with_quick_ack_socket` (Linux only:
/// elsewhere there is never one).
#[cfg(target_os = "linux")]
pub(crate) type QuickAckSocket = std::os::fd::RawFd;
#[cfg(not(target_os = "linux"))]
pub(crate) type QuickAckSocket = std::convert::Infallible;

/// Network transforms packets <-> frames efficiently. It takes
/// advantage of pre-allocation, buffering and vectorization when
/// appropriate to achieve performance
pub struct Network {
    /// Frame MQTT packets from network connection
    framed: Framed<Box<dyn AsyncReadWrite>, Codec>,
    /// Maximum readv count
    max_readb_count: usize,
    /// umqtt patch: the TCP socket under `framed`, to keep acknowledging at once (`quick_ack`).
    quick_ack_socket: Option<QuickAckSocket>,
}

impl Network {
    pub fn new(
        socket: impl AsyncReadWrite + 'static,
        max_incoming_size: usize,
        max_outgoing_size: usize,
    ) -> Network {
        let socket = Box::new(socket) as Box<dyn AsyncReadWrite>;
        let codec = Codec {
            max_incoming_size,
            max_outgoing_size,
        };
        let framed = Framed::new(socket, codec);

        Network {
            framed,
            max_readb_count: 10,
            quick_ack_socket: None,
        }
    }

    /// umqtt patch: acknowledge every TCP segment from the broker at once (Linux only).
    /// Linux delays an ACK up to 40 ms while it expects to piggyback it on a reply, and an MQTT
    /// client may not reply for a while (a QoS 1 message is acknowledged once the application has
    /// handled it). A broker with Nagle's algorithm on, mosquitto's default, then holds back its
    /// next small packet, such as the PUBACK of our own publish, until that ACK: 44 ms per QoS 1
    /// publish to a topic the client subscribes to. The kernel leaves quick-ACK mode by itself,
    /// so `quick_ack` sets it again after every read and every flush that sends something.
    pub(crate) fn with_quick_ack_socket(mut self, socket: Option<QuickAckSocket>) -> Self {
        self.quick_ack_socket = socket;
        self.quick_ack();
        self
    }

    fn quick_ack(&self) {
        let Some(socket) = self.quick_ack_socket else {
            return;
        };
        #[cfg(not(target_os = "linux"))]
        match socket {}
        #[cfg(target_os = "linux")]
        {
            let on: libc::c_int = 1;
            // SAFETY: `socket` is the descriptor of the stream `framed` owns, so it is open while
            // `self` lives; the option is a plain int. A failure only means delayed ACKs again.
            unsafe {
                libc::setsockopt(
                    socket,
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }

    /// Reads and returns a single packet from network
    pub async fn read(&mut self) -> Result<Incoming, StateError> {
        let read = self.framed.next().await;
        self.quick_ack();
        match read {
            Some(Ok(packet)) => Ok(packet),
            Some(Err(mqttbytes::Error::InsufficientBytes(_))) => unreachable!(),
            Some(Err(e)) => Err(StateError::Deserialization(e)),
            None => Err(StateError::ConnectionAborted),
        }
    }

    /// Read packets in bulk. This allow replies to be in bulk. This method is used
    /// after the connection is established to read a bunch of incoming packets
    pub async fn readb(&mut self, state: &mut MqttState) -> Result<(), StateError> {
        // wait for the first read
        let mut res = self.framed.next().await;
        self.quick_ack();
        let mut count = 1;
        loop {
            match res {
                Some(Ok(packet)) => {
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

        Ok(())
    }

    /// Serializes packet into write buffer
    pub async fn write(&mut self, packet: Packet) -> Result<(), StateError> {
        self.framed
            .feed(packet)
            .await
            .map_err(StateError::Deserialization)
    }

    pub async fn flush(&mut self) -> Result<(), crate::state::StateError> {
        // umqtt patch: the event loop flushes after every read, mostly with nothing to send.
        let sending = !self.framed.write_buffer().is_empty();
        let flushed = self
            .framed
            .flush()
            .await
            .map_err(StateError::Deserialization);
        if sending {
            self.quick_ack();
        }
        flushed
    }
}

pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T> AsyncReadWrite for T where T: AsyncRead + AsyncWrite + Send + Unpin {}
