//! The outbox with its writer thread and a real file: group commit under concurrent publishers,
//! order, the feeder's hand-over and deletion on acknowledgement, limits, callers that give up,
//! and the lock given up by `close()`.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use rumqttc::{EventLoop, MqttOptions, Request};
use rusqlite::Connection;

use super::*;
use crate::test_support::{wait_for, within, Folder};

const LIMITS: Limits = Limits {
    messages: 100_000,
    bytes: 1 << 30,
};

fn open(path: &Path, limits: Limits) -> Arc<DiskOutbox> {
    DiskOutbox::open(path, Durability::Normal, limits).expect("the outbox opens")
}

/// An outbox (`outbox.sqlite` in the folder) whose writer waits on its first write: another
/// connection holds the file's write lock until it commits (`COMMIT` on the connection returned).
fn held_up() -> (Folder, Arc<DiskOutbox>, Connection) {
    let folder = Folder::new();
    let path = folder.file("outbox.sqlite");
    let outbox = open(&path, LIMITS);
    let other = Connection::open(&path).expect("opened");
    other.execute_batch("BEGIN IMMEDIATE").expect("locked");
    (folder, outbox, other)
}

/// A new outbox (`outbox.sqlite` in the folder) holding `count` messages of `qos`, their
/// payload their number; the last one retained.
fn outbox_with(qos: QoS, count: u8) -> (Folder, Arc<DiskOutbox>) {
    let folder = Folder::new();
    let outbox = open(&folder.file("outbox.sqlite"), LIMITS);
    for n in 0..count {
        let receiver = outbox.store(message(
            "t".into(),
            Bytes::from(vec![n]),
            qos,
            n + 1 == count,
        ));
        stored(receiver.expect("accepted")).expect("stored");
    }
    (folder, outbox)
}

/// A message as `publish()` hands it to the outbox.
fn message(topic: String, payload: Bytes, qos: QoS, retain: bool) -> Outbound {
    Outbound {
        topic,
        payload,
        qos,
        retain,
        properties: None,
    }
}

