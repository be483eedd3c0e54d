//! MQTT 3.1.1 (and 3.1) and MQTT 5 behind one interface. rumqttc has a client for each
//! (`rumqttc`, `rumqttc::v5`), with its own options, request handle, event loop, packets and
//! errors; the driver and the session use the enums here, which ask either the same few things:
//! send this request, poll for the next event, forget what is queued, hand over the options.
//! Packets come out as umqtt's own [`Event`]s, carrying packet ids, kinds and reason codes.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rumqttc::v5::{self, mqttbytes::v5 as packets};
use rumqttc::{Outgoing, Proxy, QoS, Transport};

use crate::link_error::LinkError;
use crate::reason_codes;

pub use packets::{
    ConnAckProperties, ConnectProperties, LastWillProperties, PublishProperties,
    SubscribeProperties,
};
pub use stored::{encode_properties, StoredPublish, StoredRequest};

mod stored;

/// The kinds of requests the broker acknowledges; they share one packet-id counter, so their
/// waiters are kept apart by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Publish,
    Subscribe,
    Unsubscribe,
}

/// An acknowledgement: its reason code (MQTT 3.1.1: 0, or a SUBACK's granted QoS or 0x80; MQTT
/// 5: the packet's reason code, 0x80 and above a failure) and the reason string an MQTT 5 broker
/// may add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: u8,
    pub reason: Option<String>,
}

impl Ack {
    pub const OK: Ack = Ack {
        code: 0,
        reason: None,
    };

    pub fn failed(&self) -> bool {
        self.code >= reason_codes::FAILURE
    }
}

/// A PUBLISH received from the broker, from either client.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    /// MQTT 5 only, and only when the packet carried any.
    pub properties: Option<Box<PublishProperties>>,
}

/// A PUBLISH to send, validated.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 only.
    pub properties: Option<PublishProperties>,
}

impl Outbound {
    /// The size of its MQTT 5 PUBLISH packet (with its topic: a topic alias may make it smaller).
    pub fn v5_size(&self) -> usize {
        let publish = packets::Publish {
            dup: false,
            qos: v5_qos(self.qos),
            retain: self.retain,
            topic: Bytes::from(self.topic.clone()),
            pkid: u16::from(self.qos != QoS::AtMostOnce),
            payload: self.payload.clone(),
            properties: self.properties.clone(),
        };
        publish.size()
    }
}

/// A subscription, with MQTT 5's options and properties (all left out under MQTT 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained messages at every subscribe, 1: only for a new subscription, 2: never.
    pub retain_handling: u8,
    pub properties: Option<SubscribeProperties>,
}

impl Subscription {
    /// A subscription with MQTT 3.1.1's meaning (no options, no properties).
    pub fn plain(filter: String, qos: QoS) -> Self {
        Subscription {
            filter,
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            properties: None,
        }
    }

    fn v5_filter(&self) -> packets::Filter {
        let mut filter = packets::Filter::new(self.filter.as_str(), v5_qos(self.qos));
        filter.nolocal = self.no_local;
        filter.preserve_retain = self.retain_as_published;
        filter.retain_forward_rule = match self.retain_handling {
            1 => packets::RetainForwardRule::OnNewSubscribe,
            2 => packets::RetainForwardRule::Never,
            _ => packets::RetainForwardRule::OnEverySubscribe,
        };
        filter
    }

    fn v5_subscribe(&self) -> packets::Subscribe {
        packets::Subscribe::new(self.v5_filter(), self.properties.clone())
    }

    fn v4_subscribe(&self) -> rumqttc::Subscribe {
        let filter = rumqttc::SubscribeFilter::new(self.filter.clone(), self.qos);
        rumqttc::Subscribe::new_many([filter])
    }
}

/// rumqttc's request channel was full (or closed): nothing was sent.
pub struct ChannelFull;

