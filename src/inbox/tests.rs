//! The mailbox's batching, wake-ups and limits, alone and under contention. Outcomes only:
//! a missed wake-up shows as a hang, which the hang detector turns into a failure.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::*;
use crate::test_support::{within, HANG};

/// An item that says who pushed it and when, weighing `WEIGHT` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    producer: usize,
    seq: usize,
}

const WEIGHT: usize = 8;

impl Weight for Item {
    fn weight(&self) -> usize {
        WEIGHT
    }
}

fn item(seq: usize) -> Item {
    Item { producer: 0, seq }
}

/// Counts the wake-ups of the futures polled with it.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Wakes {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `future` once with a waker that counts its wake-ups.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>, wakes: &Arc<Wakes>) -> Poll<F::Output> {
    let waker = Waker::from(wakes.clone());
    future.poll(&mut Context::from_waker(&waker))
}

/// A `ready()` that was polled once and waits, woken through `wakes`.
fn waiting<'a, T: Send + Weight>(
    mailbox: &'a Mailbox<T>,
    wakes: &Arc<Wakes>,
) -> std::pin::Pin<Box<impl Future<Output = ()> + 'a>> {
    let mut ready = Box::pin(mailbox.ready());
    assert!(poll_once(ready.as_mut(), wakes).is_pending());
    ready
}

fn taken<T>(outcome: Option<Taken<T>>) -> Vec<T> {
    match outcome {
        Some(Taken::Items(items)) => items,
        Some(Taken::Lost(reason)) => panic!("lost: {reason}"),
        Some(Taken::TimedOut) | None => panic!("nothing taken"),
    }
}

#[test]
fn push_within_keeps_only_the_newest() {
    let notices = Mailbox::<String>::default();
    for n in 0..70 {
        notices.push_within(format!("{n:02}"), 64);
    }
    assert_eq!(notices.bytes(), 64 * 2);
    let kept = taken(notices.try_take(100));
    assert_eq!(kept.first().map(String::as_str), Some("06"));
    assert_eq!(kept.len(), 64);
    assert_eq!(notices.bytes(), 0);
}

/// The driver's batch: quiet pushes wake nobody; the announcement wakes the reader once, and
/// one take gets the whole batch.
#[test]
fn a_quiet_batch_wakes_its_reader_once_when_announced() {
    let inbox = Mailbox::<Item>::default();
    let wakes = Arc::new(Wakes::default());
    let mut ready = waiting(&inbox, &wakes);
    for seq in 0..3 {
        inbox.push_quietly(item(seq));
    }
    assert_eq!(wakes.count(), 0, "a quiet push woke the reader");
    inbox.announce();
    assert_eq!(wakes.count(), 1);
    assert!(poll_once(ready.as_mut(), &wakes).is_ready());
    assert_eq!(
        taken(inbox.try_take(usize::MAX)),
        [item(0), item(1), item(2)]
    );
    assert_eq!(inbox.bytes(), 0);
    // Nothing new since: announcing again wakes nobody (a waiting reader is there to be woken).
    let _reader = waiting(&inbox, &wakes);
    inbox.announce();
    assert_eq!(wakes.count(), 1);
}

/// A push onto an empty mailbox wakes its waiters; later pushes need not (a waiter only
/// waits on an empty mailbox), and a new wait on a non-empty one is over at once.
#[test]
fn the_first_push_wakes_the_waiters() {
    let notices = Mailbox::<String>::default();
    let wakes = Arc::new(Wakes::default());
    let mut first = std::pin::pin!(notices.ready());
    let mut second = std::pin::pin!(notices.ready());
    assert!(poll_once(first.as_mut(), &wakes).is_pending());
    assert!(poll_once(second.as_mut(), &wakes).is_pending());
    notices.push_within("reconnect_start".into(), 64);
    assert_eq!(wakes.count(), 2);
    notices.push_within("reconnect_success".into(), 64);
    assert_eq!(wakes.count(), 2);
    let mut later = std::pin::pin!(notices.ready());
    assert!(poll_once(later.as_mut(), &wakes).is_ready());
}

/// A lost link wakes every waiter, and is reported once the items that came before it are
/// taken; a link back (`None`) clears it.
#[test]
fn a_lost_link_wakes_the_waiters_and_comes_after_the_items() {
    let inbox = Mailbox::<Item>::default();
    let wakes = Arc::new(Wakes::default());
    let _reader = waiting(&inbox, &wakes);
    inbox.push_quietly(item(0));
    inbox.set_lost(Some(DriverError::ConnectionLost("connection lost".into())));
    assert_eq!(wakes.count(), 1);
    assert_eq!(taken(inbox.try_take(1)), [item(0)]);
    assert!(
        matches!(inbox.try_take(1), Some(Taken::Lost(DriverError::ConnectionLost(reason))) if reason == "connection lost")
    );
    inbox.set_lost(None);
    assert!(inbox.try_take(1).is_none());
}

