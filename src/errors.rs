//! The exceptions the package raises, and the errors the driver reports to waiting callers.
//!
//! Python-facing classes (all subclasses of `umqtt.MQTTException`, itself an `Exception`):
//! - `MQTTConnectError(MQTTException, ValueError)`: `connect()` failed; `.rc` holds the CONNACK code.
//!   `ValueError` is what QuecPython scripts catch, `MQTTException` what MicroPython scripts catch.
//! - `MQTTConnectionLost(MQTTException, ConnectionError)`: the link is gone (an `OSError`, as on devices).
//! - `MQTTTimeout(MQTTException, TimeoutError)`: an acknowledgement did not arrive in time.

use pyo3::exceptions::{PyConnectionError, PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use rumqttc::{ConnectReturnCode, ConnectionError, StateError};

use crate::tls;

pyo3::create_exception!(
    umqtt,
    MQTTException,
    PyException,
    "Base class of every error umqtt raises."
);

static CONNECT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CONNECTION_LOST: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Why a request did not complete. Cloned to every waiter a single link failure affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// The first connection attempt failed; the message says what failed.
    Connect { message: String, rc: Option<u8> },
    /// The link dropped (or never came up) while the request was outstanding.
    ConnectionLost(String),
    /// Like `ConnectionLost`, but the broker closed the link while a large PUBLISH was
    /// unacknowledged: it may not accept packets that large, so a large PUBLISH is not sent again
    /// (it would close the link again).
    LostWithLargePublish(String),
    /// The user closed or disconnected the client.
    Closed,
    /// No acknowledgement (or no connection) before the deadline; says what was awaited.
    Timeout(String),
}

impl DriverError {
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            DriverError::Connect { message, rc } => connect_error(py, message, rc),
            DriverError::ConnectionLost(message) | DriverError::LostWithLargePublish(message) => {
                connection_lost(py, message)
            }
            DriverError::Closed => connection_lost(py, self.to_string()),
            DriverError::Timeout(message) => timeout(py, message),
        }
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::Connect { message, .. }
            | DriverError::ConnectionLost(message)
            | DriverError::LostWithLargePublish(message)
            | DriverError::Timeout(message) => f.write_str(message),
            DriverError::Closed => f.write_str("the client was disconnected"),
        }
    }
}

/// Classes built at import time, because `create_exception!` allows only one base class.
pub fn register(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    let base = py.get_type::<MQTTException>();
    module.add("MQTTException", &base)?;
    let classes = [
        (
            &CONNECT_ERROR,
            "MQTTConnectError",
            py.get_type::<PyValueError>(),
            "connect() failed: DNS, TCP, TLS, timeout or a CONNACK refusal (then `rc` is its code).",
        ),
        (
            &CONNECTION_LOST,
            "MQTTConnectionLost",
            py.get_type::<PyConnectionError>(),
            "The connection to the broker is gone.",
        ),
        (
            &TIMEOUT,
            "MQTTTimeout",
            py.get_type::<PyTimeoutError>(),
            "The broker did not acknowledge in time.",
        ),
    ];
    for (cell, name, builtin, doc) in classes {
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "umqtt")?;
        namespace.set_item("__doc__", doc)?;
        namespace.set_item("rc", py.None())?;
        let bases = PyTuple::new(py, [base.clone(), builtin])?;
        let class = py
            .get_type::<PyType>()
            .call1((name, bases, namespace))?
            .cast_into::<PyType>()?;
        module.add(name, &class)?;
        let _ = cell.set(py, class.unbind());
    }
    Ok(())
}

fn raise(py: Python<'_>, cell: &PyOnceLock<Py<PyType>>, message: String, rc: Option<u8>) -> PyErr {
    let Some(class) = cell.get(py) else {
        return MQTTException::new_err(message);
    };
    match class.bind(py).call1((message,)) {
        Ok(instance) => {
            if let Some(code) = rc {
                if let Err(err) = instance.setattr("rc", code) {
                    return err;
                }
            }
            PyErr::from_value(instance)
        }
        Err(err) => err,
    }
}

pub fn connect_error(py: Python<'_>, message: String, rc: Option<u8>) -> PyErr {
    raise(py, &CONNECT_ERROR, message, rc)
}

pub fn connection_lost(py: Python<'_>, message: String) -> PyErr {
    raise(py, &CONNECTION_LOST, message, None)
}

pub fn timeout(py: Python<'_>, message: String) -> PyErr {
    raise(py, &TIMEOUT, message, None)
}

/// The CONNACK return code's number and its name in the MQTT 3.1.1 specification.
pub fn connack_code(code: ConnectReturnCode) -> (u8, &'static str) {
    match code {
        ConnectReturnCode::Success => (0, "accepted"),
        ConnectReturnCode::RefusedProtocolVersion => (1, "unacceptable protocol version"),
        ConnectReturnCode::BadClientId => (2, "identifier rejected"),
        ConnectReturnCode::ServiceUnavailable => (3, "server unavailable"),
        ConnectReturnCode::BadUserNamePassword => (4, "bad user name or password"),
        ConnectReturnCode::NotAuthorized => (5, "not authorized"),
    }
}

/// Turns a failed first connection attempt into a message that says what failed and how to check it.
pub fn describe_connect_failure(error: &ConnectionError, target: &str) -> DriverError {
    if let Some(failure) = tls::find_rustls_error(error) {
        let message = tls::describe(failure, target);
        return DriverError::Connect { message, rc: None };
    }
    let (message, rc) = match error {
        ConnectionError::ConnectionRefused(code) => {
            let (rc, name) = connack_code(*code);
            (
                format!(
                    "broker {target} refused the connection: CONNACK return code {rc} ({name})"
                ),
                Some(rc),
            )
        }
        ConnectionError::NetworkTimeout => (
            format!("timed out connecting to {target}: check the address, port and network"),
            None,
        ),
        ConnectionError::Io(io) => (describe_io(io, target), None),
        ConnectionError::Tls(tls) => (format!("TLS handshake with {target} failed: {tls}"), None),
        ConnectionError::MqttState(StateError::Io(io)) => (describe_io(io, target), None),
        other => (format!("connecting to {target} failed: {other}"), None),
    };
    DriverError::Connect { message, rc }
}

fn describe_io(io: &std::io::Error, target: &str) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => {
            format!("connection refused by {target}: is an MQTT broker listening on that port?")
        }
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
            format!("{target} closed the connection during the MQTT handshake ({io})")
        }
        ErrorKind::TimedOut => format!("timed out connecting to {target} ({io})"),
        _ if is_dns_failure(io) => format!("cannot resolve the broker address {target} ({io})"),
        _ => format!("connecting to {target} failed: {io}"),
    }
}

fn is_dns_failure(io: &std::io::Error) -> bool {
    let text = io.to_string();
    text.contains("failed to lookup address")
        || text.contains("Name or service not known")
        || text.contains("could not resolve")
        || text.contains("nodename nor servname")
        || text.contains("Temporary failure in name resolution")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_return_code() {
        let error = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        let DriverError::Connect { message, rc } = describe_connect_failure(&error, "h:1") else {
            panic!("not a connect error");
        };
        assert_eq!(rc, Some(5));
        assert!(message.contains("not authorized"), "{message}");
    }

    #[test]
    fn refused_tcp_says_so() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let DriverError::Connect { message, rc } =
            describe_connect_failure(&ConnectionError::Io(io), "127.0.0.1:9")
        else {
            panic!("not a connect error");
        };
        assert_eq!(rc, None);
        assert!(message.contains("connection refused"), "{message}");
    }
}