/// A client's request handle, for either version.
#[derive(Clone)]
pub enum Requests {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

impl Requests {
    pub fn publish(&self, publish: &Outbound) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => client
                .try_publish_bytes(
                    publish.topic.as_str(),
                    publish.qos,
                    publish.retain,
                    publish.payload.clone(),
                )
                .is_ok(),
            Requests::V5(client) => client
                .try_publish_bytes(
                    Bytes::from(publish.topic.clone()),
                    v5_qos(publish.qos),
                    publish.retain,
                    publish.payload.clone(),
                    publish.properties.clone(),
                )
                .is_ok(),
        };
        sent.then_some(()).ok_or(ChannelFull)
    }

    pub fn subscribe(&self, subscription: &Subscription) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => client
                .try_subscribe(subscription.filter.as_str(), subscription.qos)
                .is_ok(),
            Requests::V5(client) => {
                let filters = [subscription.v5_filter()];
                match &subscription.properties {
                    Some(properties) => client
                        .try_subscribe_many_with_properties(filters, properties.clone())
                        .is_ok(),
                    None => client.try_subscribe_many(filters).is_ok(),
                }
            }
        };
        sent.then_some(()).ok_or(ChannelFull)
    }

    pub fn unsubscribe(&self, filter: &str) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => client.try_unsubscribe(filter).is_ok(),
            Requests::V5(client) => client.try_unsubscribe(filter).is_ok(),
        };
        sent.then_some(()).ok_or(ChannelFull)
    }

    /// Requests waiting in rumqttc's channel for the event loop to take them.
    pub fn queued_requests(&self) -> usize {
        match self {
            Requests::V4(client) => client.queued_requests(),
            Requests::V5(client) => client.queued_requests(),
        }
    }

    /// PUBACK (QoS 1) or PUBREC (QoS 2) for the message with this packet id.
    pub fn acknowledge(&self, qos: QoS, pkid: u16) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => {
                let mut publish = rumqttc::Publish::new("", qos, Vec::new());
                publish.pkid = pkid;
                client.try_ack(&publish).is_ok()
            }
            Requests::V5(client) => {
                let mut publish = packets::Publish::new("", v5_qos(qos), Bytes::new(), None);
                publish.pkid = pkid;
                client.try_ack(&publish).is_ok()
            }
        };
        sent.then_some(()).ok_or(ChannelFull)
    }

    pub fn ping(&self) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => client.try_ping().is_ok(),
            Requests::V5(client) => client.try_ping().is_ok(),
        };
        sent.then_some(()).ok_or(ChannelFull)
    }

    pub fn disconnect(&self) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => client.try_disconnect().is_ok(),
            Requests::V5(client) => client.try_disconnect().is_ok(),
        };
        sent.then_some(()).ok_or(ChannelFull)
    }
}

/// The `publish_qos` of a PUBACK and of the packets that end a QoS 2 exchange.
const QOS_1: Option<QoS> = Some(QoS::AtLeastOnce);
const QOS_2: Option<QoS> = Some(QoS::ExactlyOnce);

/// What a poll of the event loop produced, in the driver's terms.
#[derive(Debug)]
pub enum Event {
    /// CONNACK accepted; MQTT 5's properties when it carried any.
    Connected {
        session_present: bool,
        properties: Option<Box<ConnAckProperties>>,
    },
    Message(Inbound),
    /// The acknowledgement that ends a request: PUBACK, PUBCOMP (or a PUBREC that refuses),
    /// SUBACK, UNSUBACK. `publish_qos`: the QoS of the publish exchange it ends (1: PUBACK, 2:
    /// PUBREC or PUBCOMP), None for the others.
    Acknowledged {
        kind: Kind,
        pkid: u16,
        ack: Ack,
        publish_qos: Option<QoS>,
    },
    /// A PUBREC that accepts: the QoS 2 exchange goes on (PUBREL, PUBCOMP).
    PubRec(u16),
    PingResp,
    /// A request was written with this packet id (0: a QoS 0 publish).
    Sent {
        kind: Kind,
        pkid: u16,
    },
    /// A publish was parked: its packet id is still unacknowledged (`Outgoing::AwaitAck`).
    Collision(u16),
    PingSent,
    /// The DISCONNECT asked for was written.
    DisconnectSent,
    /// Anything the driver does not act on (a PUBREL, our own acknowledgements).
    Other,
}

