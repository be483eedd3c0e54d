//! `umqtt._native.Client`: the one core object every dialect wraps. It validates arguments, hands
//! requests to the driver, and blocks (GIL released, Ctrl-C honoured) until they are acknowledged.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rumqttc::{AsyncClient, ClientError, LastWill, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::acks::{Ack, Kind, ReplyReceiver};
use crate::driver::{self, DriverConfig, Link, Shared};
use crate::errors::{self, DriverError, MQTTException};
use crate::inbox::Taken;
use crate::options::{self, ClientOptions};
use crate::runtime::{self, block_on, lock, Deadline};

/// How many requests may wait in rumqttc's channel before senders back off.
const REQUEST_CHANNEL_CAPACITY: usize = 256;
/// How long `disconnect()`/`close()` wait for the driver to finish writing before abandoning it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a sender waits before retrying when rumqttc's channel is full.
const FULL_CHANNEL_PAUSE: Duration = Duration::from_millis(1);

const NOT_CONNECTED: &str = "not connected: call connect() first";

/// One connection: the request handle and the driver task that serves it.
struct Session {
    requests: AsyncClient,
    task: JoinHandle<()>,
}

#[pyclass(frozen, module = "umqtt._native")]
pub struct Client {
    options: ClientOptions,
    will: Mutex<Option<LastWill>>,
    shared: Arc<Shared>,
    session: Mutex<Option<Session>>,
}

