//! Every packet a connection writes or reads, as rumqttc's packet observer sees it (vendored
//! patch 25, and 52 for MQTT 5): counted for `stats()`, and logged at DEBUG under the
//! `umqtt.packets` logger in the words paho-mqtt users know (`Sending PUBLISH (d0, q1, r0, m3),
//! 'topic', ... (5 bytes)`) when that logger takes DEBUG records. Whether it does is one atomic
//! load (`logging`), so nothing is formatted while nobody listens. A CONNECT shows which fields
//! it has, never the password, the user name or the will; a PUBLISH shows its payload's size,
//! never the payload. MQTT 5 packets (`mqtt5`) add their reason codes and properties.

use std::fmt::{self, Display, Formatter, Write};
use std::sync::Arc;

use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
use rumqttc::{v5, Packet, PacketObserver, SubscribeReasonCode};

use crate::logging;
use crate::stats::Stats;

mod mqtt5;

/// A connection's observer: counts into the client's `Stats`, logs when asked to.
pub struct PacketLog {
    stats: Arc<Stats>,
}

impl PacketLog {
    pub fn new(stats: Arc<Stats>) -> Self {
        PacketLog { stats }
    }
}

impl PacketObserver for PacketLog {
    fn outgoing(&self, packet: &Packet) {
        let publish = matches!(packet, Packet::Publish(_));
        self.stats.on_sent(publish, packet.size());
        if logging::packets_logged() {
            log::debug!(target: logging::PACKETS, "Sending {}", Described(packet));
        }
    }

    fn incoming(&self, packet: &Packet) {
        let publish = matches!(packet, Packet::Publish(_));
        self.stats.on_received(publish, packet.size());
        if logging::packets_logged() {
            log::debug!(target: logging::PACKETS, "Received {}", Described(packet));
        }
    }
}

impl v5::PacketObserver for PacketLog {
    fn outgoing(&self, packet: &Packet5) {
        let publish = matches!(packet, Packet5::Publish(_));
        self.stats.on_sent(publish, packet.size());
        if logging::packets_logged() {
            log::debug!(target: logging::PACKETS, "Sending {}", mqtt5::Described(packet));
        }
    }

    fn incoming(&self, packet: &Packet5) {
        let publish = matches!(packet, Packet5::Publish(_));
        self.stats.on_received(publish, packet.size());
        if logging::packets_logged() {
            log::debug!(target: logging::PACKETS, "Received {}", mqtt5::Described(packet));
        }
    }
}

/// A packet in paho-mqtt's words.
struct Described<'a>(&'a Packet);

impl Display for Described<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Packet::Connect(connect) => {
                let login = connect.login.as_ref();
                let flags = ConnectFlags {
                    user: login.is_some_and(|login| !login.username.is_empty()),
                    password: login.is_some_and(|login| !login.password.is_empty()),
                    will: (connect.last_will.as_ref()).map(|will| (will.retain, will.qos as u8)),
                    clean: connect.clean_session,
                    keep_alive: connect.keep_alive,
                };
                flags.write(f, &connect.client_id)
            }
            Packet::ConnAck(ack) => write!(
                f,
                "CONNACK ({}, {})",
                u8::from(ack.session_present),
                ack.code as u8
            ),
            Packet::Publish(publish) => {
                let flags = (publish.dup, publish.qos as u8, publish.retain, publish.pkid);
                write_publish_head(f, flags, &publish.topic)?;
                write_payload_size(f, publish.payload.len())
            }
            Packet::PubAck(ack) => write!(f, "PUBACK (Mid: {})", ack.pkid),
            Packet::PubRec(ack) => write!(f, "PUBREC (Mid: {})", ack.pkid),
            Packet::PubRel(ack) => write!(f, "PUBREL (Mid: {})", ack.pkid),
            Packet::PubComp(ack) => write!(f, "PUBCOMP (Mid: {})", ack.pkid),
            Packet::Subscribe(subscribe) => {
                write!(f, "SUBSCRIBE (d0, m{}) [", subscribe.pkid)?;
                for (i, filter) in subscribe.filters.iter().enumerate() {
                    let comma = if i > 0 { ", " } else { "" };
                    write!(f, "{comma}({}, {})", Quoted(&filter.path), filter.qos as u8)?;
                }
                f.write_char(']')
            }
            Packet::SubAck(ack) => {
                write!(f, "SUBACK (Mid: {}) ", ack.pkid)?;
                let codes = ack.return_codes.iter().map(|code| match code {
                    SubscribeReasonCode::Success(qos) => *qos as u8,
                    SubscribeReasonCode::Failure => 0x80,
                });
                write_codes(f, codes)
            }
            Packet::Unsubscribe(unsubscribe) => {
                write!(f, "UNSUBSCRIBE (d0, m{}) ", unsubscribe.pkid)?;
                write_topics(f, &unsubscribe.topics)
            }
            Packet::UnsubAck(ack) => write!(f, "UNSUBACK (Mid: {})", ack.pkid),
            Packet::PingReq => f.write_str("PINGREQ"),
            Packet::PingResp => f.write_str("PINGRESP"),
            Packet::Disconnect => f.write_str("DISCONNECT"),
        }
    }
}

