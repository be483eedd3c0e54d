//! The requests of the outbox on disk, for either client: a PUBLISH with the packet id, DUP flag
//! and (MQTT 5) properties the outbox chose and stored, or a PUBREL, sent as built (vendor
//! patches 30 and 53); and the properties' form in the outbox's file (as encoded on the wire).

use bytes::{Bytes, BytesMut};
use rumqttc::v5::{self, mqttbytes::v5 as packets};
use rumqttc::QoS;

use super::{v5_qos, ChannelFull, PublishProperties, Requests};

/// A request of the outbox, sent as it built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRequest {
    Publish(StoredPublish),
    PubRel(u16),
}

/// A stored message's PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPublish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub pkid: u16,
    pub dup: bool,
    /// MQTT 5 publish properties as encoded on the wire (`encode_properties`).
    pub properties: Option<Bytes>,
}

/// Publish properties as the outbox's file keeps them: as encoded in a PUBLISH (their length,
/// then each property), so that a message goes again with exactly the properties it had.
pub fn encode_properties(properties: &PublishProperties) -> Result<Bytes, String> {
    let mut buffer = BytesMut::new();
    (properties.write(&mut buffer))
        .map_err(|e| format!("its properties cannot be encoded: {e:?}"))?;
    Ok(buffer.freeze())
}

/// The properties `encode_properties` made (None when empty).
pub fn decode_properties(encoded: &Bytes) -> Result<Option<PublishProperties>, String> {
    PublishProperties::read(&mut encoded.clone())
        .map_err(|e| format!("its stored properties cannot be read: {e:?}"))
}

impl Requests {
    /// Sends a request of the outbox as it was built, waiting while rumqttc's channel is full;
    /// an error only once the event loop is gone.
    pub async fn send_stored(&self, request: StoredRequest) -> Result<(), ChannelFull> {
        let sent = match self {
            Requests::V4(client) => client.send_request(v4_request(request)).await.is_ok(),
            Requests::V5(client) => client.send_request(v5_request(request)).await.is_ok(),
        };
        sent.then_some(()).ok_or(ChannelFull)
    }
}

fn v4_request(request: StoredRequest) -> rumqttc::Request {
    match request {
        StoredRequest::Publish(stored) => {
            if stored.properties.is_some() {
                log::warn!(
                    target: "umqtt",
                    "the outbox's message to {:?} was stored with MQTT 5 properties, which MQTT \
                     3.1.1 cannot carry: it is sent without them",
                    stored.topic
                );
            }
            rumqttc::Request::Publish(rumqttc::Publish {
                dup: stored.dup,
                qos: stored.qos,
                retain: stored.retain,
                topic: stored.topic,
                pkid: stored.pkid,
                payload: stored.payload,
            })
        }
        StoredRequest::PubRel(pkid) => rumqttc::Request::PubRel(rumqttc::PubRel::new(pkid)),
    }
}

fn v5_request(request: StoredRequest) -> v5::Request {
    match request {
        StoredRequest::Publish(stored) => {
            let properties = match stored.properties.as_ref().map(decode_properties) {
                Some(Ok(properties)) => properties,
                Some(Err(why)) => {
                    // Only a file changed by hand: the message is not held back for ever.
                    log::warn!(
                        target: "umqtt",
                        "the outbox's message to {:?}: {why}; it is sent without them",
                        stored.topic
                    );
                    None
                }
                None => None,
            };
            v5::Request::Publish(packets::Publish {
                dup: stored.dup,
                qos: v5_qos(stored.qos),
                retain: stored.retain,
                topic: Bytes::from(stored.topic),
                pkid: stored.pkid,
                payload: stored.payload,
                properties,
            })
        }
        StoredRequest::PubRel(pkid) => v5::Request::PubRel(packets::PubRel::new(pkid, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_back_from_the_file_as_they_were() {
        // Every key a publish may give (subscription identifiers are the broker's to add).
        let mut properties = PublishProperties {
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            correlation_data: Some(Bytes::from_static(b"\x00id")),
            ..PublishProperties::default()
        };
        properties.payload_format_indicator = Some(1);
        properties.message_expiry_interval = Some(60);
        properties.content_type = Some("text/plain".into());
        properties.response_topic = Some("re".into());
        properties.topic_alias = Some(3);
        let encoded = encode_properties(&properties).expect("encoded");
        assert_eq!(decode_properties(&encoded), Ok(Some(properties)));
        let empty = encode_properties(&PublishProperties::default()).expect("encoded");
        assert_eq!(decode_properties(&empty), Ok(None));
        let broken = Bytes::from_static(b"\x05\x02");
        assert!(decode_properties(&broken).is_err());
    }

    #[test]
    fn a_stored_publish_is_sent_with_its_packet_id_dup_and_properties() {
        let properties = PublishProperties {
            message_expiry_interval: Some(60),
            ..PublishProperties::default()
        };
        let stored = StoredPublish {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::ExactlyOnce,
            retain: true,
            pkid: 7,
            dup: true,
            properties: Some(encode_properties(&properties).expect("encoded")),
        };
        let v5::Request::Publish(publish) = v5_request(StoredRequest::Publish(stored.clone()))
        else {
            panic!("not a PUBLISH");
        };
        assert_eq!(
            (
                publish.topic.as_ref(),
                publish.pkid,
                publish.dup,
                publish.retain
            ),
            (&b"a/b"[..], 7, true, true)
        );
        assert_eq!(publish.properties, Some(properties));
        let rumqttc::Request::Publish(publish) = v4_request(StoredRequest::Publish(stored)) else {
            panic!("not a PUBLISH");
        };
        assert_eq!(
            (publish.topic.as_str(), publish.pkid, publish.dup),
            ("a/b", 7, true)
        );
        let pubrel = v5_request(StoredRequest::PubRel(7));
        assert_eq!(pubrel, v5::Request::PubRel(packets::PubRel::new(7, None)));
    }
}
