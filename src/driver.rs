//! The connection driver: one tokio task per connection owns the rumqttc `EventLoop`, polls it,
//! resolves waiters, fills the inbox, and after a failure backs off and reconnects (or stops).
//!
//! rumqttc pitfalls handled here (see docs/design.md):
//! - it reconnects on the next poll with no delay, so a failure is followed by a backoff sleep;
//! - on a failed link it moves queued requests to `pending` and drops them on a clean reconnect, so
//!   the driver clears them itself and fails their waiters, and stops new requests during outages;
//! - events it buffered when the link failed are not replayed: incoming packets are handled (they
//!   were read), outgoing ones dropped (they may not have been written);
//! - it re-subscribes nothing, so subscriptions are re-sent when the session was not resumed
//!   (at once, or 3 s later with `manage=True`, as the device does);
//! - an MQTT 3.1.1 broker closing the link says nothing about why: a large PUBLISH left
//!   unacknowledged is named as the likely cause (brokers close the link on a packet larger than
//!   they accept); an MQTT 5 broker's DISCONNECT reason is reported.
//!
//! The driver is the same for both protocols: it sees the event loop through `protocol`'s
//! `EventLoop` and `Event`, which carry packet ids, kinds and reason codes.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::acks::AckTable;
use crate::credentials::Credentials;
use crate::errors::{describe_connect_failure, DriverError};
use crate::link_error::LinkError;
use crate::lock::lock;
use crate::outbox::{DiskOutbox, CLOSES_BEFORE_DROPPING};
use crate::protocol::{Ack, ConnAckProperties, Event, EventLoop, Kind, Requests};
use crate::reason_codes;
use crate::shared::{HandOver, Link, Received, Shared, FULL_CHANNEL_PAUSE};

/// Text passed to the error callback, as on the device.
pub const RECONNECT_START: &str = "reconnect_start";
pub const RECONNECT_SUCCESS: &str = "reconnect_success";

/// How long a connection must stay up before the reconnect backoff starts again from the first
/// delay: a broker that drops every connection at once gets ever slower retries, not a flap.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Peer closes within this window, each right after a successful connect, that suggest another
/// client uses the same client id.
const TAKEOVER_WINDOW: Duration = Duration::from_secs(60);
const TAKEOVER_COUNT: usize = 3;

/// Arrived messages the application has not taken may hold this much; beyond it the driver stops
/// reading the socket until they are taken (QoS 1/2 are bounded anyway by the broker's in-flight
/// window, since they are acknowledged only when handled).
const INBOX_LIMIT: usize = 16 * 1024 * 1024;

/// An unacknowledged PUBLISH at least this large is named when the broker closes the link, and
/// not sent again: brokers close it on a packet larger than they accept (cloud brokers from
/// 128 KiB).
pub const LARGE_PACKET: usize = 64 * 1024;

pub struct DriverConfig {
    pub target: String,
    /// Credentials with callables, called before each connection attempt (`None`: all fixed).
    pub expiring_credentials: Option<Credentials>,
    pub reconnect: bool,
    /// How long after a reconnect the subscriptions are sent again (`manage=True`: 3 s).
    pub resubscribe_delay: Duration,
    /// The limit on incoming packets (`max_packet_size`), for messages.
    pub max_packet_size: usize,
    /// Extra unanswered PINGREQs tolerated before the link counts as dead (`pingmaxnum`).
    pub ping_grace: u32,
    pub reconnect_delay: Duration,
    pub reconnect_max_delay: Duration,
    /// The outbox on disk: its messages go out on every connection (its feeder), and it hears
    /// of their acknowledgements. None: memory only.
    pub outbox: Option<Arc<DiskOutbox>>,
}

/// Exponential backoff with jitter, so a fleet restarted together does not reconnect in lockstep.
struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new(first: Duration, cap: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            first,
            cap: cap.max(first),
            next: first,
            seed,
        }
    }

    fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay to wait now: the current step ±20 %, then the step doubles up to the cap.
    fn step(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.8 + 0.4 * (self.seed % 1000) as f64 / 1000.0;
        let delay = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(self.cap);
        delay
    }
}

