//! Matching rumqttc's events to the callers waiting for them.
//!
//! rumqttc's `publish`/`subscribe` return no packet id: the id is chosen inside the event loop and
//! only shows up as `Outgoing::Publish(pkid)` (or `AwaitAck(pkid)` on an id collision). Requests
//! leave the request channel in order, so the callers that sent requests wait in per-kind FIFOs
//! (the `Outbox`, filled under the same lock as the channel send) and are bound to a packet id
//! when the driver sees a *fresh* outgoing event: one produced by a request taken from the channel
//! (possibly buffered, when several were written at once), not a replay from `pending`, not the
//! release of a publish parked on a packet-id collision.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use crate::errors::DriverError;
use crate::protocol::{Ack, Kind};

pub type Reply = oneshot::Sender<Result<Ack, DriverError>>;
pub type ReplyReceiver = oneshot::Receiver<Result<Ack, DriverError>>;

/// Requests handed to rumqttc whose packet id is not known yet, and whether new requests may be
/// handed over at all (only while a connection is up, so nothing waits in rumqttc's queue across
/// an outage, where it would be dropped silently).
#[derive(Default)]
pub struct Outbox {
    pub open: bool,
    publishes: VecDeque<Reply>,
    subscribes: VecDeque<Reply>,
    unsubscribes: VecDeque<Reply>,
}

impl Outbox {
    pub fn push(&mut self, kind: Kind, reply: Reply) {
        self.queue(kind).push_back(reply);
    }

    /// Forgets the newest request of `kind`: its send to rumqttc failed.
    pub fn pop_newest(&mut self, kind: Kind) {
        self.queue(kind).pop_back();
    }

    fn queue(&mut self, kind: Kind) -> &mut VecDeque<Reply> {
        match kind {
            Kind::Publish => &mut self.publishes,
            Kind::Subscribe => &mut self.subscribes,
            Kind::Unsubscribe => &mut self.unsubscribes,
        }
    }

