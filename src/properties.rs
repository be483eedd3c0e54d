//! MQTT 5 properties from and to Python dicts: `connect_properties`, a publish's and a will's
//! `properties`, a subscription's, and the ones received (a message's, a CONNACK's). Keys are the
//! specification's names in snake case; a bad key or value is a `TypeError`/`ValueError` naming
//! the dict and the key, before anything is sent.

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::arguments::{self, bounded_int};
use crate::protocol::{
    ConnAckProperties, ConnectProperties, LastWillProperties, PublishProperties,
    SubscribeProperties,
};

/// The largest subscription identifier (a variable byte integer).
const MAX_SUBSCRIPTION_IDENTIFIER: i64 = 268_435_455;

pub const CONNECT_KEYS: &[&str] = &[
    "session_expiry_interval",
    "receive_maximum",
    "maximum_packet_size",
    "topic_alias_maximum",
    "request_response_information",
    "request_problem_information",
    "user_properties",
];

const PUBLISH_KEYS: &[&str] = &[
    "payload_format_indicator",
    "message_expiry_interval",
    "topic_alias",
    "response_topic",
    "correlation_data",
    "user_properties",
    "content_type",
];

const WILL_KEYS: &[&str] = &[
    "will_delay_interval",
    "payload_format_indicator",
    "message_expiry_interval",
    "response_topic",
    "correlation_data",
    "user_properties",
    "content_type",
];

const SUBSCRIBE_KEYS: &[&str] = &["subscription_identifier", "user_properties"];

/// The entries of a properties dict, checked against the keys it may have.
struct Given<'py> {
    /// The dict as the user knows it ("publish properties"), for messages.
    what: &'static str,
    entries: Vec<(String, Bound<'py, PyAny>)>,
}