/// A task aborted when this is dropped (with its driver, or when the link drops).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Driver {
    eventloop: EventLoop,
    /// The request handle, for re-subscriptions sent later (`manage=True`).
    requests: Requests,
    delayed_resubscription: Option<AbortOnDrop>,
    /// The outbox's feeder on the current connection.
    outbox_feeder: Option<AbortOnDrop>,
    shared: Arc<Shared>,
    config: DriverConfig,
    acks: AckTable,
    /// Told the outcome of the first connection attempt; `None` afterwards.
    first_connack: Option<oneshot::Sender<Result<bool, DriverError>>>,
    backoff: Backoff,
    reconnecting: bool,
    /// The next poll connects: the first one, and each after a failure.
    connecting_next: bool,
    unanswered_pings: u32,
    connected_at: Option<Instant>,
    /// When recent connections were closed by the broker soon after it accepted them.
    peer_closes: VecDeque<Instant>,
}

/// Runs one connection until it is disconnected, fails for good, or the task is aborted.
///
/// The driver is built before the future, which holds only it: an `async fn` would keep its
/// arguments beside the driver made of them, 1 KiB more in every client's task.
pub fn run(
    mut eventloop: EventLoop,
    requests: Requests,
    shared: Arc<Shared>,
    config: DriverConfig,
    first_connack: oneshot::Sender<Result<bool, DriverError>>,
) -> impl Future<Output = ()> {
    let backoff = Backoff::new(config.reconnect_delay, config.reconnect_max_delay);
    // The outbox sends a QoS 2 message's PUBREL once its PUBREC is on disk (vendor patch 31).
    eventloop.set_manual_pubrel(config.outbox.is_some());
    let mut driver = Driver {
        eventloop,
        requests,
        delayed_resubscription: None,
        outbox_feeder: None,
        shared,
        config,
        acks: AckTable::default(),
        first_connack: Some(first_connack),
        backoff,
        reconnecting: false,
        connecting_next: true,
        unanswered_pings: 0,
        connected_at: None,
        peer_closes: VecDeque::new(),
    };
    async move { driver.run().await }
}

impl Driver {
    async fn run(&mut self) {
        loop {
            if !self.eventloop.has_buffered_events() {
                // The messages of one network read are announced together: one reader wake-up.
                self.shared.inbox.announce();
            }
            wait_for_reader(&self.shared, &self.config.target).await;
            // An outgoing event is "fresh" (produced by a request taken from the channel) unless
            // poll() took it from `pending` (re-subscriptions). Requests written in one batch
            // come back as buffered events, still fresh; a parked publish's release is told
            // apart by its packet id (AckTable::on_outgoing).
            if std::mem::take(&mut self.connecting_next) {
                if self.reconnecting {
                    log::info!(target: "umqtt", "reconnecting to {}", self.config.target);
                }
                if let Err(error) = self.refresh_credentials().await {
                    if !self.on_error(error).await {
                        return;
                    }
                    continue;
                }
            }
            let pending = self.eventloop.pending_len();
            let polled = self.eventloop.poll().await;
            let inflight = self.eventloop.inflight();
            self.shared.stats.set_inflight(inflight);
            let fresh = self.eventloop.pending_len() == pending;
            let carry_on = match polled {
                Ok(event) => self.on_event(event, fresh),
                Err(error) => self.on_error(error).await,
            };
            if !carry_on {
                self.shared.inbox.announce();
                return;
            }
        }
    }

    /// Calls the credentials' callables (on a blocking thread: they take the GIL, and may take
    /// their time) and sets what they returned for the coming connection attempt.
    async fn refresh_credentials(&mut self) -> Result<(), LinkError> {
        let Some(credentials) = self.config.expiring_credentials.clone() else {
            return Ok(());
        };
        let current = tokio::task::spawn_blocking(move || credentials.current())
            .await
            .map_err(|_| "the credentials callable panicked".to_owned())
            .and_then(|current| current)
            .map_err(|failure| LinkError::from(std::io::Error::other(failure)))?;
        current.apply(self.eventloop.connect_options());
        Ok(())
    }

