//! The outbox's state in memory: which stored messages wait, which packet id each one in flight
//! has, what must be written to the file next, and what to hand to rumqttc next. No I/O and no
//! locking here: `DiskOutbox` keeps a `Queue` under its mutex, its writer thread writes the
//! changes and reports back, and the link's feeder hands the requests to rumqttc.
//!
//! The rules (docs/design.md, "The outbox on disk"):
//! - messages are handed over in the order they were stored (their ids), each at most once per
//!   connection; a connection that ends leaves every unacknowledged one to be sent again;
//! - the outbox chooses the packet ids of its messages, 1 to 100 (rumqttc's in-flight table),
//!   so at most 100 are in flight (QoS 2: `QOS2_IN_FLIGHT`) and an id is free again once its
//!   message is acknowledged;
//! - a QoS 2 message's packet id is written to the file before its PUBLISH is handed over, and
//!   its PUBREC before its PUBREL: after a restart on a session the broker kept, it is sent again
//!   with the same id and DUP, or its PUBREL is, so the broker delivers it once;
//! - on a connection without the session (clean, or lost by the broker) every packet id is
//!   forgotten and everything unacknowledged is sent afresh;
//! - message bodies stay in memory up to `RESIDENT_LIMIT`; the others are read back from the file
//!   in order when their turn comes.

use std::collections::{BTreeMap, VecDeque};

use rumqttc::QoS;

use super::store::{Body, Changes, NewMessage, Summary, MAX_PACKET_ID};
use crate::protocol::{StoredPublish, StoredRequest};

/// QoS 2 messages in flight at most (PUBLISH sent, PUBCOMP not yet received). An MQTT 3.1.1
/// broker cannot say how many it takes between PUBLISH and PUBREL, and mosquitto takes
/// `max_inflight_messages` (20 by default): beyond it, it drops the message while answering
/// with an ordinary PUBREC, or closes the connection.
pub const QOS2_IN_FLIGHT: usize = 20;
/// A message in flight each time the broker closed the connection, this many times in a row, is
/// dropped: the broker does not take it (MQTT 3.1.1 brokers close the connection on a packet
/// larger than they accept), and sent again for ever it would hold back every message after it.
pub const CLOSES_BEFORE_DROPPING: u8 = 3;
/// Bodies kept in memory, in bytes; beyond it they are read back from the file when needed.
pub const RESIDENT_LIMIT: usize = 16 * 1024 * 1024;
/// How much one read from the file brings back (at least one message).
const READ_BACK_BYTES: usize = 1024 * 1024;

/// A stored message, as the queue tracks it.
#[derive(Debug)]
struct Entry {
    qos: QoS,
    retain: bool,
    size: usize,
    /// None: on disk only, read back when its turn comes.
    body: Option<Body>,
    /// 0: none yet on this session.
    packet_id: u16,
    /// A PUBLISH with this packet id was handed over before: a resend carries DUP.
    sent: bool,
    /// QoS 2: its PUBREC arrived; its PUBREL is what is sent now.
    released: bool,
    /// Changes of its packet id or release being written: nothing is sent for it until then.
    persisting: u8,
    /// The connection it was last handed over on (its PUBLISH or PUBREL); 0: none.
    handed: u64,
    /// Connections in a row the broker closed while its large PUBLISH was in flight.
    closes: u8,
}

impl Entry {
    /// A message stored, not yet sent.
    fn new(qos: QoS, retain: bool, size: usize, body: Option<Body>) -> Entry {
        Entry {
            qos,
            retain,
            size,
            body,
            packet_id: 0,
            sent: false,
            released: false,
            persisting: 0,
            handed: 0,
            closes: 0,
        }
    }
}

/// What the writer thread is asked to do next.
#[derive(Debug, Default)]
pub struct Work {
    pub changes: Changes,
    /// Bodies to read back: ids from the first to the last.
    pub read_back: Option<(u64, u64)>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.read_back.is_none()
    }
}

/// The outbox in memory.
#[derive(Debug)]
pub struct Queue {
    entries: BTreeMap<u64, Entry>,
    next_id: u64,
    /// Messages accepted and not acknowledged (being stored included), and their bytes.
    messages: usize,
    bytes: usize,
    /// Deletes not yet committed (`flush()` waits for them too).
    deletes_unwritten: usize,
    /// Bytes of bodies in memory.
    resident: usize,
    /// For each packet id (index), the id of the message that has it; 0: free.
    holders: Vec<u64>,
    last_packet_id: u16,
    /// QoS 2 messages holding a packet id (at most `QOS2_IN_FLIGHT` are given one).
    qos2_in_flight: usize,
    /// The current connection; bumped by `link_up`.
    generation: u64,
    /// Every message before this id was handed over on the current connection (or waits for
    /// its PUBREL only).
    cursor: u64,
    /// Messages whose release was written: their PUBREL goes next.
    pubrels: Vec<u64>,
    /// On a kept session, the messages in flight when the last connection ended: sent again
    /// first, with their packet ids (MQTT 3.1.1, 4.4).
    resends: VecDeque<u64>,
    reading_back: bool,
    work: Work,
}