/// What a CONNECT line shows, in paho-mqtt's order: which credentials it has (never them), the
/// will's retain flag and QoS (never the will), the clean session or start flag, the keep-alive.
struct ConnectFlags {
    user: bool,
    password: bool,
    /// The will's retain flag and QoS.
    will: Option<(bool, u8)>,
    clean: bool,
    keep_alive: u16,
}

impl ConnectFlags {
    fn write(&self, f: &mut Formatter<'_>, client_id: &str) -> fmt::Result {
        write!(
            f,
            "CONNECT (u{}, p{}, wr{}, wq{}, wf{}, c{}, k{}) client_id=b{}",
            u8::from(self.user),
            u8::from(self.password),
            u8::from(self.will.is_some_and(|(retain, _)| retain)),
            self.will.map_or(0, |(_, qos)| qos),
            u8::from(self.will.is_some()),
            u8::from(self.clean),
            self.keep_alive,
            Quoted(client_id)
        )
    }
}

/// `PUBLISH (d0, q1, r0, m3), 'topic'` from (dup, QoS, retain, packet id) and the topic.
fn write_publish_head(
    f: &mut Formatter<'_>,
    (dup, qos, retain, pkid): (bool, u8, bool, u16),
    topic: &str,
) -> fmt::Result {
    write!(
        f,
        "PUBLISH (d{}, q{qos}, r{}, m{pkid}), {}",
        u8::from(dup),
        u8::from(retain),
        Quoted(topic)
    )
}

/// The end of a PUBLISH line: its payload's size, never the payload.
fn write_payload_size(f: &mut Formatter<'_>, size: usize) -> fmt::Result {
    match size {
        0 => f.write_str(" (NULL payload)"),
        size => write!(f, ", ... ({size} bytes)"),
    }
}

/// Reason codes as a list of numbers: `[1, 128]`.
fn write_codes(f: &mut Formatter<'_>, codes: impl Iterator<Item = u8>) -> fmt::Result {
    f.write_char('[')?;
    for (i, code) in codes.enumerate() {
        write!(f, "{}{code}", if i > 0 { ", " } else { "" })?;
    }
    f.write_char(']')
}

/// Topics (or filters) as a list: `['a/#', 'b']`.
fn write_topics(f: &mut Formatter<'_>, topics: &[String]) -> fmt::Result {
    f.write_char('[')?;
    for (i, topic) in topics.iter().enumerate() {
        write!(f, "{}{}", if i > 0 { ", " } else { "" }, Quoted(topic))?;
    }
    f.write_char(']')
}

