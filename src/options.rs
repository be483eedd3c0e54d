//! A client's options: what the constructor validated, and the rumqttc options built from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use rumqttc::v5;
use rumqttc::{MqttOptions, NetworkOptions, Protocol, QoS, TlsConfiguration};

use crate::arguments::{self, bounded_int, MQTT_MAX_PACKET};
use crate::credentials::Credentials;
use crate::outbox::{Durability, Limits};
use crate::packets::PacketLog;
use crate::properties;
use crate::protocol::{
    self, ConnectOptions, ConnectProperties, EventLoop, LastWillProperties, Requests,
};
use crate::tls::{self, TlsSettings};
use crate::transport::{Route, RouteArguments};

/// `persistence_max_messages` and `persistence_max_bytes` unless given.
const DEFAULT_OUTBOX_LIMITS: Limits = Limits {
    messages: 100_000,
    bytes: 256 * 1024 * 1024,
};

/// Smallest limit accepted for incoming packets.
const MIN_PACKET_SIZE: usize = 1024;
/// The default limit on incoming packets: what one message may make the client hold.
const DEFAULT_MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;
/// `manage=True`: how long after a reconnect the subscriptions are sent again (the device's).
const MANAGED_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(3);
/// QoS 1/2 publishes in flight at most (under MQTT 5, fewer when the broker's receive maximum
/// says so).
const INFLIGHT: u16 = 100;
/// Queued requests written before one flush.
const REQUEST_BATCH: usize = 64;
/// MQTT 5: a session that never expires (what `clean_session=False` means under MQTT 3.1.1).
const SESSION_NEVER_EXPIRES: u32 = u32::MAX;

/// The arguments of `umqtt._native.Client(...)`, as Python passed them.
pub struct ConstructorArguments<'a, 'py> {
    pub client_id: &'a Bound<'py, PyAny>,
    pub server: &'a Bound<'py, PyAny>,
    pub port: &'a Bound<'py, PyAny>,
    pub user: Option<&'a Bound<'py, PyAny>>,
    pub password: Option<&'a Bound<'py, PyAny>>,
    pub keepalive: Option<&'a Bound<'py, PyAny>>,
    pub ssl: Option<&'a Bound<'py, PyAny>>,
    pub ssl_params: Option<&'a Bound<'py, PyAny>>,
    pub reconnect: bool,
    /// Not given: 4 (MQTT 3.1.1).
    pub version: Option<&'a Bound<'py, PyAny>>,
    pub pingmaxnum: Option<&'a Bound<'py, PyAny>>,
    pub manage: bool,
    pub connect_timeout: f64,
    pub ack_timeout: f64,
    pub max_packet_size: Option<&'a Bound<'py, PyAny>>,
    pub reconnect_delay: f64,
    pub reconnect_max_delay: f64,
    pub transport: Option<&'a Bound<'py, PyAny>>,
    pub ws_path: Option<&'a Bound<'py, PyAny>>,
    pub ws_headers: Option<&'a Bound<'py, PyAny>>,
    pub proxy: Option<&'a Bound<'py, PyAny>>,
    pub ipvtype: Option<&'a Bound<'py, PyAny>>,
    pub connect_properties: Option<&'a Bound<'py, PyAny>>,
    pub persistence: Option<&'a Bound<'py, PyAny>>,
    pub persistence_max_messages: Option<&'a Bound<'py, PyAny>>,
    pub persistence_max_bytes: Option<&'a Bound<'py, PyAny>>,
    pub persistence_sync: Option<&'a Bound<'py, PyAny>>,
}

/// The outbox on disk: `persistence` and its limits.
#[derive(Clone, Debug)]
pub struct Persistence {
    pub path: PathBuf,
    pub durability: Durability,
    pub limits: Limits,
}

/// Everything a connection needs, validated once in the constructor.
#[derive(Clone)]
pub struct ClientOptions {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    /// The broker as messages name it, computed once (`Route::target`).
    pub target: String,
    pub credentials: Credentials,
    pub route: Route,
    pub keepalive: u16,
    pub protocol: Protocol,
    pub reconnect: bool,
    /// How long after a reconnect the subscriptions are sent again (`manage=True`: 3 s).
    pub resubscribe_delay: Duration,
    pub ping_grace: u32,
    pub reconnect_delay: Duration,
    pub reconnect_max_delay: Duration,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    /// The limit on incoming packets (their length after the fixed header); outgoing ones are
    /// limited only by MQTT (`MQTT_MAX_PACKET`).
    pub max_packet_size: usize,
    pub tls: Option<TlsSettings>,
    /// The outbox on disk (`persistence=`); None: memory only.
    pub persistence: Option<Persistence>,
    /// MQTT 5's CONNECT properties, as given.
    pub connect_properties: Option<ConnectProperties>,
}

