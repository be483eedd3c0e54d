//! Why a connection failed, from either of rumqttc's clients (`rumqttc` for MQTT 3.1.1 and 3.1,
//! `rumqttc::v5` for MQTT 5): their errors are two types with mostly the same cases. The driver
//! and `errors` ask a [`LinkError`] the questions they need answered, never which version it is.

use std::io;

use rumqttc::mqttbytes::Error as PacketError;
use rumqttc::v5;
use rumqttc::{ConnectionError, StateError};

use crate::reason_codes;

/// AUTH's packet type (MQTT 5 2.1.2).
const AUTH_PACKET_TYPE: u8 = 15;

/// A failed poll of either client's event loop.
#[derive(Debug)]
pub enum LinkError {
    V4(ConnectionError),
    V5(v5::ConnectionError),
}

/// A reason code the broker gave (CONNACK refusal, DISCONNECT), with its name and the reason
/// string it may have sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: u8,
    pub name: &'static str,
    pub text: Option<String>,
}

impl Reason {
    /// `0x87 Not authorized` (and `: the broker's words` when it sent a reason string).
    pub fn describe(&self) -> String {
        match &self.text {
            Some(text) => format!("{:#04x} {}: {text}", self.code, self.name),
            None => format!("{:#04x} {}", self.code, self.name),
        }
    }
}

impl LinkError {
    /// The error itself, for walking its chain of causes.
    pub fn as_error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            LinkError::V4(error) => error,
            LinkError::V5(error) => error,
        }
    }

    /// The broker refused the connection in its CONNACK: the code, and the code in words as its
    /// specification names it ("return code 5 (not authorized)" under MQTT 3.1.1 and 3.1,
    /// "reason code 0x87 Not authorized" under MQTT 5).
    pub fn refusal(&self) -> Option<(u8, String)> {
        match self {
            LinkError::V4(ConnectionError::ConnectionRefused(code)) => {
                let (code, name) = reason_codes::connack_v4(*code);
                Some((code, format!("return code {code} ({name})")))
            }
            LinkError::V5(v5::ConnectionError::ConnectionRefused(code)) => {
                let code = u8::from(*code);
                let name = reason_codes::name(code);
                Some((code, format!("reason code {code:#04x} {name}")))
            }
            _ => None,
        }
    }

    /// The broker closed the connection with a DISCONNECT (MQTT 5 only): its reason.
    pub fn server_disconnect(&self) -> Option<Reason> {
        let LinkError::V5(v5::ConnectionError::MqttState(v5::StateError::ServerDisconnect {
            reason_code,
            reason_string,
        })) = self
        else {
            return None;
        };
        let code = *reason_code as u8;
        Some(Reason {
            code,
            name: reason_codes::name(code),
            text: reason_string.clone(),
        })
    }

    /// The connection attempt ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            LinkError::V4(ConnectionError::NetworkTimeout)
                | LinkError::V5(v5::ConnectionError::Timeout(_))
        )
    }

    /// The I/O error behind the failure, when it is one (the socket's, or the codec's).
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            LinkError::V4(
                ConnectionError::Io(io)
                | ConnectionError::MqttState(StateError::Io(io))
                | ConnectionError::MqttState(StateError::Deserialization(PacketError::Io(io))),
            ) => Some(io),
            LinkError::V5(
                v5::ConnectionError::Io(io)
                | v5::ConnectionError::MqttState(v5::StateError::Io(io))
                | v5::ConnectionError::MqttState(v5::StateError::Deserialization(
                    v5::mqttbytes::Error::Io(io),
                )),
            ) => Some(io),
            _ => None,
        }
    }

    /// The failure of the first I/O of a connection attempt (a refused TCP connect, a DNS
    /// failure), as opposed to the codec's.
    pub fn connect_io(&self) -> Option<&io::Error> {
        match self {
            LinkError::V4(
                ConnectionError::Io(io) | ConnectionError::MqttState(StateError::Io(io)),
            )
            | LinkError::V5(
                v5::ConnectionError::Io(io)
                | v5::ConnectionError::MqttState(v5::StateError::Io(io)),
            ) => Some(io),
            _ => None,
        }
    }

    /// The broker ended the connection (end of stream, reset, broken pipe), without a word
    /// under MQTT 3.1.1, or with a DISCONNECT under MQTT 5.
    pub fn closed_by_peer(&self) -> bool {
        let aborted = matches!(
            self,
            LinkError::V4(ConnectionError::MqttState(StateError::ConnectionAborted))
                | LinkError::V5(v5::ConnectionError::MqttState(
                    v5::StateError::ConnectionAborted | v5::StateError::ServerDisconnect { .. }
                ))
        );
        aborted
            || self.io().is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::BrokenPipe
                )
            })
    }

    /// The broker sent a packet longer (after its fixed header) than the client accepts: its
    /// length.
    pub fn incoming_too_large(&self) -> Option<usize> {
        match self {
            LinkError::V4(ConnectionError::MqttState(StateError::Deserialization(
                PacketError::PayloadSizeLimitExceeded(size),
            ))) => Some(*size),
            LinkError::V5(v5::ConnectionError::MqttState(v5::StateError::Deserialization(
                v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. },
            ))) => Some(*pkt_size),
            _ => None,
        }
    }

    /// The broker sent an AUTH packet (MQTT 5 enhanced authentication), which umqtt does not
    /// support: rumqttc's MQTT 5 client reads none, so it is a packet of an invalid type (15).
    pub fn sent_auth(&self) -> bool {
        matches!(
            self,
            LinkError::V5(v5::ConnectionError::MqttState(
                v5::StateError::Deserialization(v5::mqttbytes::Error::InvalidPacketType(
                    AUTH_PACKET_TYPE
                ))
            ))
        )
    }

    /// The TLS server chose none of the ALPN protocols offered (vendored patch 24).
    pub fn no_common_alpn(&self) -> bool {
        matches!(
            self,
            LinkError::V4(ConnectionError::Tls(rumqttc::TlsError::NoAlpnProtocol))
                | LinkError::V5(v5::ConnectionError::Tls(rumqttc::TlsError::NoAlpnProtocol))
        )
    }

    /// The WebSocket upgrade succeeded without the `mqtt` subprotocol: why.
    pub fn upgrade_without_mqtt(&self) -> Option<String> {
        match self {
            LinkError::V4(ConnectionError::ResponseValidation(why))
            | LinkError::V5(v5::ConnectionError::ResponseValidation(why)) => Some(why.to_string()),
            _ => None,
        }
    }

    /// The proxy failed (not its refusal, which has a cause of its own): the error.
    pub fn proxy(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::V4(ConnectionError::Proxy(error))
            | LinkError::V5(v5::ConnectionError::Proxy(error)) => Some(error),
            _ => None,
        }
    }

    /// A TLS failure that is not rustls' own (rustls' is found in the chain of causes).
    pub fn tls(&self) -> Option<&rumqttc::TlsError> {
        match self {
            LinkError::V4(ConnectionError::Tls(error))
            | LinkError::V5(v5::ConnectionError::Tls(error)) => Some(error),
            _ => None,
        }
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sent_auth() {
            // rumqttc's words: "Invalid packet type = 15".
            return f.write_str(
                "the broker sent AUTH (MQTT 5 enhanced authentication), which umqtt does not \
                 support",
            );
        }
        match self {
            LinkError::V4(error) => error.fmt(f),
            LinkError::V5(error) => error.fmt(f),
        }
    }
}