impl Event {
    fn outgoing(outgoing: Outgoing) -> Event {
        match outgoing {
            Outgoing::Publish(pkid) => Event::Sent {
                kind: Kind::Publish,
                pkid,
            },
            Outgoing::Subscribe(pkid) => Event::Sent {
                kind: Kind::Subscribe,
                pkid,
            },
            Outgoing::Unsubscribe(pkid) => Event::Sent {
                kind: Kind::Unsubscribe,
                pkid,
            },
            Outgoing::AwaitAck(pkid) => Event::Collision(pkid),
            Outgoing::PingReq => Event::PingSent,
            Outgoing::Disconnect => Event::DisconnectSent,
            _ => Event::Other,
        }
    }

    fn from_v4(event: rumqttc::Event) -> Event {
        use rumqttc::Packet;
        let packet = match event {
            rumqttc::Event::Incoming(packet) => packet,
            rumqttc::Event::Outgoing(outgoing) => return Event::outgoing(outgoing),
        };
        let acknowledged = |kind, pkid, ack, publish_qos| Event::Acknowledged {
            kind,
            pkid,
            ack,
            publish_qos,
        };
        match packet {
            Packet::Publish(publish) => Event::Message(Inbound {
                topic: publish.topic,
                payload: publish.payload,
                qos: publish.qos,
                retain: publish.retain,
                dup: publish.dup,
                pkid: publish.pkid,
                properties: None,
            }),
            Packet::PubAck(ack) => acknowledged(Kind::Publish, ack.pkid, Ack::OK, QOS_1),
            Packet::PubRec(ack) => Event::PubRec(ack.pkid),
            Packet::PubComp(ack) => acknowledged(Kind::Publish, ack.pkid, Ack::OK, QOS_2),
            Packet::SubAck(suback) => {
                let code = match suback.return_codes.first() {
                    Some(rumqttc::SubscribeReasonCode::Success(qos)) => *qos as u8,
                    _ => reason_codes::FAILURE,
                };
                let ack = Ack { code, reason: None };
                acknowledged(Kind::Subscribe, suback.pkid, ack, None)
            }
            Packet::UnsubAck(ack) => acknowledged(Kind::Unsubscribe, ack.pkid, Ack::OK, None),
            Packet::ConnAck(connack) => Event::Connected {
                session_present: connack.session_present,
                properties: None,
            },
            Packet::PingResp => Event::PingResp,
            _ => Event::Other,
        }
    }

    fn from_v5(event: v5::Event) -> Event {
        use packets::Packet;
        let packet = match event {
            v5::Event::Incoming(packet) => packet,
            v5::Event::Outgoing(outgoing) => return Event::outgoing(outgoing),
        };
        let acknowledged = |kind, pkid, code, reason, publish_qos| Event::Acknowledged {
            kind,
            pkid,
            ack: Ack { code, reason },
            publish_qos,
        };
        match packet {
            Packet::Publish(publish) => Event::Message(Inbound {
                topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                payload: publish.payload,
                qos: qos_of(publish.qos),
                retain: publish.retain,
                dup: publish.dup,
                pkid: publish.pkid,
                properties: publish.properties.map(Box::new),
            }),
            Packet::PubAck(ack) => {
                let reason = ack.properties.and_then(|p| p.reason_string);
                acknowledged(Kind::Publish, ack.pkid, u8::from(ack.reason), reason, QOS_1)
            }
            // A PUBREC that refuses ends the exchange; an accepting one is followed by PUBCOMP.
            Packet::PubRec(ack) if u8::from(ack.reason) >= reason_codes::FAILURE => {
                let reason = ack.properties.and_then(|p| p.reason_string);
                acknowledged(Kind::Publish, ack.pkid, u8::from(ack.reason), reason, QOS_2)
            }
            Packet::PubRec(ack) => Event::PubRec(ack.pkid),
            Packet::PubComp(ack) => {
                let reason = ack.properties.and_then(|p| p.reason_string);
                acknowledged(Kind::Publish, ack.pkid, u8::from(ack.reason), reason, QOS_2)
            }
            Packet::SubAck(ack) => {
                let code = ack
                    .return_codes
                    .first()
                    .map_or(reason_codes::FAILURE, |code| u8::from(*code));
                let reason = ack.properties.and_then(|p| p.reason_string);
                acknowledged(Kind::Subscribe, ack.pkid, code, reason, None)
            }
            Packet::UnsubAck(ack) => {
                let code = ack
                    .reasons
                    .first()
                    .map_or(reason_codes::FAILURE, |code| u8::from(*code));
                let reason = ack.properties.and_then(|p| p.reason_string);
                acknowledged(Kind::Unsubscribe, ack.pkid, code, reason, None)
            }
            Packet::ConnAck(connack) => Event::Connected {
                session_present: connack.session_present,
                properties: connack.properties.map(Box::new),
            },
            Packet::PingResp(_) => Event::PingResp,
            _ => Event::Other,
        }
    }