impl ClientOptions {
    /// Validates the constructor's arguments.
    pub fn from_python(given: ConstructorArguments<'_, '_>) -> PyResult<Self> {
        let tls = tls::from_python(given.ssl, given.ssl_params)?;
        let client_id = arguments::text(given.client_id, "client_id")?;
        arguments::check_mqtt_string(&client_id, "client_id")?;
        let host = arguments::text(given.server, "server")?;
        if host.trim().is_empty() {
            return Err(PyValueError::new_err("server must not be empty"));
        }
        let credentials = Credentials::from_python(given.user, given.password, given.ws_headers)?;
        let route = Route::from_python(
            RouteArguments {
                transport: given.transport,
                ws_path: given.ws_path,
                proxy: given.proxy,
                ipvtype: given.ipvtype,
            },
            tls.is_some(),
            credentials.has_ws_headers(),
        )?;
        let keepalive = match given.keepalive {
            Some(value) if !value.is_none() => arguments::keepalive(value)?,
            _ => 0,
        };
        let host = host.trim();
        // An IPv6 address may come in brackets, as in URLs.
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(address) => address.to_owned(),
            None => host.to_owned(),
        };
        let port = arguments::port(given.port, route.default_port(tls.is_some()))?;
        let protocol = match given.version {
            Some(value) => arguments::protocol(value)?,
            None => Protocol::V4,
        };
        let connect_properties = match given.connect_properties {
            Some(value) if !value.is_none() => {
                require_mqtt5(protocol, "connect_properties")?;
                Some(properties::connect(value)?)
            }
            _ => None,
        };
        let persistence = persistence(&given)?;
        Ok(ClientOptions {
            target: route.target(&host, port, tls.is_some()),
            port,
            client_id,
            host,
            credentials,
            route,
            keepalive,
            protocol,
            reconnect: given.reconnect,
            resubscribe_delay: if given.manage {
                MANAGED_RESUBSCRIBE_DELAY
            } else {
                Duration::ZERO
            },
            ping_grace: match given.pingmaxnum {
                Some(value) => arguments::bounded_int(value, "pingmaxnum", 0..=1000)? as u32,
                None => 0,
            },
            reconnect_delay: arguments::seconds(given.reconnect_delay, "reconnect_delay")?,
            reconnect_max_delay: arguments::seconds(
                given.reconnect_max_delay,
                "reconnect_max_delay",
            )?,
            connect_timeout: arguments::seconds(given.connect_timeout, "connect_timeout")?,
            ack_timeout: arguments::seconds(given.ack_timeout, "ack_timeout")?,
            max_packet_size: match given.max_packet_size {
                Some(value) => ClientOptions::packet_size(value)?,
                None => DEFAULT_MAX_PACKET_SIZE,
            },
            tls,
            persistence,
            connect_properties,
        })
    }

    /// `what` (an argument, an option) is MQTT 5's: a `ValueError` under MQTT 3.1.1 and 3.1.
    pub fn require_mqtt5(&self, what: &str) -> PyResult<()> {
        require_mqtt5(self.protocol, what)
    }

    /// The will `set_will(topic, msg, qos, retain, properties)` describes, validated; `None`
    /// for no will.
    pub fn will(
        &self,
        topic: Option<&Bound<'_, PyAny>>,
        msg: &Bound<'_, PyAny>,
        qos: Option<&Bound<'_, PyAny>>,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Will>> {
        let properties = match properties {
            Some(value) if !value.is_none() => {
                self.require_mqtt5("the will's properties")?;
                Some(properties::will(value)?)
            }
            _ => None,
        };
        Ok(match topic {
            Some(topic) if !topic.is_none() => {
                let topic = arguments::topic_name(topic)?;
                let payload = arguments::payload(msg)?;
                if payload.len() > 65_535 {
                    return Err(PyValueError::new_err(format!(
                        "the will message is {} bytes; MQTT allows at most 65535",
                        payload.len()
                    )));
                }
                let qos = arguments::optional_qos(qos)?;
                // A topic and a message of at most 65535 bytes each always fit in a CONNECT.
                Some(Will {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties,
                })
            }
            _ => None,
        })
    }

    fn packet_size(value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let limit = MQTT_MAX_PACKET as i64;
        Ok(bounded_int(value, "max_packet_size", MIN_PACKET_SIZE as i64..=limit)? as usize)
    }

    /// Why `connect(clean_session)` is refused before anything is sent: what MQTT 3.1.1 and 3.1
    /// forbid, and brokers answer by refusing or closing the connection. MQTT 5 allows both (the
    /// broker assigns a client id; a password may come alone).
    pub fn connect_refusal(&self, clean_session: bool) -> Option<&'static str> {
        if self.protocol == Protocol::V5 {
            return None;
        }
        if !clean_session && self.client_id.is_empty() {
            return Some(
                "client_id is empty: a persistent session (clean_session=False) needs a client \
                 id (MQTT 3.1.1 brokers refuse it with CONNACK 2, identifier rejected); nothing \
                 was sent",
            );
        }
        self.credentials.password_without_user().then_some(
            "a password without a user name: MQTT 3.1.1 and 3.1 forbid it (brokers close the \
             connection); pass user= too, or no password; nothing was sent",
        )
    }

    /// A new connection's request handle and event loop, for the version asked for: the client
    /// id given or assigned (`client_id`), `clean_session`, the will, the packet `observer`
    /// (packet logs and `stats()`), and a connection attempt bounded by `connect_timeout`; at
    /// most `capacity` requests wait in rumqttc's channel.
    pub fn connection(
        &self,
        client_id: String,
        clean_session: bool,
        will: Option<Will>,
        observer: Arc<PacketLog>,
        connect_timeout: Duration,
        capacity: usize,
    ) -> (Requests, EventLoop) {
        let network = self.network_options(connect_timeout);
        let tls = self.tls.is_some();
        let broker = self.route.broker_address(&self.host, self.port, tls);
        // rumqttc asserts these invariants; the constructor and connect() checked them.
        let keep_alive = Duration::from_secs(u64::from(self.keepalive));
        if self.protocol == Protocol::V5 {
            let mut options = v5::MqttOptions::new(client_id, broker, self.port);
            let given = self.connect_properties.clone().unwrap_or_default();
            // Unless given: clean_session=False asks for a session that outlives the connection
            // (MQTT 3.1.1's meaning), and max_packet_size is what the client announces (and its
            // limit on what comes in).
            let session_expiry = (given.session_expiry_interval)
                .or((!clean_session).then_some(SESSION_NEVER_EXPIRES));
            let max_packet_size = given.max_packet_size.unwrap_or(self.max_packet_size as u32);
            options
                .set_connect_properties(given)
                .set_keep_alive(keep_alive)
                .set_clean_start(clean_session)
                .set_session_expiry_interval(session_expiry)
                .set_max_packet_size(Some(max_packet_size))
                .set_outgoing_inflight_upper_limit(INFLIGHT)
                .set_max_request_batch(REQUEST_BATCH)
                .set_manual_acks(true)
                .set_connection_timeout(network.connection_timeout())
                .set_network_options(network)
                .set_packet_observer(observer);
            if let Some(will) = will {
                options.set_last_will(will.v5());
            }
            self.apply_common(&mut options);
            let (requests, eventloop) = v5::AsyncClient::new(options, capacity);
            return (Requests::V5(requests), EventLoop::V5(Box::new(eventloop)));
        }
        let mut options = MqttOptions::new(client_id.clone(), broker, self.port);
        options
            .set_keep_alive(keep_alive)
            .set_clean_session(clean_session || client_id.is_empty())
            .set_protocol(self.protocol)
            .set_max_packet_size(self.max_packet_size, MQTT_MAX_PACKET)
            .set_inflight(INFLIGHT)
            // A burst of publishes queued while the driver was busy leaves in one write.
            .set_max_request_batch(REQUEST_BATCH)
            // Acknowledge incoming QoS 1/2 only once the application has handled the message.
            .set_manual_acks(true)
            .set_packet_observer(observer);
        if let Some(will) = will {
            options.set_last_will(will.v4());
        }
        self.apply_common(&mut options);
        let (requests, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
        eventloop.set_network_options(network);
        (Requests::V4(requests), EventLoop::V4(eventloop))
    }

    /// What either version's options get alike: the credentials, the TLS server name, the
    /// transport and proxy.
    fn apply_common(&self, options: &mut dyn ConnectOptions) {
        if !self.credentials.expire() {
            // Fixed values: nothing is called. Callables are called by the driver before each
            // connection attempt.
            if let Ok(current) = self.credentials.current() {
                current.apply(options);
            }
        }
        let tls_config = self.tls.as_ref().map(|tls| {
            if let Some(name) = &tls.server_name {
                options.set_tls_server_name(name.clone());
            }
            TlsConfiguration::Rustls(tls.config.clone())
        });
        self.route.apply(options, tls_config);
    }

    /// TCP options for one connection attempt bounded by `connect_timeout`.
    pub fn network_options(&self, connect_timeout: Duration) -> NetworkOptions {
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        // rumqttc counts whole seconds; round up so a short timeout is never zero.
        network.set_connection_timeout(connect_timeout.as_secs_f64().ceil().max(1.0) as u64);
        self.route.apply_network(&mut network);
        network
    }
}