    /// Fails every request still waiting for its packet id.
    pub fn fail_all(&mut self, error: &DriverError) {
        let queued = self
            .publishes
            .drain(..)
            .chain(self.subscribes.drain(..))
            .chain(self.unsubscribes.drain(..));
        for reply in queued {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// Requests with a known packet id, waiting for their acknowledgement. Owned by the driver.
#[derive(Default)]
pub struct AckTable {
    bound: HashMap<(Kind, u16), Reply>,
    /// Publishes whose packet id collided with an unacknowledged one; sent when that is acked.
    parked: HashMap<u16, VecDeque<Reply>>,
}

impl AckTable {
    /// An `Outgoing::Publish/Subscribe/Unsubscribe(pkid)` event.
    pub fn on_outgoing(&mut self, kind: Kind, pkid: u16, fresh: bool, outbox: &mut Outbox) {
        if kind == Kind::Publish && pkid == 0 {
            return; // QoS 0: nothing to wait for.
        }
        // A parked publish is released by the ack of its id: no fresh publish can take that id
        // first, as rumqttc takes no request while a collision is pending.
        let released = match kind {
            Kind::Publish => self.parked.get_mut(&pkid).and_then(VecDeque::pop_front),
            _ => None,
        };
        let reply = released.or_else(|| fresh.then(|| outbox.queue(kind).pop_front()).flatten());
        if let Some(reply) = reply {
            if let Some(stale) = self.bound.insert((kind, pkid), reply) {
                let _ = stale.send(Err(DriverError::ConnectionLost(
                    "packet id reused before its acknowledgement".into(),
                )));
            }
        }
    }

    /// An `Outgoing::AwaitAck(pkid)` event: a fresh publish collided with an unacknowledged id.
    pub fn on_collision(&mut self, pkid: u16, fresh: bool, outbox: &mut Outbox) {
        if !fresh {
            return;
        }
        if let Some(reply) = outbox.publishes.pop_front() {
            self.parked.entry(pkid).or_default().push_back(reply);
        }
    }

    /// An acknowledgement arrived; returns false when nobody was waiting for it.
    pub fn on_ack(&mut self, kind: Kind, pkid: u16, ack: Ack) -> bool {
        match self.bound.remove(&(kind, pkid)) {
            Some(reply) => {
                let _ = reply.send(Ok(ack));
                true
            }
            None => false,
        }
    }

    /// The link failed or closed: every waiter learns it now, instead of waiting for its timeout.
    pub fn fail_all(&mut self, outbox: &mut Outbox, error: &DriverError) {
        let parked = self.parked.drain().flat_map(|(_, replies)| replies);
        let bound = self.bound.drain().map(|(_, reply)| reply);
        for reply in bound.chain(parked) {
            let _ = reply.send(Err(error.clone()));
        }
        outbox.fail_all(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(outbox: &mut Outbox, kind: Kind) -> ReplyReceiver {
        let (tx, rx) = oneshot::channel();
        outbox.push(kind, tx);
        rx
    }

    fn refused() -> Ack {
        Ack {
            code: 0x80,
            reason: None,
        }
    }

    fn outcome(rx: &mut ReplyReceiver) -> Option<Result<Ack, DriverError>> {
        rx.try_recv().ok()
    }

    #[test]
    fn fresh_events_bind_in_request_order() {
        let (mut table, mut outbox) = (AckTable::default(), Outbox::default());
        let mut first = waiter(&mut outbox, Kind::Publish);
        let mut second = waiter(&mut outbox, Kind::Publish);
        table.on_outgoing(Kind::Publish, 7, true, &mut outbox);
        table.on_outgoing(Kind::Publish, 8, true, &mut outbox);
        assert!(table.on_ack(Kind::Publish, 8, Ack::OK));
        assert_eq!(outcome(&mut second), Some(Ok(Ack::OK)));
        assert_eq!(outcome(&mut first), None);
        assert!(table.on_ack(Kind::Publish, 7, Ack::OK));
        assert_eq!(outcome(&mut first), Some(Ok(Ack::OK)));
    }

    #[test]
    fn replays_and_qos0_do_not_consume_waiters() {
        let (mut table, mut outbox) = (AckTable::default(), Outbox::default());
        let mut pending = waiter(&mut outbox, Kind::Publish);
        table.on_outgoing(Kind::Publish, 0, true, &mut outbox);
        table.on_outgoing(Kind::Publish, 3, false, &mut outbox);
        assert!(!table.on_ack(Kind::Publish, 3, Ack::OK));
        table.on_outgoing(Kind::Publish, 4, true, &mut outbox);
        assert!(table.on_ack(Kind::Publish, 4, Ack::OK));
        assert_eq!(outcome(&mut pending), Some(Ok(Ack::OK)));
    }

    #[test]
    fn kinds_share_packet_ids_without_confusion() {
        let (mut table, mut outbox) = (AckTable::default(), Outbox::default());
        let mut publish = waiter(&mut outbox, Kind::Publish);
        let mut subscribe = waiter(&mut outbox, Kind::Subscribe);
        table.on_outgoing(Kind::Subscribe, 1, true, &mut outbox);
        table.on_outgoing(Kind::Publish, 1, true, &mut outbox);
        assert!(table.on_ack(Kind::Subscribe, 1, refused()));
        assert_eq!(outcome(&mut subscribe), Some(Ok(refused())));
        assert_eq!(outcome(&mut publish), None);
    }

    #[test]
    fn collision_parks_until_the_id_is_released() {
        let (mut table, mut outbox) = (AckTable::default(), Outbox::default());
        let mut old = waiter(&mut outbox, Kind::Publish);
        table.on_outgoing(Kind::Publish, 5, true, &mut outbox);
        let mut new = waiter(&mut outbox, Kind::Publish);
        table.on_collision(5, true, &mut outbox);
        assert!(table.on_ack(Kind::Publish, 5, Ack::OK));
        assert_eq!(outcome(&mut old), Some(Ok(Ack::OK)));
        // The release may come back buffered, i.e. looking fresh, while later publishes wait.
        let mut later = waiter(&mut outbox, Kind::Publish);
        table.on_outgoing(Kind::Publish, 5, true, &mut outbox);
        assert!(table.on_ack(Kind::Publish, 5, Ack::OK));
        assert_eq!(outcome(&mut new), Some(Ok(Ack::OK)));
        table.on_outgoing(Kind::Publish, 6, true, &mut outbox);
        assert!(table.on_ack(Kind::Publish, 6, Ack::OK));
        assert_eq!(outcome(&mut later), Some(Ok(Ack::OK)));
    }

    #[test]
    fn failure_reaches_every_waiter() {
        let (mut table, mut outbox) = (AckTable::default(), Outbox::default());
        let mut bound = waiter(&mut outbox, Kind::Publish);
        table.on_outgoing(Kind::Publish, 2, true, &mut outbox);
        let mut unbound = waiter(&mut outbox, Kind::Unsubscribe);
        let lost = DriverError::ConnectionLost("gone".into());
        table.fail_all(&mut outbox, &lost);
        assert_eq!(outcome(&mut bound), Some(Err(lost.clone())));
        assert_eq!(outcome(&mut unbound), Some(Err(lost)));
        assert!(table.bound.is_empty() && outbox.publishes.is_empty());
    }
}