    fn is_incoming_packet(&self) -> bool {
        !matches!(
            self,
            Event::Connected { .. }
                | Event::Sent { .. }
                | Event::Collision(_)
                | Event::PingSent
                | Event::DisconnectSent
                | Event::Other
        )
    }
}

/// A client's event loop, for either version. One per connection, owned by its driver and never
/// moved while it runs: the size of the 3.1.1 one inline (the hot path's) is no cost.
#[allow(clippy::large_enum_variant)]
pub enum EventLoop {
    V4(rumqttc::EventLoop),
    V5(Box<v5::EventLoop>),
}

impl EventLoop {
    pub async fn poll(&mut self) -> Result<Event, LinkError> {
        match self {
            EventLoop::V4(eventloop) => eventloop
                .poll()
                .await
                .map(Event::from_v4)
                .map_err(LinkError::V4),
            EventLoop::V5(eventloop) => eventloop
                .poll()
                .await
                .map(Event::from_v5)
                .map_err(LinkError::V5),
        }
    }

    /// Events rumqttc has read or written and not returned yet.
    pub fn has_buffered_events(&self) -> bool {
        match self {
            EventLoop::V4(eventloop) => !eventloop.state.events.is_empty(),
            EventLoop::V5(eventloop) => !eventloop.state.events.is_empty(),
        }
    }

    /// Takes the buffered events and returns the packets among them that came from the broker
    /// (messages and acknowledgements: they were read, so they are real), CONNACK excepted.
    pub fn take_buffered_packets(&mut self) -> Vec<Event> {
        let events: Vec<Event> = match self {
            EventLoop::V4(eventloop) => std::mem::take(&mut eventloop.state.events)
                .into_iter()
                .map(Event::from_v4)
                .collect(),
            EventLoop::V5(eventloop) => std::mem::take(&mut eventloop.state.events)
                .into_iter()
                .map(Event::from_v5)
                .collect(),
        };
        events
            .into_iter()
            .filter(Event::is_incoming_packet)
            .collect()
    }

    /// QoS 1/2 publishes written and not acknowledged yet.
    pub fn inflight(&self) -> u16 {
        match self {
            EventLoop::V4(eventloop) => eventloop.state.inflight(),
            EventLoop::V5(eventloop) => eventloop.state.inflight(),
        }
    }

    /// Whether the PUBREL after a PUBREC is the application's (vendor patches 31 and 54, for
    /// the outbox on disk).
    pub fn set_manual_pubrel(&mut self, manual: bool) {
        match self {
            EventLoop::V4(eventloop) => eventloop.state.manual_pubrel = manual,
            EventLoop::V5(eventloop) => eventloop.state.manual_pubrel = manual,
        }
    }

    /// How many requests rumqttc keeps to send first (replays, re-subscriptions).
    pub fn pending_len(&self) -> usize {
        match self {
            EventLoop::V4(eventloop) => eventloop.pending.len(),
            EventLoop::V5(eventloop) => eventloop.pending.len(),
        }
    }

    /// Drops the connection's state and everything queued: rumqttc's channel, its replays.
    pub fn forget_queued(&mut self) {
        match self {
            EventLoop::V4(eventloop) => {
                eventloop.clean();
                eventloop.pending.clear();
            }
            EventLoop::V5(eventloop) => {
                eventloop.clean();
                eventloop.pending.clear();
            }
        }
    }