/// Decrements the in-flight count when a waiting caller is done, however it ends.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        client_id, server, port, *, user=None, password=None, keepalive=None, ssl=None, ssl_params=None,
        reconnect=true, ping_grace=0, connect_timeout=20.0, ack_timeout=10.0, max_packet_size=16 * 1024 * 1024,
        reconnect_delay=1.0, reconnect_max_delay=30.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        client_id: &Bound<'_, PyAny>,
        server: &Bound<'_, PyAny>,
        port: &Bound<'_, PyAny>,
        user: Option<&Bound<'_, PyAny>>,
        password: Option<&Bound<'_, PyAny>>,
        keepalive: Option<&Bound<'_, PyAny>>,
        ssl: Option<&Bound<'_, PyAny>>,
        ssl_params: Option<&Bound<'_, PyAny>>,
        reconnect: bool,
        ping_grace: u32,
        connect_timeout: f64,
        ack_timeout: f64,
        max_packet_size: usize,
        reconnect_delay: f64,
        reconnect_max_delay: f64,
    ) -> PyResult<Self> {
        let tls = crate::tls::from_python(ssl, ssl_params)?;
        let client_id = options::text(client_id, "client_id")?;
        if client_id.len() > 65_535 {
            return Err(PyValueError::new_err(
                "client_id is longer than 65535 bytes",
            ));
        }
        let host = options::text(server, "server")?;
        if host.trim().is_empty() {
            return Err(PyValueError::new_err("server must not be empty"));
        }
        let user = options::optional_text(user, "user")?;
        let password = options::optional_text(password, "password")?;
        let credentials = match (user, password) {
            (None, None) => None,
            (user, password) => Some((user.unwrap_or_default(), password.unwrap_or_default())),
        };
        let keepalive = match keepalive {
            Some(value) if !value.is_none() => options::keepalive(value)?,
            _ => 0,
        };
        let options = ClientOptions {
            port: options::port(port, tls.is_some())?,
            client_id,
            host: host.trim().to_owned(),
            credentials,
            keepalive,
            reconnect,
            ping_grace,
            reconnect_delay: options::seconds(reconnect_delay, "reconnect_delay")?,
            reconnect_max_delay: options::seconds(reconnect_max_delay, "reconnect_max_delay")?,
            connect_timeout: options::seconds(connect_timeout, "connect_timeout")?,
            ack_timeout: options::seconds(ack_timeout, "ack_timeout")?,
            max_packet_size: ClientOptions::check_packet_size(max_packet_size)?,
            tls,
        };
        let shared = Shared::default();
        shared.inbox.set_lost(Some(NOT_CONNECTED.into()));
        Ok(Client {
            options,
            will: Mutex::new(None),
            shared: Arc::new(shared),
            session: Mutex::new(None),
        })
    }

    /// Sets (or with `topic=None` clears) the will the broker publishes if the link dies.
    #[pyo3(signature = (topic, msg=None, retain=false, qos=None))]
    fn set_will(
        &self,
        topic: Option<&Bound<'_, PyAny>>,
        msg: Option<&Bound<'_, PyAny>>,
        retain: bool,
        qos: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let will = match topic {
            Some(topic) if !topic.is_none() => {
                let topic = options::topic_name(topic)?;
                let payload = msg.map(options::payload).transpose()?.unwrap_or_default();
                let qos = qos
                    .map(options::qos)
                    .transpose()?
                    .unwrap_or(QoS::AtMostOnce);
                options::check_fits(&topic, payload.len(), qos, self.options.max_packet_size)?;
                Some(LastWill::new(topic, payload, qos, retain))
            }
            _ => None,
        };
        *lock(&self.will) = will;
        Ok(())
    }

    /// Connects and returns the session-present flag. Raises `MQTTConnectError` on failure.
    #[pyo3(signature = (clean_session=true, timeout=None))]
    fn connect(&self, py: Python<'_>, clean_session: bool, timeout: Option<f64>) -> PyResult<bool> {
        if !clean_session && self.options.client_id.is_empty() {
            return Err(PyValueError::new_err(
                "a persistent session (clean_session=False) needs a non-empty client_id",
            ));
        }
        let connect_timeout = match timeout {
            Some(seconds) => options::seconds(seconds, "timeout")?,
            None => self.options.connect_timeout,
        };
        self.shutdown(py, false)?;
        let will = lock(&self.will).clone();
        let (requests, mut eventloop) = AsyncClient::new(
            self.options.mqtt_options(clean_session, will),
            REQUEST_CHANNEL_CAPACITY,
        );
        let mut network = self.options.network_options();
        network.set_connection_timeout(connect_timeout.as_secs_f64().ceil().max(1.0) as u64);
        eventloop.set_network_options(network);
        let config = DriverConfig {
            target: self.options.target(),
            reconnect: self.options.reconnect,
            ping_grace: self.options.ping_grace,
            reconnect_delay: self.options.reconnect_delay,
            reconnect_max_delay: self.options.reconnect_max_delay,
        };
        let (connack_tx, connack_rx) = oneshot::channel();
        self.shared.link.send_replace(Link::Connecting);
        let task = runtime::runtime()?.spawn(driver::run(
            eventloop,
            self.shared.clone(),
            config,
            connack_tx,
        ));
        *lock(&self.session) = Some(Session { requests, task });
        // rumqttc bounds the attempt by whole seconds; allow for that rounding.
        let deadline = Deadline::after(Some(connect_timeout.as_secs_f64() + 1.0));
        let outcome = block_on(py, deadline, connack_rx);
        match outcome {
            Ok(Some(Ok(Ok(session_present)))) => Ok(session_present),
            Ok(Some(Ok(Err(failure)))) => {
                self.abandon_session();
                Err(failure.into_pyerr(py))
            }
            Ok(other) => {
                self.abandon_session();
                self.shared.link.send_replace(Link::Failed);
                let message = match other {
                    None => format!(
                        "timed out after {:.1} s connecting to {}: check the address, port and network",
                        connect_timeout.as_secs_f64(),
                        self.options.target()
                    ),
                    _ => format!("the connection to {} ended during connect", self.options.target()),
                };
                Err(errors::connect_error(py, message, None))
            }
            Err(interrupted) => {
                self.abandon_session();
                self.shared.link.send_replace(Link::Failed);
                Err(interrupted)
            }
        }
    }

    /// Publishes and, for QoS 1 and 2, waits for PUBACK/PUBCOMP. QoS 0 returns once queued.
    #[pyo3(signature = (topic, msg, qos=None, retain=false, timeout=None))]
    fn publish(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        msg: &Bound<'_, PyAny>,
        qos: Option<&Bound<'_, PyAny>>,
        retain: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let topic = options::topic_name(topic)?;
        let qos = qos
            .map(options::qos)
            .transpose()?
            .unwrap_or(QoS::AtMostOnce);
        let payload = options::payload(msg)?;
        options::check_fits(&topic, payload.len(), qos, self.options.max_packet_size)?;
        let deadline = self.deadline(timeout)?;
        let kind = (qos != QoS::AtMostOnce).then_some(Kind::Publish);
        let reply = self.submit(py, deadline, kind, |requests| {
            requests.try_publish(topic.as_str(), qos, retain, payload.clone())
        })?;
        match reply {
            Some((receiver, _guard)) => self.await_ack(py, deadline, receiver, "PUBACK").map(drop),
            None => Ok(()),
        }
    }

    /// Subscribes and returns the SUBACK code: the granted QoS (0, 1, 2) or 0x80 for a refusal.
    #[pyo3(signature = (topic, qos=None, timeout=None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        qos: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<u8> {
        let filter = options::topic_filter(topic)?;
        let qos = qos
            .map(options::qos)
            .transpose()?
            .unwrap_or(QoS::AtMostOnce);
        let deadline = self.deadline(timeout)?;
        let sent = self.submit(py, deadline, Some(Kind::Subscribe), |requests| {
            requests.try_subscribe(filter.as_str(), qos)
        })?;
        let Some((receiver, _guard)) = sent else {
            return Ok(0x80);
        };
        let code = match self.await_ack(py, deadline, receiver, "SUBACK")? {
            Ack::Subscribed(code) => code,
            _ => 0x80,
        };
        if code != 0x80 {
            self.shared.remember_subscription(&filter, qos);
        }
        Ok(code)
    }

    /// Unsubscribes and waits for UNSUBACK; the topic is no longer re-subscribed on reconnect.
    #[pyo3(signature = (topic, timeout=None))]
    fn unsubscribe(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let filter = options::topic_filter(topic)?;
        let deadline = self.deadline(timeout)?;
        self.shared.forget_subscription(&filter);
        let sent = self.submit(py, deadline, Some(Kind::Unsubscribe), |requests| {
            requests.try_unsubscribe(filter.as_str())
        })?;
        if let Some((receiver, _guard)) = sent {
            self.await_ack(py, deadline, receiver, "UNSUBACK")?;
        }
        Ok(())
    }

    /// Calls `callback(topic, payload)` for up to `max` arrived messages, waiting up to `timeout`
    /// seconds (None: for ever) for the first. Returns the PUBLISH fixed-header byte of the last
    /// message delivered (what MicroPython's `wait_msg()` returns), or None if none arrived.
    /// An exception from the callback propagates; undelivered messages stay queued.
    #[pyo3(signature = (callback, timeout=None, max=usize::MAX))]
    fn deliver(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        max: usize,
    ) -> PyResult<Option<u8>> {
        let deadline = match timeout {
            Some(seconds) if seconds <= 0.0 => Deadline::after(Some(0.0)),
            Some(seconds) => {
                Deadline::after(Some(options::seconds(seconds, "timeout")?.as_secs_f64()))
            }
            None => Deadline::never(),
        };
        let messages = match self.shared.inbox.take(py, deadline, max.max(1))? {
            Taken::Items(messages) => messages,
            Taken::Lost(reason) => return Err(errors::connection_lost(py, reason)),
            Taken::TimedOut => return Ok(None),
        };
        let mut last_header = None;
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            let topic = PyBytes::new(py, message.topic.as_bytes());
            let payload = PyBytes::new(py, &message.payload);
            if let Err(error) = callback.call1((topic, payload)) {
                self.shared.inbox.put_back(messages.collect());
                return Err(error);
            }
            last_header = Some(publish_header(&message));
        }
        Ok(last_header)
    }

    /// The next notice for the error callback ("reconnect_start", "reconnect_success" or an error
    /// text), waiting up to `timeout` seconds; None if there was none.
    #[pyo3(signature = (timeout=0.0))]
    fn next_notice(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<String>> {
        let deadline = Deadline::after(Some(timeout.max(0.0)));
        Ok(match self.shared.notices.take(py, deadline, 1)? {
            Taken::Items(mut notices) => notices.pop(),
            Taken::Lost(_) | Taken::TimedOut => None,
        })
    }

    /// Number of arrived messages not yet delivered.
    fn pending_messages(&self) -> usize {
        self.shared.inbox.len()
    }

    /// QuecPython's connection state: 0 connected, 1 connecting, 2 closed by server, -1 otherwise.
    fn mqttsta(&self) -> i32 {
        self.link().mqttsta()
    }

    #[getter]
    fn state(&self) -> &'static str {
        self.link().name()
    }

    #[getter]
    fn client_id(&self) -> &str {
        &self.options.client_id
    }

    #[getter]
    fn server(&self) -> &str {
        &self.options.host
    }

    #[getter]
    fn port(&self) -> u16 {
        self.options.port
    }

    #[getter]
    fn keepalive(&self) -> u16 {
        self.options.keepalive
    }

    #[getter]
    fn ever_connected(&self) -> bool {
        lock(&self.session).is_some() || self.link() != Link::Idle
    }

    /// Lets requests in flight finish, sends DISCONNECT after everything queued, closes the socket.
    fn disconnect(&self, py: Python<'_>) -> PyResult<()> {
        self.shutdown(py, true)
    }

    /// Drops the connection without DISCONNECT, so the broker publishes the will.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shutdown(py, false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<umqtt._native.Client client_id={:?} server={:?} state={:?}>",
            self.options.client_id,
            self.options.target(),
            self.link().name()
        )
    }
}

