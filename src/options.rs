//! A client's options: what the constructor validated, and the rumqttc options built from them.

use std::time::Duration;

use pyo3::prelude::*;
use rumqttc::{LastWill, MqttOptions, NetworkOptions, TlsConfiguration, Transport};

use crate::arguments::bounded_int;
use crate::tls::TlsSettings;

/// The largest remaining length an MQTT packet can declare (four length bytes).
pub const MQTT_MAX_REMAINING: usize = 268_435_455;
/// Smallest packet limit accepted: a CONNECT with a long client id must still fit.
const MIN_PACKET_SIZE: usize = 1024;

/// Everything a connection needs, validated once in the constructor.
#[derive(Clone)]
pub struct ClientOptions {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    /// `host:port` for messages, computed once (`ClientOptions::target`).
    pub target: String,
    pub credentials: Option<(String, String)>,
    pub keepalive: u16,
    pub reconnect: bool,
    pub ping_grace: u32,
    pub reconnect_delay: Duration,
    pub reconnect_max_delay: Duration,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub max_packet_size: usize,
    pub tls: Option<TlsSettings>,
}

impl ClientOptions {
    /// `host:port` as messages name the broker (`[::1]:1883` for an IPv6 address).
    pub fn target(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    pub fn packet_size(value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let limit = (MQTT_MAX_REMAINING + 5) as i64;
        Ok(bounded_int(value, "max_packet_size", MIN_PACKET_SIZE as i64..=limit)? as usize)
    }

    pub fn mqtt_options(&self, clean_session: bool, will: Option<LastWill>) -> MqttOptions {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        // rumqttc asserts these invariants; the constructor and connect() checked them.
        options
            .set_keep_alive(Duration::from_secs(u64::from(self.keepalive)))
            .set_clean_session(clean_session || self.client_id.is_empty())
            .set_max_packet_size(self.max_packet_size, self.max_packet_size)
            .set_inflight(100)
            // A burst of publishes queued while the driver was busy leaves in one write.
            .set_max_request_batch(64)
            // Acknowledge incoming QoS 1/2 only once the application has handled the message.
            .set_manual_acks(true);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(will) = will {
            options.set_last_will(will);
        }
        if let Some(tls) = &self.tls {
            options
                .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                    tls.config.clone(),
                )))
                .set_tls_server_name(tls.server_name.clone());
        }
        options
    }

    /// TCP options for one connection attempt bounded by `connect_timeout`.
    pub fn network_options(connect_timeout: Duration) -> NetworkOptions {
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        // rumqttc counts whole seconds; round up so a short timeout is never zero.
        network.set_connection_timeout(connect_timeout.as_secs_f64().ceil().max(1.0) as u64);
        network
    }
}