impl From<io::Error> for LinkError {
    /// A failure of umqtt's own before the connection attempt (a credentials callable).
    fn from(error: io::Error) -> Self {
        LinkError::V4(ConnectionError::Io(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_disconnect_names_its_reason() {
        let error = LinkError::V5(v5::ConnectionError::MqttState(
            v5::StateError::ServerDisconnect {
                reason_code: v5::mqttbytes::v5::DisconnectReasonCode::AdministrativeAction,
                reason_string: Some("kicked".into()),
            },
        ));
        let reason = error.server_disconnect().map(|reason| reason.describe());
        assert_eq!(
            reason.as_deref(),
            Some("0x98 Administrative action: kicked")
        );
        assert!(error.closed_by_peer());
    }

    #[test]
    fn an_auth_packet_is_named_as_unsupported() {
        let auth = LinkError::V5(v5::ConnectionError::MqttState(
            v5::StateError::Deserialization(v5::mqttbytes::Error::InvalidPacketType(15)),
        ));
        assert!(auth.sent_auth());
        assert!(auth.to_string().contains("AUTH"), "{auth}");
        assert!(auth.to_string().contains("not support"), "{auth}");
        let reserved = LinkError::V4(ConnectionError::MqttState(StateError::Deserialization(
            PacketError::InvalidPacketType(15),
        )));
        assert!(
            !reserved.sent_auth(),
            "MQTT 3.1.1 has no AUTH: 15 is reserved there"
        );
    }

    #[test]
    fn refusals_are_named_by_their_version() {
        let v4 = LinkError::V4(ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::NotAuthorized,
        ));
        let v5 = LinkError::V5(v5::ConnectionError::ConnectionRefused(
            v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized,
        ));
        let v4 = v4.refusal();
        let v5 = v5.refusal();
        assert_eq!(v4, Some((5, "return code 5 (not authorized)".into())));
        assert_eq!(v5, Some((0x87, "reason code 0x87 Not authorized".into())));
    }
}
