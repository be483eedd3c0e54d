//! The outbox on disk (`persistence="path.sqlite"`): a client's QoS 1/2 publishes are committed to
//! an SQLite file before `publish()` returns, handed to rumqttc in order whenever a connection is
//! up, and deleted when acknowledged; what is left is sent again after a reconnect or a restart.
//!
//! Three parts: the file (`store`), the state in memory (`queue`), and here the threads around
//! them. A writer thread per outbox owns the file and commits in groups: whatever was queued while
//! it wrote the last group (new messages from any number of publishers, deletes, packet ids,
//! releases) goes into the next transaction, so 64 publishes in flight cost a few commits, not
//! 64. It never touches Python (no GIL, no logging), so the client's owner may wait for it. On
//! each connection a feeder task of the driver's hands what is ready to rumqttc's channel.

mod queue;
mod store;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::QoS;
use tokio::sync::{oneshot, watch, Notify};

use crate::errors::DriverError;
use crate::lock::lock;
use crate::protocol::{encode_properties, Outbound, Requests};
use queue::{Queue, Work};
use store::{Body, Changes, NewMessage, Store};

pub use queue::CLOSES_BEFORE_DROPPING;
pub use store::Durability;

/// How long the writer waits before writing again after a write failed (a full disk).
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// `persistence_max_messages` and `persistence_max_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub messages: usize,
    pub bytes: usize,
}

/// Told once a message is stored (committed), or why it was not.
pub type StoredReceiver = oneshot::Receiver<Result<(), DriverError>>;
type StoredReply = oneshot::Sender<Result<(), DriverError>>;

/// The queue and what the writer thread is doing, under one lock.
struct State {
    queue: Queue,
    /// The callers waiting for the messages accepted and not written yet, in order.
    waiting: Vec<StoredReply>,
    writer_asleep: bool,
    closing: bool,
}

/// A client's outbox on disk. Shared by the client's core (which stores), its driver (which
/// reports acknowledgements and runs the feeder) and the writer thread; `close()` ends the writer
/// thread, which closes the file and gives up its lock.
pub struct DiskOutbox {
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes the current connection's feeder.
    ready: Notify,
    /// What the file holds or will hold once queued writes are done (`flush()` waits for 0).
    unsettled: watch::Sender<usize>,
    writer: Mutex<Option<JoinHandle<()>>>,
    limits: Limits,
    /// Transactions written, for the tests of group commit.
    #[cfg(test)]
    commits: std::sync::atomic::AtomicUsize,
}

impl DiskOutbox {
    /// Opens (or creates) the outbox file and starts its writer thread. The error says what is
    /// wrong with the file.
    pub fn open(
        path: &Path,
        durability: Durability,
        limits: Limits,
    ) -> Result<Arc<DiskOutbox>, String> {
        let (store, stored) = Store::open(path, durability)?;
        let queue = Queue::new(stored);
        let outbox = Arc::new(DiskOutbox {
            unsettled: watch::Sender::new(queue.unsettled()),
            state: Mutex::new(State {
                queue,
                waiting: Vec::new(),
                writer_asleep: false,
                closing: false,
            }),
            work: Condvar::new(),
            ready: Notify::new(),
            writer: Mutex::new(None),
            limits,
            #[cfg(test)]
            commits: std::sync::atomic::AtomicUsize::new(0),
        });
        let writer = outbox.clone();
        let thread = std::thread::Builder::new()
            .name("umqtt-outbox".into())
            .spawn(move || writer.write(store))
            .map_err(|e| format!("persistence: cannot start the outbox's thread: {e}"))?;
        *lock(&outbox.writer) = Some(thread);
        Ok(outbox)
    }