impl<'py> Given<'py> {
    fn new(value: &Bound<'py, PyAny>, what: &'static str, known: &[&str]) -> PyResult<Self> {
        let dict = value.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!("{what} must be a dict, not {}", type_name(value)))
        })?;
        let mut entries = Vec::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{what}: keys must be str, not {}",
                    type_name(&key)
                )));
            };
            let key = key.to_cow()?.into_owned();
            if !known.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "{what}: unknown key '{key}'; the keys are {}",
                    known.join(", ")
                )));
            }
            // A value of None counts as not given.
            if !value.is_none() {
                entries.push((key, value));
            }
        }
        Ok(Given { what, entries })
    }

    fn get(&self, key: &str) -> Option<&Bound<'py, PyAny>> {
        self.entries
            .iter()
            .find_map(|(name, value)| (name == key).then_some(value))
    }

    fn name(&self, key: &str) -> String {
        format!("{}['{key}']", self.what)
    }

    fn int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> PyResult<Option<i64>> {
        self.get(key)
            .map(|value| bounded_int(value, &self.name(key), range))
            .transpose()
    }

    fn u32(&self, key: &str) -> PyResult<Option<u32>> {
        Ok(self.int(key, 0..=i64::from(u32::MAX))?.map(|n| n as u32))
    }

    fn u16(&self, key: &str, least: i64) -> PyResult<Option<u16>> {
        Ok(self
            .int(key, least..=i64::from(u16::MAX))?
            .map(|n| n as u16))
    }

    /// A flag MQTT carries as a byte 0 or 1: bool, 0 or 1.
    fn flag(&self, key: &str) -> PyResult<Option<u8>> {
        Ok(self.int(key, 0..=1)?.map(|n| n as u8))
    }

    fn text(&self, key: &str) -> PyResult<Option<String>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let name = self.name(key);
        let text = arguments::text(value, &name)?;
        arguments::check_mqtt_string(&text, &name)?;
        Ok(Some(text))
    }

    fn topic(&self, key: &str) -> PyResult<Option<String>> {
        let topic = self.text(key)?;
        if let Some(topic) = &topic {
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Err(PyValueError::new_err(format!(
                    "{} must be a topic to publish to: not empty, no wildcards + or #, not {topic:?}",
                    self.name(key)
                )));
            }
        }
        Ok(topic)
    }

    fn binary(&self, key: &str) -> PyResult<Option<Bytes>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let name = self.name(key);
        let data = arguments::binary(value, &name)?;
        if data.len() > usize::from(u16::MAX) {
            return Err(PyValueError::new_err(format!(
                "{name} is {} bytes long; MQTT allows at most 65535",
                data.len()
            )));
        }
        Ok(Some(Bytes::from(data)))
    }

    /// `user_properties`: a list of (str, str) pairs, in order, repeats kept.
    fn user_properties(&self) -> PyResult<Vec<(String, String)>> {
        let Some(value) = self.get("user_properties") else {
            return Ok(Vec::new());
        };
        let name = self.name("user_properties");
        let pairs_error = || {
            PyTypeError::new_err(format!(
                "{name} must be a list of (str, str) pairs, not {}",
                type_name(value)
            ))
        };
        if !(value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>()) {
            return Err(pairs_error());
        }
        let mut pairs = Vec::new();
        for (index, item) in value.try_iter()?.enumerate() {
            let item = item?;
            let pair: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = match item.cast::<PyTuple>() {
                Ok(tuple) if tuple.len() == 2 => tuple.extract().ok(),
                _ => match item.cast::<PyList>() {
                    Ok(list) if list.len() == 2 => Some((list.get_item(0)?, list.get_item(1)?)),
                    _ => None,
                },
            };
            let Some((key, value)) = pair else {
                let shown = item
                    .repr()
                    .map_or_else(|_| type_name(&item), |r| r.to_string());
                return Err(PyTypeError::new_err(format!(
                    "{name}[{index}] must be a (str, str) pair, not {}",
                    shown.chars().take(60).collect::<String>()
                )));
            };
            let key_name = format!("{name}[{index}][0]");
            let value_name = format!("{name}[{index}][1]");
            let key = arguments::text(&key, &key_name)?;
            let value = arguments::text(&value, &value_name)?;
            arguments::check_mqtt_string(&key, &key_name)?;
            arguments::check_mqtt_string(&value, &value_name)?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// `connect_properties={...}`.
pub fn connect(value: &Bound<'_, PyAny>) -> PyResult<ConnectProperties> {
    let given = Given::new(value, "connect_properties", CONNECT_KEYS)?;
    let mut properties = ConnectProperties::new();
    properties.session_expiry_interval = given.u32("session_expiry_interval")?;
    properties.receive_maximum = given.u16("receive_maximum", 1)?;
    properties.max_packet_size = given
        .int("maximum_packet_size", 1..=arguments::MQTT_MAX_PACKET as i64)?
        .map(|n| n as u32);
    properties.topic_alias_max = given.u16("topic_alias_maximum", 0)?;
    properties.request_response_info = given.flag("request_response_information")?;
    properties.request_problem_info = given.flag("request_problem_information")?;
    properties.user_properties = given.user_properties()?;
    Ok(properties)
}

/// A publish's `properties={...}`.
pub fn publish(value: &Bound<'_, PyAny>) -> PyResult<PublishProperties> {
    let given = Given::new(value, "publish properties", PUBLISH_KEYS)?;
    Ok(PublishProperties {
        payload_format_indicator: given.flag("payload_format_indicator")?,
        message_expiry_interval: given.u32("message_expiry_interval")?,
        topic_alias: given.u16("topic_alias", 1)?,
        response_topic: given.topic("response_topic")?,
        correlation_data: given.binary("correlation_data")?,
        user_properties: given.user_properties()?,
        subscription_identifiers: Vec::new(),
        content_type: given.text("content_type")?,
    })
}

/// A will's `properties={...}`: a publish's (no topic alias) and `will_delay_interval`.
pub fn will(value: &Bound<'_, PyAny>) -> PyResult<LastWillProperties> {
    let given = Given::new(value, "will properties", WILL_KEYS)?;
    Ok(LastWillProperties {
        delay_interval: given.u32("will_delay_interval")?,
        payload_format_indicator: given.flag("payload_format_indicator")?,
        message_expiry_interval: given.u32("message_expiry_interval")?,
        content_type: given.text("content_type")?,
        response_topic: given.topic("response_topic")?,
        correlation_data: given.binary("correlation_data")?,
        user_properties: given.user_properties()?,
    })
}

/// A subscription's `properties={...}`.
pub fn subscribe(value: &Bound<'_, PyAny>) -> PyResult<SubscribeProperties> {
    let given = Given::new(value, "subscribe properties", SUBSCRIBE_KEYS)?;
    let id = given.int("subscription_identifier", 1..=MAX_SUBSCRIPTION_IDENTIFIER)?;
    Ok(SubscribeProperties {
        id: id.map(|id| id as usize),
        user_properties: given.user_properties()?,
    })
}

/// Sets `key` in `dict` when there is a value.
fn put<'py, T: IntoPyObject<'py>>(
    dict: &Bound<'py, PyDict>,
    key: &str,
    value: Option<T>,
) -> PyResult<()> {
    match value {
        Some(value) => dict.set_item(key, value),
        None => Ok(()),
    }
}

fn put_bytes(dict: &Bound<'_, PyDict>, key: &str, value: Option<&Bytes>) -> PyResult<()> {
    put(dict, key, value.map(|data| PyBytes::new(dict.py(), data)))
}

fn put_user_properties(dict: &Bound<'_, PyDict>, pairs: &[(String, String)]) -> PyResult<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    dict.set_item("user_properties", pairs.to_vec())
}

/// A received message's properties: only what the packet carried (`{}` for none, and under
/// MQTT 3.1.1).
pub fn publish_to_dict<'py>(
    py: Python<'py>,
    properties: Option<&PublishProperties>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let Some(p) = properties else {
        return Ok(dict);
    };
    put(
        &dict,
        "payload_format_indicator",
        p.payload_format_indicator,
    )?;
    put(&dict, "message_expiry_interval", p.message_expiry_interval)?;
    put(&dict, "topic_alias", p.topic_alias)?;
    put(&dict, "response_topic", p.response_topic.as_deref())?;
    put_bytes(&dict, "correlation_data", p.correlation_data.as_ref())?;
    put_user_properties(&dict, &p.user_properties)?;
    if !p.subscription_identifiers.is_empty() {
        dict.set_item(
            "subscription_identifiers",
            p.subscription_identifiers.clone(),
        )?;
    }
    put(&dict, "content_type", p.content_type.as_deref())?;
    Ok(dict)
}

/// A CONNACK's properties as the broker sent them (flags as bools).
pub fn connack_to_dict<'py>(
    py: Python<'py>,
    properties: Option<&ConnAckProperties>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let Some(p) = properties else {
        return Ok(dict);
    };
    let flag = |value: Option<u8>| value.map(|value| value != 0);
    put(&dict, "session_expiry_interval", p.session_expiry_interval)?;
    put(&dict, "receive_maximum", p.receive_max)?;
    put(&dict, "maximum_qos", p.max_qos)?;
    put(&dict, "retain_available", flag(p.retain_available))?;
    put(&dict, "maximum_packet_size", p.max_packet_size)?;
    put(
        &dict,
        "assigned_client_identifier",
        p.assigned_client_identifier.as_deref(),
    )?;
    put(&dict, "topic_alias_maximum", p.topic_alias_max)?;
    put(&dict, "reason_string", p.reason_string.as_deref())?;
    put_user_properties(&dict, &p.user_properties)?;
    let wildcards = flag(p.wildcard_subscription_available);
    put(&dict, "wildcard_subscription_available", wildcards)?;
    let identifiers = flag(p.subscription_identifiers_available);
    put(&dict, "subscription_identifiers_available", identifiers)?;
    let shared = flag(p.shared_subscription_available);
    put(&dict, "shared_subscription_available", shared)?;
    put(&dict, "server_keep_alive", p.server_keep_alive)?;
    put(
        &dict,
        "response_information",
        p.response_information.as_deref(),
    )?;
    put(&dict, "server_reference", p.server_reference.as_deref())?;
    put(
        &dict,
        "authentication_method",
        p.authentication_method.as_deref(),
    )?;
    put_bytes(&dict, "authentication_data", p.authentication_data.as_ref())?;
    Ok(dict)
}