    /// Acts on what a poll produced; returns whether to keep running. `fresh`: the event came
    /// from a request taken from the channel (not a replay from `pending`).
    fn on_event(&mut self, event: Event, fresh: bool) -> bool {
        match event {
            // QoS 0 publishes written: the hot path takes no lock.
            Event::Sent {
                kind: Kind::Publish,
                pkid: 0,
            } => {}
            Event::Message(message) => {
                let (qos, pkid) = (message.qos, message.pkid);
                match self.shared.replies.route(message) {
                    Some(message) => {
                        let epoch = self.shared.epoch.load(Ordering::Acquire);
                        self.shared.inbox.push_quietly(Received { message, epoch });
                    }
                    // A reply, handed to its request: acknowledged now (a full channel only
                    // means the broker sends it again).
                    None if qos != QoS::AtMostOnce => {
                        let _ = self.requests.acknowledge(qos, pkid);
                    }
                    None => {}
                }
            }
            Event::Acknowledged {
                kind,
                pkid,
                ack,
                publish_qos,
            } => {
                let refused = ack.failed();
                match (&self.config.outbox, publish_qos) {
                    (Some(outbox), Some(qos)) if refused => {
                        self.on_outbox_refusal(outbox, pkid, qos, &ack);
                    }
                    (Some(outbox), Some(QoS::AtLeastOnce)) => outbox.on_puback(pkid),
                    (Some(outbox), Some(QoS::ExactlyOnce)) => outbox.on_pubcomp(pkid),
                    _ => {}
                }
                let claimed = self.acks.on_ack(kind, pkid, ack);
                if !claimed && refused && kind == Kind::Subscribe {
                    log::warn!(target: "umqtt", "the broker refused a re-subscription after reconnecting");
                }
            }
            Event::PubRec(pkid) => {
                if let Some(outbox) = &self.config.outbox {
                    outbox.on_pubrec(pkid);
                }
            }
            Event::Connected {
                session_present,
                properties,
            } => self.on_connected(session_present, properties),
            Event::PingResp => self.unanswered_pings = 0,
            Event::Sent { kind, pkid } => {
                self.acks
                    .on_outgoing(kind, pkid, fresh, &mut lock(&self.shared.outbox));
            }
            Event::Collision(pkid) => {
                self.acks
                    .on_collision(pkid, fresh, &mut lock(&self.shared.outbox));
            }
            Event::DisconnectSent => {
                log::info!(target: "umqtt", "disconnected from {}", self.config.target);
                self.stop(Link::Disconnected, &DriverError::Closed);
                return false;
            }
            Event::PingSent => self.on_ping_sent(),
            Event::Other => {}
        }
        true
    }

    /// An MQTT 5 broker refused a publish for good (a reason code of 0x80 or above): the outbox
    /// removes its message, never to send it again (docs/api.md, "The outbox on disk").
    fn on_outbox_refusal(&self, outbox: &DiskOutbox, pkid: u16, qos: QoS, ack: &Ack) {
        let Some(topic) = outbox.on_refused(pkid, qos) else {
            return;
        };
        self.shared.stats.on_outbox_refused();
        let reason = ack
            .reason
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"));
        log::warn!(
            target: "umqtt",
            "{} refused the outbox's message to {topic:?} with {:#04x} {}{reason}: removed from \
             the outbox, not sent again",
            self.config.target,
            ack.code,
            reason_codes::name(ack.code)
        );
    }

    /// rumqttc fails the link when a ping is due while the previous one is unanswered; clearing
    /// its flag for the first `ping_grace` unanswered pings makes it send another one instead.
    fn on_ping_sent(&mut self) {
        self.unanswered_pings += 1;
        if self.unanswered_pings <= self.config.ping_grace {
            self.eventloop.forgive_unanswered_ping();
        }
    }

    fn on_connected(&mut self, session_present: bool, properties: Option<Box<ConnAckProperties>>) {
        // An empty client id under MQTT 5 gets one from the broker: it is the client's id from
        // now on, and the next CONNECT (after a reconnect) sends it.
        let assigned = (properties.as_ref()).and_then(|p| p.assigned_client_identifier.clone());
        if let Some(client_id) = assigned {
            *lock(&self.shared.client_id) = client_id.clone();
            self.eventloop.connect_options().set_client_id(client_id);
        }
        *lock(&self.shared.connack) = properties;
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        self.connected_at = Some(Instant::now());
        self.unanswered_pings = 0;
        lock(&self.shared.outbox).open = true;
        self.shared.inbox.set_lost(None);
        self.shared.link.send_replace(Link::Up);
        if let Some(outbox) = &self.config.outbox {
            let feed = outbox.link_up(session_present, self.requests.clone());
            self.outbox_feeder = Some(AbortOnDrop(tokio::spawn(feed)));
        }
        if let Some(first) = self.first_connack.take() {
            log::info!(target: "umqtt", "connected to {}", self.config.target);
            let _ = first.send(Ok(session_present));
            return;
        }
        if !session_present {
            self.resubscribe();
        }
        if std::mem::take(&mut self.reconnecting) {
            self.shared.stats.on_reconnected();
            log::info!(target: "umqtt", "reconnected to {}", self.config.target);
            self.shared.notify(RECONNECT_SUCCESS.to_owned());
        }
    }

