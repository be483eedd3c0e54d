//! The queue's rules without a file or threads: the order of what is handed over, the packet-id
//! window, what a kept or a lost session resends, QoS 2's writes before each step, reading
//! bodies back, deletion on acknowledgement.

use bytes::Bytes;

use super::*;

fn body(n: u64) -> Body {
    Body {
        topic: format!("t/{n}"),
        payload: Bytes::from(n.to_string()),
        properties: None,
    }
}

/// Stores messages of `qos` as the writer would: accepted, written, joined to the queue.
fn store(queue: &mut Queue, qos: QoS, count: u64) -> Vec<u64> {
    let ids: Vec<u64> = (0..count)
        .map(|n| queue.accept(qos, false, body(n)))
        .collect();
    let work = queue.take_work();
    queue.stored(work.changes.inserts);
    ids
}

/// A queue of `count` messages of `qos`, stored.
fn queue_of(qos: QoS, count: u64) -> Queue {
    let mut queue = Queue::new(Vec::new());
    store(&mut queue, qos, count);
    queue
}

/// A queue of `count` messages of `qos`, handed over on a first connection (returned too).
fn in_flight(qos: QoS, count: u64) -> (Queue, u64) {
    let mut queue = queue_of(qos, count);
    let link = queue.link_up(false);
    handed(&mut queue, link);
    (queue, link)
}

/// Writes what the queue asked for (packet ids, releases, deletes), as the writer would.
fn write(queue: &mut Queue) -> Changes {
    let work = queue.take_work();
    queue.written(&work.changes);
    work.changes
}

/// (packet id, DUP, payload) of the PUBLISHes, and the packet ids of the PUBRELs, handed now.
fn handed(queue: &mut Queue, generation: u64) -> (Vec<(u16, bool, String)>, Vec<u16>) {
    let mut publishes = Vec::new();
    let mut pubrels = Vec::new();
    for request in queue.ready(generation).expect("the current connection") {
        match request {
            StoredRequest::Publish(p) => {
                let payload = String::from_utf8(p.payload.to_vec()).expect("text");
                publishes.push((p.pkid, p.dup, payload));
            }
            StoredRequest::PubRel(pkid) => pubrels.push(pkid),
        }
    }
    (publishes, pubrels)
}

fn packet_ids(publishes: &[(u16, bool, String)]) -> Vec<u16> {
    publishes.iter().map(|(id, _, _)| *id).collect()
}

#[test]
fn messages_go_in_order_a_hundred_in_flight_and_each_once_per_connection() {
    let mut queue = queue_of(QoS::AtLeastOnce, 150);
    let link = queue.link_up(false);
    let (first, _) = handed(&mut queue, link);
    assert_eq!(packet_ids(&first), (1..=100).collect::<Vec<_>>());
    let payloads: Vec<String> = first.iter().map(|(_, _, p)| p.clone()).collect();
    assert_eq!(
        payloads,
        (0..100).map(|n| n.to_string()).collect::<Vec<_>>()
    );
    assert!(first.iter().all(|(_, dup, _)| !dup));
    assert_eq!(handed(&mut queue, link).0, []);

    // Acknowledged out of order: each frees its id for the next message.
    assert!(queue.acknowledged(7, QoS::AtLeastOnce));
    assert!(queue.acknowledged(3, QoS::AtLeastOnce));
    assert!(!queue.acknowledged(3, QoS::AtLeastOnce));
    assert!(!queue.acknowledged(8, QoS::ExactlyOnce));
    let (next, _) = handed(&mut queue, link);
    assert_eq!(next, [(3, false, "100".into()), (7, false, "101".into())]);
    assert_eq!(queue.len(), 148);
    assert_eq!(write(&mut queue).deletes, [7, 3]);
    assert_eq!(queue.unsettled(), 148);
}

