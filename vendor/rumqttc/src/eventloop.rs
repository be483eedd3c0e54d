use crate::{framed::Network, Transport};
use crate::{Incoming, MqttState, NetworkOptions, Packet, Request, StateError};
use crate::{MqttOptions, Outgoing};

use crate::framed::{AsyncReadWrite, QuickAckSocket};
use crate::mqttbytes::v4::*;
use flume::{bounded, Receiver, Sender};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio::select;
use tokio::time::{self, Instant, Sleep};

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

#[cfg(unix)]
use {std::path::Path, tokio::net::UnixStream};

#[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
use crate::tls;

#[cfg(feature = "websocket")]
use {
    crate::websockets::{split_url, validate_response_headers, UrlError},
    async_tungstenite::tungstenite::client::IntoClientRequest,
    ws_stream_tungstenite::WsStream,
};

#[cfg(feature = "proxy")]
use crate::proxy::{Proxy, ProxyError};
#[cfg(feature = "websocket")]
use crate::RequestModifierFn;

/// Critical errors during eventloop polling
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("Mqtt state: {0}")]
    MqttState(#[from] StateError),
    #[error("Network timeout")]
    NetworkTimeout,
    #[error("Flush timeout")]
    FlushTimeout,
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
    NotConnAck(Packet),
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
    pub mqtt_options: MqttOptions,
    /// Current state of the connection
    pub state: MqttState,
    /// Request stream
    requests_rx: Receiver<Request>,
    /// Requests handle to send requests
    pub(crate) requests_tx: Sender<Request>,
    /// Pending packets from last session
    pub pending: VecDeque<Request>,
    /// Network connection to the broker
    pub network: Option<Network>,
    /// Keep alive time
    keepalive_timeout: Option<Pin<Box<Sleep>>>,
    pub network_options: NetworkOptions,
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
    pub fn new(mqtt_options: MqttOptions, cap: usize) -> EventLoop {
        let (requests_tx, requests_rx) = bounded(cap);
        let pending = VecDeque::new();
        let max_inflight = mqtt_options.inflight;
        let manual_acks = mqtt_options.manual_acks;

        EventLoop {
            mqtt_options,
            state: MqttState::new(max_inflight, manual_acks),
            requests_tx,
            requests_rx,
            pending,
            network: None,
            keepalive_timeout: None,
            network_options: NetworkOptions::new(),
        }
    }

    /// Last session might contain packets which aren't acked. MQTT says these packets should be
    /// republished in the next session. Move pending messages from state to eventloop, drops the
    /// underlying network connection and clears the keepalive timeout if any.
    ///
    /// > NOTE: Use only when EventLoop is blocked on network and unable to immediately handle disconnect.
    /// > Also, while this helps prevent data loss, the pending list length should be managed properly.
    /// > For this reason we recommend setting [`AsycClient`](crate::AsyncClient)'s channel capacity to `0`.
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
            let (network, connack) = match time::timeout(
                Duration::from_secs(self.network_options.connection_timeout()),
                connect(&self.mqtt_options, self.network_options.clone()),
            )
            .await
            {
                Ok(inner) => inner?,
                Err(_) => return Err(ConnectionError::NetworkTimeout),
            };
            // Last session might contain packets which aren't acked. If it's a new session, clear the pending packets.
            if !connack.session_present {
                self.pending.clear();
            }
            self.network = Some(network);

            if self.keepalive_timeout.is_none() && !self.mqtt_options.keep_alive.is_zero() {
                self.keepalive_timeout = Some(Box::pin(time::sleep(self.mqtt_options.keep_alive)));
            }

            return Ok(Event::Incoming(Packet::ConnAck(connack)));
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
        let inflight_full = self.state.inflight >= self.mqtt_options.inflight;
        let collision = self.state.collision.is_some();
        let network_timeout = Duration::from_secs(self.network_options.connection_timeout());

        // Read buffered events from previous polls before calling a new poll
        if let Some(event) = self.state.events.pop_front() {
            return Ok(Some(event));
        }

        let mut no_sleep = Box::pin(time::sleep(Duration::ZERO));
        // this loop is necessary since self.incoming.pop_front() might return None. In that case,
        // instead of returning a None event, we try again.
        select! {
            // Pull a bunch of packets from network, reply in bunch and yield the first item
            o = network.readb(&mut self.state) => {
                o?;
                // flush all the acks and return first incoming packet
                match time::timeout(network_timeout, network.flush()).await {
                    Ok(inner) => inner?,
                    Err(_)=> return Err(ConnectionError::FlushTimeout),
                };
                Ok(self.state.events.pop_front())
            },
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
                self.mqtt_options.pending_throttle
            ), if !self.pending.is_empty() || (!inflight_full && !collision) => match o {
                Ok(request) => {
                    let keep_alive = self.mqtt_options.keep_alive;
                    if let Some(outgoing) = Self::outgoing_request(&mut self.state, &mut self.keepalive_timeout, keep_alive, request)? {
                        network.write(outgoing).await?;
                    }
                    // umqtt patch: write the requests already queued, up to
                    // `max_request_batch`, before one flush (one syscall for a burst).
                    for _ in 1..self.mqtt_options.max_request_batch {
                        let ready = self.pending.is_empty()
                            && self.state.inflight < self.mqtt_options.inflight
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
                    match time::timeout(network_timeout, network.flush()).await {
                        Ok(inner) => inner?,
                        Err(_)=> return Err(ConnectionError::FlushTimeout),
                    };
                    Ok(self.state.events.pop_front())
                }
                Err(_) => Err(ConnectionError::RequestsDone),
            },
            // We generate pings irrespective of network activity. This keeps the ping logic
            // simple. We can change this behavior in future if necessary (to prevent extra pings)
            _ = self.keepalive_timeout.as_mut().unwrap_or(&mut no_sleep),
                if self.keepalive_timeout.is_some() && !self.mqtt_options.keep_alive.is_zero() => {
                let timeout = self.keepalive_timeout.as_mut().unwrap();
                timeout.as_mut().reset(Instant::now() + self.mqtt_options.keep_alive);

                if let Some(outgoing) = self.state.handle_outgoing_packet(Request::PingReq(PingReq))? {
                    network.write(outgoing).await?;
                }
                match time::timeout(network_timeout, network.flush()).await {
                    Ok(inner) => inner?,
                    Err(_)=> return Err(ConnectionError::FlushTimeout),
                };
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
        if !matches!(request, Request::PingReq(_)) {
            return state.handle_outgoing_packet(request);
        }
        let packet = state.requested_ping();
        if let (Some(_), Some(timeout)) = (&packet, keepalive_timeout.as_mut()) {
            timeout.as_mut().reset(Instant::now() + keep_alive);
        }
        Ok(packet)
    }

    pub fn network_options(&self) -> NetworkOptions {
        self.network_options.clone()
    }

    pub fn set_network_options(&mut self, network_options: NetworkOptions) -> &mut Self {
        self.network_options = network_options;
        self
    }

    async fn next_request(
        pending: &mut VecDeque<Request>,
        rx: &Receiver<Request>,
        pending_throttle: Duration,
    ) -> Result<Request, ConnectionError> {
        if !pending.is_empty() {
            time::sleep(pending_throttle).await;
            // We must call .pop_front() AFTER sleep() otherwise we would have
            // advanced the iterator but the future might be canceled before return
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
async fn connect(
    mqtt_options: &MqttOptions,
    network_options: NetworkOptions,
) -> Result<(Network, ConnAck), ConnectionError> {
    // connect to the broker
    let mut network = network_connect(mqtt_options, network_options)
        .await?
        .with_observer(mqtt_options.packet_observer()); // umqtt patch

    // make MQTT connection request (which internally awaits for ack)
    let connack = mqtt_connect(mqtt_options, &mut network).await?;

    Ok((network, connack))
}

/// umqtt patch: how long a connection attempt has before the next address is tried alongside
/// it (RFC 8305's "connection attempt delay").
const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(250);

/// umqtt patch: the addresses of `host`, in the resolver's order; IPv6 ones only with `ipv6_only`.
pub(crate) async fn resolve(host: &str, port: u16, ipv6_only: bool) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = lookup_host((host, port))
        .await?
        .filter(|addr| addr.is_ipv6() || !ipv6_only)
        .collect();
    if addrs.is_empty() {
        let which = if ipv6_only { "IPv6 address" } else { "address" };
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no {which}"),
        ));
    }
    Ok(addrs)
}

/// umqtt patch: connects to `host`'s addresses in the resolver's order (Happy Eyeballs, RFC
/// 8305): each attempt starts `NEXT_ADDRESS_DELAY` after the previous one, or as soon as it
/// failed, and the first connection made wins; the others are dropped. An unreachable first
/// address (IPv6 without a route, a silent firewall) then costs 250 ms, not the whole timeout.
pub(crate) async fn socket_connect(
    host: &str,
    port: u16,
    ipv6_only: bool,
    network_options: &NetworkOptions,
) -> io::Result<TcpStream> {
    let addrs = resolve(host, port, ipv6_only).await?;
    connect_in_turn(addrs, network_options).await
}

/// umqtt patch: the attempts of `socket_connect`, to `addrs` in this order.
async fn connect_in_turn(
    addrs: Vec<SocketAddr>,
    network_options: &NetworkOptions,
) -> io::Result<TcpStream> {
    let mut addrs = addrs.into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut last_err = None;
    // The first address is tried at once, and a failed attempt starts the next at once: a timer
    // set to now would fire only at the timer's next tick, about a millisecond later.
    attempts.extend(addrs.next().map(|addr| connect_to(addr, network_options)));
    let next_address = time::sleep(NEXT_ADDRESS_DELAY);
    tokio::pin!(next_address);
    loop {
        select! {
            biased;
            Some(attempt) = attempts.next(), if !attempts.is_empty() => match attempt {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    last_err = Some(e);
                    if let Some(addr) = addrs.next() {
                        attempts.push(connect_to(addr, network_options));
                        next_address.as_mut().reset(Instant::now() + NEXT_ADDRESS_DELAY);
                    }
                }
            },
            () = &mut next_address, if addrs.len() > 0 => {
                if let Some(addr) = addrs.next() {
                    attempts.push(connect_to(addr, network_options));
                }
                next_address.as_mut().reset(Instant::now() + NEXT_ADDRESS_DELAY);
            },
            else => {
                return Err(last_err.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any address")
                }))
            }
        }
    }
}

