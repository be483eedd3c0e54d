use super::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Disconnect, DisconnectReasonCode, Packet, PingReq, PubAck,
    PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason, Publish,
    SubAck, Subscribe, SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};
use super::mqttbytes::{self, Error as MqttError, QoS};

use super::{Event, Incoming, Outgoing, Request};

use bytes::Bytes;
use fixedbitset::FixedBitSet;
use std::collections::{HashMap, VecDeque};
use std::{io, time::Instant};

/// Errors during state handling
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Io Error while state is passed to network
    #[error("Io error: {0:?}")]
    Io(#[from] io::Error),
    #[error("Conversion error {0:?}")]
    Coversion(#[from] core::num::TryFromIntError),
    /// Invalid state for a given operation
    #[error("Invalid state for a given operation")]
    InvalidState,
    /// Received a packet (ack) which isn't asked for
    #[error("Received unsolicited ack pkid: {0}")]
    Unsolicited(u16),
    /// Last pingreq isn't acked
    #[error("Last pingreq isn't acked")]
    AwaitPingResp,
    /// Received a wrong packet while waiting for another packet
    #[error("Received a wrong packet while waiting for another packet")]
    WrongPacket,
    #[error("Timeout while waiting to resolve collision")]
    CollisionTimeout,
    #[error("A Subscribe packet must contain atleast one filter")]
    EmptySubscription,
    #[error("Mqtt serialization/deserialization error: {0}")]
    Deserialization(MqttError),
    #[error(
        "Cannot use topic alias '{alias:?}'. It's greater than the broker's maximum of '{max:?}'."
    )]
    InvalidAlias { alias: u16, max: u16 },
    #[error("Cannot send packet of size '{pkt_size:?}'. It's greater than the broker's maximum packet size of: '{max:?}'")]
    OutgoingPacketTooLarge { pkt_size: u32, max: u32 },
    #[error("Cannot receive packet of size '{pkt_size:?}'. It's greater than the client's maximum packet size of: '{max:?}'")]
    IncomingPacketTooLarge { pkt_size: usize, max: usize },
    #[error("Server sent disconnect with reason `{reason_string:?}` and code '{reason_code:?}' ")]
    ServerDisconnect {
        reason_code: DisconnectReasonCode,
        reason_string: Option<String>,
    },
    #[error("Connection failed with reason '{reason:?}' ")]
    ConnFail { reason: ConnectReturnCode },
    #[error("Connection closed by peer abruptly")]
    ConnectionAborted,
    /// umqtt patch: the broker used a topic alias it had not set on this connection.
    #[error("Received a publish with topic alias {0}, which no publish on this connection set")]
    UnknownTopicAlias(u16),
}

impl From<mqttbytes::Error> for StateError {
    fn from(value: MqttError) -> Self {
        match value {
            MqttError::OutgoingPacketTooLarge { pkt_size, max } => {
                StateError::OutgoingPacketTooLarge { pkt_size, max }
            }
            e => StateError::Deserialization(e),
        }
    }
}

/// State of the mqtt connection.
// Design: Methods will just modify the state of the object without doing any network operations
// Design: All inflight queues are maintained in a pre initialized vec with index as packet id.
// This is done for 2 reasons
// Bad acks or out of order acks aren't O(n) causing cpu spikes
// Any missing acks from the broker are detected during the next recycled use of packet ids
#[derive(Debug, Clone)]
pub struct MqttState {
    /// Status of last ping
    pub await_pingresp: bool,
    /// Collision ping count. Collisions stop user requests
    /// which inturn trigger pings. Multiple pings without
    /// resolving collisions will result in error
    pub collision_ping_count: usize,
    /// Last incoming packet time
    last_incoming: Instant,
    /// Last outgoing packet time
    last_outgoing: Instant,
    /// Packet id of the last outgoing packet
    pub(crate) last_pkid: u16,
    /// Number of outgoing inflight publishes
    pub(crate) inflight: u16,
    /// Outgoing QoS 1, 2 publishes which aren't acked yet
    pub(crate) outgoing_pub: Vec<Option<Publish>>,
    /// Packet ids of released QoS 2 publishes
    pub(crate) outgoing_rel: FixedBitSet,
    /// Packet ids on incoming QoS 2 publishes
    pub(crate) incoming_pub: FixedBitSet,
    /// Last collision due to broker not acking in order
    pub collision: Option<Publish>,
    /// Buffered incoming packets
    pub events: VecDeque<Event>,
    /// Indicates if acknowledgements should be send immediately
    pub manual_acks: bool,
    /// umqtt patch: a PUBREC is answered by the application, which sends the PUBREL itself
    /// (`Request::PubRel`, through `AsyncClient::send_request`), e.g. once it has recorded the
    /// PUBREC durably; the event loop then answers a PUBREC with nothing.
    pub manual_pubrel: bool,
    /// Map of alias_id->topic
    topic_alises: HashMap<u16, Bytes>,
    /// `topic_alias_maximum` RECEIVED via connack packet
    pub broker_topic_alias_max: u16,
    /// umqtt patch: the topic each of our topic aliases stands for on this connection.
    outgoing_aliases: HashMap<u16, Bytes>,
    /// Maximum number of allowed inflight QoS1 & QoS2 requests
    pub(crate) max_outgoing_inflight: u16,
    /// Upper limit on the maximum number of allowed inflight QoS1 & QoS2 requests
    max_outgoing_inflight_upper_limit: u16,
}

impl MqttState {
    /// Creates new mqtt state. Same state should be used during a
    /// connection for persistent sessions while new state should
    /// instantiated for clean sessions
    pub fn new(max_inflight: u16, manual_acks: bool) -> Self {
        MqttState {
            await_pingresp: false,
            collision_ping_count: 0,
            last_incoming: Instant::now(),
            last_outgoing: Instant::now(),
            last_pkid: 0,
            inflight: 0,
            // index 0 is wasted as 0 is not a valid packet id.
            // umqtt patch: these grow with use (`outgoing_slot`, `handle_incoming_publish`,
            // `release`) instead of taking 14 MB per connection up front: the in-flight limit
            // is u16::MAX unless set (`MqttOptions::set_outgoing_inflight_upper_limit`).
            outgoing_pub: Vec::new(),
            outgoing_rel: FixedBitSet::new(),
            incoming_pub: FixedBitSet::new(),
            collision: None,
            events: VecDeque::new(),
            manual_acks,
            manual_pubrel: false,
            topic_alises: HashMap::new(),
            // Set via CONNACK
            broker_topic_alias_max: 0,
            outgoing_aliases: HashMap::new(),
            max_outgoing_inflight: max_inflight,
            max_outgoing_inflight_upper_limit: max_inflight,
        }
    }