/// What a raising callback did not get to goes back to the front, in order, with its weight.
#[test]
fn put_back_restores_the_order_and_the_weight() {
    let inbox = Mailbox::<Item>::default();
    for seq in 0..5 {
        inbox.push_quietly(item(seq));
    }
    let mut first = taken(inbox.try_take(3));
    let rest = first.split_off(1);
    inbox.put_back(rest);
    assert_eq!(inbox.bytes(), 4 * WEIGHT);
    assert_eq!(taken(inbox.try_take(usize::MAX)), [1, 2, 3, 4].map(item));
}

/// Items put back wake the readers that came while they were out: those wait on the empty inbox
/// the take left, and `ready()` looks again only when woken, so without the wake-up a second
/// thread in `wait_msg()` would wait for the next message while these sat there.
#[test]
fn put_back_wakes_the_readers_waiting_on_the_empty_inbox() {
    let inbox = Mailbox::<Item>::default();
    for seq in 0..3 {
        inbox.push_quietly(item(seq));
    }
    let mut first = taken(inbox.try_take(usize::MAX));
    let wakes = Arc::new(Wakes::default());
    let mut ready = waiting(&inbox, &wakes);
    inbox.put_back(first.split_off(1));
    assert_eq!(wakes.count(), 1);
    assert!(poll_once(ready.as_mut(), &wakes).is_ready());
    assert_eq!(taken(inbox.try_take(usize::MAX)), [item(1), item(2)]);
}

/// The driver's back-pressure: a producer waiting for room is woken by the take that makes it.
#[test]
fn a_take_wakes_the_producer_waiting_for_room() {
    let inbox = Mailbox::<Item>::default();
    for seq in 0..4 {
        inbox.push_quietly(item(seq));
    }
    let wakes = Arc::new(Wakes::default());
    let mut room = std::pin::pin!(inbox.wait_for_room(3 * WEIGHT));
    assert!(poll_once(room.as_mut(), &wakes).is_pending());
    taken(inbox.try_take(1));
    assert_eq!(wakes.count(), 1);
    assert!(
        poll_once(room.as_mut(), &wakes).is_pending(),
        "still 3 items"
    );
    taken(inbox.try_take(1));
    assert!(poll_once(room.as_mut(), &wakes).is_ready());
}

/// Producers push batches quietly and announce them, as the driver does, while readers take
/// them: half sleep on the condition variable (the error-callback thread's way), half await
/// `ready()` (a blocked caller's and asyncio's way). Every item reaches exactly one reader, in
/// its producer's order, and no reader misses a wake-up: a missed one sleeps until the hang
/// detector fires. The lost link, set at the end, wakes and ends every reader.
#[test]
fn every_item_reaches_one_reader_and_no_wake_up_is_lost() {
    const PRODUCERS: usize = 3;
    const ITEMS: usize = 100_000;
    const READERS: usize = 4;
    let inbox = Arc::new(Mailbox::<Item>::default());
    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                if reader % 2 == 0 {
                    loop {
                        match inbox.try_take(1 + reader) {
                            Some(Taken::Items(items)) => got.extend(items),
                            Some(Taken::Lost(_)) => return got,
                            Some(Taken::TimedOut) | None => inbox.sleep_unless_ready(HANG),
                        }
                    }
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    loop {
                        inbox.ready().await;
                        match inbox.try_take(usize::MAX) {
                            Some(Taken::Items(items)) => got.extend(items),
                            Some(Taken::Lost(_)) => return got,
                            Some(Taken::TimedOut) | None => {}
                        }
                    }
                })
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let mut seq = 0;
                while seq < ITEMS {
                    let batch = 1 + (seq + producer) % 7;
                    for _ in 0..batch.min(ITEMS - seq) {
                        inbox.push_quietly(Item { producer, seq });
                        seq += 1;
                    }
                    inbox.announce();
                }
            })
        })
        .collect();
    let got = within("readers and producers", move || {
        for producer in producers {
            producer.join().expect("a producer panicked");
        }
        inbox.set_lost(Some(DriverError::ConnectionLost("the end".into())));
        let got: Vec<Vec<Item>> = readers
            .into_iter()
            .map(|reader| reader.join().expect("a reader panicked"))
            .collect();
        assert_eq!(inbox.bytes(), 0);
        got
    });
    let mut last_seen = HashMap::new();
    for items in &got {
        let mut previous: HashMap<usize, usize> = HashMap::new();
        for item in items {
            if let Some(before) = previous.insert(item.producer, item.seq) {
                assert!(before < item.seq, "out of order: {before} then {item:?}");
            }
            *last_seen.entry((item.producer, item.seq)).or_insert(0) += 1;
        }
    }
    assert_eq!(last_seen.len(), PRODUCERS * ITEMS, "items lost");
    assert!(
        last_seen.values().all(|&times| times == 1),
        "an item taken twice"
    );
}