async fn connect_to(addr: SocketAddr, network_options: &NetworkOptions) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };

    socket.set_nodelay(network_options.tcp_nodelay)?;

    if let Some(send_buff_size) = network_options.tcp_send_buffer_size {
        socket.set_send_buffer_size(send_buff_size).unwrap();
    }
    if let Some(recv_buffer_size) = network_options.tcp_recv_buffer_size {
        socket.set_recv_buffer_size(recv_buffer_size).unwrap();
    }

    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    {
        if let Some(bind_device) = &network_options.bind_device {
            // call the bind_device function only if the bind_device network option is defined
            // If binding device is None or an empty string it removes the binding,
            // which is causing PermissionDenied errors in AWS environment (lambda function).
            socket.bind_device(Some(bind_device.as_bytes()))?;
        }
    }

    socket.connect(addr).await
}

async fn network_connect(
    options: &MqttOptions,
    network_options: NetworkOptions,
) -> Result<Network, ConnectionError> {
    // umqtt patch: the stream comes from `connect_stream`, which the MQTT 5 client shares.
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
    let (stream, tcp_socket) = connect_stream(endpoint, network_options).await?;
    let network = Network::new(
        stream,
        options.max_incoming_packet_size,
        options.max_outgoing_packet_size,
    );
    Ok(network.with_quick_ack_socket(tcp_socket))
}

