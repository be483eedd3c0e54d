//! The exceptions the package raises, and the errors the driver reports to waiting callers.
//!
//! Python-facing classes (all subclasses of `umqtt.MQTTException`, itself an `Exception`):
//! Every one that comes from a reason code (a CONNACK refusal, a refused PUBLISH, SUBSCRIBE or
//! UNSUBSCRIBE, a broker's DISCONNECT) carries it as `.reason_code`, and as `.rc` (0.1's name).
//! - `MQTTConnectError(MQTTException, ValueError)`: `connect()` failed.
//!   `ValueError` is what QuecPython scripts catch, `MQTTException` what MicroPython scripts catch.
//! - `MQTTConnectionLost(MQTTException, ConnectionError)`: the link is gone (an `OSError`, as on devices).
//! - `MQTTTimeout(MQTTException, TimeoutError)`: an acknowledgement did not arrive in time.
//! - `MQTTOutboxError(MQTTException)`: the outbox on disk cannot be used or cannot take a message
//!   (full, a file that is not an outbox, in use, a disk error). Not an `OSError`, so
//!   `umqtt.robust` does not retry it for ever.

use crate::link_error::LinkError;
use crate::tls;
use pyo3::exceptions::{PyConnectionError, PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

pyo3::create_exception!(
    umqtt,
    MQTTException,
    PyException,
    "Base class of every error umqtt raises."
);

pyo3::create_exception!(
    umqtt,
    MQTTOutboxError,
    MQTTException,
    "The outbox on disk (persistence=) cannot be used or cannot take the message: it is full, \
     its file is not an outbox or is in use, or the disk failed."
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
    /// The broker closed the link with an MQTT 5 DISCONNECT: its reason code, named in `message`.
    BrokerDisconnect { message: String, code: u8 },
    /// The broker refused the request in its acknowledgement (reason code 0x80 or more).
    Refused { message: String, code: u8 },
    /// The user closed or disconnected the client.
    Closed,
    /// No acknowledgement (or no connection) before the deadline; says what was awaited.
    Timeout(String),
    /// The outbox on disk did not store the message (full, or the write failed); says why.
    Outbox(String),
}

impl DriverError {
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            DriverError::Connect { message, rc } => connect_error(py, message, rc),
            DriverError::ConnectionLost(message) | DriverError::LostWithLargePublish(message) => {
                connection_lost(py, message)
            }
            DriverError::BrokerDisconnect { message, code } => {
                raise(py, &CONNECTION_LOST, message, Some(code))
            }
            DriverError::Refused { message, code } => refusal(py, message, code),
            DriverError::Closed => connection_lost(py, self.to_string()),
            DriverError::Timeout(message) => timeout(py, message),
            DriverError::Outbox(message) => MQTTOutboxError::new_err(message),
        }
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::Connect { message, .. }
            | DriverError::BrokerDisconnect { message, .. }
            | DriverError::Refused { message, .. }
            | DriverError::ConnectionLost(message)
            | DriverError::LostWithLargePublish(message)
            | DriverError::Timeout(message)
            | DriverError::Outbox(message) => f.write_str(message),
            DriverError::Closed => f.write_str("the client was disconnected"),
        }
    }
}