/// Text between single quotes, escaped as Python's `repr` does: a topic with a newline or a
/// quote in it cannot forge or break a log line.
pub(crate) struct Quoted<'a>(pub &'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('\'')?;
        for c in self.0.chars() {
            match c {
                '\'' => f.write_str("\\'")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() && u32::from(c) < 0x100 => {
                    write!(f, "\\x{:02x}", u32::from(c))?
                }
                c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('\'')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{
        ConnAck, Connect, ConnectReturnCode, LastWill, Login, PubAck, PubComp, PubRec, PubRel,
        Publish, QoS, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe,
    };

    fn described(packet: Packet) -> String {
        Described(&packet).to_string()
    }

    #[test]
    fn a_connect_shows_its_flags_never_its_credentials_or_will() {
        let mut connect = Connect::new("dev-1");
        connect.keep_alive = 60;
        connect.clean_session = true;
        connect.login = Some(Login::new("carol", "pw-SECRET"));
        connect.last_will = Some(LastWill::new("w", "will-SECRET", QoS::AtLeastOnce, true));
        let text = described(Packet::Connect(connect));
        assert_eq!(
            text,
            "CONNECT (u1, p1, wr1, wq1, wf1, c1, k60) client_id=b'dev-1'"
        );
        let bare = described(Packet::Connect(Connect::new("")));
        assert_eq!(
            bare,
            "CONNECT (u0, p0, wr0, wq0, wf0, c1, k10) client_id=b''"
        );
    }

    #[test]
    fn every_other_packet_in_paho_words() {
        let mut publish = Publish::new("a/b", QoS::AtLeastOnce, "hello");
        publish.pkid = 3;
        let mut empty = Publish::new("a/b", QoS::AtMostOnce, "");
        empty.retain = true;
        let mut subscribe = Subscribe::new_many([
            SubscribeFilter::new("a/#".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("c".into(), QoS::AtMostOnce),
        ]);
        subscribe.pkid = 4;
        let mut unsubscribe = Unsubscribe::new("a/#");
        unsubscribe.pkid = 5;
        let codes = vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
        ];
        let cases = [
            (
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, true)),
                "CONNACK (1, 5)",
            ),
            (
                Packet::Publish(publish),
                "PUBLISH (d0, q1, r0, m3), 'a/b', ... (5 bytes)",
            ),
            (
                Packet::Publish(empty),
                "PUBLISH (d0, q0, r1, m0), 'a/b' (NULL payload)",
            ),
            (Packet::PubAck(PubAck::new(3)), "PUBACK (Mid: 3)"),
            (Packet::PubRec(PubRec::new(3)), "PUBREC (Mid: 3)"),
            (Packet::PubRel(PubRel::new(3)), "PUBREL (Mid: 3)"),
            (Packet::PubComp(PubComp::new(3)), "PUBCOMP (Mid: 3)"),
            (
                Packet::Subscribe(subscribe),
                "SUBSCRIBE (d0, m4) [('a/#', 1), ('c', 0)]",
            ),
            (
                Packet::SubAck(SubAck::new(4, codes)),
                "SUBACK (Mid: 4) [1, 128]",
            ),
            (
                Packet::Unsubscribe(unsubscribe),
                "UNSUBSCRIBE (d0, m5) ['a/#']",
            ),
            (Packet::UnsubAck(UnsubAck::new(5)), "UNSUBACK (Mid: 5)"),
            (Packet::PingReq, "PINGREQ"),
            (Packet::PingResp, "PINGRESP"),
            (Packet::Disconnect, "DISCONNECT"),
        ];
        for (packet, words) in cases {
            assert_eq!(described(packet), words);
        }
    }

    #[test]
    fn quoting_escapes_what_could_break_a_log_line() {
        let text = Quoted("it's\\a\nb\u{7}\u{85}é").to_string();
        assert_eq!(text, "'it\\'s\\\\a\\nb\\x07\\x85é'");
    }
}
