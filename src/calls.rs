//! A call's Python arguments, validated into what the core sends: a publish (with the broker's
//! limits checked, MQTT 5), a subscription (with MQTT 5's options), a timeout. MQTT 5-only
//! arguments under MQTT 3.1.1 and 3.1 are a `ValueError` that says they need `version=5`.

use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arguments;
use crate::errors::MQTTException;
use crate::properties;
use crate::protocol::{Outbound, Subscription};
use crate::session::{Core, NOT_CONNECTED};

/// Using a client before connect() (or after disconnect()) is a programming error, not a
/// network failure: it raises the plain MQTTException in every dialect.
pub fn require_session(core: &Core) -> PyResult<()> {
    if core.has_session() {
        Ok(())
    } else {
        Err(MQTTException::new_err(NOT_CONNECTED))
    }
}

/// A publish's arguments: checked against MQTT's limits and the broker's (MQTT 5) before
/// anything is sent.
pub fn publish(
    core: &Core,
    topic: &Bound<'_, PyAny>,
    msg: &Bound<'_, PyAny>,
    qos: Option<&Bound<'_, PyAny>>,
    retain: bool,
    properties: Option<&Bound<'_, PyAny>>,
) -> PyResult<Outbound> {
    let qos = arguments::optional_qos(qos)?;
    // A message for the outbox on disk is stored now and sent once connected.
    if !core.stores(qos) {
        require_session(core)?;
    }
    let topic = arguments::topic_name(topic)?;
    let payload = arguments::payload(msg)?;
    arguments::check_fits(&topic, payload.len(), qos)?;
    let properties = match properties {
        Some(value) if !value.is_none() => {
            core.options.require_mqtt5("properties")?;
            Some(properties::publish(value)?)
        }
        _ => None,
    };
    let publish = Outbound {
        topic,
        payload: Bytes::from(payload),
        qos,
        retain,
        properties,
    };
    core.check_broker_limits(&publish)
        .map_err(PyValueError::new_err)?;
    Ok(publish)
}

/// A subscription's filter, QoS and (MQTT 5) options: `no_local`, `retain_as_published`,
/// `retain_handling` and `properties`.
#[allow(clippy::too_many_arguments)]
pub fn subscription(
    core: &Core,
    topic: &Bound<'_, PyAny>,
    qos: Option<&Bound<'_, PyAny>>,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: Option<&Bound<'_, PyAny>>,
    properties: Option<&Bound<'_, PyAny>>,
) -> PyResult<Subscription> {
    require_session(core)?;
    let filter = arguments::topic_filter(topic)?;
    let mut subscription = Subscription::plain(filter, arguments::optional_qos(qos)?);
    let given = |name: &str, given: bool| match given {
        true => core.options.require_mqtt5(name),
        false => Ok(()),
    };
    given("no_local", no_local)?;
    given("retain_as_published", retain_as_published)?;
    subscription.no_local = no_local;
    subscription.retain_as_published = retain_as_published;
    if let Some(value) = retain_handling.filter(|value| !value.is_none()) {
        let handling = arguments::bounded_int(value, "retain_handling", 0..=2)? as u8;
        given("retain_handling", handling != 0)?;
        subscription.retain_handling = handling;
    }
    if let Some(value) = properties.filter(|value| !value.is_none()) {
        given("properties", true)?;
        subscription.properties = Some(properties::subscribe(value)?);
    }
    Ok(subscription)
}

/// `request()`'s response topic (`response_topic=`, None: the client's own). The request's
/// response topic and correlation data are the core's to set, not its properties'.
pub fn response_topic(
    request: &Outbound,
    response_topic: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<String>> {
    if let Some(properties) = &request.properties {
        if properties.response_topic.is_some() || properties.correlation_data.is_some() {
            return Err(PyValueError::new_err(
                "request() sets the response_topic and correlation_data properties itself: pass \
                 response_topic= to choose the topic replies come to",
            ));
        }
    }
    match response_topic {
        Some(value) if !value.is_none() => arguments::topic_name(value).map(Some),
        _ => Ok(None),
    }
}

/// A call's `timeout` argument, validated, or the client's default.
pub fn timeout_or(timeout: Option<f64>, default: Duration) -> PyResult<Duration> {
    match timeout {
        Some(seconds) => arguments::seconds(seconds, "timeout"),
        None => Ok(default),
    }
}
