//! Converting and validating Python arguments before anything reaches rumqttc, whose asserts panic.
//! Wrong types raise `TypeError`, wrong values `ValueError`, each naming the argument.

use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyMemoryView, PyString};
use rumqttc::{Protocol, QoS};

/// MQTT strings carry a two-byte length.
const MAX_STRING: usize = 65_535;
/// The largest packet MQTT can frame: a remaining length of 268,435,455 (four length bytes), the
/// length bytes and the packet type. Outgoing packets are limited by this alone.
pub const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// `str` or `bytes` holding UTF-8 text (client ids, hosts, user names, topics).
pub fn text(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return String::from_utf8(b.as_bytes().to_vec())
            .map_err(|_| PyValueError::new_err(format!("{what} must be valid UTF-8")));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        type_name(value)
    )))
}

/// Like [`text`], with `None` meaning "not given".
pub fn optional_text(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<String>> {
    match value {
        Some(v) if !v.is_none() => text(v, what).map(Some),
        _ => Ok(None),
    }
}

/// A message body: `bytes`, `bytearray`, `memoryview` (or any buffer `bytes()` accepts) or `str`.
pub fn payload(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    binary(value, "msg")
}

/// Binary data (`what`, named in the error): `bytes`, `bytearray`, `memoryview` (or any buffer)
/// or `str` (its UTF-8).
pub fn binary(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned().into_bytes());
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    // Anything else must be a buffer (memoryview, array, ...): memoryview() accepts exactly those,
    // where bytes() would also turn lists, ranges and dicts into bytes.
    let py = value.py();
    let view = py.get_type::<PyMemoryView>().call1((value,)).map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be bytes, bytearray, memoryview or str, not {}",
            type_name(value)
        ))
    })?;
    let converted = py.get_type::<PyBytes>().call1((view,))?;
    Ok(converted.cast::<PyBytes>()?.as_bytes().to_vec())
}

pub fn integer(value: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            type_name(value)
        )));
    }
    value
        .extract::<i64>()
        .map_err(|_| PyValueError::new_err(format!("{what} is out of range: {value}")))
}

pub fn qos(value: &Bound<'_, PyAny>) -> PyResult<QoS> {
    match integer(value, "qos")? {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        other => Err(PyValueError::new_err(format!(
            "qos must be 0, 1 or 2, not {other}"
        ))),
    }
}

/// `qos` as given, or QoS 0 when not given.
pub fn optional_qos(value: Option<&Bound<'_, PyAny>>) -> PyResult<QoS> {
    Ok(value.map(qos).transpose()?.unwrap_or(QoS::AtMostOnce))
}

/// A port as an int or a decimal string (`'18830'`, as device scripts pass it); 0 picks `default`.
pub fn port(value: &Bound<'_, PyAny>, default: u16) -> PyResult<u16> {
    let number = if let Ok(s) = value.cast::<PyString>() {
        let s = s.to_cow()?;
        let s = s.trim();
        s.parse::<i64>().map_err(|_| {
            PyValueError::new_err(format!("port must be a decimal number, not {s:?}"))
        })?
    } else {
        integer(value, "port")?
    };
    match number {
        0 => Ok(default),
        1..=65_535 => Ok(number as u16),
        _ => Err(PyValueError::new_err(format!(
            "port must be between 1 and 65535 (or 0 for the default), not {number}"
        ))),
    }
}

/// `version`: 3 is MQTT 3.1, 4 MQTT 3.1.1, 5 MQTT 5 (the device's numbers).
pub fn protocol(value: &Bound<'_, PyAny>) -> PyResult<Protocol> {
    match integer(value, "version")? {
        3 => Ok(Protocol::V3),
        4 => Ok(Protocol::V4),
        5 => Ok(Protocol::V5),
        other => Err(PyValueError::new_err(format!(
            "version must be 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5), not {other}"
        ))),
    }
}

/// `host:port` as messages and URLs write it (`[::1]:1883` for an IPv6 address).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn keepalive(value: &Bound<'_, PyAny>) -> PyResult<u16> {
    Ok(bounded_int(value, "keepalive (seconds)", 0..=65_535)? as u16)
}

pub fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be a positive number of seconds, not {value}"
        )))
    }
}

/// What MQTT 3.1.1 (§1.5.3) allows in a UTF-8 string: at most 65535 bytes, no NUL; and what a
/// broker MAY treat as malformed (and mosquitto does, closing the connection): control characters
/// and Unicode noncharacters. Refused here, with the argument named, instead of losing the link.
pub fn check_mqtt_string(value: &str, what: &str) -> PyResult<()> {
    if value.len() > MAX_STRING {
        return Err(PyValueError::new_err(format!(
            "{what} is {} bytes long; MQTT allows at most {MAX_STRING}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(PyValueError::new_err(format!(
            "{what} must not contain NUL characters (U+0000)"
        )));
    }
    if let Some(bad) = value.chars().find(|&c| is_forbidden_in_mqtt_string(c)) {
        return Err(PyValueError::new_err(format!(
            "{what} must not contain the control or noncharacter code point U+{:04X}",
            u32::from(bad)
        )));
    }
    Ok(())
}

fn is_forbidden_in_mqtt_string(c: char) -> bool {
    let code = u32::from(c);
    code < 0x20
        || (0x7F..=0x9F).contains(&code)
        || (0xFDD0..=0xFDEF).contains(&code)
        || (code & 0xFFFE) == 0xFFFE
}

