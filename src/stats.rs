//! A client's counters, for `stats()`: messages and bytes each way, reconnects, the last error,
//! what is in flight and the outbox's messages the broker refused. Cheap to keep: only the connection's driver task writes them (through the
//! packet observer, `packets`, and the driver itself), and the runtime runs one task at a time, so
//! a counter is a relaxed load and store, with no read-modify-write per packet; any thread reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::lock::lock;

/// A number one writer at a time changes and any thread reads.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Not atomic as a whole: correct because writers never run at the same time.
    fn add(&self, n: u64) {
        self.set(self.get().wrapping_add(n));
    }

    fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Stats {
    messages_sent: Counter,
    bytes_sent: Counter,
    messages_received: Counter,
    bytes_received: Counter,
    reconnects: Counter,
    inflight: Counter,
    outbox_refused: Counter,
    last_error: Mutex<Option<String>>,
}

/// What `stats()` reports of the counters (the client adds what waits in its queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    pub reconnects: u64,
    pub inflight: u64,
    pub outbox_refused: u64,
    pub last_error: Option<String>,
}

impl Stats {
    /// A packet about to be written: its `bytes`, and a message if it is a PUBLISH.
    pub fn on_sent(&self, publish: bool, bytes: usize) {
        if publish {
            self.messages_sent.add(1);
        }
        self.bytes_sent.add(bytes as u64);
    }

    /// A packet read.
    pub fn on_received(&self, publish: bool, bytes: usize) {
        if publish {
            self.messages_received.add(1);
        }
        self.bytes_received.add(bytes as u64);
    }

    /// The broker refused a message of the outbox on disk for good (MQTT 5: a reason code of
    /// 0x80 or above): it was removed, not to be sent again. Written by the driver's task.
    pub fn on_outbox_refused(&self) {
        self.outbox_refused.add(1);
    }

    pub fn on_reconnected(&self) {
        self.reconnects.add(1);
    }

    /// QoS 1/2 PUBLISHes written and not yet acknowledged (rumqttc's count, after each event).
    pub fn set_inflight(&self, inflight: u16) {
        self.inflight.set(u64::from(inflight));
    }

    /// Why the connection last failed or was lost, as the exception or the log said it.
    pub fn set_last_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            messages_sent: self.messages_sent.get(),
            bytes_sent: self.bytes_sent.get(),
            messages_received: self.messages_received.get(),
            bytes_received: self.bytes_received.get(),
            reconnects: self.reconnects.get(),
            inflight: self.inflight.get(),
            outbox_refused: self.outbox_refused.get(),
            last_error: lock(&self.last_error).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn packets_count_as_messages_and_bytes_each_way() {
        let stats = Stats::default();
        stats.on_sent(true, 12);
        stats.on_sent(false, 2);
        stats.on_received(false, 4);
        stats.on_received(true, 12);
        stats.on_outbox_refused();
        let seen = stats.snapshot();
        assert_eq!((seen.messages_sent, seen.bytes_sent), (1, 12 + 2));
        assert_eq!((seen.messages_received, seen.bytes_received), (1, 4 + 12));
        assert_eq!(seen.outbox_refused, 1);
        assert_eq!(seen.last_error, None);
    }

    /// One writer, readers on other threads: a reader never sees a count go back.
    #[test]
    fn readers_see_a_growing_count_while_the_writer_counts() {
        const PACKETS: u64 = 200_000;
        let stats = Arc::new(Stats::default());
        let writer = {
            let stats = stats.clone();
            std::thread::spawn(move || {
                for _ in 0..PACKETS {
                    stats.on_sent(false, 2);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    let mut last = 0;
                    while last < 2 * PACKETS {
                        let now = stats.snapshot().bytes_sent;
                        assert!(now >= last, "{now} after {last}");
                        last = now;
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        writer.join().expect("the writer");
        for reader in readers {
            reader.join().expect("a reader");
        }
        assert_eq!(stats.snapshot().bytes_sent, 2 * PACKETS);
    }
}
