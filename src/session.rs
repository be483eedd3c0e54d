//! A client's core, without Python: its connection (the session: rumqttc's request handle and the
//! driver task) and the requests sent on it. Each operation is one async function on [`Core`],
//! which the Python class runs blocking or hands to asyncio (see `operation`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Protocol, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::acks::ReplyReceiver;
use crate::arguments;
use crate::driver::{self, DriverConfig, LARGE_PACKET};
use crate::errors::DriverError;
use crate::inbox::Taken;
use crate::lock::lock;
use crate::options::{ClientOptions, Will};
use crate::outbox::DiskOutbox;
use crate::packets::PacketLog;
use crate::protocol::{Ack, ChannelFull, Inbound, Kind, Outbound, Requests, Subscription};
use crate::reason_codes;
use crate::shared::{HandOver, Link, Received, Shared, FULL_CHANNEL_PAUSE};

/// How many requests may wait in rumqttc's channel before senders back off.
const REQUEST_CHANNEL_CAPACITY: usize = 256;
/// How long `disconnect()` waits for the driver to write DISCONNECT before abandoning it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
pub const NOT_CONNECTED: &str = "not connected: call connect() first";

/// One connection: the request handle and the driver task that serves it.
struct Session {
    requests: Requests,
    task: JoinHandle<()>,
}

/// Everything a client is, shareable with the futures that act for it.
pub struct Core {
    pub options: ClientOptions,
    will: Mutex<Option<Will>>,
    pub shared: Arc<Shared>,
    session: Mutex<Option<Session>>,
    /// The outbox on disk (`persistence=`); None: memory only.
    pub outbox: Option<Arc<DiskOutbox>>,
}

/// Counts a waiting caller until it is done, however it ends (also when its future is dropped).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn start(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Abandons a connection attempt whose caller went away (Ctrl-C, asyncio cancellation).
struct AbandonUnlessConnected<'a>(Option<&'a Core>);

impl Drop for AbandonUnlessConnected<'_> {
    fn drop(&mut self) {
        if let Some(core) = self.0 {
            core.abandon_session();
        }
    }
}

/// A request ready to hand to rumqttc (validated, so sending can only fail on a full channel).
pub enum Request {
    Publish(Outbound),
    Subscribe(Subscription),
    Unsubscribe(String),
}

impl Request {
    /// The kind of acknowledgement awaited, if any (QoS 0 publishes await none).
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Request::Publish(publish) if publish.qos == QoS::AtMostOnce => None,
            Request::Publish(_) => Some(Kind::Publish),
            Request::Subscribe(_) => Some(Kind::Subscribe),
            Request::Unsubscribe(_) => Some(Kind::Unsubscribe),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Request::Publish(_) => "PUBLISH",
            Request::Subscribe(_) => "SUBSCRIBE",
            Request::Unsubscribe(_) => "UNSUBSCRIBE",
        }
    }

    /// The topic or filter it names.
    fn topic(&self) -> &str {
        match self {
            Request::Publish(publish) => &publish.topic,
            Request::Subscribe(subscription) => &subscription.filter,
            Request::Unsubscribe(filter) => filter,
        }
    }

    pub fn ack_name(&self) -> &'static str {
        match self {
            Request::Publish(publish) if publish.qos == QoS::ExactlyOnce => "PUBCOMP",
            Request::Publish(_) => "PUBACK",
            Request::Subscribe(_) => "SUBACK",
            Request::Unsubscribe(_) => "UNSUBACK",
        }
    }

    fn send(&self, requests: &Requests) -> Result<(), ChannelFull> {
        match self {
            Request::Publish(publish) => requests.publish(publish),
            Request::Subscribe(subscription) => requests.subscribe(subscription),
            Request::Unsubscribe(filter) => requests.unsubscribe(filter),
        }
    }
}

impl Core {
    /// A client that has not connected yet.
    pub fn new(options: ClientOptions, outbox: Option<Arc<DiskOutbox>>) -> Self {
        let shared = Shared::new(options.client_id.clone());
        shared.inbox.set_lost(Some(not_connected()));
        Core {
            options,
            will: Mutex::new(None),
            shared: Arc::new(shared),
            session: Mutex::new(None),
            outbox,
        }
    }

    /// Whether `connect()` was called and no `disconnect()` or `close()` since.
    pub fn has_session(&self) -> bool {
        lock(&self.session).is_some()
    }

    /// The will the next `connect()` sends (`None`: none).
    pub fn set_will(&self, will: Option<Will>) {
        *lock(&self.will) = will;
    }

    pub fn link(&self) -> Link {
        *self.shared.link.borrow()
    }