    /// Returns inflight outgoing packets and clears internal queues
    pub fn clean(&mut self) -> Vec<Request> {
        let mut pending = Vec::with_capacity(100);
        // remove and collect pending publishes
        for publish in self.outgoing_pub.iter_mut() {
            if let Some(publish) = publish.take() {
                let request = Request::Publish(publish);
                pending.push(request);
            }
        }

        // umqtt patch: a publish parked on a packet-id collision is pending too; left in
        // `collision`, it would keep the event loop from taking any request ever again.
        if let Some(publish) = self.collision.take() {
            pending.push(Request::Publish(publish));
        }

        // remove and collect pending releases
        for pkid in self.outgoing_rel.ones() {
            let request = Request::PubRel(PubRel::new(pkid as u16, None));
            pending.push(request);
        }
        self.outgoing_rel.clear();

        // remove packed ids of incoming qos2 publishes
        self.incoming_pub.clear();

        self.await_pingresp = false;
        self.collision_ping_count = 0;
        self.inflight = 0;
        // umqtt patch: topic aliases last one network connection (MQTT 5 3.3.2.3.4).
        self.outgoing_aliases.clear();
        self.topic_alises.clear();
        pending
    }

    pub fn inflight(&self) -> u16 {
        self.inflight
    }

    /// Consolidates handling of all outgoing mqtt packet logic. Returns a packet which should
    /// be put on to the network by the eventloop
    pub fn handle_outgoing_packet(
        &mut self,
        request: Request,
    ) -> Result<Option<Packet>, StateError> {
        let packet = match request {
            Request::Publish(publish) => self.outgoing_publish(publish)?,
            Request::PubRel(pubrel) => self.outgoing_pubrel(pubrel)?,
            Request::Subscribe(subscribe) => self.outgoing_subscribe(subscribe)?,
            Request::Unsubscribe(unsubscribe) => self.outgoing_unsubscribe(unsubscribe)?,
            Request::PingReq => self.outgoing_ping()?,
            Request::Disconnect => {
                self.outgoing_disconnect(DisconnectReasonCode::NormalDisconnection)?
            }
            Request::PubAck(puback) => self.outgoing_puback(puback)?,
            Request::PubRec(pubrec) => self.outgoing_pubrec(pubrec)?,
            _ => unimplemented!(),
        };

        self.last_outgoing = Instant::now();
        Ok(packet)
    }

    /// Consolidates handling of all incoming mqtt packets. Returns a `Notification` which for the
    /// user to consume and `Packet` which for the eventloop to put on the network
    /// E.g For incoming QoS1 publish packet, this method returns (Publish, Puback). Publish packet will
    /// be forwarded to user and Pubck packet will be written to network
    pub fn handle_incoming_packet(
        &mut self,
        mut packet: Incoming,
    ) -> Result<Option<Packet>, StateError> {
        // umqtt patch: the event carries the topic a topic alias stands for (it carried the
        // empty topic the packet came with).
        if let Incoming::Publish(publish) = &mut packet {
            self.resolve_topic_alias(publish)?;
        }
        self.events.push_back(Event::Incoming(packet.to_owned()));

        let outgoing = match &mut packet {
            Incoming::PingResp(_) => self.handle_incoming_pingresp()?,
            Incoming::Publish(publish) => self.handle_incoming_publish(publish)?,
            Incoming::SubAck(suback) => self.handle_incoming_suback(suback)?,
            Incoming::UnsubAck(unsuback) => self.handle_incoming_unsuback(unsuback)?,
            Incoming::PubAck(puback) => self.handle_incoming_puback(puback)?,
            Incoming::PubRec(pubrec) => self.handle_incoming_pubrec(pubrec)?,
            Incoming::PubRel(pubrel) => self.handle_incoming_pubrel(pubrel)?,
            Incoming::PubComp(pubcomp) => self.handle_incoming_pubcomp(pubcomp)?,
            Incoming::ConnAck(connack) => self.handle_incoming_connack(connack)?,
            Incoming::Disconnect(disconn) => self.handle_incoming_disconn(disconn)?,
            _ => {
                error!("Invalid incoming packet = {:?}", packet);
                return Err(StateError::WrongPacket);
            }
        };

        self.last_incoming = Instant::now();
        Ok(outgoing)
    }

    pub fn handle_protocol_error(&mut self) -> Result<Option<Packet>, StateError> {
        // send DISCONNECT packet with REASON_CODE 0x82
        self.outgoing_disconnect(DisconnectReasonCode::ProtocolError)
    }

    fn handle_incoming_suback(
        &mut self,
        suback: &mut SubAck,
    ) -> Result<Option<Packet>, StateError> {
        for reason in suback.return_codes.iter() {
            match reason {
                SubscribeReasonCode::Success(qos) => {
                    // umqtt patch: trace, not debug: the packet observer logs packets.
                    trace!("SubAck Pkid = {:?}, QoS = {:?}", suback.pkid, qos);
                }
                // umqtt patch: debug, not warn: the application is told the refusal (its
                // acknowledgement's reason code) and reports it as it sees fit.
                _ => {
                    debug!("SubAck Pkid = {:?}, Reason = {:?}", suback.pkid, reason);
                }
            }
        }
        Ok(None)
    }

    fn handle_incoming_unsuback(
        &mut self,
        unsuback: &mut UnsubAck,
    ) -> Result<Option<Packet>, StateError> {
        for reason in unsuback.reasons.iter() {
            if reason != &UnsubAckReason::Success {
                debug!("UnsubAck Pkid = {:?}, Reason = {:?}", unsuback.pkid, reason);
            }
        }
        Ok(None)
    }

    fn handle_incoming_connack(
        &mut self,
        connack: &mut ConnAck,
    ) -> Result<Option<Packet>, StateError> {
        if connack.code != ConnectReturnCode::Success {
            return Err(StateError::ConnFail {
                reason: connack.code,
            });
        }

        // umqtt patch: each CONNACK sets the limits of its connection: without a property, the
        // default (no topic aliases; a receive maximum of 65,535), not the last connection's.
        self.broker_topic_alias_max = 0;
        self.max_outgoing_inflight = self.max_outgoing_inflight_upper_limit;
        if let Some(props) = &connack.properties {
            if let Some(topic_alias_max) = props.topic_alias_max {
                self.broker_topic_alias_max = topic_alias_max
            }

            if let Some(max_inflight) = props.receive_max {
                self.max_outgoing_inflight =
                    max_inflight.min(self.max_outgoing_inflight_upper_limit);
                // FIXME: Maybe resize the pubrec and pubrel queues here
                // to save some space.
            }
        }
        Ok(None)
    }

