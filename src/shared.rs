//! What a client and its connection driver share: the state of the link, the queues between
//! them (outbox, inbox, notices), the subscriptions to restore, and the connection count.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::acks::{Outbox, ReplyReceiver};
use crate::errors::DriverError;
use crate::inbox::{Mailbox, Weight};
use crate::lock::lock;
use crate::protocol::{ChannelFull, ConnAckProperties, Inbound, Kind, Subscription};
use crate::replies::Replies;
use crate::stats::Stats;

/// Link notices kept for the error callback (older ones are dropped).
const NOTICE_LIMIT: usize = 64;
/// How long a sender waits before retrying when rumqttc's channel is full.
pub const FULL_CHANNEL_PAUSE: Duration = Duration::from_millis(1);

/// What became of a request handed to rumqttc ([`Shared::hand_over`]).
pub enum HandOver {
    /// In rumqttc's channel; with the receiver of its acknowledgement when one is awaited.
    Sent(Option<ReplyReceiver>),
    /// Not sent: the channel is full.
    Full,
    /// Not sent: the outbox is closed (no connection is up).
    Closed,
}

/// The state of the link, as `get_mqttsta()` and waiting publishers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Idle,
    Connecting,
    Up,
    Reconnecting,
    ClosedByServer,
    Failed,
    Disconnected,
}

impl Link {
    /// QuecPython's `get_mqttsta()` codes.
    pub fn mqttsta(self) -> i32 {
        match self {
            Link::Up => 0,
            Link::Connecting | Link::Reconnecting => 1,
            Link::ClosedByServer => 2,
            Link::Idle | Link::Failed | Link::Disconnected => -1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Link::Idle => "idle",
            Link::Connecting => "connecting",
            Link::Up => "connected",
            Link::Reconnecting => "reconnecting",
            Link::ClosedByServer => "closed by the server",
            Link::Failed => "failed",
            Link::Disconnected => "disconnected",
        }
    }
}

/// A received message and the connection it came on (acknowledgements are per connection).
pub struct Received {
    pub message: Inbound,
    pub epoch: u64,
}

impl Weight for Received {
    fn weight(&self) -> usize {
        self.message.topic.len() + self.message.payload.len()
    }
}

/// State shared between a client's Python-facing object and its driver task.
pub struct Shared {
    pub outbox: Mutex<Outbox>,
    pub inbox: Mailbox<Received>,
    pub notices: Mailbox<String>,
    pub link: watch::Sender<Link>,
    /// Topics to re-subscribe after a reconnect that did not resume the session.
    pub subscriptions: Mutex<Vec<Subscription>>,
    /// The properties of the last CONNACK (MQTT 5): what `connack_properties` shows, and the
    /// broker's limits, checked before a publish is sent.
    pub connack: Mutex<Option<Box<ConnAckProperties>>>,
    /// The client id: the one given, or the one the broker assigned (MQTT 5), reused on reconnect.
    pub client_id: Mutex<String>,
    /// Requests waiting for their reply (request/response, MQTT 5).
    pub replies: Arc<Replies>,
    /// Requests whose callers are still waiting; `disconnect()` lets them finish first.
    pub in_flight: AtomicUsize,
    /// Counts connections (CONNACKs); a message may only be acknowledged on its own connection.
    pub epoch: AtomicU64,
    /// The counters of `stats()`, shared with each connection's packet observer.
    pub stats: Arc<Stats>,
}

impl Shared {
    pub fn new(client_id: String) -> Self {
        Shared {
            outbox: Mutex::default(),
            inbox: Mailbox::default(),
            notices: Mailbox::default(),
            link: watch::Sender::new(Link::Idle),
            subscriptions: Mutex::default(),
            connack: Mutex::default(),
            client_id: Mutex::new(client_id),
            replies: Arc::default(),
            in_flight: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            stats: Arc::default(),
        }
    }

    pub fn remember_subscription(&self, subscription: &Subscription) {
        let mut subscriptions = lock(&self.subscriptions);
        subscriptions.retain(|known| known.filter != subscription.filter);
        subscriptions.push(subscription.clone());
    }

    /// Posts a link notice for the error callback. Only the newest `NOTICE_LIMIT` are kept: a
    /// client nobody reads notices from (no callback, other dialects) must not grow with them.
    pub fn notify(&self, notice: String) {
        self.notices.push_within(notice, NOTICE_LIMIT);
    }

    pub fn forget_subscription(&self, topic: &str) {
        lock(&self.subscriptions).retain(|known| known.filter != topic);
    }

    /// Hands a request to rumqttc (`send`) while the outbox is open, registering the waiter of its
    /// acknowledgement (`kind`) in the same critical section, so that waiters and requests stay in
    /// the same order.
    pub fn hand_over(
        &self,
        kind: Option<Kind>,
        send: impl FnOnce() -> Result<(), ChannelFull>,
    ) -> HandOver {
        let mut outbox = lock(&self.outbox);
        if !outbox.open {
            return HandOver::Closed;
        }
        let receiver = kind.map(|kind| {
            let (reply, receiver) = oneshot::channel();
            outbox.push(kind, reply);
            receiver
        });
        if send().is_ok() {
            return HandOver::Sent(receiver);
        }
        if let Some(kind) = kind {
            outbox.pop_newest(kind);
        }
        HandOver::Full
    }

    /// Closes the outbox and fails what waits in it; used when the driver is stopped from outside.
    pub fn fail_outbox(&self, error: &DriverError) {
        let mut outbox = lock(&self.outbox);
        outbox.open = false;
        outbox.fail_all(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqttsta_codes_follow_the_device() {
        assert_eq!(Link::Up.mqttsta(), 0);
        assert_eq!(Link::Reconnecting.mqttsta(), 1);
        assert_eq!(Link::ClosedByServer.mqttsta(), 2);
        assert_eq!(Link::Idle.mqttsta(), -1);
    }
}
