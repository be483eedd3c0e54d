use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::{Error, Packet};

/// MQTT v4 codec
#[derive(Debug, Clone)]
pub struct Codec {
    /// Maximum packet size allowed by client
    pub max_incoming_size: Option<u32>,
    /// Maximum packet size allowed by broker
    pub max_outgoing_size: Option<u32>,
}

impl Decoder for Codec {
    type Item = Packet;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let buffered = src.len();
        match Packet::read(src, self.max_incoming_size) {
            Ok(packet) => Ok(Some(packet)),
            // umqtt patch: the packet was whole (`Packet::read` took it off `src`) and a field ran
            // past its end: a malformed packet. Asking for more bytes dropped it unread.
            Err(Error::InsufficientBytes(_)) if src.len() < buffered => Err(Error::MalformedPacket),
            Err(Error::InsufficientBytes(b)) => {
                // Get more packets to construct the incomplete packet
                src.reserve(b);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl Encoder<Packet> for Codec {
    type Error = Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), Self::Error> {
        item.write(dst, self.max_outgoing_size)?;

        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Encoder;

    use super::Codec;
    use crate::v5::{
        mqttbytes::{Error, QoS},
        Packet, Publish,
    };

    // umqtt patch: a whole packet too short for its fields, and a packet not all here yet.
    #[test]
    fn a_whole_packet_too_short_for_its_fields_is_malformed() {
        use tokio_util::codec::Decoder;
        let mut codec = Codec {
            max_incoming_size: None,
            max_outgoing_size: None,
        };
        // A CONNACK of two bytes: no property length.
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x00, 0x09][..]);
        assert!(matches!(codec.decode(&mut buf), Err(Error::MalformedPacket)));
        // A SUBACK without its property length and reason codes.
        let mut buf = BytesMut::from(&[0x90, 0x02, 0x00, 0x01][..]);
        assert!(matches!(codec.decode(&mut buf), Err(Error::MalformedPacket)));
        // One byte of three: wait for the rest.
        let mut buf = BytesMut::from(&[0x20, 0x03, 0x00][..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn outgoing_max_packet_size_check() {
        let mut buf = BytesMut::new();
        let mut codec = Codec {
            max_incoming_size: Some(100),
            max_outgoing_size: Some(200),
        };

        let mut small_publish = Publish::new("hello/world", QoS::AtLeastOnce, vec![1; 100], None);
        small_publish.pkid = 1;
        codec
            .encode(Packet::Publish(small_publish), &mut buf)
            .unwrap();

        let large_publish = Publish::new("hello/world", QoS::AtLeastOnce, vec![1; 265], None);
        match codec.encode(Packet::Publish(large_publish), &mut buf) {
            Err(Error::OutgoingPacketTooLarge {
                pkt_size: 282,
                max: 200,
            }) => {}
            _ => unreachable!(),
        }
    }
}