#[test]
fn a_kept_session_resends_what_was_in_flight_with_its_ids_first() {
    let mut queue = queue_of(QoS::AtLeastOnce, 3);
    let first = queue.link_up(false);
    assert_eq!(packet_ids(&handed(&mut queue, first).0), [1, 2, 3]);
    assert!(queue.acknowledged(2, QoS::AtLeastOnce));
    store(&mut queue, QoS::AtLeastOnce, 1);
    assert!(queue.ready(first + 1).is_none(), "no such connection yet");

    let second = queue.link_up(true);
    assert!(queue.ready(first).is_none(), "that connection is gone");
    let (again, _) = handed(&mut queue, second);
    assert_eq!(
        again,
        [
            (1, true, "0".into()),
            (3, true, "2".into()),
            (4, false, "0".into()),
        ]
    );
}

#[test]
fn a_lost_session_sends_everything_afresh() {
    let (mut queue, _) = in_flight(QoS::AtLeastOnce, 3);
    assert!(queue.acknowledged(1, QoS::AtLeastOnce));
    let second = queue.link_up(false);
    let (again, _) = handed(&mut queue, second);
    // Fresh packet ids (they go on from the last one given) and no DUP.
    assert_eq!(again, [(4, false, "1".into()), (5, false, "2".into())]);
}

#[test]
fn qos2_ids_and_releases_are_written_before_their_packets_leave() {
    let mut queue = Queue::new(Vec::new());
    let ids = store(&mut queue, QoS::ExactlyOnce, 2);
    store(&mut queue, QoS::AtLeastOnce, 1);
    let link = queue.link_up(false);
    // Nothing leaves before the packet ids are written; one write covers both QoS 2 messages,
    // and the QoS 1 message after them waits too (order).
    assert_eq!(handed(&mut queue, link), (vec![], vec![]));
    let written = write(&mut queue);
    assert_eq!(written.packet_ids, [(ids[0], 1), (ids[1], 2)]);
    assert_eq!(packet_ids(&handed(&mut queue, link).0), [1, 2, 3]);

    queue.received(1);
    queue.received(1);
    assert_eq!(handed(&mut queue, link), (vec![], vec![]));
    assert_eq!(write(&mut queue).releases, [ids[0]]);
    assert_eq!(handed(&mut queue, link), (vec![], vec![1]));
    assert!(!queue.acknowledged(1, QoS::AtLeastOnce));
    assert!(queue.acknowledged(1, QoS::ExactlyOnce));
    assert_eq!(write(&mut queue).deletes, [ids[0]]);
}

#[test]
fn after_a_restart_a_kept_session_gets_its_pubrel_and_its_dup_publish() {
    let stored = |id, packet_id, released| Summary {
        id,
        qos: QoS::ExactlyOnce,
        retain: false,
        size: 4,
        packet_id,
        released,
    };
    let mut queue = Queue::new(vec![
        stored(4, 9, true),
        stored(5, 10, false),
        stored(6, 0, false),
    ]);
    assert_eq!(queue.len(), 3);
    let link = queue.link_up(true);
    // The PUBREL needs no body; the PUBLISH needs its body from the file first.
    assert_eq!(handed(&mut queue, link), (vec![], vec![9]));
    let work = queue.take_work();
    assert_eq!(work.read_back, Some((5, 6)));
    assert_eq!(handed(&mut queue, link), (vec![], vec![]));
    queue.read_back(vec![(5, body(5)), (6, body(6))]);
    assert_eq!(handed(&mut queue, link).0, [(10, true, "5".into())]);
    // The message without a packet id gets a new one, written first (not 9 or 10: in use).
    let written = write(&mut queue);
    assert_eq!(written.packet_ids, [(6, 1)]);
    assert_eq!(handed(&mut queue, link).0, [(1, false, "6".into())]);
    // New messages number on after the stored ones.
    assert_eq!(store(&mut queue, QoS::AtLeastOnce, 1), [7]);
}

#[test]
fn a_lost_session_clears_stored_qos2_ids_in_the_file_first() {
    let mut queue = Queue::new(vec![Summary {
        id: 1,
        qos: QoS::ExactlyOnce,
        retain: true,
        size: 1,
        packet_id: 3,
        released: true,
    }]);
    queue.read_back(vec![(1, body(1))]);
    let link = queue.link_up(false);
    // Cleared, then given a new id: both written, in that order, before the PUBLISH leaves.
    assert_eq!(handed(&mut queue, link), (vec![], vec![]));
    assert_eq!(write(&mut queue).packet_ids, [(1, 0), (1, 1)]);
    assert_eq!(handed(&mut queue, link).0, [(1, false, "1".into())]);
}

