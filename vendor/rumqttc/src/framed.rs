use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{self, Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::mqttbytes::{self, v4::*};
use crate::{Incoming, MqttState, PacketObserver, StateError};

/// umqtt patch: the descriptor of a TCP socket, for `Network::with_quick_ack_socket` (Linux only:
/// elsewhere there is never one).
#[cfg(target_os = "linux")]
pub(crate) type QuickAckSocket = std::os::fd::RawFd;
#[cfg(not(target_os = "linux"))]
pub(crate) type QuickAckSocket = std::convert::Infallible;

/// umqtt patch: how long a TCP ACK the kernel delays may wait to be piggybacked on our next packet
/// before `QuickAck` sends it on its own (tokio's timer rounds this up to its next 1 ms tick).
const PIGGYBACK_WINDOW: Duration = Duration::from_millis(1);

/// umqtt patch: keeps the kernel from delaying our TCP ACKs by up to 40 ms (Linux only).
///
/// Linux delays an ACK while it expects to piggyback it on a reply ("ping-pong" mode, entered when
/// we send data soon after receiving some). An MQTT client may not reply for a while (a QoS 1
/// message is acknowledged once the application has handled it), and a broker with Nagle's
/// algorithm on, mosquitto's default, holds back its next small packet, such as the PUBACK of our
/// own publish, until that ACK: 44 ms per QoS 1 publish to a topic the client subscribes to.
/// `TCP_QUICKACK` sends a delayed ACK at once and leaves ping-pong mode until we send again. It is
/// set only when an ACK may be waiting in that mode (data read since our last send): at once when
/// we wait for a reply from the broker (a QoS 1/2 acknowledgement, a PINGRESP), else once
/// `PIGGYBACK_WINDOW` has passed with nothing sent. A client that publishes soon after each message
/// it receives (a request/response loop) thus carries its ACKs on its packets, with no system call;
/// a `TCP_QUICKACK` after every read and send (a separate ACK segment per message) cost its round
/// trip 5 to 8 µs of about 150.
pub(crate) struct QuickAck {
    socket: QuickAckSocket,
    /// Data was sent since the last `TCP_QUICKACK`: the kernel may be in ping-pong mode.
    sent: bool,
    /// An ACK may be delayed and nothing we sent has carried it yet: `window` is running.
    ack_pending: bool,
    window: Option<Pin<Box<Sleep>>>,
}

impl QuickAck {
    /// After a read: sends the ACK now, or starts `window` (unless it runs already).
    fn after_read(&mut self, awaiting_reply: bool) {
        if !self.sent {
            return;
        }
        if awaiting_reply {
            self.send_now();
            return;
        }
        if !self.ack_pending {
            self.ack_pending = true;
            let at = Instant::now() + PIGGYBACK_WINDOW;
            match &mut self.window {
                Some(window) => window.as_mut().reset(at),
                None => self.window = Some(Box::pin(time::sleep_until(at))),
            }
        }
    }

    /// After a flush that sent data: it carried the ACK, and may have entered ping-pong mode.
    fn after_send(&mut self) {
        self.sent = true;
        self.ack_pending = false;
    }

    /// Ready when a delayed ACK has waited `PIGGYBACK_WINDOW`; pending for ever when none waits.
    async fn window_closed(&mut self) {
        match (&mut self.window, self.ack_pending) {
            (Some(window), true) => window.as_mut().await,
            _ => std::future::pending().await,
        }
    }

    fn send_now(&mut self) {
        self.sent = false;
        self.ack_pending = false;
        #[cfg(not(target_os = "linux"))]
        match self.socket {}
        #[cfg(target_os = "linux")]
        {
            let on: libc::c_int = 1;
            // SAFETY: `socket` is the descriptor of the stream `framed` owns, so it is open while
            // `self` lives; the option is a plain int. A failure only means delayed ACKs again.
            unsafe {
                libc::setsockopt(
                    self.socket,
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

/// umqtt patch: a connection's frames, as both clients' `Network` (this one and `v5::framed`)
/// hold them; they use `QuickAck` through the functions below.
pub(crate) type Frames<C> = Framed<Box<dyn AsyncReadWrite>, C>;

impl QuickAck {
    /// umqtt patch: quick ACKs on `socket`, when there is one (a direct TCP connection on Linux).
    pub(crate) fn on(socket: Option<QuickAckSocket>) -> Option<Self> {
        socket.map(|socket| QuickAck {
            socket,
            sent: false,
            ack_pending: false,
            window: None,
        })
    }

    /// umqtt patch: the next packet of `framed`, meanwhile sending a delayed ACK whose window
    /// has closed.
    pub(crate) async fn next_packet<C: Decoder>(
        quick_ack: &mut Option<Self>,
        framed: &mut Frames<C>,
    ) -> Option<Result<C::Item, C::Error>> {
        let Some(quick_ack) = quick_ack else {
            return framed.next().await;
        };
        loop {
            tokio::select! {
                biased;
                packet = framed.next() => return packet,
                () = quick_ack.window_closed() => quick_ack.send_now(),
            }
        }
    }

    /// umqtt patch: after a read, unless a reply already waits to be flushed (it carries the ACK).
    pub(crate) fn read_done<C>(
        quick_ack: &mut Option<Self>,
        framed: &Frames<C>,
        awaiting_reply: bool,
    ) {
        if let Some(quick_ack) = quick_ack {
            if framed.write_buffer().is_empty() {
                quick_ack.after_read(awaiting_reply);
            }
        }
    }

    /// umqtt patch: flushes `framed`; data it sends carries the ACK. The event loop flushes after
    /// every read, mostly with nothing to send.
    pub(crate) async fn flush<C: Encoder<I>, I>(
        quick_ack: &mut Option<Self>,
        framed: &mut Frames<C>,
    ) -> Result<(), C::Error> {
        let sending = !framed.write_buffer().is_empty();
        let flushed = SinkExt::<I>::flush(framed).await;
        if let Some(quick_ack) = quick_ack.as_mut().filter(|_| sending) {
            quick_ack.after_send();
        }
        flushed
    }
}

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
            quick_ack: None,
            observer: None,
        }
    }

    /// umqtt patch: see `QuickAck` (Linux only).
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

    /// umqtt patch: the next packet, meanwhile sending a delayed ACK whose window has closed.
    async fn next_packet(&mut self) -> Option<Result<Packet, mqttbytes::Error>> {
        QuickAck::next_packet(&mut self.quick_ack, &mut self.framed).await
    }

    /// umqtt patch: see `QuickAck::read_done`.
    fn after_read(&mut self, awaiting_reply: bool) {
        QuickAck::read_done(&mut self.quick_ack, &self.framed, awaiting_reply);
    }

    /// Reads and returns a single packet from network
    pub async fn read(&mut self) -> Result<Incoming, StateError> {
        let read = self.next_packet().await;
        self.after_read(false);
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
        let mut res = self.next_packet().await;
        let mut count = 1;
        loop {
            match res {
                Some(Ok(packet)) => {
                    self.observe_incoming(&packet);
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
        self.after_read(state.inflight > 0 || state.await_pingresp);
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

    pub async fn flush(&mut self) -> Result<(), crate::state::StateError> {
        // umqtt patch: through `QuickAck::flush`.
        QuickAck::flush(&mut self.quick_ack, &mut self.framed)
            .await
            .map_err(StateError::Deserialization)
    }
}

pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T> AsyncReadWrite for T where T: AsyncRead + AsyncWrite + Send + Unpin {}
