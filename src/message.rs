//! `umqtt._native.Message`: a received message, as the asyncio client yields it (and the
//! blocking dialects' callbacks see it: topic, payload, PUBLISH header, properties).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::properties;
use crate::protocol::Inbound;

/// A received message, as the asyncio client yields it.
#[pyclass(frozen, module = "umqtt._native", name = "Message")]
pub struct Message {
    message: Inbound,
}

impl Message {
    pub fn new(message: Inbound) -> Self {
        Message { message }
    }
}

#[pymethods]
impl Message {
    #[getter]
    fn topic(&self) -> &str {
        &self.message.topic
    }

    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.message.payload)
    }

    #[getter]
    fn qos(&self) -> u8 {
        self.message.qos as u8
    }

    #[getter]
    fn retain(&self) -> bool {
        self.message.retain
    }

    #[getter]
    fn dup(&self) -> bool {
        self.message.dup
    }

    /// MQTT 5's publish properties, only those the packet carried (`{}` under MQTT 3.1.1).
    #[getter]
    fn properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        properties::publish_to_dict(py, self.message.properties.as_deref())
    }

    fn __repr__(&self) -> String {
        format!(
            "<umqtt.Message topic={:?} payload=<{} bytes> qos={} retain={}>",
            self.message.topic,
            self.message.payload.len(),
            self.message.qos as u8,
            self.message.retain
        )
    }
}

/// The first byte of a PUBLISH packet: type, DUP, QoS and RETAIN.
pub fn publish_header(message: &Inbound) -> u8 {
    0x30 | (u8::from(message.dup) << 3) | ((message.qos as u8) << 1) | u8::from(message.retain)
}