#[test]
fn bodies_beyond_the_resident_limit_are_read_back_in_order() {
    let mut queue = Queue::new(Vec::new());
    let big = |n: u64| Body {
        topic: "big".into(),
        payload: Bytes::from(vec![n as u8; RESIDENT_LIMIT / 4]),
        properties: None,
    };
    for n in 0..6 {
        queue.accept(QoS::AtLeastOnce, false, big(n));
    }
    let work = queue.take_work();
    queue.stored(work.changes.inserts);
    let link = queue.link_up(false);
    let (first, _) = handed(&mut queue, link);
    assert_eq!(packet_ids(&first), [1, 2, 3]);
    let work = queue.take_work();
    // One read brings back at least one message, and about a mebibyte at most.
    assert_eq!(work.read_back, Some((4, 4)));
    assert_eq!(handed(&mut queue, link), (vec![], vec![]));
    assert_eq!(queue.take_work().read_back, None, "one read at a time");
    queue.read_back(vec![(4, big(3))]);
    assert_eq!(packet_ids(&handed(&mut queue, link).0), [4]);
    assert_eq!(queue.take_work().read_back, Some((5, 5)));
}

#[test]
fn changes_that_failed_are_written_again_before_newer_ones() {
    let (mut queue, _) = in_flight(QoS::AtLeastOnce, 2);
    assert!(queue.acknowledged(1, QoS::AtLeastOnce));
    let failed = queue.take_work().changes;
    assert!(queue.acknowledged(2, QoS::AtLeastOnce));
    queue.retry(failed);
    assert_eq!(queue.unsettled(), 2);
    assert_eq!(write(&mut queue).deletes, [1, 2]);
    assert_eq!(queue.unsettled(), 0);
}

#[test]
fn qos2_messages_in_flight_stay_within_what_a_broker_takes() {
    let mut queue = queue_of(QoS::ExactlyOnce, QOS2_IN_FLIGHT as u64 + 1);
    store(&mut queue, QoS::AtLeastOnce, 1);
    let link = queue.link_up(false);
    handed(&mut queue, link);
    write(&mut queue);
    let (first, _) = handed(&mut queue, link);
    // The one after them waits, and so does the QoS 1 message after it (order).
    assert_eq!(first.len(), QOS2_IN_FLIGHT);
    queue.received(1);
    write(&mut queue);
    assert_eq!(handed(&mut queue, link).1, [1]);
    assert!(queue.acknowledged(1, QoS::ExactlyOnce));
    assert_eq!(handed(&mut queue, link), (vec![], vec![]));
    write(&mut queue);
    let (next, _) = handed(&mut queue, link);
    assert_eq!(packet_ids(&next), [21, 22]);
}

#[test]
fn a_large_message_the_broker_keeps_closing_on_is_dropped_after_three_tries() {
    let mut queue = Queue::new(Vec::new());
    let large = Body {
        topic: "big".into(),
        payload: Bytes::from(vec![0u8; 100_000]),
        properties: None,
    };
    queue.accept(QoS::AtLeastOnce, false, large);
    let work = queue.take_work();
    queue.stored(work.changes.inserts);
    store(&mut queue, QoS::AtLeastOnce, 1);
    for attempt in 1..=CLOSES_BEFORE_DROPPING {
        let link = queue.link_up(true);
        assert_eq!(handed(&mut queue, link).0.len(), 2);
        let dropped = queue.closed_with_large_in_flight(64 * 1024);
        if attempt < CLOSES_BEFORE_DROPPING {
            assert!(dropped.is_empty());
        } else {
            assert_eq!(dropped, [("big".to_owned(), 100_003)]);
        }
    }
    assert_eq!(queue.len(), 1);
    assert_eq!(write(&mut queue).deletes, [1]);
    let link = queue.link_up(true);
    assert_eq!(handed(&mut queue, link).0, [(2, true, "0".into())]);
}
