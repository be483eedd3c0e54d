use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Disconnect, DisconnectReasonCode, LastWill, Login, PingReq, PubAck,
    PubAckReason, PubComp, PubRec, PubRel, Publish, SubAck, Subscribe, SubscribeReasonCode,
    UnsubAck, UnsubAckReason, Unsubscribe,
};
use rumqttc::v5::mqttbytes::QoS;

use super::*;
use rumqttc::v5::mqttbytes::v5::Connect;

fn described(packet: &Packet) -> String {
    Described(packet).to_string()
}

#[test]
fn a_connect_shows_its_flags_and_properties_never_its_secrets() {
    let properties = ConnectProperties {
        session_expiry_interval: Some(60),
        max_packet_size: Some(1024),
        user_properties: vec![("token".into(), "token-SECRET".into())],
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"auth-SECRET")),
        ..ConnectProperties::new()
    };
    let connect = Connect {
        keep_alive: 30,
        client_id: "dev-1".into(),
        clean_start: false,
        properties: Some(properties),
    };
    let will = LastWill::new("w", "will-SECRET", QoS::AtLeastOnce, true, None);
    let login = Login::new("carol", "pw-SECRET");
    let text = described(&Packet::Connect(connect, Some(will), Some(login)));
    assert_eq!(
        text,
        "CONNECT (u1, p1, wr1, wq1, wf1, c0, k30) client_id=b'dev-1' \
         properties=[SessionExpiryInterval : 60, AuthenticationMethod : 'SCRAM-SHA-1', \
         UserProperty : [('token', ...)], MaximumPacketSize : 1024]"
    );
    assert!(
        !text.contains("SECRET") && !text.contains("carol"),
        "{text}"
    );
}

#[test]
fn a_publish_shows_its_properties_never_its_payload() {
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("re/1".into()),
        correlation_data: Some(Bytes::from_static(b"id\x00'")),
        user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        subscription_identifiers: vec![3, 7],
        topic_alias: Some(2),
    };
    let mut publish = Publish::new("a/b", QoS::ExactlyOnce, "payload-SECRET", Some(properties));
    publish.pkid = 9;
    publish.dup = true;
    assert_eq!(
        described(&Packet::Publish(publish)),
        "PUBLISH (d1, q2, r0, m9), 'a/b', properties=[PayloadFormatIndicator : 1, \
         MessageExpiryInterval : 60, ContentType : 'text/plain', ResponseTopic : 're/1', \
         CorrelationData : b'id\\x00\\'', SubscriptionIdentifier : [3, 7], TopicAlias : 2, \
         UserProperty : [('a', '1'), ('a', '2')]], ... (14 bytes)"
    );
    let mut bare = Publish::new("", QoS::AtMostOnce, "", None);
    bare.retain = true;
    assert_eq!(
        described(&Packet::Publish(bare)),
        "PUBLISH (d0, q0, r1, m0), '', properties=[] (NULL payload)"
    );
}

#[test]
fn acknowledgements_show_a_reason_code_that_is_not_0() {
    let mut refused = PubAck::new(3, None);
    refused.reason = PubAckReason::NotAuthorized;
    let mut unmatched = PubAck::new(4, None);
    unmatched.reason = PubAckReason::NoMatchingSubscribers;
    let subscribe = Subscribe::new(
        Filter {
            path: "a/#".into(),
            qos: QoS::AtLeastOnce,
            nolocal: true,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::Never,
        },
        Some(SubscribeProperties {
            id: Some(5),
            user_properties: Vec::new(),
        }),
    );
    let codes = vec![
        SubscribeReasonCode::Success(QoS::AtLeastOnce),
        SubscribeReasonCode::NotAuthorized,
    ];
    let cases = [
        (Packet::PubAck(PubAck::new(3, None)), "PUBACK (Mid: 3)"),
        (
            Packet::PubAck(refused),
            "PUBACK (Mid: 3) reasonCode=0x87 Not authorized",
        ),
        (
            Packet::PubAck(unmatched),
            "PUBACK (Mid: 4) reasonCode=0x10 No matching subscribers",
        ),
        (Packet::PubRec(PubRec::new(3, None)), "PUBREC (Mid: 3)"),
        (Packet::PubRel(PubRel::new(3, None)), "PUBREL (Mid: 3)"),
        (Packet::PubComp(PubComp::new(3, None)), "PUBCOMP (Mid: 3)"),
        (
            Packet::Subscribe(subscribe),
            "SUBSCRIBE (d0, m0) [('a/#', {QoS=1, noLocal=True, retainAsPublished=False, \
             retainHandling=2})] properties=[SubscriptionIdentifier : 5]",
        ),
        (
            Packet::SubAck(SubAck {
                pkid: 4,
                return_codes: codes,
                properties: None,
            }),
            "SUBACK (Mid: 4) [1, 135]",
        ),
        (
            Packet::Unsubscribe(Unsubscribe::new("a/#", None)),
            "UNSUBSCRIBE (d0, m0) ['a/#']",
        ),
        (
            Packet::UnsubAck(UnsubAck {
                pkid: 5,
                reasons: vec![UnsubAckReason::NoSubscriptionExisted],
                properties: None,
            }),
            "UNSUBACK (Mid: 5) [17]",
        ),
        (Packet::PingReq(PingReq), "PINGREQ"),
    ];
    for (packet, words) in cases {
        assert_eq!(described(&packet), words);
    }
}

#[test]
fn connack_and_disconnect_show_their_reason_codes_and_properties() {
    let connack = ConnAck {
        session_present: true,
        code: ConnectReturnCode::Success,
        properties: Some(ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(20),
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: Some("auto-1".into()),
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: Some(Bytes::from_static(b"auth-SECRET")),
        }),
    };
    assert_eq!(
        described(&Packet::ConnAck(connack)),
        "CONNACK (1, 0x00 Success) properties=[AssignedClientIdentifier : 'auto-1', \
         ReceiveMaximum : 20]"
    );
    let normal = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    assert_eq!(
        described(&Packet::Disconnect(normal)),
        "DISCONNECT reasonCode=0x00 Normal disconnection properties=[]"
    );
    let taken = Disconnect {
        reason_code: DisconnectReasonCode::SessionTakenOver,
        properties: Some(DisconnectProperties {
            session_expiry_interval: None,
            reason_string: Some("bye\n".into()),
            user_properties: Vec::new(),
            server_reference: None,
        }),
    };
    assert_eq!(
        described(&Packet::Disconnect(taken)),
        "DISCONNECT reasonCode=0x8e Session taken over properties=[ReasonString : 'bye\\n']"
    );
}
