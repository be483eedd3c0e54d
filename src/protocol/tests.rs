//! How either client's packets become the driver's `Event`s: which acknowledgement ends a
//! request (and the QoS of the exchange, for the outbox on disk), which one only moves it on.

use rumqttc::v5::mqttbytes::v5::{PubAck, PubAckReason, PubComp, PubRec, PubRecReason};
use rumqttc::{Packet, QoS};

use super::{Ack, Event, Kind};

fn v4(packet: Packet) -> Event {
    Event::from_v4(rumqttc::Event::Incoming(packet))
}

fn v5(packet: super::packets::Packet) -> Event {
    Event::from_v5(rumqttc::v5::Event::Incoming(packet))
}

/// Whether `event` ends publish `pkid` with `code`, for an exchange of `qos`.
fn ends_publish(event: &Event, pkid: u16, code: u8, qos: QoS) -> bool {
    matches!(
        event,
        Event::Acknowledged { kind: Kind::Publish, pkid: p, ack: Ack { code: c, .. }, publish_qos }
            if *p == pkid && *c == code && *publish_qos == Some(qos)
    )
}

#[test]
fn mqtt311_puback_and_pubcomp_end_their_exchange_and_a_pubrec_moves_it_on() {
    let puback = v4(Packet::PubAck(rumqttc::PubAck::new(3)));
    assert!(ends_publish(&puback, 3, 0, QoS::AtLeastOnce), "{puback:?}");
    let pubcomp = v4(Packet::PubComp(rumqttc::PubComp::new(4)));
    assert!(
        ends_publish(&pubcomp, 4, 0, QoS::ExactlyOnce),
        "{pubcomp:?}"
    );
    let pubrec = v4(Packet::PubRec(rumqttc::PubRec::new(4)));
    assert!(matches!(pubrec, Event::PubRec(4)), "{pubrec:?}");
}

#[test]
fn mqtt5_acknowledgements_carry_their_reason_code() {
    let mut puback = PubAck::new(5, None);
    puback.reason = PubAckReason::NotAuthorized;
    let puback = v5(super::packets::Packet::PubAck(puback));
    assert!(
        ends_publish(&puback, 5, 0x87, QoS::AtLeastOnce),
        "{puback:?}"
    );
    let pubcomp = v5(super::packets::Packet::PubComp(PubComp::new(6, None)));
    assert!(
        ends_publish(&pubcomp, 6, 0, QoS::ExactlyOnce),
        "{pubcomp:?}"
    );
}

#[test]
fn mqtt5_pubrec_ends_the_exchange_only_when_it_refuses() {
    let accepted = v5(super::packets::Packet::PubRec(PubRec::new(7, None)));
    assert!(matches!(accepted, Event::PubRec(7)), "{accepted:?}");
    let mut refusal = PubRec::new(8, None);
    refusal.reason = PubRecReason::NotAuthorized;
    let refused = v5(super::packets::Packet::PubRec(refusal));
    assert!(
        ends_publish(&refused, 8, 0x87, QoS::ExactlyOnce),
        "{refused:?}"
    );
}