/// umqtt patch: where and how `connect_stream` connects, taken from either client's options.
pub(crate) struct Endpoint<'a> {
    pub transport: Transport,
    pub broker_addr: &'a str,
    pub port: u16,
    /// The TLS server name (SNI and verification): `broker_addr` unless one was set.
    pub tls_server_name: &'a str,
    #[cfg(feature = "proxy")]
    pub proxy: Option<Proxy>,
    #[cfg(feature = "websocket")]
    pub request_modifier: Option<RequestModifierFn>,
}

/// umqtt patch: the byte stream to the broker (TCP, TLS, WebSocket or a Unix socket, directly or
/// through a proxy), shared by the MQTT 3.1.1 and MQTT 5 clients; with the TCP socket, for
/// `Network::with_quick_ack_socket` (None through a proxy and for Unix sockets).
pub(crate) async fn connect_stream(
    endpoint: Endpoint<'_>,
    network_options: NetworkOptions,
) -> Result<(Box<dyn AsyncReadWrite>, Option<QuickAckSocket>), ConnectionError> {
    // Process Unix files early, as proxy is not supported for them.
    #[cfg(unix)]
    if matches!(endpoint.transport, Transport::Unix) {
        let socket = UnixStream::connect(Path::new(endpoint.broker_addr)).await?;
        return Ok((Box::new(socket), None));
    }

    // For websockets domain and port are taken directly from `broker_addr` (which is a url).
    let (domain, port) = match endpoint.transport {
        #[cfg(feature = "websocket")]
        Transport::Ws => split_url(endpoint.broker_addr)?,
        #[cfg(all(feature = "use-rustls-no-provider", feature = "websocket"))]
        Transport::Wss(_) => split_url(endpoint.broker_addr)?,
        _ => (endpoint.broker_addr.to_owned(), endpoint.port),
    };

    let (tcp_stream, tcp_socket) = {
        #[cfg(feature = "proxy")]
        match endpoint.proxy {
            Some(proxy) => (proxy.connect(&domain, port, network_options).await?, None),
            None => direct_connect(&domain, port, network_options).await?,
        }
        #[cfg(not(feature = "proxy"))]
        direct_connect(&domain, port, network_options).await?
    };

    let stream: Box<dyn AsyncReadWrite> = match endpoint.transport {
        Transport::Tcp => tcp_stream,
        #[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
        Transport::Tls(tls_config) => {
            tls::tls_connect(
                endpoint.tls_server_name,
                endpoint.port,
                &tls_config,
                tcp_stream,
            )
            .await?
        }
        #[cfg(unix)]
        Transport::Unix => unreachable!(),
        #[cfg(feature = "websocket")]
        Transport::Ws => {
            let mut request = endpoint.broker_addr.into_client_request()?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());

            if let Some(request_modifier) = endpoint.request_modifier {
                request = request_modifier(request).await;
            }

            let (socket, response) =
                async_tungstenite::tokio::client_async(request, tcp_stream).await?;
            validate_response_headers(response)?;

            Box::new(WsStream::new(socket))
        }
        #[cfg(all(feature = "use-rustls-no-provider", feature = "websocket"))]
        Transport::Wss(tls_config) => {
            let mut request = endpoint.broker_addr.into_client_request()?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());

            if let Some(request_modifier) = endpoint.request_modifier {
                request = request_modifier(request).await;
            }

            // umqtt patch: TLS as for `Transport::Tls` (no TLS stack of async-tungstenite's own),
            // verifying the name set or else the URL's host, then the upgrade over it.
            let server_name = match endpoint.tls_server_name {
                unset if unset == endpoint.broker_addr => domain.as_str(),
                name => name,
            };
            let tls_stream = tls::tls_connect(server_name, port, &tls_config, tcp_stream).await?;
            let (socket, response) =
                async_tungstenite::tokio::client_async(request, tls_stream).await?;
            validate_response_headers(response)?;

            Box::new(WsStream::new(socket))
        }
    };

    Ok((stream, tcp_socket))
}

