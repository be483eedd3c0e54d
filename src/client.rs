//! `umqtt._native.Client`, the one core object every dialect wraps: the Python signatures. Each
//! method validates its arguments (`calls`) into a request for the [`Core`] (`session`) and runs
//! it as an [`Operation`] (`operation`): blocking on the calling
//! thread, or as an asyncio awaitable (`*_async`). Received messages are delivered here, to the
//! callback of the thread that asks for them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::aio::{self, LoopBridge};
use crate::arguments;
use crate::calls;
use crate::errors::{self, DriverError, MQTTOutboxError};
use crate::inbox::{Taken, Waiting};
use crate::lock::lock;
use crate::logging;
use crate::message::{self, Message};
use crate::operation::{poll_deadline, Ending, LastRequest, Operation};
use crate::options::{ClientOptions, ConstructorArguments};
use crate::outbox::DiskOutbox;
use crate::properties;
use crate::protocol::Subscription;
use crate::runtime::Deadline;
use crate::session::{Core, Request};

/// One client as Python holds it: its core, shared with the futures that act for it, and when it
/// last sent a request (a blocking wait for messages soon after busy-polls).
#[pyclass(frozen, module = "umqtt._native")]
pub struct Client {
    core: Arc<Core>,
    last_request: LastRequest,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        client_id, server, port, *, user=None, password=None, keepalive=None, ssl=None, ssl_params=None,
        reconnect=true, version=None, pingmaxnum=None, manage=false, connect_timeout=20.0,
        ack_timeout=10.0, max_packet_size=None, reconnect_delay=1.0, reconnect_max_delay=30.0,
        transport=None, ws_path=None, ws_headers=None, proxy=None, ipvtype=None,
        persistence=None, persistence_max_messages=None, persistence_max_bytes=None,
        persistence_sync=None,
        connect_properties=None,
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
        version: Option<&Bound<'_, PyAny>>,
        pingmaxnum: Option<&Bound<'_, PyAny>>,
        manage: bool,
        connect_timeout: f64,
        ack_timeout: f64,
        max_packet_size: Option<&Bound<'_, PyAny>>,
        reconnect_delay: f64,
        reconnect_max_delay: f64,
        transport: Option<&Bound<'_, PyAny>>,
        ws_path: Option<&Bound<'_, PyAny>>,
        ws_headers: Option<&Bound<'_, PyAny>>,
        proxy: Option<&Bound<'_, PyAny>>,
        ipvtype: Option<&Bound<'_, PyAny>>,
        persistence: Option<&Bound<'_, PyAny>>,
        persistence_max_messages: Option<&Bound<'_, PyAny>>,
        persistence_max_bytes: Option<&Bound<'_, PyAny>>,
        persistence_sync: Option<&Bound<'_, PyAny>>,
        connect_properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let options = ClientOptions::from_python(ConstructorArguments {
            client_id,
            server,
            port,
            user,
            password,
            keepalive,
            ssl,
            ssl_params,
            reconnect,
            version,
            pingmaxnum,
            manage,
            connect_timeout,
            ack_timeout,
            max_packet_size,
            reconnect_delay,
            reconnect_max_delay,
            transport,
            ws_path,
            ws_headers,
            proxy,
            ipvtype,
            persistence,
            persistence_max_messages,
            persistence_max_bytes,
            persistence_sync,
            connect_properties,
        })?;
        let outbox = match &options.persistence {
            Some(persistence) => Some(
                DiskOutbox::open(
                    &persistence.path,
                    persistence.durability,
                    persistence.limits,
                )
                .map_err(MQTTOutboxError::new_err)?,
            ),
            None => None,
        };
        Ok(Client {
            core: Arc::new(Core::new(options, outbox)),
            last_request: LastRequest::default(),
        })
    }

    /// Sets (or with `topic=None` clears) the will the broker publishes if the link dies.
    /// Arguments in `publish()`'s order; `properties` (MQTT 5) with `will_delay_interval`.
    #[pyo3(signature = (topic, msg, qos=None, retain=false, properties=None))]
    fn set_will(
        &self,
        topic: Option<&Bound<'_, PyAny>>,
        msg: &Bound<'_, PyAny>,
        qos: Option<&Bound<'_, PyAny>>,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let will = self
            .core
            .options
            .will(topic, msg, qos, retain, properties)?;
        self.core.set_will(will);
        Ok(())
    }

    /// Connects and returns the session-present flag. Raises `MQTTConnectError` on failure.
    #[pyo3(signature = (clean_session=true, timeout=None))]
    fn connect(&self, py: Python<'_>, clean_session: bool, timeout: Option<f64>) -> PyResult<bool> {
        self.connect_op(py, clean_session, timeout)?
            .wait(py, &self.core, &self.last_request)
    }

    /// Raises the `MQTTConnectError` that `connect(clean_session)` raises before sending anything
    /// (what MQTT forbids), so that a dialect can tell it from the failures on the network.
    fn check_connect(&self, py: Python<'_>, clean_session: bool) -> PyResult<()> {
        match self.core.options.connect_refusal(clean_session) {
            Some(reason) => Err(errors::connect_error(py, reason.to_owned(), None)),
            None => Ok(()),
        }
    }

    /// Publishes and, for QoS 1 and 2, waits for PUBACK/PUBCOMP. QoS 0 returns once queued.
    /// A refusal (reason code 0x80 or more, MQTT 5) raises `MQTTException` with its code.
    #[pyo3(signature = (topic, msg, qos=None, retain=false, timeout=None, properties=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        msg: &Bound<'_, PyAny>,
        qos: Option<&Bound<'_, PyAny>>,
        retain: bool,
        timeout: Option<f64>,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let request = Request::Publish(calls::publish(
            &self.core, topic, msg, qos, retain, properties,
        )?);
        self.publish_op(request, timeout)?
            .wait(py, &self.core, &self.last_request)
    }

    /// Messages in the outbox on disk not yet acknowledged (0 without one).
    fn outbox_size(&self) -> usize {
        self.core.outbox.as_ref().map_or(0, |outbox| outbox.len())
    }

    /// Waits until the outbox on disk is empty (every message acknowledged and deleted), up to
    /// `timeout` seconds (None: for ever). Returns whether it is empty; True at once without one.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.flush_op(timeout)?
            .wait(py, &self.core, &self.last_request)
    }

    /// Subscribes and returns the QoS granted; a refusal (SUBACK 0x80 or more) raises
    /// `MQTTException` with its code. The options and properties are MQTT 5's.
    #[pyo3(signature = (
        topic, qos=None, timeout=None, *, no_local=false, retain_as_published=false,
        retain_handling=None, properties=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        qos: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: Option<&Bound<'_, PyAny>>,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u8> {
        let subscription = calls::subscription(
            &self.core,
            topic,
            qos,
            no_local,
            retain_as_published,
            retain_handling,
            properties,
        )?;
        self.subscribe_op(subscription, timeout)?
            .wait(py, &self.core, &self.last_request)
    }

    /// Unsubscribes and waits for UNSUBACK; the topic is no longer re-subscribed on reconnect.
    #[pyo3(signature = (topic, timeout=None))]
    fn unsubscribe(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.unsubscribe_op(topic, timeout)?
            .wait(py, &self.core, &self.last_request)
    }

    /// Calls `callback(topic, payload)` (with `properties`: `callback(topic, payload,
    /// properties)`, a dict) for up to `max` arrived messages, waiting up to `timeout` seconds
    /// (None: for ever) for the first. Returns the PUBLISH fixed-header byte of the last message
    /// delivered (what MicroPython's `wait_msg()` returns), or None if none arrived. An exception
    /// from the callback propagates; undelivered messages stay queued.
    #[pyo3(signature = (callback, timeout=None, max=usize::MAX, properties=false))]
    fn deliver(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        max: usize,
        properties: bool,
    ) -> PyResult<Option<u8>> {
        let deadline = match timeout {
            Some(seconds) => poll_deadline(seconds)?,
            None => Deadline::never(),
        };
        let messages = match self.core.shared.inbox.take(
            py,
            deadline,
            max.max(1),
            Waiting::Driving(self.last_request.busy_poll()),
        )? {
            Taken::Items(messages) => messages,
            Taken::Lost(error) => return Err(error.into_pyerr(py)),
            Taken::TimedOut => return Ok(None),
        };
        let mut last_header = None;
        let mut messages = messages.into_iter();
        while let Some(received) = messages.next() {
            let message = &received.message;
            let topic = PyBytes::new(py, message.topic.as_bytes());
            let payload = PyBytes::new(py, &message.payload);
            let called = if properties {
                let properties = properties::publish_to_dict(py, message.properties.as_deref())?;
                callback.call1((topic, payload, properties))
            } else {
                callback.call1((topic, payload))
            };
            if let Err(error) = called {
                // Not acknowledged: with a persistent session the broker delivers it again.
                self.core.shared.inbox.put_back(messages.collect());
                return Err(error);
            }
            self.core.acknowledge(&received, pause_without_gil(py));
            last_header = Some(message::publish_header(message));
        }
        Ok(last_header)
    }

    /// The next notice for the error callback ("reconnect_start", "reconnect_success" or an error
    /// text), waiting up to `timeout` seconds; None if there was none.
    #[pyo3(signature = (timeout=0.0))]
    fn next_notice(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<String>> {
        Ok(
            match self
                .core
                .shared
                .notices
                .take(py, poll_deadline(timeout)?, 1, Waiting::Asleep)?
            {
                Taken::Items(mut notices) => notices.pop(),
                Taken::Lost(_) | Taken::TimedOut => None,
            },
        )
    }

    /// Lets requests in flight finish, sends DISCONNECT after everything queued, closes the socket.
    fn disconnect(&self, py: Python<'_>) -> PyResult<()> {
        self.disconnect_op()
            .wait(py, &self.core, &self.last_request)
    }

    /// Asks for a PINGREQ now; none is sent while one waits for its PINGRESP. False, sending
    /// nothing, when the link is not up.
    fn ping(&self, py: Python<'_>) -> bool {
        self.core.ping(pause_without_gil(py))
    }

    /// Drops the connection without DISCONNECT, so the broker publishes the will.
    fn close(&self) {
        self.core.abandon_session();
    }

    // ---- asyncio: the same operations as awaitables (call them from a running event loop) ----

    #[pyo3(signature = (bridge, clean_session=true, timeout=None))]
    fn connect_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
        clean_session: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.connect_op(bridge.py(), clean_session, timeout)?
            .awaitable(bridge, &self.core)
    }

    #[pyo3(signature = (bridge, topic, msg, qos=None, retain=false, timeout=None, properties=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
        topic: &Bound<'py, PyAny>,
        msg: &Bound<'py, PyAny>,
        qos: Option<&Bound<'py, PyAny>>,
        retain: bool,
        timeout: Option<f64>,
        properties: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = Request::Publish(calls::publish(
            &self.core, topic, msg, qos, retain, properties,
        )?);
        self.publish_op(request, timeout)?
            .awaitable(bridge, &self.core)
    }

    #[pyo3(signature = (
        bridge, topic, qos=None, timeout=None, *, no_local=false, retain_as_published=false,
        retain_handling=None, properties=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
        topic: &Bound<'py, PyAny>,
        qos: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: Option<&Bound<'py, PyAny>>,
        properties: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let subscription = calls::subscription(
            &self.core,
            topic,
            qos,
            no_local,
            retain_as_published,
            retain_handling,
            properties,
        )?;
        self.subscribe_op(subscription, timeout)?
            .awaitable(bridge, &self.core)
    }

    /// Request/response (MQTT 5): publishes `payload` to `topic` with a response topic
    /// (`response_topic`, else the client's own) and correlation data of its own, and resolves
    /// to the reply `Message`; `timeout` bounds the whole exchange.
    #[pyo3(signature = (
        bridge, topic, payload, qos=None, timeout=None, properties=None, response_topic=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn request_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
        topic: &Bound<'py, PyAny>,
        payload: &Bound<'py, PyAny>,
        qos: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        properties: Option<&Bound<'py, PyAny>>,
        response_topic: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.core.options.require_mqtt5("request()")?;
        let publish = calls::publish(&self.core, topic, payload, qos, false, properties)?;
        let response_topic = calls::response_topic(&publish, response_topic)?;
        let timeout = calls::timeout_or(timeout, self.core.options.ack_timeout)?;
        let core = self.core.clone();
        let request = async move {
            let reply = core.request_reply(publish, response_topic).await?;
            Ok(Message::new(reply))
        };
        Operation::new(request, Some(timeout), "reply", Ending::Packet)
            .awaitable(bridge, &self.core)
    }

    #[pyo3(signature = (bridge, topic, timeout=None))]
    fn unsubscribe_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
        topic: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.unsubscribe_op(topic, timeout)?
            .awaitable(bridge, &self.core)
    }

    /// Resolves (to None) once a message can be taken with `take_message()`, or the link is gone
    /// for good. Takes nothing itself, so cancelling it loses nothing.
    fn message_ready_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let core = self.core.clone();
        let ready = async move {
            core.shared.inbox.ready().await;
            Ok(())
        };
        Operation::new(ready, None, "message", Ending::Arrival).awaitable(bridge, &self.core)
    }

    /// An arrived message, or None at once; raises `MQTTConnectionLost` once the link is gone for
    /// good and nothing is left. Never blocks. Taken for `bridge`'s event loop, which then
    /// drives the acknowledgement out and polls for the messages likely to follow.
    #[pyo3(signature = (bridge=None))]
    fn take_message(
        &self,
        py: Python<'_>,
        bridge: Option<&Bound<'_, LoopBridge>>,
    ) -> PyResult<Option<Message>> {
        match self.core.take_message(pause_without_gil(py)) {
            Ok(Some(message)) => {
                if let Some(bridge) = bridge {
                    aio::expect_more(bridge)?;
                }
                Ok(Some(Message::new(message)))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(error.into_pyerr(py)),
        }
    }

    #[pyo3(signature = (bridge, timeout=None))]
    fn flush_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.flush_op(timeout)?.awaitable(bridge, &self.core)
    }

    fn disconnect_async<'py>(
        &self,
        bridge: &Bound<'py, LoopBridge>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.disconnect_op().awaitable(bridge, &self.core)
    }

    // ---- state ----

    /// Number of arrived messages not yet delivered.
    fn pending_messages(&self) -> usize {
        self.core.shared.inbox.len()
    }

    /// The client's counters (docs/api.md, `stats()`), since it was made.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let counted = self.core.shared.stats.snapshot();
        let stats = PyDict::new(py);
        stats.set_item("messages_sent", counted.messages_sent)?;
        stats.set_item("messages_received", counted.messages_received)?;
        stats.set_item("bytes_sent", counted.bytes_sent)?;
        stats.set_item("bytes_received", counted.bytes_received)?;
        stats.set_item("reconnects", counted.reconnects)?;
        stats.set_item("last_error", counted.last_error)?;
        stats.set_item("inflight", counted.inflight)?;
        stats.set_item("queued", self.core.queued_requests())?;
        stats.set_item("unread", self.core.shared.inbox.len())?;
        stats.set_item("outbox_refused", counted.outbox_refused)?;
        Ok(stats)
    }

    /// QuecPython's connection state: 0 connected, 1 connecting, 2 closed by server, -1 otherwise.
    fn mqttsta(&self) -> i32 {
        self.core.link().mqttsta()
    }

    #[getter]
    fn state(&self) -> &'static str {
        self.core.link().name()
    }

    /// The properties of the last CONNACK (MQTT 5; `{}` under MQTT 3.1.1 and before connect()).
    #[getter]
    fn connack_properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        properties::connack_to_dict(py, lock(&self.core.shared.connack).as_deref())
    }

    /// The client id: the one given, or the one the broker assigned (MQTT 5, empty id given).
    #[getter]
    fn client_id(&self) -> String {
        self.core.client_id()
    }

    #[getter]
    fn server(&self) -> &str {
        &self.core.options.host
    }

    /// The broker as the core's messages name it: `host:port` (`[::1]:1883` for IPv6), a Unix
    /// socket's path or a WebSocket URL, and the proxy (never its password).
    #[getter]
    fn target(&self) -> &str {
        &self.core.options.target
    }

    #[getter]
    fn port(&self) -> u16 {
        self.core.options.port
    }

    #[getter]
    fn keepalive(&self) -> u16 {
        self.core.options.keepalive
    }

    fn __repr__(&self) -> String {
        format!(
            "<umqtt._native.Client client_id={:?} server={:?} state={:?}>",
            self.core.client_id(),
            self.core.options.target,
            self.core.link().name()
        )
    }
}