impl Queue {
    /// The queue of an outbox that holds `stored`, in order.
    pub fn new(stored: Vec<Summary>) -> Queue {
        let mut queue = Queue {
            entries: BTreeMap::new(),
            next_id: 1,
            messages: 0,
            bytes: 0,
            deletes_unwritten: 0,
            resident: 0,
            holders: vec![0; usize::from(MAX_PACKET_ID) + 1],
            qos2_in_flight: 0,
            last_packet_id: 0,
            generation: 0,
            cursor: 0,
            pubrels: Vec::new(),
            resends: VecDeque::new(),
            reading_back: false,
            work: Work::default(),
        };
        for summary in stored {
            queue.next_id = queue.next_id.max(summary.id + 1);
            queue.messages += 1;
            queue.bytes += summary.size;
            let mut entry = Entry::new(summary.qos, summary.retain, summary.size, None);
            let packet_id = usize::from(summary.packet_id);
            // Only QoS 2 packet ids are stored; two messages never share one (the id of a lost
            // session is cleared before it is given again), but a file is checked, not trusted.
            if summary.qos == QoS::ExactlyOnce && packet_id != 0 && queue.holders[packet_id] == 0 {
                queue.holders[packet_id] = summary.id;
                queue.qos2_in_flight += 1;
                entry.packet_id = summary.packet_id;
                entry.sent = true;
                entry.released = summary.released;
            }
            queue.entries.insert(summary.id, entry);
        }
        queue
    }

    /// Messages accepted and not acknowledged.
    pub fn len(&self) -> usize {
        self.messages
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the file holds or will hold once the writes queued are done: `flush()` ends at 0.
    pub fn unsettled(&self) -> usize {
        self.messages + self.deletes_unwritten
    }

    /// Accepts a message: it is queued for writing, and joins the queue once written.
    pub fn accept(&mut self, qos: QoS, retain: bool, body: Body) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.messages += 1;
        self.bytes += body.size();
        let message = NewMessage {
            id,
            qos,
            retain,
            body,
        };
        self.work.changes.inserts.push(message);
        id
    }

    /// Takes what the writer should do now.
    pub fn take_work(&mut self) -> Work {
        self.reading_back |= self.work.read_back.is_some();
        std::mem::take(&mut self.work)
    }

    pub fn has_work(&self) -> bool {
        !self.work.is_empty()
    }

    /// Gives changes that could not be written back, to be written with the next ones (inserts
    /// are never given back: their callers are told).
    pub fn retry(&mut self, changes: Changes) {
        let work = &mut self.work.changes;
        let deletes = std::mem::replace(&mut work.deletes, changes.deletes);
        work.deletes.extend(deletes);
        let packet_ids = std::mem::replace(&mut work.packet_ids, changes.packet_ids);
        work.packet_ids.extend(packet_ids);
        let releases = std::mem::replace(&mut work.releases, changes.releases);
        work.releases.extend(releases);
    }

    /// Messages that were written: they join the queue.
    pub fn stored(&mut self, inserts: Vec<NewMessage>) {
        for message in inserts {
            let size = message.body.size();
            let body = (self.resident + size <= RESIDENT_LIMIT).then_some(message.body);
            if body.is_some() {
                self.resident += size;
            }
            let entry = Entry::new(message.qos, message.retain, size, body);
            self.entries.insert(message.id, entry);
        }
    }

    /// Messages accepted but not stored (the write failed, or their caller gave up first).
    pub fn not_stored(&mut self, messages: &[NewMessage]) {
        for message in messages {
            self.messages -= 1;
            self.bytes -= message.body.size();
        }
    }

    /// The other changes were written: deletes, packet ids, releases.
    pub fn written(&mut self, changes: &Changes) {
        self.deletes_unwritten -= changes.deletes.len();
        let persisted = changes.packet_ids.iter().map(|(id, _)| id);
        for id in persisted.chain(&changes.releases) {
            if let Some(entry) = self.entries.get_mut(id) {
                entry.persisting -= 1;
            }
        }
        self.pubrels.extend(&changes.releases);
    }

