//! MQTT 5 packets in paho-mqtt's words: the lines of MQTT 3.1.1 (`super`), plus what paho-mqtt
//! adds at MQTT 5 (`properties=[...]` on CONNECT, CONNACK and PUBLISH, the reason code of CONNACK
//! and DISCONNECT), plus the reason code of an acknowledgement that is not 0 (a refusal, or "No
//! matching subscribers"). Properties are written as paho-mqtt writes them (`[MessageExpiryInterval
//! : 60, UserProperty : [('k', 'v')]]`), in the order of their identifiers, with strings quoted as
//! Python's `repr` does. Never written: authentication data, and the values of a CONNECT's user
//! properties (they may carry a token; their names are shown).

use std::fmt::{self, Display, Formatter, Write};

use rumqttc::v5::mqttbytes::v5::{
    ConnAckProperties, ConnectProperties, DisconnectProperties, Filter, Packet, PublishProperties,
    RetainForwardRule, SubscribeProperties,
};

use super::Quoted;
use super::{write_codes, write_payload_size, write_publish_head, write_topics, ConnectFlags};
use crate::reason_codes;

/// An MQTT 5 packet in paho-mqtt's words.
pub struct Described<'a>(pub &'a Packet);

impl Display for Described<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Packet::Connect(connect, will, login) => {
                let flags = ConnectFlags {
                    user: login
                        .as_ref()
                        .is_some_and(|login| !login.username.is_empty()),
                    password: login
                        .as_ref()
                        .is_some_and(|login| !login.password.is_empty()),
                    will: will.as_ref().map(|will| (will.retain, will.qos as u8)),
                    clean: connect.clean_start,
                    keep_alive: connect.keep_alive,
                };
                flags.write(f, &connect.client_id)?;
                let properties = connect.properties.as_ref().map(connect_properties);
                write!(
                    f,
                    " properties={}",
                    Properties(properties.unwrap_or_default())
                )
            }
            Packet::ConnAck(ack) => {
                let code = u8::from(ack.code);
                let properties = ack.properties.as_ref().map(connack_properties);
                write!(
                    f,
                    "CONNACK ({}, {}) properties={}",
                    u8::from(ack.session_present),
                    Reason(code),
                    Properties(properties.unwrap_or_default())
                )
            }
            Packet::Publish(publish) => {
                let flags = (publish.dup, publish.qos as u8, publish.retain, publish.pkid);
                write_publish_head(f, flags, &String::from_utf8_lossy(&publish.topic))?;
                let properties = publish.properties.as_ref().map(publish_properties);
                write!(
                    f,
                    ", properties={}",
                    Properties(properties.unwrap_or_default())
                )?;
                write_payload_size(f, publish.payload.len())
            }
            Packet::PubAck(ack) => acknowledgement(f, "PUBACK", ack.pkid, u8::from(ack.reason)),
            Packet::PubRec(ack) => acknowledgement(f, "PUBREC", ack.pkid, u8::from(ack.reason)),
            Packet::PubRel(ack) => acknowledgement(f, "PUBREL", ack.pkid, u8::from(ack.reason)),
            Packet::PubComp(ack) => acknowledgement(f, "PUBCOMP", ack.pkid, u8::from(ack.reason)),
            Packet::Subscribe(subscribe) => {
                write!(f, "SUBSCRIBE (d0, m{}) [", subscribe.pkid)?;
                for (i, filter) in subscribe.filters.iter().enumerate() {
                    let comma = if i > 0 { ", " } else { "" };
                    write!(f, "{comma}{}", Subscription(filter))?;
                }
                f.write_char(']')?;
                match subscribe.properties.as_ref().map(subscribe_properties) {
                    Some(properties) => write!(f, " properties={}", Properties(properties)),
                    None => Ok(()),
                }
            }
            Packet::SubAck(ack) => {
                write!(f, "SUBACK (Mid: {}) ", ack.pkid)?;
                write_codes(f, ack.return_codes.iter().map(|code| u8::from(*code)))
            }
            Packet::Unsubscribe(unsubscribe) => {
                write!(f, "UNSUBSCRIBE (d0, m{}) ", unsubscribe.pkid)?;
                write_topics(f, &unsubscribe.filters)
            }
            Packet::UnsubAck(ack) => {
                write!(f, "UNSUBACK (Mid: {}) ", ack.pkid)?;
                write_codes(f, ack.reasons.iter().map(|code| u8::from(*code)))
            }
            Packet::PingReq(_) => f.write_str("PINGREQ"),
            Packet::PingResp(_) => f.write_str("PINGRESP"),
            Packet::Disconnect(disconnect) => {
                let code = disconnect.reason_code as u8;
                let properties = disconnect.properties.as_ref().map(disconnect_properties);
                write!(
                    f,
                    "DISCONNECT reasonCode={} properties={}",
                    DisconnectReason(code),
                    Properties(properties.unwrap_or_default())
                )
            }
            // Its data is authentication data: never shown.
            Packet::Auth(auth) => write!(f, "AUTH reasonCode={:?}", auth.code),
        }
    }
}