/// `persistence` (a path: `str` or `os.PathLike`) and the options that only apply with it.
fn persistence(given: &ConstructorArguments<'_, '_>) -> PyResult<Option<Persistence>> {
    fn given_value<'py>(value: Option<&Bound<'py, PyAny>>) -> Option<Bound<'py, PyAny>> {
        value.filter(|v| !v.is_none()).cloned()
    }
    let (max_messages, max_bytes, sync) = (
        given_value(given.persistence_max_messages),
        given_value(given.persistence_max_bytes),
        given_value(given.persistence_sync),
    );
    let Some(path) = given_value(given.persistence) else {
        let without = [
            ("persistence_max_messages", &max_messages),
            ("persistence_max_bytes", &max_bytes),
            ("persistence_sync", &sync),
        ];
        if let Some((name, _)) = without.iter().find(|(_, value)| value.is_some()) {
            return Err(PyValueError::new_err(format!(
                "{name} applies to the outbox on disk: give persistence= (a file path) too"
            )));
        }
        return Ok(None);
    };
    let mut limits = DEFAULT_OUTBOX_LIMITS;
    if let Some(value) = max_messages {
        limits.messages = bounded_int(&value, "persistence_max_messages", 1..=i64::MAX)? as usize;
    }
    if let Some(value) = max_bytes {
        limits.bytes = bounded_int(&value, "persistence_max_bytes", 1..=i64::MAX)? as usize;
    }
    let durability = match sync {
        None => Durability::Normal,
        Some(value) => match arguments::text(&value, "persistence_sync")?.as_str() {
            "normal" => Durability::Normal,
            "full" => Durability::Full,
            other => {
                return Err(PyValueError::new_err(format!(
                    "persistence_sync must be \"normal\" or \"full\", not {other:?}"
                )))
            }
        },
    };
    Ok(Some(Persistence {
        path: outbox_path(&path)?,
        durability,
        limits,
    }))
}

