//! The names of reason codes: MQTT 3.1.1's CONNACK return codes, and MQTT 5's reason codes
//! (one table for every packet: MQTT 5 gives each number one meaning, 2.4), as the specifications
//! write them. A code of 0x80 or more is a failure.

use rumqttc::ConnectReturnCode;

/// The first code that means a failure (MQTT 5 2.4).
pub const FAILURE: u8 = 0x80;

/// An MQTT 5 reason code's name (MQTT 5 2.4, table 2-6); "unknown reason code" for a number the
/// specification does not define.
pub fn name(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x11 => "No subscription existed",
        0x18 => "Continue authentication",
        0x19 => "Re-authenticate",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription Identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "unknown reason code",
    }
}

/// An MQTT 3.1.1 CONNACK return code's number and its name in that specification (3.2.2.3).
pub fn connack_v4(code: ConnectReturnCode) -> (u8, &'static str) {
    match code {
        ConnectReturnCode::Success => (0, "accepted"),
        ConnectReturnCode::RefusedProtocolVersion => (1, "unacceptable protocol version"),
        ConnectReturnCode::BadClientId => (2, "identifier rejected"),
        ConnectReturnCode::ServiceUnavailable => (3, "server unavailable"),
        ConnectReturnCode::BadUserNamePassword => (4, "bad user name or password"),
        ConnectReturnCode::NotAuthorized => (5, "not authorized"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_code_of_mqtt_5_has_its_name() {
        let defined = (0x80..=0xA2).filter(|code| name(*code) != "unknown reason code");
        // MQTT 5 defines every code from 0x80 to 0xA2.
        assert_eq!(defined.count(), 0xA2 - 0x80 + 1);
        assert_eq!(name(0x87), "Not authorized");
        assert_eq!(name(0x7F), "unknown reason code");
    }
}