    fn requests(&self) -> Result<Requests, DriverError> {
        lock(&self.session)
            .as_ref()
            .map(|session| session.requests.clone())
            .ok_or_else(not_connected)
    }

    /// Why the broker's limits (its last CONNACK, MQTT 5) refuse `publish`, before it is sent:
    /// `maximum_qos`, `retain_available`, `maximum_packet_size`.
    pub fn check_broker_limits(&self, publish: &Outbound) -> Result<(), String> {
        let connack = lock(&self.shared.connack);
        let Some(limits) = connack.as_deref() else {
            return Ok(());
        };
        let target = &self.options.target;
        if let Some(maximum) = limits
            .max_qos
            .filter(|&maximum| publish.qos as u8 > maximum)
        {
            return Err(format!(
                "{target} accepts QoS {maximum} at most (its CONNACK's maximum_qos): cannot \
                 publish at QoS {}; nothing was sent",
                publish.qos as u8
            ));
        }
        if publish.retain && limits.retain_available == Some(0) {
            return Err(format!(
                "{target} does not keep retained messages (its CONNACK's retain_available is \
                 false): publish with retain=False; nothing was sent"
            ));
        }
        if let Some(maximum) = limits.max_packet_size {
            let size = publish.v5_size();
            if size > maximum as usize {
                return Err(format!(
                    "the PUBLISH would be {size} bytes, and {target} accepts packets of \
                     {maximum} bytes at most (its CONNACK's maximum_packet_size); nothing was sent"
                ));
            }
        }
        Ok(())
    }

    /// The client id: the one given, or the one the broker assigned (MQTT 5).
    pub fn client_id(&self) -> String {
        lock(&self.shared.client_id).clone()
    }

    /// Requests handed to the driver and not taken by it yet (none without a session).
    pub fn queued_requests(&self) -> usize {
        lock(&self.session)
            .as_ref()
            .map_or(0, |session| session.requests.queued_requests())
    }

    pub fn expired(&self, what: &str) -> DriverError {
        DriverError::Timeout(format!(
            "no {what} from {} before the timeout",
            self.options.target
        ))
    }

    fn lost(&self) -> DriverError {
        DriverError::ConnectionLost(format!(
            "not connected to {} (state: {})",
            self.options.target,
            self.link().name()
        ))
    }

    /// Starts a driver for a new connection; its first CONNACK (or failure) arrives on the receiver.
    fn start_session(&self, clean_session: bool, connect_timeout: Duration) -> ConnackReceiver {
        let will = lock(&self.will).clone();
        self.shared.replies.forget_subscriptions();
        let (requests, eventloop) = self.options.connection(
            self.client_id(),
            clean_session,
            will,
            Arc::new(PacketLog::new(self.shared.stats.clone())),
            connect_timeout,
            REQUEST_CHANNEL_CAPACITY,
        );
        let config = DriverConfig {
            target: self.options.target.clone(),
            expiring_credentials: self
                .options
                .credentials
                .expire()
                .then(|| self.options.credentials.clone()),
            reconnect: self.options.reconnect,
            resubscribe_delay: self.options.resubscribe_delay,
            max_packet_size: self.options.max_packet_size,
            ping_grace: self.options.ping_grace,
            reconnect_delay: self.options.reconnect_delay,
            reconnect_max_delay: self.options.reconnect_max_delay,
            outbox: self.outbox.clone(),
        };
        let (connack_tx, connack_rx) = oneshot::channel();
        self.shared.link.send_replace(Link::Connecting);
        let task = tokio::spawn(driver::run(
            eventloop,
            requests.clone(),
            self.shared.clone(),
            config,
            connack_tx,
        ));
        *lock(&self.session) = Some(Session { requests, task });
        connack_rx
    }

    pub async fn connect(
        &self,
        clean_session: bool,
        timeout: Duration,
    ) -> Result<bool, DriverError> {
        self.end_session(false).await;
        let connack = self.start_session(clean_session, timeout);
        let mut abandon = AbandonUnlessConnected(Some(self));
        // rumqttc bounds the attempt by whole seconds; allow for that rounding.
        let outcome = tokio::time::timeout(timeout + Duration::from_secs(1), connack).await;
        let target = &self.options.target;
        let result = match outcome {
            Ok(Ok(Ok(session_present))) => {
                abandon.0 = None;
                return Ok(session_present);
            }
            Ok(Ok(Err(failure))) => Err(failure),
            Ok(Err(_)) => Err(DriverError::Connect {
                message: format!("the connection to {target} ended during connect"),
                rc: None,
            }),
            Err(_) => Err(DriverError::Connect {
                message: format!(
                    "timed out after {:.1} s connecting to {target}: check the address, port and network",
                    timeout.as_secs_f64()
                ),
                rc: None,
            }),
        };
        drop(abandon);
        self.shared.link.send_replace(Link::Failed);
        result
    }