/// One item at a time, each pushed only once the last was taken: every wake-up is the only
/// one its reader gets, so a missed one (of the reader, or of the producer waiting for the
/// take) hangs. Both ways of waiting for items are tried.
#[test]
fn no_wake_up_is_missed_when_each_is_the_only_one() {
    const ITEMS: usize = 10_000;
    for asleep in [true, false] {
        let inbox = Arc::new(Mailbox::<Item>::default());
        let reader = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime");
                let mut count = 0;
                loop {
                    if asleep {
                        inbox.sleep_unless_ready(HANG);
                    } else {
                        runtime.block_on(inbox.ready());
                    }
                    match inbox.try_take(1) {
                        Some(Taken::Items(items)) => count += items.len(),
                        Some(Taken::Lost(_)) => return count,
                        Some(Taken::TimedOut) | None => {}
                    }
                }
            })
        };
        let count = within("ping-pong", move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            for seq in 0..ITEMS {
                inbox.push_quietly(item(seq));
                inbox.announce();
                runtime.block_on(inbox.wait_for_room(WEIGHT));
            }
            inbox.set_lost(Some(DriverError::ConnectionLost("the end".into())));
            reader.join().expect("the reader panicked")
        });
        assert_eq!(count, ITEMS);
    }
}

/// The driver's back-pressure under contention: the producer waits for room before each push,
/// readers take a few at a time; the unread bytes never pass the limit by more than the item
/// pushed after the check, and the producer is never left waiting for a take that happened.
#[test]
fn back_pressure_holds_the_limit_and_never_misses_a_take() {
    const ITEMS: usize = 20_000;
    const LIMIT: usize = 16 * WEIGHT;
    let inbox = Arc::new(Mailbox::<Item>::default());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let inbox = inbox.clone();
            std::thread::spawn(move || loop {
                match inbox.try_take(3) {
                    Some(Taken::Lost(_)) => return,
                    Some(Taken::Items(_)) => {}
                    Some(Taken::TimedOut) | None => inbox.sleep_unless_ready(HANG),
                }
            })
        })
        .collect();
    within("a producer under back-pressure", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            for seq in 0..ITEMS {
                inbox.wait_for_room(LIMIT).await;
                inbox.push_quietly(item(seq));
                inbox.announce();
                let unread = inbox.bytes();
                assert!(unread < LIMIT + WEIGHT, "{unread} bytes unread");
            }
        });
        inbox.set_lost(Some(DriverError::ConnectionLost("the end".into())));
        for reader in readers {
            reader.join().expect("a reader panicked");
        }
    });
}

/// The notices' bound under contention: pushers never see more than the limit waiting.
#[test]
fn push_within_holds_its_limit_under_contention() {
    const LIMIT: usize = 8;
    let notices = Arc::new(Mailbox::<String>::default());
    within("pushers and a reader", move || {
        let pushers: Vec<_> = (0..4)
            .map(|pusher| {
                let notices = notices.clone();
                std::thread::spawn(move || {
                    for n in 0..5_000 {
                        notices.push_within(format!("{pusher}:{n}"), LIMIT);
                        let waiting = notices.len();
                        assert!(waiting <= LIMIT, "{waiting} notices waiting");
                    }
                })
            })
            .collect();
        let reader = {
            let notices = notices.clone();
            std::thread::spawn(move || loop {
                match notices.try_take(2) {
                    Some(Taken::Lost(_)) => return,
                    Some(Taken::Items(items)) => assert!(items.len() <= 2),
                    Some(Taken::TimedOut) | None => notices.sleep_unless_ready(HANG),
                }
            })
        };
        for pusher in pushers {
            pusher.join().expect("a pusher panicked");
        }
        notices.set_lost(Some(DriverError::ConnectionLost("the end".into())));
        reader.join().expect("the reader panicked");
    });
}