    fn handle_incoming_disconn(
        &mut self,
        disconn: &mut Disconnect,
    ) -> Result<Option<Packet>, StateError> {
        let reason_code = disconn.reason_code;
        let reason_string = if let Some(props) = &disconn.properties {
            props.reason_string.clone()
        } else {
            None
        };
        Err(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        })
    }

    /// Results in a publish notification in all the QoS cases. Replys with an ack
    /// in case of QoS1 and Replys rec in case of QoS while also storing the message
    fn handle_incoming_publish(
        &mut self,
        publish: &mut Publish,
    ) -> Result<Option<Packet>, StateError> {
        let qos = publish.qos;

        match qos {
            QoS::AtMostOnce => Ok(None),
            QoS::AtLeastOnce => {
                if !self.manual_acks {
                    let puback = PubAck::new(publish.pkid, None);
                    return self.outgoing_puback(puback);
                }
                Ok(None)
            }
            QoS::ExactlyOnce => {
                let pkid = publish.pkid;
                self.incoming_pub.grow(pkid as usize + 1);
                self.incoming_pub.insert(pkid as usize);

                if !self.manual_acks {
                    let pubrec = PubRec::new(pkid, None);
                    return self.outgoing_pubrec(pubrec);
                }
                Ok(None)
            }
        }
    }

    /// umqtt patch: sets an incoming publish's topic from its topic alias, or the alias to its
    /// topic. An alias no publish of this connection set fails the link: the handling of it
    /// built a DISCONNECT that nothing sent, and delivered the publish without a topic.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), StateError> {
        let Some(alias) = publish.properties.as_ref().and_then(|p| p.topic_alias) else {
            return Ok(());
        };
        if !publish.topic.is_empty() {
            self.topic_alises.insert(alias, publish.topic.clone());
            return Ok(());
        }
        match self.topic_alises.get(&alias) {
            Some(topic) => topic.clone_into(&mut publish.topic),
            None => return Err(StateError::UnknownTopicAlias(alias)),
        }
        Ok(())
    }

    fn handle_incoming_puback(&mut self, puback: &PubAck) -> Result<Option<Packet>, StateError> {
        let publish = self
            .outgoing_pub
            .get_mut(puback.pkid as usize)
            .ok_or(StateError::Unsolicited(puback.pkid))?;

        if publish.take().is_none() {
            error!("Unsolicited puback packet: {:?}", puback.pkid);
            return Err(StateError::Unsolicited(puback.pkid));
        }

        self.inflight -= 1;

        if puback.reason != PubAckReason::Success
            && puback.reason != PubAckReason::NoMatchingSubscribers
        {
            debug!(
                "PubAck Pkid = {:?}, reason: {:?}",
                puback.pkid, puback.reason
            );
        }

        // umqtt patch: the packet id is free whatever the reason: a publish parked on it goes.
        Ok(self.release_collision(puback.pkid))
    }

    fn handle_incoming_pubrec(&mut self, pubrec: &PubRec) -> Result<Option<Packet>, StateError> {
        let publish = self
            .outgoing_pub
            .get_mut(pubrec.pkid as usize)
            .ok_or(StateError::Unsolicited(pubrec.pkid))?;

        if publish.take().is_none() {
            error!("Unsolicited pubrec packet: {:?}", pubrec.pkid);
            return Err(StateError::Unsolicited(pubrec.pkid));
        }

        if pubrec.reason != PubRecReason::Success
            && pubrec.reason != PubRecReason::NoMatchingSubscribers
        {
            debug!(
                "PubRec Pkid = {:?}, reason: {:?}",
                pubrec.pkid, pubrec.reason
            );
            // umqtt patch: a PUBREC with a failure reason ends the exchange (MQTT 5 4.3.3): no
            // PUBREL, no PUBCOMP, so its in-flight slot and packet id are free now.
            self.inflight -= 1;
            return Ok(self.release_collision(pubrec.pkid));
        }

        if self.manual_pubrel {
            // umqtt patch: the PUBREL request counts the message in flight again (`save_pubrel`).
            self.inflight -= 1;
            return Ok(None);
        }

        // NOTE: Inflight - 1 for qos2 in comp
        self.release(pubrec.pkid);
        let event = Event::Outgoing(Outgoing::PubRel(pubrec.pkid));
        self.events.push_back(event);

        Ok(Some(Packet::PubRel(PubRel::new(pubrec.pkid, None))))
    }

    fn handle_incoming_pubrel(&mut self, pubrel: &PubRel) -> Result<Option<Packet>, StateError> {
        if !self.incoming_pub.contains(pubrel.pkid as usize) {
            error!("Unsolicited pubrel packet: {:?}", pubrel.pkid);
            return Err(StateError::Unsolicited(pubrel.pkid));
        }
        self.incoming_pub.set(pubrel.pkid as usize, false);

        if pubrel.reason != PubRelReason::Success {
            warn!(
                "PubRel Pkid = {:?}, reason: {:?}",
                pubrel.pkid, pubrel.reason
            );
            return Ok(None);
        }

        let event = Event::Outgoing(Outgoing::PubComp(pubrel.pkid));
        self.events.push_back(event);

        Ok(Some(Packet::PubComp(PubComp::new(pubrel.pkid, None))))
    }

    fn handle_incoming_pubcomp(&mut self, pubcomp: &PubComp) -> Result<Option<Packet>, StateError> {
        if !self.outgoing_rel.contains(pubcomp.pkid as usize) {
            error!("Unsolicited pubcomp packet: {:?}", pubcomp.pkid);
            return Err(StateError::Unsolicited(pubcomp.pkid));
        }
        self.outgoing_rel.set(pubcomp.pkid as usize, false);

        if pubcomp.reason != PubCompReason::Success {
            debug!(
                "PubComp Pkid = {:?}, reason: {:?}",
                pubcomp.pkid, pubcomp.reason
            );
        }

        // umqtt patch: the exchange ends whatever the reason (it returned early, leaving its
        // in-flight slot taken for ever, and dropped the parked publish it had taken).
        self.inflight -= 1;
        Ok(self.release_collision(pubcomp.pkid))
    }

    /// umqtt patch: the publish parked on `pkid` (a collision), now in flight and to be sent. It
    /// is tracked like any other (the PUBCOMP path did not track it: its PUBACK was unsolicited).
    fn release_collision(&mut self, pkid: u16) -> Option<Packet> {
        let publish = self.check_collision(pkid)?;
        self.outgoing_pub[publish.pkid as usize] = Some(publish.clone());
        self.inflight += 1;

        let event = Event::Outgoing(Outgoing::Publish(publish.pkid));
        self.events.push_back(event);
        self.collision_ping_count = 0;

        Some(Packet::Publish(self.with_topic_alias(publish)))
    }

    fn handle_incoming_pingresp(&mut self) -> Result<Option<Packet>, StateError> {
        self.await_pingresp = false;
        Ok(None)
    }

    /// Adds next packet identifier to QoS 1 and 2 publish packets and returns
    /// it buy wrapping publish in packet
    fn outgoing_publish(&mut self, mut publish: Publish) -> Result<Option<Packet>, StateError> {
        if publish.qos != QoS::AtMostOnce {
            if publish.pkid == 0 {
                publish.pkid = self.next_pkid();
            }

            let pkid = publish.pkid;
            if self.outgoing_slot(pkid)?.is_some() {
                info!("Collision on packet id = {:?}", publish.pkid);
                self.collision = Some(publish);
                let event = Event::Outgoing(Outgoing::AwaitAck(pkid));
                self.events.push_back(event);
                return Ok(None);
            }

            // if there is an existing publish at this pkid, this implies that broker hasn't acked this
            // packet yet. This error is possible only when broker isn't acking sequentially
            self.outgoing_pub[pkid as usize] = Some(publish.clone());
            self.inflight += 1;
        };

        // umqtt patch: trace, not debug: a record is built and offered to Python's logging
        // (a logger lookup) for every publish, even when nothing listens at debug level. The
        // topic is shown lossily: it is not checked to be UTF-8 (`unwrap` panicked).
        trace!(
            "Publish. Topic = {}, Pkid = {:?}, Payload Size = {:?}",
            String::from_utf8_lossy(&publish.topic),
            publish.pkid,
            publish.payload.len()
        );

        let pkid = publish.pkid;

        let event = Event::Outgoing(Outgoing::Publish(pkid));
        self.events.push_back(event);

        // umqtt patch: the stored copy (above) keeps its topic; the packet may leave it out.
        Ok(Some(Packet::Publish(self.with_topic_alias(publish))))
    }

    /// umqtt patch: `publish` as sent with its topic alias: the topic is left out when the alias
    /// already stands for it on this connection, else the alias is set to it. An alias the
    /// broker does not allow (above its Topic Alias Maximum, or 0) is left out instead and the
    /// topic sent in full: it failed the link (`InvalidAlias`). A publish without a topic is
    /// sent as given (its sender manages the aliases).
    fn with_topic_alias(&mut self, mut publish: Publish) -> Publish {
        let Some(properties) = publish.properties.as_mut() else {
            return publish;
        };
        let Some(alias) = properties.topic_alias else {
            return publish;
        };
        if alias == 0 || alias > self.broker_topic_alias_max {
            properties.topic_alias = None;
        } else if self.outgoing_aliases.get(&alias) == Some(&publish.topic) {
            publish.topic = Bytes::new();
        } else if !publish.topic.is_empty() {
            self.outgoing_aliases.insert(alias, publish.topic.clone());
        }
        publish
    }

    fn outgoing_pubrel(&mut self, pubrel: PubRel) -> Result<Option<Packet>, StateError> {
        let pubrel = self.save_pubrel(pubrel)?;

        trace!("Pubrel. Pkid = {}", pubrel.pkid); // umqtt patch: trace, not debug

        let event = Event::Outgoing(Outgoing::PubRel(pubrel.pkid));
        self.events.push_back(event);

        Ok(Some(Packet::PubRel(PubRel::new(pubrel.pkid, None))))
    }

    fn outgoing_puback(&mut self, puback: PubAck) -> Result<Option<Packet>, StateError> {
        let pkid = puback.pkid;
        let event = Event::Outgoing(Outgoing::PubAck(pkid));
        self.events.push_back(event);

        Ok(Some(Packet::PubAck(puback)))
    }

    fn outgoing_pubrec(&mut self, pubrec: PubRec) -> Result<Option<Packet>, StateError> {
        let pkid = pubrec.pkid;
        let event = Event::Outgoing(Outgoing::PubRec(pkid));
        self.events.push_back(event);

        Ok(Some(Packet::PubRec(pubrec)))
    }

    /// check when the last control packet/pingreq packet is received and return
    /// the status which tells if keep alive time has exceeded
    /// NOTE: status will be checked for zero keepalive times also
    fn outgoing_ping(&mut self) -> Result<Option<Packet>, StateError> {
        let elapsed_in = self.last_incoming.elapsed();
        let elapsed_out = self.last_outgoing.elapsed();

        if self.collision.is_some() {
            self.collision_ping_count += 1;
            if self.collision_ping_count >= 2 {
                return Err(StateError::CollisionTimeout);
            }
        }

        // raise error if last ping didn't receive ack
        if self.await_pingresp {
            return Err(StateError::AwaitPingResp);
        }

        self.await_pingresp = true;

        // umqtt patch: trace, not debug (also below): the packet observer logs packets.
        trace!(
            "Pingreq, last incoming packet before {:?}, last outgoing request before {:?}",
            elapsed_in, elapsed_out,
        );

        let event = Event::Outgoing(Outgoing::PingReq);
        self.events.push_back(event);

        Ok(Some(Packet::PingReq(PingReq)))
    }

    /// umqtt patch: a PINGREQ asked for (`AsyncClient::ping`), not the keep-alive timer's. While
    /// one waits for its PINGRESP, nothing is sent and nothing fails: that answer tells the same,
    /// and the keep-alive timer still fails the link if it never comes.
    pub fn requested_ping(&mut self) -> Option<Packet> {
        if self.await_pingresp {
            return None;
        }
        self.await_pingresp = true;
        self.last_outgoing = Instant::now();
        self.events.push_back(Event::Outgoing(Outgoing::PingReq));
        Some(Packet::PingReq(PingReq))
    }

    fn outgoing_subscribe(
        &mut self,
        mut subscription: Subscribe,
    ) -> Result<Option<Packet>, StateError> {
        if subscription.filters.is_empty() {
            return Err(StateError::EmptySubscription);
        }

        let pkid = self.next_pkid();
        subscription.pkid = pkid;

        trace!(
            "Subscribe. Topics = {:?}, Pkid = {:?}",
            subscription.filters, subscription.pkid
        );

        let pkid = subscription.pkid;
        let event = Event::Outgoing(Outgoing::Subscribe(pkid));
        self.events.push_back(event);

        Ok(Some(Packet::Subscribe(subscription)))
    }

    fn outgoing_unsubscribe(
        &mut self,
        mut unsub: Unsubscribe,
    ) -> Result<Option<Packet>, StateError> {
        let pkid = self.next_pkid();
        unsub.pkid = pkid;

        trace!(
            "Unsubscribe. Topics = {:?}, Pkid = {:?}",
            unsub.filters, unsub.pkid
        );

        let pkid = unsub.pkid;
        let event = Event::Outgoing(Outgoing::Unsubscribe(pkid));
        self.events.push_back(event);

        Ok(Some(Packet::Unsubscribe(unsub)))
    }

    fn outgoing_disconnect(
        &mut self,
        reason: DisconnectReasonCode,
    ) -> Result<Option<Packet>, StateError> {
        trace!("Disconnect with {:?}", reason);
        let event = Event::Outgoing(Outgoing::Disconnect);
        self.events.push_back(event);

        Ok(Some(Packet::Disconnect(Disconnect::new(reason))))
    }

    fn check_collision(&mut self, pkid: u16) -> Option<Publish> {
        if let Some(publish) = &self.collision {
            if publish.pkid == pkid {
                return self.collision.take();
            }
        }

        None
    }

    fn save_pubrel(&mut self, mut pubrel: PubRel) -> Result<PubRel, StateError> {
        let pubrel = match pubrel.pkid {
            // consider PacketIdentifier(0) as uninitialized packets
            0 => {
                pubrel.pkid = self.next_pkid();
                pubrel
            }
            _ => pubrel,
        };

        self.release(pubrel.pkid);
        self.inflight += 1;
        Ok(pubrel)
    }

    /// umqtt patch: the in-flight table entry for `pkid`, growing the table up to the in-flight
    /// limit.
    fn outgoing_slot(&mut self, pkid: u16) -> Result<&mut Option<Publish>, StateError> {
        let index = pkid as usize;
        if index > self.max_outgoing_inflight_upper_limit as usize {
            return Err(StateError::Unsolicited(pkid));
        }
        if index >= self.outgoing_pub.len() {
            self.outgoing_pub.resize(index + 1, None);
        }
        Ok(&mut self.outgoing_pub[index])
    }

    /// umqtt patch: records a PUBREL of `pkid` as sent, growing the set.
    fn release(&mut self, pkid: u16) {
        self.outgoing_rel.grow(pkid as usize + 1);
        self.outgoing_rel.insert(pkid as usize);
    }

    /// http://stackoverflow.com/questions/11115364/mqtt-messageid-practical-implementation
    /// Packet ids are incremented till maximum set inflight messages and reset to 1 after that.
    ///
    fn next_pkid(&mut self) -> u16 {
        let next_pkid = self.last_pkid + 1;

        // When next packet id is at the edge of inflight queue,
        // set await flag. This instructs eventloop to stop
        // processing requests until all the inflight publishes
        // are acked
        // umqtt patch: `>=`, not `==`: after a CONNACK with a smaller receive maximum, the
        // last id may lie above it (the ids then grew to 65,535 and overflowed).
        if next_pkid >= self.max_outgoing_inflight {
            self.last_pkid = 0;
            return next_pkid.min(self.max_outgoing_inflight);
        }

        self.last_pkid = next_pkid;
        next_pkid
    }
}