/// `PUBACK (Mid: 3)`, and the reason code when it is not 0.
fn acknowledgement(f: &mut Formatter<'_>, name: &str, pkid: u16, code: u8) -> fmt::Result {
    write!(f, "{name} (Mid: {pkid})")?;
    match code {
        0 => Ok(()),
        code => write!(f, " reasonCode={}", Reason(code)),
    }
}

/// A reason code as a number and its name: `0x87 Not authorized`.
struct Reason(u8);

impl Display for Reason {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} {}", self.0, reason_codes::name(self.0))
    }
}

/// A DISCONNECT's reason code: 0 is "Normal disconnection" there.
struct DisconnectReason(u8);

impl Display for DisconnectReason {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("0x00 Normal disconnection"),
            code => Reason(code).fmt(f),
        }
    }
}

/// A filter with its options, as paho-mqtt writes a subscription.
struct Subscription<'a>(&'a Filter);

impl Display for Subscription<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let filter = self.0;
        let retain_handling = match filter.retain_forward_rule {
            RetainForwardRule::OnEverySubscribe => 0,
            RetainForwardRule::OnNewSubscribe => 1,
            RetainForwardRule::Never => 2,
        };
        write!(
            f,
            "({}, {{QoS={}, noLocal={}, retainAsPublished={}, retainHandling={retain_handling}}})",
            Quoted(&filter.path),
            filter.qos as u8,
            PythonBool(filter.nolocal),
            PythonBool(filter.preserve_retain),
        )
    }
}

struct PythonBool(bool);

impl Display for PythonBool {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "True" } else { "False" })
    }
}

/// A property's value.
enum Value<'a> {
    Number(u64),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// User properties: `[('k', 'v'), ...]`.
    Pairs(&'a [(String, String)]),
    /// User properties whose values are not shown: `[('k', ...), ...]`.
    Names(&'a [(String, String)]),
    /// Subscription identifiers.
    Numbers(&'a [usize]),
}

/// Properties in paho-mqtt's form: `[Name : value, ...]`.
struct Properties<'a>(Vec<(&'static str, Value<'a>)>);

impl Display for Properties<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            let comma = if i > 0 { ", " } else { "" };
            write!(f, "{comma}{name} : ")?;
            match value {
                Value::Number(number) => write!(f, "{number}")?,
                Value::Text(text) => Quoted(text).fmt(f)?,
                Value::Bytes(bytes) => write_bytes(f, bytes)?,
                Value::Pairs(pairs) => write_pairs(f, pairs, true)?,
                Value::Names(pairs) => write_pairs(f, pairs, false)?,
                Value::Numbers(numbers) => write!(f, "{numbers:?}")?,
            }
        }
        f.write_char(']')
    }
}

/// `[('k', 'v'), ...]`, or `[('k', ...), ...]` without the values.
fn write_pairs(f: &mut Formatter<'_>, pairs: &[(String, String)], values: bool) -> fmt::Result {
    f.write_char('[')?;
    for (i, (key, value)) in pairs.iter().enumerate() {
        let comma = if i > 0 { ", " } else { "" };
        write!(f, "{comma}({}, ", Quoted(key))?;
        match values {
            true => write!(f, "{})", Quoted(value))?,
            false => f.write_str("...)")?,
        }
    }
    f.write_char(']')
}

/// Bytes as Python's `repr` writes them: `b'ab\x00'`.
fn write_bytes(f: &mut Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("b'")?;
    for &byte in bytes {
        match byte {
            b'\'' => f.write_str("\\'")?,
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            0x20..=0x7e => f.write_char(char::from(byte))?,
            byte => write!(f, "\\x{byte:02x}")?,
        }
    }
    f.write_char('\'')
}