/// The outbox's path: a `str` or an `os.PathLike` giving one.
fn outbox_path(value: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let path = if value.hasattr("__fspath__")? {
        value.call_method0("__fspath__")?
    } else {
        value.clone()
    };
    let Ok(path) = path.extract::<String>() else {
        return Err(PyTypeError::new_err(format!(
            "persistence must be a file path (str or os.PathLike giving a str), not {}",
            path.get_type().name()?
        )));
    };
    if path.is_empty() || path.contains('\0') {
        return Err(PyValueError::new_err(
            "persistence must be a file path, not an empty string or one with a NUL character",
        ));
    }
    Ok(PathBuf::from(path))
}

/// A will, validated: what the broker publishes when the link dies.
#[derive(Clone)]
pub struct Will {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    /// MQTT 5 only: the publish properties and `will_delay_interval`.
    properties: Option<LastWillProperties>,
}

impl Will {
    fn v4(self) -> rumqttc::LastWill {
        rumqttc::LastWill::new(self.topic, self.payload, self.qos, self.retain)
    }

    fn v5(self) -> v5::mqttbytes::v5::LastWill {
        let qos = protocol::v5_qos(self.qos);
        v5::mqttbytes::v5::LastWill::new(
            self.topic,
            self.payload,
            qos,
            self.retain,
            self.properties,
        )
    }
}

/// `what` is MQTT 5's: a `ValueError` under MQTT 3.1.1 and 3.1.
fn require_mqtt5(protocol: Protocol, what: &str) -> PyResult<()> {
    match protocol {
        Protocol::V5 => Ok(()),
        Protocol::V4 => Err(PyValueError::new_err(format!(
            "{what} needs version=5 (MQTT 5); this client speaks MQTT 3.1.1 (version=4)"
        ))),
        Protocol::V3 => Err(PyValueError::new_err(format!(
            "{what} needs version=5 (MQTT 5); this client speaks MQTT 3.1 (version=3)"
        ))),
    }
}
