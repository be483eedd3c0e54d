use super::framed::Network;
use super::mqttbytes::v5::*;
use super::{Incoming, MqttOptions, MqttState, Outgoing, Request, StateError};
use crate::eventloop::{connect_stream, Endpoint};

use flume::{bounded, Receiver, Sender};
use tokio::select;
use tokio::time::{self, error::Elapsed, Instant, Sleep};

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use super::mqttbytes::v5::ConnectReturnCode;

#[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
use crate::tls;

#[cfg(feature = "websocket")]
use crate::websockets::UrlError;

#[cfg(feature = "proxy")]
use crate::proxy::ProxyError;

/// Critical errors during eventloop polling
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("Mqtt state: {0}")]
    MqttState(#[from] StateError),
    #[error("Timeout")]
    Timeout(#[from] Elapsed),
    #[cfg(feature = "websocket")]
    #[error("Websocket: {0}")]
    Websocket(#[from] async_tungstenite::tungstenite::error::Error),
    #[cfg(feature = "websocket")]
    #[error("Websocket Connect: {0}")]
    WsConnect(#[from] http::Error),
    #[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
    #[error("TLS: {0}")]
    Tls(#[from] tls::Error),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("Connection refused, return code: `{0:?}`")]
    ConnectionRefused(ConnectReturnCode),
    #[error("Expected ConnAck packet, received: {0:?}")]
    NotConnAck(Box<Packet>),
    #[error("Requests done")]
    RequestsDone,
    #[cfg(feature = "websocket")]
    #[error("Invalid Url: {0}")]
    InvalidUrl(#[from] UrlError),
    #[cfg(feature = "proxy")]
    #[error("Proxy Connect: {0}")]
    Proxy(#[from] ProxyError),
    #[cfg(feature = "websocket")]
    #[error("Websocket response validation error: ")]
    ResponseValidation(#[from] crate::websockets::ValidationError),
}

/// Eventloop with all the state of a connection
pub struct EventLoop {
    /// Options of the current mqtt connection
    pub options: MqttOptions,
    /// Current state of the connection
    pub state: MqttState,
    /// Request stream
    requests_rx: Receiver<Request>,
    /// Requests handle to send requests
    pub(crate) requests_tx: Sender<Request>,
    /// Pending packets from last session
    pub pending: VecDeque<Request>,
    /// Network connection to the broker
    network: Option<Network>,
    /// Keep alive time
    keepalive_timeout: Option<Pin<Box<Sleep>>>,
}

/// Events which can be yielded by the event loop
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Incoming(Incoming),
    Outgoing(Outgoing),
}

impl EventLoop {
    /// New MQTT `EventLoop`
    ///
    /// When connection encounters critical errors (like auth failure), user has a choice to
    /// access and update `options`, `state` and `requests`.
    pub fn new(options: MqttOptions, cap: usize) -> EventLoop {
        let (requests_tx, requests_rx) = bounded(cap);
        let pending = VecDeque::new();
        let inflight_limit = options.outgoing_inflight_upper_limit.unwrap_or(u16::MAX);
        let manual_acks = options.manual_acks;

        EventLoop {
            options,
            state: MqttState::new(inflight_limit, manual_acks),
            requests_tx,
            requests_rx,
            pending,
            network: None,
            keepalive_timeout: None,
        }
    }

    /// Last session might contain packets which aren't acked. MQTT says these packets should be
    /// republished in the next session. Move pending messages from state to eventloop, drops the
    /// underlying network connection and clears the keepalive timeout if any.
    ///
    /// > NOTE: Use only when EventLoop is blocked on network and unable to immediately handle disconnect.
    /// > Also, while this helps prevent data loss, the pending list length should be managed properly.
    /// > For this reason we recommend setting [`AsycClient`](super::AsyncClient)'s channel capacity to `0`.
    pub fn clean(&mut self) {
        self.network = None;
        self.keepalive_timeout = None;
        self.pending.extend(self.state.clean());

        // drain requests from channel which weren't yet received
        let mut requests_in_channel: Vec<_> = self.requests_rx.drain().collect();

        requests_in_channel.retain(|request| {
            match request {
                Request::PubAck(_) => false, // Wait for publish retransmission, else the broker could be confused by an unexpected ack
                _ => true,
            }
        });

        self.pending.extend(requests_in_channel);
    }

    /// Yields Next notification or outgoing request and periodically pings
    /// the broker. Continuing to poll will reconnect to the broker if there is
    /// a disconnection.
    /// **NOTE** Don't block this while iterating
    pub async fn poll(&mut self) -> Result<Event, ConnectionError> {
        if self.network.is_none() {
            let (network, connack) = time::timeout(
                Duration::from_secs(self.options.connection_timeout()),
                connect(&mut self.options),
            )
            .await??;
            // Last session might contain packets which aren't acked. If it's a new session, clear the pending packets.
            if !connack.session_present {
                self.pending.clear();
            }
            self.network = Some(network);

            // umqtt patch: a keep-alive of zero sends no pings (MQTT 5 3.1.2.10), as in the 3.1.1
            // client.
            if self.keepalive_timeout.is_none() && !self.options.keep_alive.is_zero() {
                self.keepalive_timeout = Some(Box::pin(time::sleep(self.options.keep_alive)));
            }

            self.state
                .handle_incoming_packet(Incoming::ConnAck(connack))?;
        }

        // umqtt patch: a request may produce no event (a PINGREQ asked for while one waits for
        // its PINGRESP): then select again.
        loop {
            match self.select().await {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(e) => {
                    // MQTT requires that packets pending acknowledgement should be republished on session resume.
                    // Move pending messages from state to eventloop.
                    self.clean();
                    return Err(e);
                }
            }
        }
    }

    /// Select on network and requests and generate keepalive pings when necessary
    async fn select(&mut self) -> Result<Option<Event>, ConnectionError> {
        let network = self.network.as_mut().unwrap();
        // let await_acks = self.state.await_acks;

        let inflight_full = self.state.inflight >= self.state.max_outgoing_inflight;
        let collision = self.state.collision.is_some();

        // Read buffered events from previous polls before calling a new poll
        if let Some(event) = self.state.events.pop_front() {
            return Ok(Some(event));
        }

        // umqtt patch: stands in for the keep-alive timer when there is none (its branch is off).
        let mut no_sleep = Box::pin(time::sleep(Duration::ZERO));

        // this loop is necessary since self.incoming.pop_front() might return None. In that case,
        // instead of returning a None event, we try again.
        select! {
            // Handles pending and new requests.
            // If available, prioritises pending requests from previous session.
            // Else, pulls next request from user requests channel.
            // If conditions in the below branch are for flow control.
            // The branch is disabled if there's no pending messages and new user requests
            // cannot be serviced due flow control.
            // We read next user user request only when inflight messages are < configured inflight
            // and there are no collisions while handling previous outgoing requests.
            //
            // Flow control is based on ack count. If inflight packet count in the buffer is
            // less than max_inflight setting, next outgoing request will progress. For this
            // to work correctly, broker should ack in sequence (a lot of brokers won't)
            //
            // E.g If max inflight = 5, user requests will be blocked when inflight queue
            // looks like this                 -> [1, 2, 3, 4, 5].
            // If broker acking 2 instead of 1 -> [1, x, 3, 4, 5].
            // This pulls next user request. But because max packet id = max_inflight, next
            // user request's packet id will roll to 1. This replaces existing packet id 1.
            // Resulting in a collision
            //
            // Eventloop can stop receiving outgoing user requests when previous outgoing
            // request collided. I.e collision state. Collision state will be cleared only
            // when correct ack is received
            // Full inflight queue will look like -> [1a, 2, 3, 4, 5].
            // If 3 is acked instead of 1 first   -> [1a, 2, x, 4, 5].
            // After collision with pkid 1        -> [1b ,2, x, 4, 5].
            // 1a is saved to state and event loop is set to collision mode stopping new
            // outgoing requests (along with 1b).
            o = Self::next_request(
                &mut self.pending,
                &self.requests_rx,
                self.options.pending_throttle
            ), if !self.pending.is_empty() || (!inflight_full && !collision) => match o {
                Ok(request) => {
                    let keep_alive = self.options.keep_alive;
                    if let Some(outgoing) = Self::outgoing_request(&mut self.state, &mut self.keepalive_timeout, keep_alive, request)? {
                        network.write(outgoing).await?;
                    }
                    // umqtt patch: write the requests already queued, up to
                    // `max_request_batch`, before one flush (one syscall for a burst).
                    for _ in 1..self.options.max_request_batch {
                        let ready = self.pending.is_empty()
                            && self.state.inflight < self.state.max_outgoing_inflight
                            && self.state.collision.is_none();
                        if !ready {
                            break;
                        }
                        let Ok(request) = self.requests_rx.try_recv() else {
                            break;
                        };
                        if let Some(outgoing) = Self::outgoing_request(&mut self.state, &mut self.keepalive_timeout, keep_alive, request)? {
                            network.write(outgoing).await?;
                        }
                    }
                    network.flush().await?;
                    Ok(self.state.events.pop_front())
                }
                Err(_) => Err(ConnectionError::RequestsDone),
            },
            // Pull a bunch of packets from network, reply in bunch and yield the first item
            o = network.readb(&mut self.state) => {
                o?;
                // flush all the acks and return first incoming packet
                network.flush().await?;
                Ok(self.state.events.pop_front())
            },
            // We generate pings irrespective of network activity. This keeps the ping logic
            // simple. We can change this behavior in future if necessary (to prevent extra pings)
            _ = self.keepalive_timeout.as_mut().unwrap_or(&mut no_sleep),
                if self.keepalive_timeout.is_some() => {
                let timeout = self.keepalive_timeout.as_mut().unwrap();
                timeout.as_mut().reset(Instant::now() + self.options.keep_alive);

                if let Some(outgoing) = self.state.handle_outgoing_packet(Request::PingReq)? {
                    network.write(outgoing).await?;
                }
                network.flush().await?;
                Ok(self.state.events.pop_front())
            }
        }
    }

    /// umqtt patch: the packet for a request from `pending` or the channel. A PINGREQ asked for
    /// (`AsyncClient::ping`) is sent unless one waits for its PINGRESP; once sent, it restarts
    /// the keep-alive timer as the timer's own would, so its answer has a whole keep-alive to come.
    fn outgoing_request(
        state: &mut MqttState,
        keepalive_timeout: &mut Option<Pin<Box<Sleep>>>,
        keep_alive: Duration,
        request: Request,
    ) -> Result<Option<Packet>, StateError> {
        if !matches!(request, Request::PingReq) {
            return state.handle_outgoing_packet(request);
        }
        let packet = state.requested_ping();
        if let (Some(_), Some(timeout)) = (&packet, keepalive_timeout.as_mut()) {
            timeout.as_mut().reset(Instant::now() + keep_alive);
        }
        Ok(packet)
    }

    async fn next_request(
        pending: &mut VecDeque<Request>,
        rx: &Receiver<Request>,
        pending_throttle: Duration,
    ) -> Result<Request, ConnectionError> {
        if !pending.is_empty() {
            time::sleep(pending_throttle).await;
            // We must call .next() AFTER sleep() otherwise .next() would
            // advance the iterator but the future might be canceled before return
            Ok(pending.pop_front().unwrap())
        } else {
            match rx.recv_async().await {
                Ok(r) => Ok(r),
                Err(_) => Err(ConnectionError::RequestsDone),
            }
        }
    }
}

/// This stream internally processes requests from the request stream provided to the eventloop
/// while also consuming byte stream from the network and yielding mqtt packets as the output of
/// the stream.
/// This function (for convenience) includes internal delays for users to perform internal sleeps
/// between re-connections so that cancel semantics can be used during this sleep
async fn connect(options: &mut MqttOptions) -> Result<(Network, ConnAck), ConnectionError> {
    // connect to the broker
    let mut network = network_connect(options).await?;

    // make MQTT connection request (which internally awaits for ack)
    let connack = mqtt_connect(options, &mut network).await?;

    Ok((network, connack))
}

async fn network_connect(options: &MqttOptions) -> Result<Network, ConnectionError> {
    let mut max_incoming_pkt_size = Some(options.default_max_incoming_size);

    // Override default value if max_packet_size is set on `connect_properties`
    if let Some(connect_props) = &options.connect_properties {
        if let Some(max_size) = connect_props.max_packet_size {
            max_incoming_pkt_size = Some(max_size);
        }
    }

    // umqtt patch: the stream to the broker as the MQTT 3.1.1 client makes it (TLS server name,
    // secure WebSockets over the crate's TLS, Happy Eyeballs, SOCKS5, ALPN checked).
    let endpoint = Endpoint {
        transport: options.transport(),
        broker_addr: &options.broker_addr,
        port: options.port,
        tls_server_name: options.tls_server_name(),
        #[cfg(feature = "proxy")]
        proxy: options.proxy(),
        #[cfg(feature = "websocket")]
        request_modifier: options.request_modifier(),
    };
    let (stream, tcp_socket) = connect_stream(endpoint, options.network_options()).await?;
    Ok(Network::new(stream, max_incoming_pkt_size)
        .with_quick_ack_socket(tcp_socket)
        .with_observer(options.packet_observer())) // umqtt patch
}

/// umqtt patch: `connect_stream`'s errors, as this client's.
impl From<crate::ConnectionError> for ConnectionError {
    fn from(error: crate::ConnectionError) -> Self {
        match error {
            crate::ConnectionError::Io(e) => ConnectionError::Io(e),
            #[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
            crate::ConnectionError::Tls(e) => ConnectionError::Tls(e),
            #[cfg(feature = "websocket")]
            crate::ConnectionError::Websocket(e) => ConnectionError::Websocket(e),
            #[cfg(feature = "websocket")]
            crate::ConnectionError::WsConnect(e) => ConnectionError::WsConnect(e),
            #[cfg(feature = "websocket")]
            crate::ConnectionError::InvalidUrl(e) => ConnectionError::InvalidUrl(e),
            #[cfg(feature = "websocket")]
            crate::ConnectionError::ResponseValidation(e) => ConnectionError::ResponseValidation(e),
            #[cfg(feature = "proxy")]
            crate::ConnectionError::Proxy(e) => ConnectionError::Proxy(e),
            other => ConnectionError::Io(io::Error::other(other.to_string())),
        }
    }
}

async fn mqtt_connect(
    options: &mut MqttOptions,
    network: &mut Network,
) -> Result<ConnAck, ConnectionError> {
    let packet = Packet::Connect(
        Connect {
            client_id: options.client_id(),
            keep_alive: options.keep_alive().as_secs() as u16,
            clean_start: options.clean_start(),
            properties: options.connect_properties(),
        },
        options.last_will(),
        options.credentials(),
    );

    // send mqtt connect packet
    network.write(packet).await?;
    network.flush().await?;

    // validate connack
    match network.read().await? {
        Incoming::ConnAck(connack) if connack.code == ConnectReturnCode::Success => {
            if let Some(props) = &connack.properties {
                if let Some(keep_alive) = props.server_keep_alive {
                    options.keep_alive = Duration::from_secs(keep_alive as u64);
                }
                network.set_max_outgoing_size(props.max_packet_size);

                // Override local session_expiry_interval value if set by server.
                if props.session_expiry_interval.is_some() {
                    options.set_session_expiry_interval(props.session_expiry_interval);
                }
            }
            Ok(connack)
        }
        Incoming::ConnAck(connack) => Err(ConnectionError::ConnectionRefused(connack.code)),
        packet => Err(ConnectionError::NotConnAck(Box::new(packet))),
    }
}

// umqtt patch: the keep-alive timer, and PINGREQs asked for with `AsyncClient::ping`.
#[cfg(test)]
mod test {
    use super::*;
    use crate::v5::AsyncClient;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A client connected to a socket that plays the broker (CONNECT read, CONNACK sent).
    async fn connected(keep_alive: Duration) -> (AsyncClient, EventLoop, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut options = MqttOptions::new("keep-alive-test", "127.0.0.1", port);
        options.set_keep_alive(keep_alive);
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let broker = async {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 2];
            socket.read_exact(&mut header).await.unwrap();
            let mut connect = vec![0u8; header[1] as usize];
            socket.read_exact(&mut connect).await.unwrap();
            socket
                .write_all(&[0x20, 0x03, 0x00, 0x00, 0x00])
                .await
                .unwrap();
            socket
        };
        let (connack, socket) = tokio::join!(eventloop.poll(), broker);
        assert!(matches!(connack, Ok(Event::Incoming(Packet::ConnAck(_)))));
        (client, eventloop, socket)
    }

    #[tokio::test]
    async fn a_keep_alive_of_zero_sends_no_pings() {
        let (_client, mut eventloop, _broker) = connected(Duration::ZERO).await;
        assert!(eventloop.keepalive_timeout.is_none());
        // Nothing to do: poll() waits for the network (no timer fires at once).
        let waiting = time::timeout(Duration::from_millis(50), eventloop.poll()).await;
        assert!(waiting.is_err());
    }

    #[tokio::test]
    async fn a_ping_asked_for_while_one_waits_sends_nothing() {
        let (client, mut eventloop, mut broker) = connected(Duration::from_secs(60)).await;
        client.try_ping().unwrap();
        client.try_ping().unwrap();
        let ping = Event::Outgoing(Outgoing::PingReq);
        assert_eq!(eventloop.poll().await.unwrap(), ping);
        // The second request is taken and produces nothing: poll() waits for the network.
        let waiting = time::timeout(Duration::from_millis(100), eventloop.poll()).await;
        assert!(waiting.is_err());
        assert!(eventloop.requests_rx.is_empty());
        let mut received = [0u8; 8];
        let n = broker.read(&mut received).await.unwrap();
        assert_eq!(&received[..n], &[0xC0, 0x00]);
        broker.write_all(&[0xD0, 0x00]).await.unwrap();
        let pong = Event::Incoming(Packet::PingResp(PingResp));
        assert_eq!(eventloop.poll().await.unwrap(), pong);
        // Answered: the next one is sent.
        client.try_ping().unwrap();
        assert_eq!(eventloop.poll().await.unwrap(), ping);
        let n = broker.read(&mut received).await.unwrap();
        assert_eq!(&received[..n], &[0xC0, 0x00]);
    }

    #[tokio::test]
    async fn a_ping_asked_for_restarts_the_keep_alive_timer() {
        let keep_alive = Duration::from_secs(60);
        let (client, mut eventloop, _broker) = connected(keep_alive).await;
        time::sleep(Duration::from_millis(10)).await;
        let asked = Instant::now();
        client.try_ping().unwrap();
        let ping = Event::Outgoing(Outgoing::PingReq);
        assert_eq!(eventloop.poll().await.unwrap(), ping);
        let timer = eventloop.keepalive_timeout.as_ref().unwrap();
        assert!(timer.deadline() >= asked + keep_alive);
    }
}

/// umqtt patch: the packet observer sees every packet written and read, CONNECT and CONNACK too.
#[cfg(test)]
mod packet_observer_tests {
    use super::*;
    use crate::v5::mqttbytes::QoS;
    use crate::v5::{AsyncClient, PacketObserver};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Seen {
        fn note(&self, way: &str, packet: &Packet) {
            let line = match packet {
                Packet::Connect(..) => format!("{way} CONNECT"),
                Packet::ConnAck(_) => format!("{way} CONNACK"),
                Packet::Publish(publish) => format!("{way} PUBLISH {}", publish.pkid),
                Packet::PubAck(ack) => format!("{way} PUBACK {}", ack.pkid),
                _ => format!("{way} another"),
            };
            self.0.lock().unwrap().push(line);
        }
    }

    impl PacketObserver for Seen {
        fn outgoing(&self, packet: &Packet) {
            self.note("out", packet);
        }

        fn incoming(&self, packet: &Packet) {
            self.note("in", packet);
        }
    }

    #[tokio::test]
    async fn the_observer_sees_every_packet_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let mut options = MqttOptions::new("observed", "127.0.0.1", port);
        options.set_packet_observer(seen.clone());
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let broker = async {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 2];
            socket.read_exact(&mut header).await.unwrap();
            let mut connect = vec![0u8; header[1] as usize];
            socket.read_exact(&mut connect).await.unwrap();
            socket
                .write_all(&[0x20, 0x03, 0x00, 0x00, 0x00])
                .await
                .unwrap();
            socket
        };
        let (connack, mut broker) = tokio::join!(eventloop.poll(), broker);
        assert!(matches!(connack, Ok(Event::Incoming(Packet::ConnAck(_)))));

        client
            .try_publish("t", QoS::AtLeastOnce, false, b"x".to_vec())
            .unwrap();
        let sent = Event::Outgoing(Outgoing::Publish(1));
        assert_eq!(eventloop.poll().await.unwrap(), sent);
        // PUBLISH: header 2, topic 3, packet id 2, properties 1, payload 1.
        let mut publish = [0u8; 9];
        broker.read_exact(&mut publish).await.unwrap();
        // PUBACK 1, then a QoS 0 PUBLISH on "t" without properties: one read on our side.
        let replies = [
            0x40, 0x02, 0x00, 0x01, 0x30, 0x05, 0x00, 0x01, b't', 0x00, b'y',
        ];
        broker.write_all(&replies).await.unwrap();
        let acked = eventloop.poll().await.unwrap();
        assert!(
            matches!(acked, Event::Incoming(Packet::PubAck(_))),
            "{acked:?}"
        );
        let message = eventloop.poll().await.unwrap();
        assert!(
            matches!(message, Event::Incoming(Packet::Publish(_))),
            "{message:?}"
        );

        let seen = seen.0.lock().unwrap().clone();
        let expected = [
            "out CONNECT",
            "in CONNACK",
            "out PUBLISH 1",
            "in PUBACK 1",
            "in PUBLISH 0",
        ];
        assert_eq!(seen, expected);
    }
}
