//! Credentials that may expire: `password` and `ws_headers` may be callables, called at every
//! connect and reconnect for the current value (Azure SAS tokens, cloud custom-auth tokens).

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping};

use crate::arguments;
use crate::protocol::ConnectOptions;

/// The largest password MQTT can carry (a two-byte length).
const MAX_PASSWORD: usize = 65_535;

/// A value given as is, or a callable that returns it.
#[derive(Clone)]
enum Given<T> {
    Value(T),
    Callable(Arc<Py<PyAny>>),
}

type Headers = Vec<(HeaderName, HeaderValue)>;

/// The user name, password and WebSocket upgrade headers of a client.
#[derive(Clone)]
pub struct Credentials {
    user: Option<String>,
    password: Option<Given<String>>,
    ws_headers: Given<Headers>,
}

/// What the callables returned for one connection attempt (or the fixed values).
pub struct Current {
    login: Option<(String, String)>,
    ws_headers: Headers,
}

impl Credentials {
    pub fn from_python(
        user: Option<&Bound<'_, PyAny>>,
        password: Option<&Bound<'_, PyAny>>,
        ws_headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let user = arguments::optional_text(user, "user")?;
        if let Some(user) = &user {
            arguments::check_mqtt_string(user, "user")?;
        }
        let password = match password {
            Some(value) if value.is_callable() => {
                Some(Given::Callable(Arc::new(value.clone().unbind())))
            }
            value => arguments::optional_text(value, "password")?
                .map(|password| check_password(password).map(Given::Value))
                .transpose()?,
        };
        let ws_headers = match ws_headers {
            Some(value) if value.is_callable() => Given::Callable(Arc::new(value.clone().unbind())),
            Some(value) if !value.is_none() => Given::Value(headers(value, "ws_headers")?),
            _ => Given::Value(Vec::new()),
        };
        Ok(Credentials {
            user,
            password,
            ws_headers,
        })
    }

    pub fn has_ws_headers(&self) -> bool {
        !matches!(&self.ws_headers, Given::Value(headers) if headers.is_empty())
    }

    /// A password given without a user name, which MQTT 3.1.1 and 3.1 forbid.
    pub fn password_without_user(&self) -> bool {
        let no_user = self.user.as_deref().is_none_or(str::is_empty);
        no_user
            && match &self.password {
                None => false,
                Some(Given::Value(password)) => !password.is_empty(),
                Some(Given::Callable(_)) => true,
            }
    }

    /// Whether anything must be called before each connection attempt.
    pub fn expire(&self) -> bool {
        matches!(self.password, Some(Given::Callable(_)))
            || matches!(self.ws_headers, Given::Callable(_))
    }

    /// The values for a connection attempt: the callables are called (taking the GIL), so run
    /// this where blocking is fine. The error says which callable failed and why.
    pub fn current(&self) -> Result<Current, String> {
        let password = match &self.password {
            None => None,
            Some(Given::Value(password)) => Some(password.clone()),
            Some(Given::Callable(callable)) => Some(call(callable, "password", |value| {
                check_password(arguments::text(value, "password()")?)
            })?),
        };
        let ws_headers = match &self.ws_headers {
            Given::Value(headers) => headers.clone(),
            Given::Callable(callable) => call(callable, "ws_headers", |value| {
                headers(value, "ws_headers()")
            })?,
        };
        let login = match (&self.user, password) {
            (None, None) => None,
            (user, password) => Some((
                user.clone().unwrap_or_default(),
                password.unwrap_or_default(),
            )),
        };
        Ok(Current { login, ws_headers })
    }
}

impl Current {
    /// Sets the login and the upgrade headers on either client's options.
    pub fn apply(self, options: &mut dyn ConnectOptions) {
        if let Some((user, password)) = self.login {
            options.set_login(user, password);
        }
        if !self.ws_headers.is_empty() {
            options.set_upgrade_headers(Arc::new(self.ws_headers));
        }
    }
}

/// Calls a credentials callable with the GIL and converts what it returned.
fn call<T>(
    callable: &Py<PyAny>,
    what: &str,
    convert: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
) -> Result<T, String> {
    Python::try_attach(|py| {
        callable
            .bind(py)
            .call0()
            .and_then(|value| convert(&value))
            .map_err(|error| format!("the {what} callable failed: {error}"))
    })
    .unwrap_or_else(|| {
        Err(format!(
            "the {what} callable cannot run: Python is shutting down"
        ))
    })
}

fn check_password(password: String) -> PyResult<String> {
    if password.len() > MAX_PASSWORD {
        return Err(PyValueError::new_err(format!(
            "password is longer than {MAX_PASSWORD} bytes"
        )));
    }
    Ok(password)
}

/// `{"Name": "value"}`: HTTP header names and values (the value never repeated in errors: it is
/// usually a token).
fn headers(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Headers> {
    let mapping = value
        .cast::<PyDict>()
        .map(|dict| dict.as_mapping().clone())
        .or_else(|_| value.cast::<PyMapping>().cloned())
        .map_err(|_| {
            PyTypeError::new_err(format!("{what} must be a dict of header names to values"))
        })?;
    let mut headers = Vec::new();
    for item in mapping.items()?.iter() {
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let name = arguments::text(&name, &format!("a {what} name"))?;
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            PyValueError::new_err(format!("{what}: {name:?} is not a valid HTTP header name"))
        })?;
        let value = arguments::text(&value, &format!("{what}[{name:?}]"))?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            PyValueError::new_err(format!(
                "{what}[{name:?}] is not a valid HTTP header value (no line breaks or control characters)"
            ))
        })?;
        headers.push((header, value));
    }
    Ok(headers)
}