    /// Hands a request to rumqttc once the link is up and returns the acknowledgement's receiver,
    /// registering the waiter in the same critical section as the send so both stay in order.
    async fn submit(&self, request: &Request) -> Result<Option<ReplyReceiver>, DriverError> {
        let requests = self.requests()?;
        let kind = request.kind();
        loop {
            self.wait_for_link().await?;
            if let HandOver::Sent(receiver) =
                self.shared.hand_over(kind, || request.send(&requests))
            {
                return Ok(receiver);
            }
            // Full, or closed because the link dropped: then the link state says so.
            tokio::time::sleep(FULL_CHANNEL_PAUSE).await;
        }
    }

    async fn wait_for_link(&self) -> Result<(), DriverError> {
        let mut link = self.shared.link.subscribe();
        let settled = link
            .wait_for(|state| !matches!(state, Link::Connecting | Link::Reconnecting))
            .await
            .map(|state| *state);
        match settled {
            Ok(Link::Up) => Ok(()),
            _ => Err(self.lost()),
        }
    }

    /// Whether a publish at `qos` goes to the outbox on disk (then it needs no connection).
    pub fn stores(&self, qos: QoS) -> bool {
        self.outbox.is_some() && qos != QoS::AtMostOnce
    }

    /// Waits until the outbox on disk is empty (at once without one).
    pub async fn flush(&self) {
        if let Some(outbox) = &self.outbox {
            outbox.settled().await;
        }
    }