/// Collects the properties that are set, in the order they are pushed.
#[derive(Default)]
struct List<'a>(Vec<(&'static str, Value<'a>)>);

impl<'a> List<'a> {
    fn number(mut self, name: &'static str, value: Option<impl Into<u64>>) -> Self {
        if let Some(value) = value {
            self.0.push((name, Value::Number(value.into())));
        }
        self
    }

    fn text(mut self, name: &'static str, value: &'a Option<String>) -> Self {
        if let Some(value) = value {
            self.0.push((name, Value::Text(value)));
        }
        self
    }

    fn pairs(mut self, name: &'static str, pairs: &'a [(String, String)]) -> Self {
        if !pairs.is_empty() {
            self.0.push((name, Value::Pairs(pairs)));
        }
        self
    }

    fn done(self) -> Vec<(&'static str, Value<'a>)> {
        self.0
    }
}

fn publish_properties(p: &PublishProperties) -> Vec<(&'static str, Value<'_>)> {
    let mut list = List::default()
        .number("PayloadFormatIndicator", p.payload_format_indicator)
        .number("MessageExpiryInterval", p.message_expiry_interval)
        .text("ContentType", &p.content_type)
        .text("ResponseTopic", &p.response_topic);
    if let Some(data) = &p.correlation_data {
        list.0.push(("CorrelationData", Value::Bytes(data)));
    }
    if !p.subscription_identifiers.is_empty() {
        let ids = Value::Numbers(&p.subscription_identifiers);
        list.0.push(("SubscriptionIdentifier", ids));
    }
    list.number("TopicAlias", p.topic_alias)
        .pairs("UserProperty", &p.user_properties)
        .done()
}

fn connect_properties(p: &ConnectProperties) -> Vec<(&'static str, Value<'_>)> {
    let mut list = List::default()
        .number("SessionExpiryInterval", p.session_expiry_interval)
        .text("AuthenticationMethod", &p.authentication_method)
        .number("RequestProblemInformation", p.request_problem_info)
        .number("RequestResponseInformation", p.request_response_info)
        .number("ReceiveMaximum", p.receive_maximum)
        .number("TopicAliasMaximum", p.topic_alias_max);
    if !p.user_properties.is_empty() {
        list.0
            .push(("UserProperty", Value::Names(&p.user_properties)));
    }
    list.number("MaximumPacketSize", p.max_packet_size).done()
}

fn connack_properties(p: &ConnAckProperties) -> Vec<(&'static str, Value<'_>)> {
    List::default()
        .number("SessionExpiryInterval", p.session_expiry_interval)
        .text("AssignedClientIdentifier", &p.assigned_client_identifier)
        .number("ServerKeepAlive", p.server_keep_alive)
        .text("AuthenticationMethod", &p.authentication_method)
        .text("ResponseInformation", &p.response_information)
        .text("ServerReference", &p.server_reference)
        .text("ReasonString", &p.reason_string)
        .number("ReceiveMaximum", p.receive_max)
        .number("TopicAliasMaximum", p.topic_alias_max)
        .number("MaximumQoS", p.max_qos)
        .number("RetainAvailable", p.retain_available)
        .pairs("UserProperty", &p.user_properties)
        .number("MaximumPacketSize", p.max_packet_size)
        .number(
            "WildcardSubscriptionAvailable",
            p.wildcard_subscription_available,
        )
        .number(
            "SubscriptionIdentifierAvailable",
            p.subscription_identifiers_available,
        )
        .number(
            "SharedSubscriptionAvailable",
            p.shared_subscription_available,
        )
        .done()
}

fn disconnect_properties(p: &DisconnectProperties) -> Vec<(&'static str, Value<'_>)> {
    List::default()
        .number("SessionExpiryInterval", p.session_expiry_interval)
        .text("ServerReference", &p.server_reference)
        .text("ReasonString", &p.reason_string)
        .pairs("UserProperty", &p.user_properties)
        .done()
}

fn subscribe_properties(p: &SubscribeProperties) -> Vec<(&'static str, Value<'_>)> {
    List::default()
        .number("SubscriptionIdentifier", p.id.map(|id| id as u64))
        .pairs("UserProperty", &p.user_properties)
        .done()
}

#[cfg(test)]
mod tests;