    /// Bodies read back from the file.
    pub fn read_back(&mut self, bodies: Vec<(u64, Body)>) {
        self.reading_back = false;
        for (id, body) in bodies {
            if let Some(entry) = self.entries.get_mut(&id) {
                if entry.body.is_none() {
                    self.resident += body.size();
                    entry.body = Some(body);
                }
            }
        }
    }

    /// A connection is up (`session_present`: the broker kept the session). Returns its number,
    /// which `ready` takes.
    pub fn link_up(&mut self, session_present: bool) -> u64 {
        self.generation += 1;
        self.cursor = 0;
        self.pubrels.clear();
        self.resends.clear();
        for (id, entry) in &mut self.entries {
            entry.handed = 0;
            if entry.packet_id == 0 {
                continue;
            }
            if session_present {
                self.resends.push_back(*id);
                continue;
            }
            // The broker forgot the packet ids: forget them too (QoS 2 ones in the file first,
            // so that one id is never stored for two messages).
            self.holders[usize::from(entry.packet_id)] = 0;
            if entry.qos == QoS::ExactlyOnce {
                self.qos2_in_flight -= 1;
                entry.persisting += 1;
                self.work.changes.packet_ids.push((*id, 0));
            }
            entry.packet_id = 0;
            entry.sent = false;
            entry.released = false;
        }
        self.generation
    }

    /// The acknowledgement of `packet_id` arrived (`qos` 1: PUBACK, 2: PUBCOMP): its message
    /// leaves the queue and is deleted from the file. Returns whether it was one of ours.
    pub fn acknowledged(&mut self, packet_id: u16, qos: QoS) -> bool {
        let Some(id) = self.holder(packet_id) else {
            return false;
        };
        if self.entries.get(&id).is_none_or(|entry| entry.qos != qos) {
            return false;
        }
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        self.holders[usize::from(packet_id)] = 0;
        if qos == QoS::ExactlyOnce {
            self.qos2_in_flight -= 1;
        }
        self.messages -= 1;
        self.bytes -= entry.size;
        if entry.body.is_some() {
            self.resident -= entry.size;
        }
        self.deletes_unwritten += 1;
        self.work.changes.deletes.push(id);
        true
    }

    /// The broker closed the current connection while a PUBLISH of at least `large` bytes was in
    /// flight: each such message in flight counts it, and one counted `CLOSES_BEFORE_DROPPING`
    /// times is dropped (deleted from the file). Returns the topics and sizes of those dropped.
    pub fn closed_with_large_in_flight(&mut self, large: usize) -> Vec<(String, usize)> {
        let generation = self.generation;
        let suspects: Vec<u64> = self
            .entries
            .iter_mut()
            .filter(|(_, entry)| {
                entry.handed == generation && !entry.released && entry.size >= large
            })
            .filter_map(|(id, entry)| {
                entry.closes += 1;
                (entry.closes >= CLOSES_BEFORE_DROPPING).then_some(*id)
            })
            .collect();
        let mut dropped = Vec::new();
        for id in suspects {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let topic = entry
                .body
                .as_ref()
                .map_or_else(String::new, |b| b.topic.clone());
            dropped.push((topic, entry.size));
            self.acknowledged(entry.packet_id, entry.qos);
        }
        dropped
    }

    /// A PUBREC arrived for `packet_id`: the release is written, then the PUBREL is sent.
    pub fn received(&mut self, packet_id: u16) {
        let Some(id) = self.holder(packet_id) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.qos != QoS::ExactlyOnce || entry.released {
            return;
        }
        entry.released = true;
        entry.persisting += 1;
        entry.handed = 0;
        self.work.changes.releases.push(id);
    }

    /// The topic of the message holding `packet_id` (one handed over has its body in memory).
    pub fn topic(&self, packet_id: u16) -> Option<String> {
        let entry = self.entries.get(&self.holder(packet_id)?)?;
        entry.body.as_ref().map(|body| body.topic.clone())
    }

    fn holder(&self, packet_id: u16) -> Option<u64> {
        let holder = *self.holders.get(usize::from(packet_id))?;
        (holder != 0).then_some(holder)
    }

    /// The requests to hand to rumqttc now on connection `generation`, in order; None when that
    /// connection is no longer the current one.
    pub fn ready(&mut self, generation: u64) -> Option<Vec<StoredRequest>> {
        if generation != self.generation {
            return None;
        }
        let mut requests = Vec::new();
        for id in std::mem::take(&mut self.pubrels) {
            if let Some(entry) = self.entries.get_mut(&id).filter(|entry| entry.released) {
                requests.extend(pubrel(entry, generation));
            }
        }
        let read_from = match self.resend(generation, &mut requests) {
            Some(first) => Some(first),
            None => self.send_in_order(generation, &mut requests),
        };
        if let Some(first) = read_from {
            self.plan_read_back(first);
        }
        Some(requests)
    }