    /// Sends a request and waits for the acknowledgement its kind needs; a QoS 1/2 publish with
    /// an outbox on disk only until it is stored there (the core sends it). With automatic
    /// reconnect, a request whose link dropped is sent again once the link is back (until the
    /// caller's deadline): at least once for QoS 1, subscriptions and unsubscriptions. A QoS 2
    /// publish is not: sent again on a new session it could arrive twice, so the caller is told.
    /// An acknowledgement with a failure reason code is `DriverError::Refused`.
    pub async fn request(&self, request: Request) -> Result<Option<Ack>, DriverError> {
        let request = match (&self.outbox, request) {
            (Some(outbox), Request::Publish(publish)) if publish.qos != QoS::AtMostOnce => {
                let stored = outbox.store(publish)?;
                return stored
                    .await
                    .unwrap_or(Err(DriverError::Closed))
                    .map(|()| None);
            }
            (_, request) => request,
        };
        loop {
            let Some(receiver) = self.submit(&request).await? else {
                return Ok(None);
            };
            let _in_flight = InFlight::start(&self.shared);
            match receiver.await {
                Ok(Ok(ack)) if ack.failed() => return Err(self.refused(&request, &ack)),
                Ok(Ok(ack)) => return Ok(Some(ack)),
                Ok(Err(error)) if self.resends(&request, &error) => {
                    log::info!(target: "umqtt", "{error}; sending the {} again after reconnecting", request.kind_name());
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(DriverError::Closed),
            }
        }
    }

    /// The error for a request the broker refused in its acknowledgement: the code and its name
    /// (MQTT 5), and the broker's reason string when it sent one.
    fn refused(&self, request: &Request, ack: &Ack) -> DriverError {
        let mut words = format!("{:#04x}", ack.code);
        if self.options.protocol == Protocol::V5 {
            words = format!("{words} {}", reason_codes::name(ack.code));
        }
        if let Some(reason) = &ack.reason {
            words = format!("{words}: {reason}");
        }
        DriverError::Refused {
            message: format!(
                "the broker refused the {} to {:?}: {} {words}",
                request.kind_name(),
                request.topic(),
                request.ack_name()
            ),
            code: ack.code,
        }
    }

    /// Whether a request whose link failed with `error` is sent again after the reconnect.
    fn resends(&self, request: &Request, error: &DriverError) -> bool {
        let (exactly_once, large) = match request {
            Request::Publish(publish) => (
                publish.qos == QoS::ExactlyOnce,
                arguments::publish_size(&publish.topic, publish.payload.len(), publish.qos)
                    >= LARGE_PACKET,
            ),
            _ => (false, false),
        };
        let lost = match error {
            DriverError::ConnectionLost(_) | DriverError::BrokerDisconnect { .. } => true,
            DriverError::LostWithLargePublish(_) => !large,
            _ => false,
        };
        lost && self.options.reconnect && !exactly_once
    }

    /// Acknowledges a handled QoS 1/2 message (PUBACK/PUBREC), on the connection it came on only,
    /// while it is up: after a reconnect its packet id may name another message, and the broker
    /// redelivers it.
    pub fn acknowledge(&self, received: &Received, pause: impl Fn(Duration)) {
        let message = &received.message;
        if message.qos == QoS::AtMostOnce {
            return;
        }
        let on_its_connection = || {
            received.epoch == self.shared.epoch.load(Ordering::Acquire) && self.link() == Link::Up
        };
        self.send_now(
            |requests| requests.acknowledge(message.qos, message.pkid),
            on_its_connection,
            pause,
        );
    }

    /// Asks for a PINGREQ now (rumqttc sends none while one waits for its PINGRESP). False,
    /// sending nothing, when the link is not up.
    pub fn ping(&self, pause: impl Fn(Duration)) -> bool {
        self.send_now(Requests::ping, || self.link() == Link::Up, pause)
    }

    /// Hands a request that awaits no acknowledgement to rumqttc at once, while `still_wanted`:
    /// while rumqttc's channel is full (the driver cannot write: TCP back-pressure), `pause`
    /// waits a little between tries (a Python thread waits without the GIL, which the driver may
    /// need to log). Returns whether it was sent.
    fn send_now(
        &self,
        send: impl Fn(&Requests) -> Result<(), ChannelFull>,
        still_wanted: impl Fn() -> bool,
        pause: impl Fn(Duration),
    ) -> bool {
        let Ok(requests) = self.requests() else {
            return false;
        };
        loop {
            if !still_wanted() {
                return false;
            }
            if send(&requests).is_ok() {
                return true;
            }
            pause(FULL_CHANNEL_PAUSE);
        }
    }

    /// Subscribes; returns the QoS granted (a refusal is `DriverError::Refused`).
    pub async fn subscribe(&self, subscription: Subscription) -> Result<u8, DriverError> {
        let ack = self
            .request(Request::Subscribe(subscription.clone()))
            .await?;
        self.shared.remember_subscription(&subscription);
        Ok(ack.map_or(0, |ack| ack.code))
    }

    pub async fn unsubscribe(&self, filter: String) -> Result<(), DriverError> {
        self.shared.forget_subscription(&filter);
        self.request(Request::Unsubscribe(filter)).await.map(drop)
    }

    /// An arrived message, acknowledged as it is handed over (asyncio has no callback to wait
    /// for); None when none has arrived. Raises once the link is gone for good and none is left.
    pub fn take_message(&self, pause: impl Fn(Duration)) -> Result<Option<Inbound>, DriverError> {
        match self.shared.inbox.try_take(1) {
            Some(Taken::Items(mut messages)) => {
                let Some(received) = messages.pop() else {
                    return Ok(None);
                };
                self.acknowledge(&received, pause);
                Ok(Some(received.message))
            }
            Some(Taken::Lost(error)) => Err(error),
            Some(Taken::TimedOut) | None => Ok(None),
        }
    }

    /// Ends the current session. `graceful`: let waiting requests finish, then send DISCONNECT
    /// after everything already queued.
    pub async fn end_session(&self, graceful: bool) {
        let Some(mut session) = lock(&self.session).take() else {
            return;
        };
        if graceful && self.link() == Link::Up {
            // Closed first, so nothing new slips in after the last request in flight finished.
            lock(&self.shared.outbox).open = false;
            let drained = async {
                while self.shared.in_flight.load(Ordering::Acquire) > 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            let _ = tokio::time::timeout(self.options.ack_timeout, drained).await;
            if session.requests.disconnect().is_ok() {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut session.task).await;
            }
        }
        self.finish(session);
    }

    pub fn abandon_session(&self) {
        if let Some(session) = lock(&self.session).take() {
            self.finish(session);
        }
    }

    fn finish(&self, session: Session) {
        session.task.abort();
        self.shared.fail_outbox(&DriverError::Closed);
        self.shared.inbox.set_lost(Some(not_connected()));
        if self.link() != Link::Failed {
            self.shared.link.send_replace(Link::Disconnected);
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(session) = lock(&self.session).take() {
            session.task.abort();
        }
        // The file and its lock are given up now, not when the aborted driver is dropped.
        if let Some(outbox) = &self.outbox {
            outbox.close();
        }
    }
}

type ConnackReceiver = oneshot::Receiver<Result<bool, DriverError>>;

fn not_connected() -> DriverError {
    DriverError::ConnectionLost(NOT_CONNECTED.into())
}