/// Classes built at import time, because `create_exception!` allows only one base class.
pub fn register(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    let base = py.get_type::<MQTTException>();
    base.setattr("reason_code", py.None())?;
    base.setattr("rc", py.None())?;
    module.add("MQTTException", &base)?;
    module.add("MQTTOutboxError", py.get_type::<MQTTOutboxError>())?;
    let classes = [
        (
            &CONNECT_ERROR,
            "MQTTConnectError",
            py.get_type::<PyValueError>(),
            "connect() failed: DNS, TCP, TLS, timeout or a CONNACK refusal (its `reason_code`).",
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
        Ok(instance) => with_reason_code(instance, rc),
        Err(err) => err,
    }
}

/// The exception `instance`, carrying `code` as `.reason_code` and `.rc`.
fn with_reason_code(instance: Bound<'_, PyAny>, code: Option<u8>) -> PyErr {
    if let Some(code) = code {
        for name in ["reason_code", "rc"] {
            if let Err(err) = instance.setattr(name, code) {
                return err;
            }
        }
    }
    PyErr::from_value(instance)
}

/// A request the broker refused: the plain `MQTTException`, with the code.
fn refusal(py: Python<'_>, message: String, code: u8) -> PyErr {
    match py.get_type::<MQTTException>().call1((message,)) {
        Ok(instance) => with_reason_code(instance, Some(code)),
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

/// Finds an error of type `T` behind a connection failure, however deeply it was wrapped.
fn find_cause<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        current = inner.or_else(|| error.source());
    }
    None
}

/// Turns a failed first connection attempt into a message that says what failed and how to check it.
pub fn describe_connect_failure(error: &LinkError, target: &str) -> DriverError {
    if let Some(failure) = find_cause::<rustls::Error>(error.as_error()) {
        let message = tls::describe(failure, target);
        return DriverError::Connect { message, rc: None };
    }
    if let Some(message) = describe_transport_failure(error, target) {
        return DriverError::Connect { message, rc: None };
    }
    if let Some((code, words)) = error.refusal() {
        return DriverError::Connect {
            message: format!("broker {target} refused the connection: CONNACK {words}"),
            rc: Some(code),
        };
    }
    let message = if error.is_timeout() {
        format!("timed out connecting to {target}: check the address, port and network")
    } else if let Some(io) = error.connect_io() {
        describe_io(io, target)
    } else if let Some(tls) = error.tls() {
        format!("TLS handshake with {target} failed: {tls}")
    } else {
        format!("connecting to {target} failed: {error}")
    };
    DriverError::Connect { message, rc: None }
}

/// Failures of the WebSocket upgrade, of a proxy and of ALPN, in words.
fn describe_transport_failure(error: &LinkError, target: &str) -> Option<String> {
    if error.no_common_alpn() {
        return Some(format!(
            "TLS: {target} chose none of the ALPN protocols offered (ssl_params['alpn_protocols']): \
             it does not speak MQTT under those names on that port (AWS IoT on port 443 expects \
             'x-amzn-mqtt-ca')"
        ));
    }
    if let Some(tungstenite::Error::Http(response)) =
        find_cause::<tungstenite::Error>(error.as_error())
    {
        let status = response.status();
        return Some(format!(
            "{target} refused the WebSocket upgrade: HTTP {} {}: check ws_path, and ws_headers \
             or the password for a token",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    if let Some(why) = error.upgrade_without_mqtt() {
        return Some(format!(
            "{target} upgraded to WebSocket without the 'mqtt' subprotocol ({why}): is an MQTT \
             broker listening at that path?"
        ));
    }
    if let Some(failure) = find_cause::<async_http_proxy::HttpError>(error.as_error()) {
        return Some(describe_http_proxy(failure, target));
    }
    if let Some(failure) = find_cause::<tokio_socks::Error>(error.as_error()) {
        return Some(describe_socks(failure, target));
    }
    if let Some(failure) = error.proxy() {
        let Some(io) = find_cause::<std::io::Error>(failure) else {
            return Some(format!(
                "connecting to {target} failed at the proxy: {failure}"
            ));
        };
        use std::io::ErrorKind;
        return Some(match io.kind() {
            // Resolving the broker's name ourselves (socks5://) fails as a direct connect would.
            ErrorKind::NotFound => describe_io(io, target),
            _ if is_dns_failure(io) => describe_io(io, target),
            _ => format!("cannot reach the proxy to connect to {target}: {io}"),
        });
    }
    None
}

fn describe_http_proxy(failure: &async_http_proxy::HttpError, target: &str) -> String {
    use async_http_proxy::HttpError;
    let HttpError::HttpCode200(code) = failure else {
        return format!("the HTTP proxy did not open a tunnel to {target}: {failure}");
    };
    let reason = http::StatusCode::from_u16(*code)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    let hint = match code {
        // tinyproxy answers wrong credentials with 401, not 407.
        401 | 407 => ": check the user name and password in proxy='http://user:password@host:port'",
        403 => ": the proxy does not allow a tunnel to that host and port",
        502..=504 => ": the proxy could not reach the broker",
        _ => "",
    };
    format!("the proxy refused the connection to {target}: HTTP {code} {reason}{hint}")
}

fn describe_socks(failure: &tokio_socks::Error, target: &str) -> String {
    use tokio_socks::Error as E;
    let reply = |code: u8, words: &str| {
        format!("the SOCKS5 proxy could not connect to {target}: {words} (SOCKS reply {code})")
    };
    match failure {
        E::PasswordAuthFailure(_) => format!(
            "the SOCKS5 proxy refused the user name and password (connecting to {target}): check \
             them in proxy='socks5://user:password@host:port'"
        ),
        E::NoAcceptableAuthMethods => format!(
            "the SOCKS5 proxy accepts none of the ways offered to log in (connecting to {target}): \
             it probably needs a user name and password in proxy='socks5://user:password@host:port'"
        ),
        E::GeneralSocksServerFailure => reply(1, "general failure"),
        E::ConnectionNotAllowedByRuleset => reply(2, "not allowed by its rules"),
        E::NetworkUnreachable => reply(3, "network unreachable"),
        E::HostUnreachable => reply(4, "host unreachable"),
        E::ConnectionRefused => reply(5, "connection refused by the broker's address"),
        E::TtlExpired => reply(6, "TTL expired"),
        E::CommandNotSupported => reply(7, "CONNECT not supported"),
        E::AddressTypeNotSupported => reply(8, "address type not supported"),
        other => format!("the SOCKS5 proxy failed connecting to {target}: {other}"),
    }
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
        ErrorKind::NotFound if io.to_string().contains("has no IPv6 address") => {
            format!("cannot connect to {target}: {io} (ipvtype=1 connects over IPv6 only)")
        }
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
        let error = LinkError::V4(rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::NotAuthorized,
        ));
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
            describe_connect_failure(&LinkError::from(io), "127.0.0.1:9")
        else {
            panic!("not a connect error");
        };
        assert_eq!(rc, None);
        assert!(message.contains("connection refused"), "{message}");
    }
}
