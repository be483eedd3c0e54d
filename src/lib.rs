//! The native core of `umqtt`: an MQTT client on rumqttc and tokio, exposed to Python as
//! `umqtt._native`. The Python package on top of it implements the QuecPython and MicroPython
//! dialects as thin policy layers; this crate owns every socket, timer and packet.

mod acks;
mod aio;
mod arguments;
mod calls;
mod client;
mod credentials;
mod driver;
mod errors;
mod inbox;
mod link_error;
mod lock;
mod logging;
mod message;
mod operation;
mod options;
mod outbox;
mod packets;
mod properties;
mod protocol;
mod reason_codes;
mod replies;
mod requester;
mod runtime;
mod session;
mod shared;
mod stats;
#[cfg(test)]
mod test_support;
mod tls;
mod transport;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
fn _native(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install(py, module)?;
    // One crypto provider for the whole process; Err means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    errors::register(py, module)?;
    runtime::busy_poll_from_environment()?;
    module.add_function(wrap_pyfunction!(runtime::set_busy_poll, module)?)?;
    module.add_function(wrap_pyfunction!(arguments::topic_matches, module)?)?;
    module.add_class::<client::Client>()?;
    module.add_class::<message::Message>()?;
    module.add_class::<aio::LoopBridge>()?;
    module.add_class::<aio::Call>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