/// umqtt patch: a direct TCP connection, with its socket for `Network::with_quick_ack_socket`.
async fn direct_connect(
    domain: &str,
    port: u16,
    network_options: NetworkOptions,
) -> io::Result<(Box<dyn AsyncReadWrite>, Option<QuickAckSocket>)> {
    let ipv6_only = network_options.ipv6_only();
    let tcp = socket_connect(domain, port, ipv6_only, &network_options).await?;
    #[cfg(target_os = "linux")]
    let socket = Some(std::os::fd::AsRawFd::as_raw_fd(&tcp));
    #[cfg(not(target_os = "linux"))]
    let socket = None;
    Ok((Box::new(tcp), socket))
}

async fn mqtt_connect(
    options: &MqttOptions,
    network: &mut Network,
) -> Result<ConnAck, ConnectionError> {
    let mut connect = Connect::new(options.client_id());
    connect.keep_alive = options.keep_alive().as_secs() as u16;
    connect.clean_session = options.clean_session();
    connect.protocol = options.protocol(); // umqtt patch: MQTT 3.1 or 3.1.1
    connect.last_will = options.last_will();
    connect.login = options.credentials();

    // send mqtt connect packet
    network.write(Packet::Connect(connect)).await?;
    network.flush().await?;

    // validate connack
    match network.read().await? {
        Incoming::ConnAck(connack) if connack.code == ConnectReturnCode::Success => Ok(connack),
        Incoming::ConnAck(connack) => Err(ConnectionError::ConnectionRefused(connack.code)),
        packet => Err(ConnectionError::NotConnAck(packet)),
    }
}