    /// Queues a subscription ahead of any new request (rumqttc sends `pending` first).
    pub fn queue_subscription(&mut self, subscription: &Subscription) {
        match self {
            EventLoop::V4(eventloop) => eventloop
                .pending
                .push_back(rumqttc::Request::Subscribe(subscription.v4_subscribe())),
            EventLoop::V5(eventloop) => eventloop
                .pending
                .push_back(v5::Request::Subscribe(subscription.v5_subscribe())),
        }
    }

    /// The size of the largest QoS 1/2 PUBLISH written and not acknowledged when the link
    /// failed: rumqttc has moved them to `pending` (those never written have no packet id).
    pub fn largest_unacknowledged_publish(&self) -> Option<usize> {
        match self {
            EventLoop::V4(eventloop) => (eventloop.pending.iter())
                .filter_map(|request| match request {
                    rumqttc::Request::Publish(publish) if publish.pkid != 0 => Some(publish.size()),
                    _ => None,
                })
                .max(),
            EventLoop::V5(eventloop) => (eventloop.pending.iter())
                .filter_map(|request| match request {
                    v5::Request::Publish(publish) if publish.pkid != 0 => Some(publish.size()),
                    _ => None,
                })
                .max(),
        }
    }

    /// Lets the next keep-alive ping go out although the last one is unanswered (rumqttc would
    /// fail the link instead).
    pub fn forgive_unanswered_ping(&mut self) {
        match self {
            EventLoop::V4(eventloop) => eventloop.state.await_pingresp = false,
            EventLoop::V5(eventloop) => eventloop.state.await_pingresp = false,
        }
    }

    /// The options the next connection attempt uses.
    pub fn connect_options(&mut self) -> &mut dyn ConnectOptions {
        match self {
            EventLoop::V4(eventloop) => &mut eventloop.mqtt_options,
            EventLoop::V5(eventloop) => &mut eventloop.options,
        }
    }
}

/// What umqtt sets alike on either client's options.
pub trait ConnectOptions {
    fn set_login(&mut self, user: String, password: String);
    /// Extra headers of the WebSocket upgrade request.
    fn set_upgrade_headers(&mut self, headers: Arc<Vec<(HeaderName, HeaderValue)>>);
    fn set_route(&mut self, transport: Transport, proxy: Option<Proxy>);
    fn set_tls_server_name(&mut self, name: String);
    /// The client id the next CONNECT sends (the one the broker assigned, under MQTT 5).
    fn set_client_id(&mut self, client_id: String);
}

/// A request modifier that adds `headers` to the upgrade request.
fn adding(
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
) -> impl Fn(http::Request<()>) -> std::future::Ready<http::Request<()>> + Send + Sync + 'static {
    move |mut request| {
        for (name, value) in headers.iter() {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        std::future::ready(request)
    }
}

/// `ConnectOptions` for a client's `MqttOptions`: both have the same setters.
macro_rules! connect_options {
    ($options:ty) => {
        impl ConnectOptions for $options {
            fn set_login(&mut self, user: String, password: String) {
                self.set_credentials(user, password);
            }

            fn set_upgrade_headers(&mut self, headers: Arc<Vec<(HeaderName, HeaderValue)>>) {
                self.set_request_modifier(adding(headers));
            }

            fn set_route(&mut self, transport: Transport, proxy: Option<Proxy>) {
                self.set_transport(transport);
                if let Some(proxy) = proxy {
                    self.set_proxy(proxy);
                }
            }

            fn set_tls_server_name(&mut self, name: String) {
                <$options>::set_tls_server_name(self, Some(name));
            }

            fn set_client_id(&mut self, client_id: String) {
                <$options>::set_client_id(self, client_id);
            }
        }
    };
}

connect_options!(rumqttc::MqttOptions);
connect_options!(v5::MqttOptions);

pub fn v5_qos(qos: QoS) -> v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos_of(qos: v5::mqttbytes::QoS) -> QoS {
    match qos {
        v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

#[cfg(test)]
mod tests;
