//! Request/response (MQTT 5): the requests waiting for their reply, by correlation data. The
//! driver hands each arriving message here first; one whose correlation data a waiting request
//! sent goes to that request instead of the inbox.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::lock::lock;
use crate::protocol::Inbound;

/// The requests of one client that wait for a reply, and its response topics.
pub struct Replies {
    waiting: Mutex<HashMap<Bytes, oneshot::Sender<Inbound>>>,
    /// The client's own response topic, once made.
    pub own_topic: Mutex<Option<String>>,
    /// The response topics this session subscribed to (cleared by a new `connect()`).
    subscribed: Mutex<HashSet<String>>,
    /// `subscribed` is not empty: the driver looks at it only then (no lock per message).
    any_subscribed: AtomicBool,
    /// Held while a response topic is subscribed to, so it is subscribed to once.
    pub subscribing: tokio::sync::Mutex<()>,
    /// How many wait: the driver looks at the table only when some do (no lock per message).
    count: AtomicUsize,
    /// Correlation data is this client's random prefix and a counter: unique among its own
    /// requests, and not guessable from another client's.
    prefix: u64,
    next: AtomicU64,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            waiting: Mutex::default(),
            own_topic: Mutex::default(),
            subscribed: Mutex::default(),
            any_subscribed: AtomicBool::new(false),
            subscribing: tokio::sync::Mutex::default(),
            count: AtomicUsize::new(0),
            prefix: random(),
            next: AtomicU64::new(1),
        }
    }
}

/// A request waiting for its reply; it stops waiting when dropped (answered, timed out,
/// cancelled).
pub struct Waiter {
    replies: Arc<Replies>,
    pub correlation: Bytes,
    pub reply: oneshot::Receiver<Inbound>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if lock(&self.replies.waiting)
            .remove(&self.correlation)
            .is_some()
        {
            self.replies.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Replies {
    /// A new request's correlation data, waiting for its reply.
    pub fn wait(self: &Arc<Self>) -> Waiter {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let mut correlation = Vec::with_capacity(16);
        correlation.extend_from_slice(&self.prefix.to_be_bytes());
        correlation.extend_from_slice(&number.to_be_bytes());
        let correlation = Bytes::from(correlation);
        let (sender, reply) = oneshot::channel();
        lock(&self.waiting).insert(correlation.clone(), sender);
        self.count.fetch_add(1, Ordering::AcqRel);
        Waiter {
            replies: self.clone(),
            correlation,
            reply,
        }
    }

    /// Whether this session subscribed to `topic` for replies.
    pub fn subscribed(&self, topic: &str) -> bool {
        lock(&self.subscribed).contains(topic)
    }

    pub fn note_subscribed(&self, topic: &str) {
        lock(&self.subscribed).insert(topic.to_owned());
        self.any_subscribed.store(true, Ordering::Release);
    }

    /// A new session (`connect()`) has subscribed to nothing yet.
    pub fn forget_subscriptions(&self) {
        lock(&self.subscribed).clear();
        self.any_subscribed.store(false, Ordering::Release);
    }

    /// Hands `message` to the request whose correlation data it carries; gives it back when no
    /// request waits for it, unless it came on a response topic: then it is the reply of a
    /// request that gave up (timed out, cancelled), dropped.
    pub fn route(&self, message: Inbound) -> Option<Inbound> {
        if self.count.load(Ordering::Acquire) == 0 && !self.any_subscribed.load(Ordering::Acquire) {
            return Some(message);
        }
        let claimed = (message.properties.as_ref())
            .and_then(|properties| properties.correlation_data.as_ref())
            .and_then(|data| lock(&self.waiting).remove(data));
        let Some(sender) = claimed else {
            if lock(&self.subscribed).contains(&message.topic) {
                log::debug!(target: "umqtt", "a reply on {:?} came after its request gave up; dropped", message.topic);
                return None;
            }
            return Some(message);
        };
        self.count.fetch_sub(1, Ordering::AcqRel);
        // The request gave up meanwhile: its reply is dropped with it.
        let _ = sender.send(message);
        None
    }
}

/// A random number from the standard library's hash seed (random per process and per call).
pub fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PublishProperties;
    use rumqttc::QoS;

    fn reply(correlation: Option<Bytes>) -> Inbound {
        Inbound {
            topic: "resp".into(),
            payload: Bytes::from_static(b"42"),
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            pkid: 0,
            properties: Some(Box::new(PublishProperties {
                correlation_data: correlation,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_reply_reaches_its_request_and_others_go_on() {
        let replies = Arc::new(Replies::default());
        let mut first = replies.wait();
        let second = replies.wait();
        assert_ne!(first.correlation, second.correlation);
        assert!(replies
            .route(reply(Some(first.correlation.clone())))
            .is_none());
        assert_eq!(
            first.reply.try_recv().map(|m| m.payload).ok(),
            Some(Bytes::from_static(b"42"))
        );
        // Not a reply, or the reply of a request that gave up: delivered as a message.
        assert!(replies.route(reply(None)).is_some());
        let gone = second.correlation.clone();
        drop(second);
        assert!(replies.route(reply(Some(gone))).is_some());
        assert_eq!(replies.count.load(Ordering::Acquire), 0);
    }
}