// umqtt patch: PINGREQs asked for with `AsyncClient::ping`.
#[cfg(test)]
mod test {
    use super::*;
    use crate::{AsyncClient, Event};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A client connected to a socket that plays the broker (CONNECT read, CONNACK sent).
    async fn connected(keep_alive: Duration) -> (AsyncClient, EventLoop, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut options = MqttOptions::new("ping-test", "127.0.0.1", port);
        options.set_keep_alive(keep_alive);
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let broker = async {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 2];
            socket.read_exact(&mut header).await.unwrap();
            let mut connect = vec![0u8; header[1] as usize];
            socket.read_exact(&mut connect).await.unwrap();
            socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
            socket
        };
        let (connack, socket) = tokio::join!(eventloop.poll(), broker);
        assert!(matches!(connack, Ok(Event::Incoming(Packet::ConnAck(_)))));
        (client, eventloop, socket)
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
        let pong = Event::Incoming(Packet::PingResp);
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

/// umqtt patch: `connect_in_turn` against loopback listeners.
#[cfg(test)]
mod happy_eyeballs_tests {
    use super::*;
    use std::net::TcpStream as StdStream;
    use tokio::net::TcpListener;

    /// A listener whose accept queue (one connection) is full: the kernel drops the SYNs of
    /// further connections, which hang as towards an unreachable address.
    async fn black_hole() -> (TcpListener, Vec<StdStream>, SocketAddr) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let queued = (0..2)
            .filter_map(|_| StdStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
            .collect();
        (listener, queued, addr)
    }

    #[tokio::test]
    async fn the_next_address_starts_250_ms_after_a_silent_one() {
        let (_hole, _queued, silent) = black_hole().await;
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let started = Instant::now();
        let stream = connect_in_turn(vec![silent, good_addr], &NetworkOptions::new())
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        assert!(took >= NEXT_ADDRESS_DELAY, "{took:?}");
        assert!(took < NEXT_ADDRESS_DELAY * 8, "{took:?}");
    }

    #[tokio::test]
    async fn a_refused_address_starts_the_next_at_once() {
        let refused = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let started = Instant::now();
        let stream = connect_in_turn(vec![refused, good_addr], &NetworkOptions::new())
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        assert!(
            started.elapsed() < NEXT_ADDRESS_DELAY,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn when_every_address_fails_the_last_error_is_returned() {
        let refused = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let error = connect_in_turn(vec![refused, refused], &NetworkOptions::new())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn ipv6_only_keeps_ipv6_addresses() {
        let error = resolve("127.0.0.1", 1, true).await.unwrap_err();
        assert_eq!(error.to_string(), "127.0.0.1 has no IPv6 address");
        let addrs = resolve("::1", 1, true).await.unwrap();
        assert_eq!(addrs, vec!["[::1]:1".parse::<SocketAddr>().unwrap()]);
        assert_eq!(resolve("127.0.0.1", 1, false).await.unwrap().len(), 1);
    }
}

/// umqtt patch: the packet observer sees every packet written and read, CONNECT and CONNACK too.
#[cfg(test)]
mod packet_observer_tests {
    use super::*;
    use crate::{AsyncClient, Event, PacketObserver, QoS};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Seen {
        fn note(&self, way: &str, packet: &Packet) {
            let kind = match packet {
                Packet::Connect(_) => "CONNECT",
                Packet::ConnAck(_) => "CONNACK",
                Packet::Publish(publish) => {
                    return self.push(format!("{way} PUBLISH {}", publish.pkid))
                }
                Packet::PubAck(ack) => return self.push(format!("{way} PUBACK {}", ack.pkid)),
                _ => "another",
            };
            self.push(format!("{way} {kind}"));
        }

        fn push(&self, line: String) {
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
            socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
            socket
        };
        let (connack, mut broker) = tokio::join!(eventloop.poll(), broker);
        assert!(matches!(connack, Ok(Event::Incoming(Packet::ConnAck(_)))));

        client
            .try_publish("t", QoS::AtLeastOnce, false, b"x".to_vec())
            .unwrap();
        let sent = Event::Outgoing(Outgoing::Publish(1));
        assert_eq!(eventloop.poll().await.unwrap(), sent);
        let mut publish = [0u8; 8];
        broker.read_exact(&mut publish).await.unwrap();
        // PUBACK 1, then a QoS 0 PUBLISH on "t": one read on our side.
        let replies = [0x40, 0x02, 0x00, 0x01, 0x30, 0x04, 0x00, 0x01, b't', b'y'];
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