    /// Queues the known subscriptions ahead of any new request (rumqttc sends `pending` first);
    /// with `manage=True` sends them `resubscribe_delay` later instead.
    fn resubscribe(&mut self) {
        if !self.config.resubscribe_delay.is_zero() {
            let later = resubscribe_later(
                self.shared.clone(),
                self.requests.clone(),
                self.shared.epoch.load(Ordering::Acquire),
                self.config.resubscribe_delay,
            );
            self.delayed_resubscription = Some(AbortOnDrop(tokio::spawn(later)));
            return;
        }
        let subscriptions = lock(&self.shared.subscriptions).clone();
        for subscription in &subscriptions {
            self.eventloop.queue_subscription(subscription);
        }
    }

    /// Returns whether to keep running (and reconnect).
    async fn on_error(&mut self, error: LinkError) -> bool {
        self.connecting_next = true;
        self.delayed_resubscription = None;
        let closed_by_peer = error.closed_by_peer();
        let disconnect = error.server_disconnect();
        let largest = (self.eventloop.largest_unacknowledged_publish())
            .filter(|&size| size >= LARGE_PACKET && closed_by_peer && disconnect.is_none());
        let reason = self.failure_reason(&error, largest);
        let lost = format!("connection to {} lost: {reason}", self.config.target);
        if let (Some(outbox), Some(_)) = (&self.config.outbox, largest) {
            for (topic, size) in outbox.closed_with_large_in_flight(LARGE_PACKET) {
                log::warn!(
                    target: "umqtt",
                    "the outbox drops its message to {topic:?} ({size} bytes): {} closed the \
                     connection each of the last {CLOSES_BEFORE_DROPPING} times it was sent; it \
                     probably does not accept packets that large",
                    self.config.target
                );
            }
        }
        let failure = match (&disconnect, largest) {
            (Some(disconnect), _) => DriverError::BrokerDisconnect {
                message: lost.clone(),
                code: disconnect.code,
            },
            (None, Some(_)) => DriverError::LostWithLargePublish(lost.clone()),
            (None, None) => DriverError::ConnectionLost(lost.clone()),
        };
        if let Some(since) = self.connected_at.take() {
            if since.elapsed() >= STABLE_CONNECTION {
                self.backoff.reset();
            }
            // A close on a large PUBLISH is the broker's answer to it, not a session takeover.
            if closed_by_peer && largest.is_none() {
                self.note_peer_close();
            }
        }
        // The state changes before any waiter is told, so a caller that hears "lost" and then
        // asks get_mqttsta() never sees "connected".
        let link = match (self.first_connack.is_some(), self.config.reconnect) {
            (true, _) => Link::Failed,
            (false, true) => Link::Reconnecting,
            (false, false) if closed_by_peer => Link::ClosedByServer,
            (false, false) => Link::Failed,
        };
        self.shared.link.send_replace(link);
        self.forget_queued(&failure);
        if let Some(first) = self.first_connack.take() {
            let failure = describe_connect_failure(&error, &self.config.target);
            self.shared.stats.set_last_error(failure.to_string());
            let _ = first.send(Err(failure));
            return false;
        }
        self.shared.stats.set_last_error(lost.clone());
        if !self.config.reconnect {
            log::warn!(target: "umqtt", "{lost}");
            self.shared.notify(reason);
            self.shared.inbox.set_lost(Some(failure));
            return false;
        }
        if disconnect.is_some() {
            // The broker said why: the error callback hears it before "reconnect_start".
            self.shared.notify(reason.clone());
        }
        if !std::mem::replace(&mut self.reconnecting, true) {
            log::warn!(target: "umqtt", "{lost}; reconnecting");
            self.shared.notify(RECONNECT_START.to_owned());
        } else {
            log::info!(target: "umqtt", "reconnecting to {} failed: {reason}", self.config.target);
        }
        tokio::time::sleep(self.backoff.step()).await;
        true
    }

    /// Why the link failed, in words: rumqttc's error, and what it says about packet sizes
    /// (`largest_unacknowledged`: the large PUBLISH outstanding when the broker closed the link).
    fn failure_reason(&self, error: &LinkError, largest_unacknowledged: Option<usize>) -> String {
        if let Some(disconnect) = error.server_disconnect() {
            return format!(
                "the broker closed it with DISCONNECT {}",
                disconnect.describe()
            );
        }
        if let Some(size) = error.incoming_too_large() {
            return format!(
                "the broker sent a packet of {size} bytes (after its fixed header), more than \
                 max_packet_size ({} bytes); raise max_packet_size (up to 256 MiB)",
                self.config.max_packet_size
            );
        }
        match largest_unacknowledged {
            Some(size) => format!(
                "the broker closed it while a PUBLISH of {size} bytes waited for its \
                 acknowledgement: it may not accept packets that large (mosquitto: \
                 max_packet_size), so that PUBLISH is not sent again{} ({error})",
                match self.config.outbox {
                    Some(_) =>
                        format!(" (the outbox's: after {CLOSES_BEFORE_DROPPING} such closes)"),
                    None => String::new(),
                }
            ),
            None => error.to_string(),
        }
    }