fn stored(receiver: StoredReceiver) -> Result<(), DriverError> {
    receiver.blocking_recv().expect("an answer")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// What the feeder handed to rumqttc's channel (taken out of it).
fn taken(eventloop: &mut EventLoop) -> Vec<Request> {
    eventloop.clean();
    eventloop.pending.drain(..).collect()
}

/// Runs the feeder of a new connection until it has handed over `count` requests.
fn hand_over(outbox: &Arc<DiskOutbox>, session_present: bool, count: usize) -> Vec<Request> {
    let options = MqttOptions::new("test", "localhost", 1883);
    let (requests, mut eventloop) = rumqttc::AsyncClient::new(options, 256);
    let feed = outbox.link_up(session_present, Requests::V4(requests));
    runtime().block_on(async {
        let feeder = tokio::spawn(feed);
        let mut handed = Vec::new();
        while handed.len() < count {
            tokio::task::yield_now().await;
            handed.extend(taken(&mut eventloop));
        }
        feeder.abort();
        handed
    })
}

fn publish_of(request: &Request) -> &rumqttc::Publish {
    match request {
        Request::Publish(publish) => publish,
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

#[test]
fn concurrent_publishers_are_committed_in_groups_and_each_in_its_order() {
    within("group commit", || {
        // The writer waits on its first group, and everything stored meanwhile makes the second.
        let (folder, outbox, other) = held_up();
        let path = folder.file("outbox.sqlite");
        let receivers: Vec<StoredReceiver> = (0..64)
            .map(|n| {
                let payload = Bytes::from(format!("{n}"));
                outbox.store(message("t".into(), payload, QoS::AtLeastOnce, false))
            })
            .collect::<Result<_, _>>()
            .expect("accepted");
        other.execute_batch("COMMIT").expect("unlocked");
        for receiver in receivers {
            stored(receiver).expect("stored");
        }
        assert!(outbox.commits.load(Ordering::SeqCst) <= 2);

        // Threads storing at once, each waiting for each commit.
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    for n in 0..100 {
                        let payload = Bytes::from(format!("{thread}:{n}"));
                        let receiver = outbox
                            .store(message("t".into(), payload, QoS::AtLeastOnce, false))
                            .expect("accepted");
                        stored(receiver).expect("stored");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(outbox.len(), 864);
        let handed = hand_over(&outbox, false, 100);
        let payloads: Vec<String> = handed
            .iter()
            .map(|r| String::from_utf8(publish_of(r).payload.to_vec()).expect("text"))
            .collect();
        let expected: Vec<String> = (0..64).map(|n| n.to_string()).collect();
        assert_eq!(payloads[..64], expected[..]);
        outbox.close();

        // Each thread's messages are in the file in the order it stored them.
        let (store, summaries) = Store::open(&path, Durability::Normal).expect("reopened");
        assert_eq!(summaries.len(), 864);
        let last = summaries.last().expect("some").id;
        let mut next = [0usize; 8];
        for (_, body) in store.bodies(65, last).expect("read") {
            let text = String::from_utf8(body.payload.to_vec()).expect("text");
            let (thread, n) = text.split_once(':').expect("thread:n");
            let thread: usize = thread.parse().expect("a number");
            assert_eq!(n.parse::<usize>().expect("a number"), next[thread]);
            next[thread] += 1;
        }
        assert_eq!(next, [100; 8]);
    });
}

#[test]
fn acknowledged_messages_are_deleted_and_flush_ends_when_none_is_left() {
    within("acknowledgements", || {
        let (folder, outbox) = outbox_with(QoS::AtLeastOnce, 5);
        let handed = hand_over(&outbox, false, 5);
        let sent: Vec<(u16, Vec<u8>, bool)> = handed
            .iter()
            .map(publish_of)
            .map(|p| (p.pkid, p.payload.to_vec(), p.retain))
            .collect();
        let expected: Vec<(u16, Vec<u8>, bool)> = (0..5u8)
            .map(|n| (u16::from(n) + 1, vec![n], n == 4))
            .collect();
        assert_eq!(sent, expected);
        for packet_id in [2, 1, 5, 4] {
            outbox.on_puback(packet_id);
        }
        assert_eq!(outbox.len(), 1);
        wait_for("the deletes written", || *outbox.unsettled.borrow() == 1);
        outbox.on_puback(3);
        runtime().block_on(outbox.settled());
        outbox.close();
        let path = folder.file("outbox.sqlite");
        let (_, summaries) = Store::open(&path, Durability::Normal).expect("reopened");
        assert!(summaries.is_empty());
    });
}

#[test]
fn what_was_not_acknowledged_is_there_after_closing_and_reopening() {
    within("reopening", || {
        let (folder, outbox) = outbox_with(QoS::ExactlyOnce, 3);
        let path = folder.file("outbox.sqlite");
        let refusal = DiskOutbox::open(&path, Durability::Full, LIMITS).err();
        assert!(refusal.is_some_and(|reason| reason.contains("in use")));
        outbox.close();
        let reopened = DiskOutbox::open(&path, Durability::Full, LIMITS).expect("reopened");
        assert_eq!(reopened.len(), 3);
        // The QoS 2 messages get packet ids written before they leave, then leave in order.
        let handed = hand_over(&reopened, false, 3);
        let payloads: Vec<u8> = handed.iter().map(|r| publish_of(r).payload[0]).collect();
        assert_eq!(payloads, [0, 1, 2]);
        reopened.close();
        let (_, summaries) = Store::open(&path, Durability::Normal).expect("reopened");
        let ids: Vec<u16> = summaries.iter().map(|s| s.packet_id).collect();
        assert_eq!(ids, [1, 2, 3]);
    });
}

#[test]
fn a_full_outbox_refuses_at_once_and_keeps_what_it_has() {
    let folder = Folder::new();
    let limits = Limits {
        messages: 2,
        bytes: 10,
    };
    let outbox = open(&folder.file("outbox.sqlite"), limits);
    let store = |payload: &'static [u8]| {
        outbox.store(message(
            "t".into(),
            Bytes::from_static(payload),
            QoS::AtLeastOnce,
            false,
        ))
    };
    let too_big = store(b"0123456789").err().map(|e| e.to_string());
    assert!(too_big.is_some_and(|e| e.contains("persistence_max_bytes=10")));
    stored(store(b"a").expect("accepted")).expect("stored");
    stored(store(b"b").expect("accepted")).expect("stored");
    let third = store(b"c").err().map(|e| e.to_string());
    assert!(third.is_some_and(|e| e.contains("persistence_max_messages=2")));
    assert_eq!(outbox.len(), 2);
    outbox.close();
    assert!(matches!(store(b"d"), Err(DriverError::Closed)));
}

#[test]
fn a_message_whose_caller_gave_up_before_its_commit_is_not_stored() {
    within("abandoned", || {
        let (folder, outbox, other) = held_up();
        let kept = outbox.store(message(
            "t".into(),
            Bytes::from_static(b"kept"),
            QoS::AtLeastOnce,
            false,
        ));
        wait_for("the writer on its first group", || {
            lock(&outbox.state).waiting.is_empty()
        });
        let given_up = outbox.store(message(
            "t".into(),
            Bytes::from_static(b"no"),
            QoS::AtLeastOnce,
            false,
        ));
        drop(given_up.expect("accepted"));
        other.execute_batch("COMMIT").expect("unlocked");
        stored(kept.expect("accepted")).expect("stored");
        wait_for("the second group", || outbox.len() == 1);
        outbox.close();
        let path = folder.file("outbox.sqlite");
        let (_, summaries) = Store::open(&path, Durability::Normal).expect("reopened");
        assert_eq!(summaries.len(), 1);
    });
}