    /// Messages stored (or being stored) and not acknowledged.
    pub fn len(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Accepts a QoS 1/2 message, with its MQTT 5 properties; the receiver is told once it is
    /// committed. A full outbox refuses it at once, and drops nothing.
    pub fn store(&self, publish: Outbound) -> Result<StoredReceiver, DriverError> {
        let properties = (publish
            .properties
            .as_ref()
            .map(encode_properties)
            .transpose())
        .map_err(|why| DriverError::Outbox(format!("the message was not stored: {why}")))?;
        let (qos, retain) = (publish.qos, publish.retain);
        let body = Body {
            topic: publish.topic,
            payload: publish.payload,
            properties,
        };
        let mut state = lock(&self.state);
        if state.closing {
            return Err(DriverError::Closed);
        }
        let queue = &state.queue;
        let full = if queue.len() >= self.limits.messages {
            Some(format!(
                "{} messages wait (persistence_max_messages={})",
                queue.len(),
                self.limits.messages
            ))
        } else if queue.bytes() + body.size() > self.limits.bytes {
            Some(format!(
                "{} bytes wait and this message has {} (persistence_max_bytes={}; topics, \
                 payloads and properties count)",
                queue.bytes(),
                body.size(),
                self.limits.bytes
            ))
        } else {
            None
        };
        if let Some(why) = full {
            return Err(DriverError::Outbox(format!(
                "the outbox is full: {why}; the message was not stored"
            )));
        }
        state.queue.accept(qos, retain, body);
        let (reply, receiver) = oneshot::channel();
        state.waiting.push(reply);
        self.changed(state);
        Ok(receiver)
    }

    /// Waits until every stored message is acknowledged and deleted from the file.
    pub async fn settled(&self) {
        let mut unsettled = self.unsettled.subscribe();
        let _ = unsettled.wait_for(|count| *count == 0).await;
    }

    /// Ends the writer thread once it has written what was queued: the file is closed and its
    /// lock given up when this returns. Messages stored later are refused.
    pub fn close(&self) {
        lock(&self.state).closing = true;
        self.work.notify_all();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    // ---- the driver's side ----

    /// A connection is up: the feeder to run on it (`session_present`: the broker kept the
    /// session, so what was in flight goes again with its packet ids).
    pub fn link_up(
        self: &Arc<Self>,
        session_present: bool,
        requests: Requests,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let generation = {
            let mut state = lock(&self.state);
            let generation = state.queue.link_up(session_present);
            self.changed(state);
            generation
        };
        self.clone().feed(requests, generation)
    }

    /// PUBACK: a QoS 1 message is delivered.
    pub fn on_puback(&self, packet_id: u16) {
        self.acknowledged(packet_id, QoS::AtLeastOnce);
    }

    /// PUBCOMP: a QoS 2 message is delivered.
    pub fn on_pubcomp(&self, packet_id: u16) {
        self.acknowledged(packet_id, QoS::ExactlyOnce);
    }

    /// An acknowledgement with a failure reason code (MQTT 5: 0x80 or above; `qos` 1: PUBACK,
    /// 2: PUBREC or PUBCOMP): the broker refused the message for good, so it is removed as a
    /// delivered one is, never sent again. Returns its topic when it was one of the outbox's.
    pub fn on_refused(&self, packet_id: u16, qos: QoS) -> Option<String> {
        let topic = lock(&self.state).queue.topic(packet_id)?;
        self.acknowledged(packet_id, qos).then_some(topic)
    }

    /// The broker closed the connection while a PUBLISH of at least `large` bytes was in
    /// flight; returns the topics and sizes of the messages dropped for it (see `queue`).
    pub fn closed_with_large_in_flight(&self, large: usize) -> Vec<(String, usize)> {
        let mut state = lock(&self.state);
        let dropped = state.queue.closed_with_large_in_flight(large);
        self.changed(state);
        dropped
    }

    /// PUBREC: the release of a QoS 2 message is written, then its PUBREL sent.
    pub fn on_pubrec(&self, packet_id: u16) {
        let mut state = lock(&self.state);
        state.queue.received(packet_id);
        self.changed(state);
    }

    /// Whether the acknowledgement was of one of the outbox's messages.
    fn acknowledged(&self, packet_id: u16, qos: QoS) -> bool {
        let mut state = lock(&self.state);
        let ours = state.queue.acknowledged(packet_id, qos);
        if ours {
            self.changed(state);
            // A packet id is free: the feeder may hand over the next message.
            self.ready.notify_one();
        }
        ours
    }

    /// Publishes what the queue now holds and wakes the writer if it has work.
    fn changed(&self, state: MutexGuard<'_, State>) {
        let unsettled = state.queue.unsettled();
        let wake_writer = state.writer_asleep && state.queue.has_work();
        drop(state);
        self.unsettled.send_if_modified(|count| {
            let changed = *count != unsettled;
            *count = unsettled;
            changed
        });
        if wake_writer {
            self.work.notify_one();
        }
    }

    /// Hands what is ready to rumqttc, in order, for as long as connection `generation` is the
    /// current one (the driver also aborts it when the connection ends).
    async fn feed(self: Arc<Self>, requests: Requests, generation: u64) {
        loop {
            let ready = self.ready.notified();
            let batch = {
                let mut state = lock(&self.state);
                let batch = state.queue.ready(generation);
                self.changed(state);
                batch
            };
            let Some(batch) = batch else {
                return;
            };
            if batch.is_empty() {
                ready.await;
                continue;
            }
            for request in batch {
                if requests.send_stored(request).await.is_err() {
                    return;
                }
            }
        }
    }

    // ---- the writer thread ----

    /// Writes what is queued, a group per transaction, until closed.
    fn write(&self, mut store: Store) {
        let mut pause = None;
        while let Some((work, waiting)) = self.next_work(pause.take()) {
            let Work {
                mut changes,
                read_back,
            } = work;
            let inserts = std::mem::take(&mut changes.inserts);
            // A caller that gave up (timeout, Ctrl-C, cancellation) was told the message was not
            // stored: then it is not.
            let (inserts, abandoned): (Vec<_>, Vec<_>) = inserts
                .into_iter()
                .zip(waiting)
                .partition(|(_, reply)| !reply.is_closed());
            let (inserts, replies): (Vec<NewMessage>, Vec<StoredReply>) =
                inserts.into_iter().unzip();
            let abandoned: Vec<NewMessage> =
                abandoned.into_iter().map(|(message, _)| message).collect();
            let outcome = write_changes(&mut store, changes, inserts);
            #[cfg(test)]
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let bodies = read_back.map(|(first, last)| store.bodies(first, last));
            let mut state = lock(&self.state);
            let queue = &mut state.queue;
            queue.not_stored(&abandoned);
            let stored = match outcome.inserts {
                Ok(inserts) => {
                    queue.stored(inserts);
                    Ok(())
                }
                Err((inserts, error)) => {
                    queue.not_stored(&inserts);
                    Err(DriverError::Outbox(format!(
                        "the outbox could not store the message ({}); what it stored before \
                         is kept",
                        describe(&error)
                    )))
                }
            };
            match outcome.others {
                Ok(written) => queue.written(&written),
                Err(failed) => {
                    queue.retry(failed);
                    pause = Some(RETRY_PAUSE);
                }
            }
            match bodies {
                Some(Ok(bodies)) => queue.read_back(bodies),
                Some(Err(_)) => {
                    queue.read_back(Vec::new());
                    pause = Some(RETRY_PAUSE);
                }
                None => {}
            }
            let emptied = queue.unsettled() == 0;
            self.changed(state);
            for reply in replies {
                let _ = reply.send(stored.clone());
            }
            self.ready.notify_one();
            if emptied {
                let _ = store.shrink();
            }
        }
    }

    /// Waits for work (after `pause`, if given) and takes it with the callers of its new
    /// messages; None once closed with nothing left to write.
    fn next_work(&self, pause: Option<Duration>) -> Option<(Work, Vec<StoredReply>)> {
        let mut state = lock(&self.state);
        if let Some(pause) = pause.filter(|_| !state.closing) {
            state.writer_asleep = true;
            state = self
                .work
                .wait_timeout(state, pause)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
            state.writer_asleep = false;
        }
        while !state.queue.has_work() {
            if state.closing {
                return None;
            }
            state.writer_asleep = true;
            state = self
                .work
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.writer_asleep = false;
        }
        let work = state.queue.take_work();
        let waiting = std::mem::take(&mut state.waiting);
        Some((work, waiting))
    }
}

/// A write's failure in words, with the likely cause of SQLite's terse I/O errors.
fn describe(error: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    match error.sqlite_error_code() {
        Some(DiskFull | SystemIoFailure) => {
            format!("{error}: the disk is full, a file size limit was reached, or the disk failed")
        }
        _ => error.to_string(),
    }
}

/// How a group of changes went: the new messages (given back either way), and the rest (given
/// back when they could not be written, to try again).
struct Outcome {
    inserts: Result<Vec<NewMessage>, (Vec<NewMessage>, rusqlite::Error)>,
    others: Result<Changes, Changes>,
}

/// Writes new messages and other changes in one transaction; if that fails, the other changes
/// alone, so that deletes and releases are not held back by messages that do not fit.
fn write_changes(store: &mut Store, mut changes: Changes, inserts: Vec<NewMessage>) -> Outcome {
    changes.inserts = inserts;
    match store.write(&changes) {
        Ok(()) => {
            let inserts = std::mem::take(&mut changes.inserts);
            Outcome {
                inserts: Ok(inserts),
                others: Ok(changes),
            }
        }
        Err(error) => {
            let inserts = std::mem::take(&mut changes.inserts);
            let others = if changes.is_empty() || store.write(&changes).is_ok() {
                Ok(changes)
            } else {
                Err(changes)
            };
            let inserts = if inserts.is_empty() {
                Ok(inserts)
            } else {
                Err((inserts, error))
            };
            Outcome { inserts, others }
        }
    }
}

#[cfg(test)]
mod tests;