/// An integer argument within `range`, named as the user named it.
pub fn bounded_int(
    value: &Bound<'_, PyAny>,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
) -> PyResult<i64> {
    let number = integer(value, what)?;
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be between {} and {}, not {number}",
            range.start(),
            range.end()
        )))
    }
}

/// A topic to publish to: not empty, no wildcards.
pub fn topic_name(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let topic = text(value, "topic")?;
    if topic.is_empty() {
        return Err(PyValueError::new_err("topic must not be empty"));
    }
    if topic.contains(['+', '#']) {
        return Err(PyValueError::new_err(format!(
            "cannot publish to {topic:?}: wildcards + and # are only allowed in subscriptions"
        )));
    }
    check_mqtt_string(&topic, "topic")?;
    Ok(topic)
}

/// A topic filter to subscribe to: wildcards allowed where MQTT allows them.
pub fn topic_filter(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let filter = text(value, "topic")?;
    check_mqtt_string(&filter, "topic")?;
    if is_incomplete_shared_subscription(&filter) {
        return Err(PyValueError::new_err(format!(
            "invalid shared subscription {filter:?}: write $share/<group>/<filter>, a non-empty \
             group without wildcards followed by a topic filter (brokers drop the connection \
             otherwise)"
        )));
    }
    if !rumqttc::valid_filter(&filter) {
        return Err(PyValueError::new_err(format!(
            "invalid topic filter {filter:?}: it must not be empty, # may only stand alone as the \
             last level and + only as a whole level"
        )));
    }
    Ok(filter)
}

/// Whether `topic` matches the subscription filter `topic_filter` as a broker decides: `+` is one
/// level, `#` what is left (the parent level included), and a filter that starts with a
/// wildcard does not match a topic that starts with `$` (`$SYS/...`). For the command line's
/// `-T` and the pytest plugin's `mqtt_capture`; the filter is checked as `subscribe()` checks it.
#[pyfunction]
pub fn topic_matches(topic_filter: &Bound<'_, PyAny>, topic: &Bound<'_, PyAny>) -> PyResult<bool> {
    let filter = self::topic_filter(topic_filter)?;
    let topic = text(topic, "topic")?;
    Ok(filter_matches(&filter, &topic))
}

fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = topic.split('/');
    for wanted in filter.split('/') {
        if wanted == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if wanted == "+" || wanted == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// `$share` filters (shared subscriptions, which mosquitto also offers over MQTT 3.1.1) need a
/// group name and a filter: `$share/<group>/<filter>`.
fn is_incomplete_shared_subscription(filter: &str) -> bool {
    if filter != "$share" && !filter.starts_with("$share/") {
        return false;
    }
    let mut levels = filter.splitn(3, '/').skip(1);
    let group = levels.next().unwrap_or_default();
    let rest = levels.next().unwrap_or_default();
    group.is_empty() || group.contains(['+', '#']) || rest.is_empty()
}

/// Whether a PUBLISH of this size fits the packet limit; mirrors rumqttc's own size formula.
pub fn publish_size(topic: &str, payload: usize, qos: QoS) -> usize {
    let id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// Whether a PUBLISH (or a will) fits in an MQTT packet; `max_packet_size` limits only what
/// comes in.
pub fn check_fits(topic: &str, payload: usize, qos: QoS) -> PyResult<()> {
    let size = publish_size(topic, payload, qos);
    if size > MQTT_MAX_PACKET {
        return Err(PyValueError::new_err(format!(
            "message of {payload} bytes is too large: the packet would be {size} bytes, and MQTT \
             allows at most {MQTT_MAX_PACKET} (256 MiB)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subscriptions_need_a_group_and_a_filter() {
        for bad in [
            "$share",
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//t",
            "$share/+/t",
        ] {
            assert!(is_incomplete_shared_subscription(bad), "{bad}");
        }
        for good in [
            "$share/g/t",
            "$share/g/#",
            "$shared/x",
            "$SYS/#",
            "a/$share",
        ] {
            assert!(!is_incomplete_shared_subscription(good), "{good}");
        }
    }

    #[test]
    fn filters_match_as_a_broker_matches_them() {
        for (filter, topic, matches) in [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a/", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("+/b", "a/b", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a//b", "a//b", true),
            ("/a", "a", false),
        ] {
            assert_eq!(filter_matches(filter, topic), matches, "{filter} {topic}");
        }
    }

    #[test]
    fn only_mqtt_limits_what_goes_out() {
        // A remaining length of 268,435,455: the largest packet MQTT can frame.
        let largest = 268_435_455 - 2 - 1;
        assert_eq!(publish_size("t", largest, QoS::AtMostOnce), MQTT_MAX_PACKET);
        assert!(check_fits("t", largest, QoS::AtMostOnce).is_ok());
        assert!(check_fits("t", largest + 1, QoS::AtMostOnce).is_err());
        assert!(check_fits("t", largest, QoS::AtLeastOnce).is_err());
    }

    #[test]
    fn publish_size_matches_rumqttc() {
        for (topic, len, qos) in [
            ("a", 0, QoS::AtMostOnce),
            ("a/b", 200, QoS::AtLeastOnce),
            ("t", 20_000, QoS::ExactlyOnce),
            ("t", 3_000_000, QoS::AtLeastOnce),
        ] {
            let mut publish = rumqttc::Publish::new(topic, qos, vec![0u8; len]);
            publish.pkid = 1;
            assert_eq!(
                publish_size(topic, len, qos),
                publish.size(),
                "{topic} {len}"
            );
        }
    }
}