#[cfg(test)]
mod test {
    use super::mqttbytes::v5::*;
    use super::mqttbytes::*;
    use super::{Event, Incoming, Outgoing, Request};
    use super::{MqttState, StateError};

    fn build_outgoing_publish(qos: QoS) -> Publish {
        let topic = "hello/world".to_owned();
        let payload = vec![1, 2, 3];

        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload, None);
        publish.qos = qos;
        publish
    }

    fn build_incoming_publish(qos: QoS, pkid: u16) -> Publish {
        let topic = "hello/world".to_owned();
        let payload = vec![1, 2, 3];

        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload, None);
        publish.pkid = pkid;
        publish.qos = qos;
        publish
    }

    fn build_mqttstate() -> MqttState {
        MqttState::new(u16::MAX, false)
    }

    #[test]
    fn next_pkid_increments_as_expected() {
        let mut mqtt = build_mqttstate();

        for i in 1..=100 {
            let pkid = mqtt.next_pkid();

            // loops between 0-99. % 100 == 0 implies border
            let expected = i % 100;
            if expected == 0 {
                break;
            }

            assert_eq!(expected, pkid);
        }
    }

    #[test]
    fn outgoing_publish_should_set_pkid_and_add_publish_to_queue() {
        let mut mqtt = build_mqttstate();

        // QoS0 Publish
        let publish = build_outgoing_publish(QoS::AtMostOnce);

        // QoS 0 publish shouldn't be saved in queue
        mqtt.outgoing_publish(publish).unwrap();
        assert_eq!(mqtt.last_pkid, 0);
        assert_eq!(mqtt.inflight, 0);

        // QoS1 Publish
        let publish = build_outgoing_publish(QoS::AtLeastOnce);

        // Packet id should be set and publish should be saved in queue
        mqtt.outgoing_publish(publish.clone()).unwrap();
        assert_eq!(mqtt.last_pkid, 1);
        assert_eq!(mqtt.inflight, 1);

        // Packet id should be incremented and publish should be saved in queue
        mqtt.outgoing_publish(publish).unwrap();
        assert_eq!(mqtt.last_pkid, 2);
        assert_eq!(mqtt.inflight, 2);

        // QoS1 Publish
        let publish = build_outgoing_publish(QoS::ExactlyOnce);

        // Packet id should be set and publish should be saved in queue
        mqtt.outgoing_publish(publish.clone()).unwrap();
        assert_eq!(mqtt.last_pkid, 3);
        assert_eq!(mqtt.inflight, 3);

        // Packet id should be incremented and publish should be saved in queue
        mqtt.outgoing_publish(publish).unwrap();
        assert_eq!(mqtt.last_pkid, 4);
        assert_eq!(mqtt.inflight, 4);
    }

    #[test]
    fn outgoing_publish_with_max_inflight_is_ok() {
        let mut mqtt = MqttState::new(2, false);

        // QoS2 publish
        let publish = build_outgoing_publish(QoS::ExactlyOnce);

        mqtt.outgoing_publish(publish.clone()).unwrap();
        assert_eq!(mqtt.last_pkid, 1);
        assert_eq!(mqtt.inflight, 1);

        // Packet id should be set back down to 0, since we hit the limit
        mqtt.outgoing_publish(publish.clone()).unwrap();
        assert_eq!(mqtt.last_pkid, 0);
        assert_eq!(mqtt.inflight, 2);

        // This should cause a collition
        mqtt.outgoing_publish(publish.clone()).unwrap();
        assert_eq!(mqtt.last_pkid, 1);
        assert_eq!(mqtt.inflight, 2);
        assert!(mqtt.collision.is_some());

        mqtt.handle_incoming_puback(&PubAck::new(1, None)).unwrap();
        mqtt.handle_incoming_puback(&PubAck::new(2, None)).unwrap();
        assert_eq!(mqtt.inflight, 1);

        // Now there should be space in the outgoing queue
        mqtt.outgoing_publish(publish.clone()).unwrap();
        assert_eq!(mqtt.last_pkid, 0);
        assert_eq!(mqtt.inflight, 2);
    }

    #[test]
    fn incoming_publish_should_be_added_to_queue_correctly() {
        let mut mqtt = build_mqttstate();

        // QoS0, 1, 2 Publishes
        let mut publish1 = build_incoming_publish(QoS::AtMostOnce, 1);
        let mut publish2 = build_incoming_publish(QoS::AtLeastOnce, 2);
        let mut publish3 = build_incoming_publish(QoS::ExactlyOnce, 3);

        mqtt.handle_incoming_publish(&mut publish1).unwrap();
        mqtt.handle_incoming_publish(&mut publish2).unwrap();
        mqtt.handle_incoming_publish(&mut publish3).unwrap();

        // only qos2 publish should be add to queue
        assert!(mqtt.incoming_pub.contains(3));
    }

    #[test]
    fn incoming_publish_should_be_acked() {
        let mut mqtt = build_mqttstate();

        // QoS0, 1, 2 Publishes
        let mut publish1 = build_incoming_publish(QoS::AtMostOnce, 1);
        let mut publish2 = build_incoming_publish(QoS::AtLeastOnce, 2);
        let mut publish3 = build_incoming_publish(QoS::ExactlyOnce, 3);

        mqtt.handle_incoming_publish(&mut publish1).unwrap();
        mqtt.handle_incoming_publish(&mut publish2).unwrap();
        mqtt.handle_incoming_publish(&mut publish3).unwrap();

        if let Event::Outgoing(Outgoing::PubAck(pkid)) = mqtt.events[0] {
            assert_eq!(pkid, 2);
        } else {
            panic!("missing puback");
        }

        if let Event::Outgoing(Outgoing::PubRec(pkid)) = mqtt.events[1] {
            assert_eq!(pkid, 3);
        } else {
            panic!("missing PubRec");
        }
    }

    #[test]
    fn incoming_publish_should_not_be_acked_with_manual_acks() {
        let mut mqtt = build_mqttstate();
        mqtt.manual_acks = true;

        // QoS0, 1, 2 Publishes
        let mut publish1 = build_incoming_publish(QoS::AtMostOnce, 1);
        let mut publish2 = build_incoming_publish(QoS::AtLeastOnce, 2);
        let mut publish3 = build_incoming_publish(QoS::ExactlyOnce, 3);

        mqtt.handle_incoming_publish(&mut publish1).unwrap();
        mqtt.handle_incoming_publish(&mut publish2).unwrap();
        mqtt.handle_incoming_publish(&mut publish3).unwrap();

        assert!(mqtt.incoming_pub.contains(3));
        assert!(mqtt.events.is_empty());
    }

    #[test]
    fn incoming_qos2_publish_should_send_rec_to_network_and_publish_to_user() {
        let mut mqtt = build_mqttstate();
        let mut publish = build_incoming_publish(QoS::ExactlyOnce, 1);

        match mqtt.handle_incoming_publish(&mut publish).unwrap().unwrap() {
            Packet::PubRec(pubrec) => assert_eq!(pubrec.pkid, 1),
            packet => panic!("Invalid network request: {:?}", packet),
        }
    }

    #[test]
    fn incoming_puback_should_remove_correct_publish_from_queue() {
        let mut mqtt = build_mqttstate();

        let publish1 = build_outgoing_publish(QoS::AtLeastOnce);
        let publish2 = build_outgoing_publish(QoS::ExactlyOnce);

        mqtt.outgoing_publish(publish1).unwrap();
        mqtt.outgoing_publish(publish2).unwrap();
        assert_eq!(mqtt.inflight, 2);

        mqtt.handle_incoming_puback(&PubAck::new(1, None)).unwrap();
        assert_eq!(mqtt.inflight, 1);

        mqtt.handle_incoming_puback(&PubAck::new(2, None)).unwrap();
        assert_eq!(mqtt.inflight, 0);

        assert!(mqtt.outgoing_pub[1].is_none());
        assert!(mqtt.outgoing_pub[2].is_none());
    }

    #[test]
    fn incoming_puback_with_pkid_greater_than_max_inflight_should_be_handled_gracefully() {
        let mut mqtt = build_mqttstate();

        let got = mqtt
            .handle_incoming_puback(&PubAck::new(101, None))
            .unwrap_err();

        match got {
            StateError::Unsolicited(pkid) => assert_eq!(pkid, 101),
            e => panic!("Unexpected error: {}", e),
        }
    }

    #[test]
    fn incoming_pubrec_should_release_publish_from_queue_and_add_relid_to_rel_queue() {
        let mut mqtt = build_mqttstate();

        let publish1 = build_outgoing_publish(QoS::AtLeastOnce);
        let publish2 = build_outgoing_publish(QoS::ExactlyOnce);

        let _publish_out = mqtt.outgoing_publish(publish1);
        let _publish_out = mqtt.outgoing_publish(publish2);

        mqtt.handle_incoming_pubrec(&PubRec::new(2, None)).unwrap();
        assert_eq!(mqtt.inflight, 2);

        // check if the remaining element's pkid is 1
        let backup = mqtt.outgoing_pub[1].clone();
        assert_eq!(backup.unwrap().pkid, 1);

        // check if the qos2 element's release pkid is 2
        assert!(mqtt.outgoing_rel.contains(2));
    }

    #[test]
    fn incoming_pubrec_should_send_release_to_network_and_nothing_to_user() {
        let mut mqtt = build_mqttstate();

        let publish = build_outgoing_publish(QoS::ExactlyOnce);
        match mqtt.outgoing_publish(publish).unwrap().unwrap() {
            Packet::Publish(publish) => assert_eq!(publish.pkid, 1),
            packet => panic!("Invalid network request: {:?}", packet),
        }

        match mqtt
            .handle_incoming_pubrec(&PubRec::new(1, None))
            .unwrap()
            .unwrap()
        {
            Packet::PubRel(pubrel) => assert_eq!(pubrel.pkid, 1),
            packet => panic!("Invalid network request: {:?}", packet),
        }
    }

    #[test]
    fn incoming_pubrel_should_send_comp_to_network_and_nothing_to_user() {
        let mut mqtt = build_mqttstate();
        let mut publish = build_incoming_publish(QoS::ExactlyOnce, 1);

        match mqtt.handle_incoming_publish(&mut publish).unwrap().unwrap() {
            Packet::PubRec(pubrec) => assert_eq!(pubrec.pkid, 1),
            packet => panic!("Invalid network request: {:?}", packet),
        }

        match mqtt
            .handle_incoming_pubrel(&PubRel::new(1, None))
            .unwrap()
            .unwrap()
        {
            Packet::PubComp(pubcomp) => assert_eq!(pubcomp.pkid, 1),
            packet => panic!("Invalid network request: {:?}", packet),
        }
    }

    #[test]
    fn incoming_pubcomp_should_release_correct_pkid_from_release_queue() {
        let mut mqtt = build_mqttstate();
        let publish = build_outgoing_publish(QoS::ExactlyOnce);

        mqtt.outgoing_publish(publish).unwrap();
        mqtt.handle_incoming_pubrec(&PubRec::new(1, None)).unwrap();

        mqtt.handle_incoming_pubcomp(&PubComp::new(1, None))
            .unwrap();
        assert_eq!(mqtt.inflight, 0);
    }

    #[test]
    fn outgoing_ping_handle_should_throw_errors_for_no_pingresp() {
        let mut mqtt = build_mqttstate();
        mqtt.outgoing_ping().unwrap();

        // network activity other than pingresp
        let publish = build_outgoing_publish(QoS::AtLeastOnce);
        mqtt.handle_outgoing_packet(Request::Publish(publish))
            .unwrap();
        mqtt.handle_incoming_packet(Incoming::PubAck(PubAck::new(1, None)))
            .unwrap();

        // should throw error because we didn't get pingresp for previous ping
        match mqtt.outgoing_ping() {
            Ok(_) => panic!("Should throw pingresp await error"),
            Err(StateError::AwaitPingResp) => (),
            Err(e) => panic!("Should throw pingresp await error. Error = {:?}", e),
        }
    }

    #[test]
    fn outgoing_ping_handle_should_succeed_if_pingresp_is_received() {
        let mut mqtt = build_mqttstate();

        // should ping
        mqtt.outgoing_ping().unwrap();
        mqtt.handle_incoming_packet(Incoming::PingResp(PingResp))
            .unwrap();

        // should ping
        mqtt.outgoing_ping().unwrap();
    }

    // umqtt patch: tables that grow with use.

    #[test]
    fn new_state_allocates_no_tables() {
        let mqtt = MqttState::new(u16::MAX, false);
        assert_eq!(mqtt.outgoing_pub.capacity(), 0);
        assert_eq!(mqtt.outgoing_rel.len(), 0);
        assert_eq!(mqtt.incoming_pub.len(), 0);
        assert_eq!(mqtt.events.capacity(), 0);
    }

    #[test]
    fn outgoing_packet_id_above_the_inflight_limit_is_refused() {
        let mut mqtt = MqttState::new(10, false);
        let mut publish = build_outgoing_publish(QoS::AtLeastOnce);
        publish.pkid = 11;
        assert!(matches!(
            mqtt.outgoing_publish(publish),
            Err(StateError::Unsolicited(11))
        ));
    }

    #[test]
    fn qos2_both_ways_with_the_highest_packet_ids_is_tracked() {
        let mut mqtt = build_mqttstate();
        let mut publish = build_incoming_publish(QoS::ExactlyOnce, u16::MAX);
        mqtt.handle_incoming_publish(&mut publish).unwrap();
        assert!(mqtt.incoming_pub.contains(u16::MAX as usize));
        mqtt.handle_incoming_pubrel(&PubRel::new(u16::MAX, None))
            .unwrap();
        assert!(!mqtt.incoming_pub.contains(u16::MAX as usize));

        let mut publish = build_outgoing_publish(QoS::ExactlyOnce);
        publish.pkid = 500;
        mqtt.outgoing_publish(publish).unwrap();
        mqtt.handle_incoming_pubrec(&PubRec::new(500, None))
            .unwrap();
        assert!(mqtt.outgoing_rel.contains(500));
        mqtt.handle_incoming_pubcomp(&PubComp::new(500, None))
            .unwrap();
        assert!(!mqtt.outgoing_rel.contains(500));
        assert_eq!(mqtt.inflight, 0);
    }

    // umqtt patch: a parked publish is pending after a link failure.

    #[test]
    fn clean_returns_the_publish_parked_on_a_collision() {
        let mut mqtt = MqttState::new(2, false);
        for _ in 0..3 {
            mqtt.outgoing_publish(build_outgoing_publish(QoS::AtLeastOnce))
                .unwrap();
        }
        assert!(mqtt.collision.is_some());
        let pending = mqtt.clean();
        assert!(mqtt.collision.is_none());
        assert_eq!(pending.len(), 3);
    }

    // umqtt patch: PINGREQs asked for.

    #[test]
    fn a_requested_ping_while_one_waits_is_neither_sent_nor_an_error() {
        let mut mqtt = build_mqttstate();
        assert_eq!(mqtt.requested_ping(), Some(Packet::PingReq(PingReq)));
        assert_eq!(mqtt.requested_ping(), None);
        assert_eq!(mqtt.events.len(), 1);
        // The keep-alive timer's PINGREQ still finds the first one unanswered.
        assert!(matches!(
            mqtt.outgoing_ping(),
            Err(StateError::AwaitPingResp)
        ));
        mqtt.handle_incoming_packet(Incoming::PingResp(PingResp))
            .unwrap();
        assert_eq!(mqtt.requested_ping(), Some(Packet::PingReq(PingReq)));
    }

    // umqtt patch: acknowledgements with a failure reason end the exchange.

    #[test]
    fn a_puback_with_a_failure_reason_releases_the_publish_parked_on_its_id() {
        let mut mqtt = MqttState::new(2, false);
        for _ in 0..3 {
            mqtt.outgoing_publish(build_outgoing_publish(QoS::AtLeastOnce))
                .unwrap();
        }
        assert!(mqtt.collision.is_some());
        let mut refused = PubAck::new(1, None);
        refused.reason = PubAckReason::NotAuthorized;
        match mqtt.handle_incoming_puback(&refused).unwrap() {
            Some(Packet::Publish(publish)) => assert_eq!(publish.pkid, 1),
            other => panic!("expected the parked publish, got {other:?}"),
        }
        assert!(mqtt.collision.is_none());
        assert_eq!(mqtt.inflight, 2);
    }

    #[test]
    fn a_pubrec_with_a_failure_reason_ends_the_exchange() {
        let mut mqtt = build_mqttstate();
        mqtt.outgoing_publish(build_outgoing_publish(QoS::ExactlyOnce))
            .unwrap();
        let mut refused = PubRec::new(1, None);
        refused.reason = PubRecReason::QuotaExceeded;
        assert_eq!(mqtt.handle_incoming_pubrec(&refused).unwrap(), None);
        assert_eq!(mqtt.inflight, 0);
        assert!(!mqtt.outgoing_rel.contains(1));
    }

    #[test]
    fn a_pubcomp_with_a_failure_reason_ends_the_exchange_and_tracks_the_parked_publish() {
        let mut mqtt = build_mqttstate();
        mqtt.outgoing_publish(build_outgoing_publish(QoS::ExactlyOnce))
            .unwrap();
        mqtt.handle_incoming_pubrec(&PubRec::new(1, None)).unwrap();
        let mut parked = build_outgoing_publish(QoS::AtLeastOnce);
        parked.pkid = 1;
        mqtt.collision = Some(parked);
        let mut refused = PubComp::new(1, None);
        refused.reason = PubCompReason::PacketIdentifierNotFound;
        match mqtt.handle_incoming_pubcomp(&refused).unwrap() {
            Some(Packet::Publish(publish)) => assert_eq!(publish.pkid, 1),
            other => panic!("expected the parked publish, got {other:?}"),
        }
        assert_eq!(mqtt.inflight, 1);
        // Its PUBACK is expected, not unsolicited.
        mqtt.handle_incoming_puback(&PubAck::new(1, None)).unwrap();
        assert_eq!(mqtt.inflight, 0);
    }

    // umqtt patch: outgoing topic aliases.

    use bytes::Bytes;

    fn aliased_publish(topic: &str, alias: u16) -> Publish {
        let properties = PublishProperties {
            topic_alias: Some(alias),
            ..Default::default()
        };
        Publish::new(topic, QoS::AtLeastOnce, vec![1], Some(properties))
    }

    fn sent(packet: Option<Packet>) -> (Bytes, Option<u16>) {
        match packet {
            Some(Packet::Publish(publish)) => {
                let alias = publish.properties.and_then(|p| p.topic_alias);
                (publish.topic, alias)
            }
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn a_topic_alias_stands_for_its_topic_once_sent_with_it() {
        let mut mqtt = build_mqttstate();
        mqtt.broker_topic_alias_max = 10;
        let first = mqtt.outgoing_publish(aliased_publish("a/b", 1)).unwrap();
        assert_eq!(sent(first), (Bytes::from("a/b"), Some(1)));
        let again = mqtt.outgoing_publish(aliased_publish("a/b", 1)).unwrap();
        assert_eq!(sent(again), (Bytes::new(), Some(1)));
        // The copy kept for a resend has its topic.
        assert_eq!(mqtt.outgoing_pub[2].as_ref().unwrap().topic, "a/b");
        let other = mqtt.outgoing_publish(aliased_publish("c", 1)).unwrap();
        assert_eq!(sent(other), (Bytes::from("c"), Some(1)));
        let back = mqtt.outgoing_publish(aliased_publish("a/b", 1)).unwrap();
        assert_eq!(sent(back), (Bytes::from("a/b"), Some(1)));
    }

    #[test]
    fn a_topic_alias_the_broker_does_not_allow_is_left_out() {
        let mut mqtt = build_mqttstate();
        mqtt.broker_topic_alias_max = 2;
        for alias in [3, 0] {
            let packet = mqtt
                .outgoing_publish(aliased_publish("a/b", alias))
                .unwrap();
            assert_eq!(sent(packet), (Bytes::from("a/b"), None));
        }
    }

    #[test]
    fn topic_aliases_start_over_on_a_new_connection() {
        let mut mqtt = build_mqttstate();
        mqtt.broker_topic_alias_max = 10;
        mqtt.outgoing_publish(aliased_publish("a/b", 1)).unwrap();
        mqtt.clean();
        let packet = mqtt.outgoing_publish(aliased_publish("a/b", 1)).unwrap();
        assert_eq!(sent(packet), (Bytes::from("a/b"), Some(1)));
    }

    // umqtt patch: incoming topic aliases.

    fn incoming_with_alias(topic: &str, alias: u16) -> Incoming {
        let properties = PublishProperties {
            topic_alias: Some(alias),
            ..Default::default()
        };
        Incoming::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            vec![1],
            Some(properties),
        ))
    }

    fn delivered_topic(mqtt: &mut MqttState) -> Bytes {
        match mqtt.events.pop_back() {
            Some(Event::Incoming(Incoming::Publish(publish))) => publish.topic,
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn an_incoming_topic_alias_is_delivered_as_its_topic_on_its_connection_only() {
        let mut mqtt = build_mqttstate();
        mqtt.handle_incoming_packet(incoming_with_alias("a/b", 7))
            .unwrap();
        assert_eq!(delivered_topic(&mut mqtt), "a/b");
        mqtt.handle_incoming_packet(incoming_with_alias("", 7))
            .unwrap();
        assert_eq!(delivered_topic(&mut mqtt), "a/b");
        mqtt.clean();
        assert!(matches!(
            mqtt.handle_incoming_packet(incoming_with_alias("", 7)),
            Err(StateError::UnknownTopicAlias(7))
        ));
    }

    // umqtt patch: the limits of each connection.

    fn connack_with(receive_max: Option<u16>, topic_alias_max: Option<u16>) -> Incoming {
        let properties = ConnAckProperties {
            session_expiry_interval: None,
            receive_max,
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        };
        Incoming::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::Success,
            properties: Some(properties),
        })
    }

    #[test]
    fn each_connack_sets_the_limits_of_its_connection() {
        let mut mqtt = MqttState::new(100, false);
        mqtt.handle_incoming_packet(connack_with(Some(20), Some(5)))
            .unwrap();
        assert_eq!(
            (mqtt.max_outgoing_inflight, mqtt.broker_topic_alias_max),
            (20, 5)
        );
        mqtt.handle_incoming_packet(connack_with(None, None))
            .unwrap();
        assert_eq!(
            (mqtt.max_outgoing_inflight, mqtt.broker_topic_alias_max),
            (100, 0)
        );
    }

    #[test]
    fn packet_ids_stay_within_a_smaller_receive_maximum() {
        let mut mqtt = MqttState::new(100, false);
        mqtt.handle_incoming_packet(connack_with(Some(20), None))
            .unwrap();
        for _ in 0..15 {
            mqtt.next_pkid();
        }
        mqtt.handle_incoming_packet(connack_with(Some(10), None))
            .unwrap();
        let ids: Vec<u16> = (0..3).map(|_| mqtt.next_pkid()).collect();
        assert_eq!(ids, vec![10, 1, 2]);
    }

    #[test]
    fn with_manual_pubrel_a_pubrec_waits_for_the_pubrel_request() {
        let mut mqtt = build_mqttstate();
        mqtt.manual_pubrel = true;
        let publish = build_outgoing_publish(QoS::ExactlyOnce);
        mqtt.outgoing_publish(publish).unwrap();
        assert_eq!(mqtt.inflight, 1);

        let packet = mqtt.handle_incoming_pubrec(&PubRec::new(1, None)).unwrap();
        assert_eq!(packet, None);
        assert_eq!(mqtt.inflight, 0);
        assert!(!mqtt.outgoing_rel.contains(1));

        let request = Request::PubRel(PubRel::new(1, None));
        let packet = mqtt.handle_outgoing_packet(request).unwrap();
        assert_eq!(packet, Some(Packet::PubRel(PubRel::new(1, None))));
        assert_eq!(mqtt.inflight, 1);
        mqtt.handle_incoming_pubcomp(&PubComp::new(1, None)).unwrap();
        assert_eq!(mqtt.inflight, 0);
    }

    #[test]
    fn with_manual_pubrel_a_refusing_pubrec_still_ends_the_exchange() {
        let mut mqtt = build_mqttstate();
        mqtt.manual_pubrel = true;
        mqtt.outgoing_publish(build_outgoing_publish(QoS::ExactlyOnce))
            .unwrap();
        let mut pubrec = PubRec::new(1, None);
        pubrec.reason = PubRecReason::NotAuthorized;
        assert_eq!(mqtt.handle_incoming_pubrec(&pubrec).unwrap(), None);
        assert_eq!(mqtt.inflight, 0);
        assert!(!mqtt.outgoing_rel.contains(1));
    }
}