    /// Sends again what was in flight when a kept session's last connection ended; returns the
    /// first message whose body must be read back before going on.
    fn resend(&mut self, generation: u64, requests: &mut Vec<StoredRequest>) -> Option<u64> {
        while let Some(&id) = self.resends.front() {
            if let Some(entry) = self.entries.get_mut(&id) {
                let fresh = entry.handed != generation && entry.packet_id != 0;
                if fresh && entry.released {
                    requests.extend(pubrel(entry, generation));
                } else if fresh && entry.persisting == 0 {
                    let Some(publish) = publish(entry, generation) else {
                        return Some(id);
                    };
                    requests.push(publish);
                }
            }
            self.resends.pop_front();
        }
        None
    }

    /// Hands over the messages from the cursor on, in order, while packet ids are free; returns
    /// the first message whose body must be read back before going on.
    fn send_in_order(&mut self, generation: u64, requests: &mut Vec<StoredRequest>) -> Option<u64> {
        let Queue {
            entries,
            holders,
            last_packet_id,
            qos2_in_flight,
            cursor,
            work,
            ..
        } = self;
        // Past a message that waits (for its packet id to be written), later ones may get their
        // packet ids, so that one write covers several QoS 2 messages, but nothing is sent.
        let mut waiting = false;
        for (&id, entry) in entries.range_mut(*cursor..) {
            if entry.released {
                requests.extend(pubrel(entry, generation));
            } else if entry.handed != generation {
                if entry.packet_id == 0 {
                    let qos2 = entry.qos == QoS::ExactlyOnce;
                    if qos2 && *qos2_in_flight >= QOS2_IN_FLIGHT {
                        return None;
                    }
                    let packet_id = free_packet_id(holders, last_packet_id, id)?;
                    entry.packet_id = packet_id;
                    if qos2 {
                        *qos2_in_flight += 1;
                        entry.persisting += 1;
                        work.changes.packet_ids.push((id, packet_id));
                    }
                }
                if entry.persisting > 0 {
                    waiting = true;
                }
                if waiting {
                    continue;
                }
                let Some(publish) = publish(entry, generation) else {
                    return Some(id);
                };
                requests.push(publish);
            }
            if !waiting {
                *cursor = id + 1;
            }
        }
        None
    }

    /// Asks for the bodies of the messages from `first` on, about `READ_BACK_BYTES` of them.
    fn plan_read_back(&mut self, first: u64) {
        if self.reading_back || self.work.read_back.is_some() {
            return;
        }
        let mut last = first;
        let mut bytes = 0;
        for (&id, entry) in self.entries.range(first..) {
            if entry.body.is_some() || (bytes > 0 && bytes + entry.size > READ_BACK_BYTES) {
                break;
            }
            bytes += entry.size;
            last = id;
        }
        self.work.read_back = Some((first, last));
    }
}

/// The PUBLISH of a message, handed over now on connection `generation`; None when its body is
/// on disk only.
fn publish(entry: &mut Entry, generation: u64) -> Option<StoredRequest> {
    let body = entry.body.as_ref()?;
    let publish = StoredPublish {
        dup: entry.sent,
        qos: entry.qos,
        retain: entry.retain,
        topic: body.topic.clone(),
        pkid: entry.packet_id,
        payload: body.payload.clone(),
        properties: body.properties.clone(),
    };
    entry.sent = true;
    entry.handed = generation;
    Some(StoredRequest::Publish(publish))
}

/// The PUBREL of a released message, unless it was handed over on this connection or its
/// release is still being written.
fn pubrel(entry: &mut Entry, generation: u64) -> Option<StoredRequest> {
    if entry.persisting > 0 || entry.handed == generation {
        return None;
    }
    entry.handed = generation;
    Some(StoredRequest::PubRel(entry.packet_id))
}

/// The next free packet id after the last one given (ids cycle, so one is not reused at once),
/// now held by message `id`; None when all are in flight.
fn free_packet_id(holders: &mut [u64], last: &mut u16, id: u64) -> Option<u16> {
    let count = MAX_PACKET_ID;
    (1..=count)
        .map(|step| (*last + step - 1) % count + 1)
        .find(|&candidate| holders[usize::from(candidate)] == 0)
        .inspect(|&packet_id| {
            holders[usize::from(packet_id)] = id;
            *last = packet_id;
        })
}

#[cfg(test)]
mod tests;