impl Client {
    fn require_session(&self) -> PyResult<()> {
        calls::require_session(&self.core)
    }

    fn ack_timeout(&self, timeout: Option<f64>) -> PyResult<Duration> {
        calls::timeout_or(timeout, self.core.options.ack_timeout)
    }

    fn connect_op(
        &self,
        py: Python<'_>,
        clean_session: bool,
        timeout: Option<f64>,
    ) -> PyResult<Operation<impl Future<Output = Result<bool, DriverError>> + Send + 'static>> {
        self.check_connect(py, clean_session)?;
        let timeout = calls::timeout_or(timeout, self.core.options.connect_timeout)?;
        // A logging setup made since the last connect is honoured from the CONNECT on.
        logging::refresh_levels(py);
        let core = self.core.clone();
        let connect = async move { core.connect(clean_session, timeout).await };
        Ok(Operation::new(connect, None, "CONNACK", Ending::Packet))
    }

    fn publish_op(
        &self,
        request: Request,
        timeout: Option<f64>,
    ) -> PyResult<Operation<impl Future<Output = Result<(), DriverError>> + Send + 'static>> {
        let (core, what) = (self.core.clone(), request.ack_name());
        let ends_with = match request.kind() {
            Some(_) => Ending::Packet,
            None => Ending::Queued,
        };
        let publish = async move { core.request(request).await.map(drop) };
        let timeout = Some(self.ack_timeout(timeout)?);
        Ok(Operation::new(publish, timeout, what, ends_with))
    }

    fn subscribe_op(
        &self,
        subscription: Subscription,
        timeout: Option<f64>,
    ) -> PyResult<Operation<impl Future<Output = Result<u8, DriverError>> + Send + 'static>> {
        let core = self.core.clone();
        let subscribe = async move { core.subscribe(subscription).await };
        Ok(Operation::new(
            subscribe,
            Some(self.ack_timeout(timeout)?),
            "SUBACK",
            Ending::Packet,
        ))
    }

    fn unsubscribe_op(
        &self,
        topic: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Operation<impl Future<Output = Result<(), DriverError>> + Send + 'static>> {
        self.require_session()?;
        let filter = arguments::topic_filter(topic)?;
        let core = self.core.clone();
        let unsubscribe = async move { core.unsubscribe(filter).await };
        Ok(Operation::new(
            unsubscribe,
            Some(self.ack_timeout(timeout)?),
            "UNSUBACK",
            Ending::Packet,
        ))
    }

    fn flush_op(
        &self,
        timeout: Option<f64>,
    ) -> PyResult<Operation<impl Future<Output = Result<bool, DriverError>> + Send + 'static>> {
        let limit = match timeout {
            None => None,
            Some(seconds) if seconds <= 0.0 => Some(Duration::ZERO),
            Some(seconds) => Some(arguments::seconds(seconds, "timeout")?),
        };
        let core = self.core.clone();
        let flushed = async move {
            match limit {
                None => {
                    core.flush().await;
                    Ok(true)
                }
                Some(limit) => Ok(tokio::time::timeout(limit, core.flush()).await.is_ok()),
            }
        };
        // Many packets end it, none soon: no busy polling.
        Ok(Operation::new(flushed, None, "flush", Ending::Closed))
    }

    fn disconnect_op(
        &self,
    ) -> Operation<impl Future<Output = Result<(), DriverError>> + Send + 'static> {
        let core = self.core.clone();
        let disconnect = async move {
            core.end_session(true).await;
            Ok(())
        };
        Operation::new(disconnect, None, "DISCONNECT", Ending::Closed)
    }
}

/// How a Python thread pauses while rumqttc's channel is full: without the GIL, which the driver
/// may need to log.
fn pause_without_gil(py: Python<'_>) -> impl Fn(Duration) + '_ {
    move |pause| py.detach(|| std::thread::sleep(pause))
}