    /// MQTT 3.1.1 brokers close the older connection when a client connects with the same id,
    /// without saying why; two such clients take the session from each other for ever.
    fn note_peer_close(&mut self) {
        let now = Instant::now();
        self.peer_closes.push_back(now);
        while self
            .peer_closes
            .front()
            .is_some_and(|at| now.duration_since(*at) > TAKEOVER_WINDOW)
        {
            self.peer_closes.pop_front();
        }
        if self.peer_closes.len() >= TAKEOVER_COUNT {
            self.peer_closes.clear();
            log::warn!(
                target: "umqtt",
                "{} closed the connection {TAKEOVER_COUNT} times within {} s right after accepting it: \
                 another client is probably connecting with the same client_id {:?} (each one takes \
                 the session over from the other); give every client its own id",
                self.config.target,
                TAKEOVER_WINDOW.as_secs(),
                lock(&self.shared.client_id)
            );
        }
    }

    /// After a failure nothing queued may be sent behind its caller's back: rumqttc would replay
    /// it on a resumed session or drop it silently on a clean one. Fail every waiter instead.
    fn forget_queued(&mut self, error: &DriverError) {
        // The outbox keeps its messages: it sends them again on the next connection.
        self.outbox_feeder = None;
        // Packets read before the failure are real: deliver their messages and acks. Buffered
        // outgoing events are not (a request may not have been written), so they are dropped.
        for packet in self.eventloop.take_buffered_packets() {
            self.on_event(packet, false);
        }
        self.shared.inbox.announce();
        let mut outbox = lock(&self.shared.outbox);
        outbox.open = false;
        self.eventloop.forget_queued();
        self.shared.stats.set_inflight(0); // what was in flight failed with the link
        self.acks.fail_all(&mut outbox, error);
    }

    fn stop(&mut self, link: Link, error: &DriverError) {
        self.forget_queued(error);
        self.shared.link.send_replace(link);
    }
}

/// `manage=True`: sends the known subscriptions `delay` after connection `epoch` came up, through
/// rumqttc's channel as a caller would, each waiting for its SUBACK (a refusal is logged).
/// Nothing more is sent once that connection is gone.
async fn resubscribe_later(shared: Arc<Shared>, requests: Requests, epoch: u64, delay: Duration) {
    tokio::time::sleep(delay).await;
    let subscriptions = lock(&shared.subscriptions).clone();
    let mut acks = Vec::with_capacity(subscriptions.len());
    for subscription in subscriptions {
        let ack = loop {
            if shared.epoch.load(Ordering::Acquire) != epoch {
                return;
            }
            let send = || requests.subscribe(&subscription);
            match shared.hand_over(Some(Kind::Subscribe), send) {
                HandOver::Sent(Some(ack)) => break ack,
                HandOver::Full => tokio::time::sleep(FULL_CHANNEL_PAUSE).await,
                HandOver::Sent(None) | HandOver::Closed => return,
            }
        };
        acks.push((subscription.filter, ack));
    }
    for (filter, ack) in acks {
        if let Ok(Ok(ack)) = ack.await {
            if ack.failed() {
                log::warn!(target: "umqtt", "the broker refused the re-subscription to {filter:?} (SUBACK {:#04x})", ack.code);
            }
        }
    }
}

/// Back-pressure: while the application leaves too much unread, read nothing more.
async fn wait_for_reader(shared: &Shared, target: &str) {
    let unread = shared.inbox.bytes();
    if unread < INBOX_LIMIT {
        return;
    }
    shared.inbox.announce();
    log::warn!(
        target: "umqtt",
        "{} MiB of received messages wait unread: reading from {target} pauses until the \
         application takes them (wait_msg()/check_msg()/messages())",
        unread >> 20
    );
    shared.inbox.wait_for_room(INBOX_LIMIT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let steps: Vec<f64> = (0..5).map(|_| backoff.step().as_secs_f64()).collect();
        for (step, base) in steps.iter().zip([1.0, 2.0, 4.0, 4.0, 4.0]) {
            assert!(*step >= base * 0.8 && *step <= base * 1.2, "{steps:?}");
        }
        backoff.reset();
        assert!(backoff.step() <= Duration::from_millis(1200));
    }
}