impl Client {
    fn link(&self) -> Link {
        *self.shared.link.borrow()
    }

    fn deadline(&self, timeout: Option<f64>) -> PyResult<Deadline> {
        let seconds = match timeout {
            Some(seconds) => options::seconds(seconds, "timeout")?,
            None => self.options.ack_timeout,
        };
        Ok(Deadline::after(Some(seconds.as_secs_f64())))
    }

    fn requests(&self) -> PyResult<AsyncClient> {
        match lock(&self.session).as_ref() {
            Some(session) => Ok(session.requests.clone()),
            None => Err(MQTTException::new_err(NOT_CONNECTED)),
        }
    }

    /// Hands a request to rumqttc once the link is up, registering its waiter in the same
    /// critical section so waiters and requests stay in the same order. `kind` is None when no
    /// acknowledgement is awaited (QoS 0).
    fn submit<F>(
        &self,
        py: Python<'_>,
        deadline: Deadline,
        kind: Option<Kind>,
        mut send: F,
    ) -> PyResult<Option<(ReplyReceiver, InFlight<'_>)>>
    where
        F: FnMut(&AsyncClient) -> Result<(), ClientError>,
    {
        let requests = self.requests()?;
        loop {
            self.wait_for_link(py, deadline)?;
            let mut outbox = lock(&self.shared.outbox);
            if !outbox.open {
                drop(outbox);
                continue;
            }
            let receiver = kind.map(|kind| {
                let (reply, receiver) = oneshot::channel();
                outbox.push(kind, reply);
                receiver
            });
            match send(&requests) {
                Ok(()) => {
                    return Ok(receiver.map(|r| (r, InFlight::start(&self.shared))));
                }
                Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => {
                    if let Some(kind) = kind {
                        outbox.pop_newest(kind);
                    }
                    drop(outbox);
                    // Full, or closed because the driver ended: then the link state says so and
                    // wait_for_link() raises on the next round.
                    if deadline.expired() {
                        return Err(errors::timeout(
                            py,
                            "the request queue stayed full until the timeout".into(),
                        ));
                    }
                    runtime::sleep(py, FULL_CHANNEL_PAUSE)?;
                }
            }
        }
    }

    /// Waits until the link is up; raises if it is gone for good or the deadline passes.
    fn wait_for_link(&self, py: Python<'_>, deadline: Deadline) -> PyResult<()> {
        let mut link = self.shared.link.subscribe();
        let up = block_on(py, deadline, async move {
            link.wait_for(|state| !matches!(state, Link::Connecting | Link::Reconnecting))
                .await
                .map(|state| *state)
        })?;
        match up {
            Some(Ok(Link::Up)) => Ok(()),
            Some(_) => Err(self.lost(py)),
            None => Err(errors::timeout(
                py,
                format!(
                    "not connected to {} before the timeout",
                    self.options.target()
                ),
            )),
        }
    }

    fn lost(&self, py: Python<'_>) -> PyErr {
        errors::connection_lost(
            py,
            format!(
                "not connected to {} (state: {})",
                self.options.target(),
                self.link().name()
            ),
        )
    }

    fn await_ack(
        &self,
        py: Python<'_>,
        deadline: Deadline,
        receiver: ReplyReceiver,
        what: &str,
    ) -> PyResult<Ack> {
        match block_on(py, deadline, receiver)? {
            Some(Ok(Ok(ack))) => Ok(ack),
            Some(Ok(Err(error))) => Err(error.into_pyerr(py)),
            Some(Err(_)) => Err(DriverError::Closed.into_pyerr(py)),
            None => Err(errors::timeout(
                py,
                format!(
                    "no {what} from {} before the timeout",
                    self.options.target()
                ),
            )),
        }
    }

    /// Ends the current session. `graceful`: let waiting requests finish and send DISCONNECT.
    fn shutdown(&self, py: Python<'_>, graceful: bool) -> PyResult<()> {
        let Some(session) = lock(&self.session).take() else {
            return Ok(());
        };
        if graceful && self.link() == Link::Up {
            let grace = Deadline::after(Some(self.options.ack_timeout.as_secs_f64()));
            while self.shared.in_flight.load(Ordering::Acquire) > 0 && !grace.expired() {
                runtime::sleep(py, Duration::from_millis(2))?;
            }
            lock(&self.shared.outbox).open = false;
            if session.requests.try_disconnect().is_ok() {
                let task = &session.task;
                let finished = Deadline::after(Some(SHUTDOWN_GRACE.as_secs_f64()));
                while !task.is_finished() && !finished.expired() {
                    runtime::sleep(py, Duration::from_millis(2))?;
                }
            }
        }
        self.finish(session);
        Ok(())
    }

    fn abandon_session(&self) {
        if let Some(session) = lock(&self.session).take() {
            self.finish(session);
        }
    }

    fn finish(&self, session: Session) {
        session.task.abort();
        self.shared.fail_outbox(&DriverError::Closed);
        self.shared.inbox.set_lost(Some(NOT_CONNECTED.into()));
        if self.link() != Link::Failed {
            self.shared.link.send_replace(Link::Disconnected);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(session) = lock(&self.session).take() {
            session.task.abort();
        }
    }
}

/// The first byte of a PUBLISH packet: type, DUP, QoS and RETAIN.
fn publish_header(message: &rumqttc::Publish) -> u8 {
    0x30 | (u8::from(message.dup) << 3) | ((message.qos as u8) << 1) | u8::from(message.retain)
}
