//! A queue the driver fills and Python threads drain: arrived messages (taken by the thread that
//! calls `wait_msg()`/`check_msg()`) and link notices (taken by the error-callback thread).
//! A waiting thread takes everything that is there in one wake-up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use pyo3::prelude::*;

use crate::errors::DriverError;
use crate::lock::lock;
use crate::runtime::{block_on, signal_slice, BusyPoll, Deadline};

/// How a thread waits for items.
pub enum Waiting {
    /// Drives the connections itself while it waits (see `runtime`), so the message it waits
    /// for is read on its own thread: a thread waiting for messages; it busy-polls first when
    /// it expects one soon.
    Driving(BusyPoll),
    /// Sleeps until the driver wakes it, leaving the runtime to others: the error-callback
    /// thread, which spends its life waiting for notices that rarely come.
    Asleep,
}

/// What a wait on the inbox ended with.
pub enum Taken<T> {
    Items(Vec<T>),
    /// The link is gone for good and nothing is left to deliver.
    Lost(DriverError),
    TimedOut,
}

/// How many bytes an item holds, for the inbox's memory bound.
pub trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for String {
    fn weight(&self) -> usize {
        self.len()
    }
}

struct State<T> {
    messages: VecDeque<T>,
    lost: Option<DriverError>,
}

pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    /// Sum of the waiting items' weights; changed under the `state` lock, read without it (the
    /// driver checks it on every poll).
    bytes: AtomicUsize,
    /// Messages were added by `push_quietly` since the last `announce`.
    unannounced: AtomicBool,
    /// Wakes Python threads waiting `Asleep`.
    arrived: Condvar,
    /// Threads waiting on `arrived`; changed under the `state` lock. std's condvar makes a system
    /// call on every notify on Linux, waiter or not, and a message reader waits `Driving`.
    asleep: AtomicUsize,
    /// Wakes `ready()`: asyncio waiters and threads waiting `Driving`.
    notify: Notify,
    /// Wakes a producer waiting for room (see `wait_for_room`).
    taken: Notify,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            state: Mutex::new(State {
                messages: VecDeque::new(),
                lost: None,
            }),
            bytes: AtomicUsize::new(0),
            unannounced: AtomicBool::new(false),
            arrived: Condvar::new(),
            asleep: AtomicUsize::new(0),
            notify: Notify::new(),
            taken: Notify::new(),
        }
    }
}

impl<T: Send + Weight> Mailbox<T> {
    /// Adds an item, first dropping the oldest while `limit` or more wait.
    pub fn push_within(&self, message: T, limit: usize) {
        let mut state = lock(&self.state);
        while state.messages.len() >= limit.max(1) {
            if let Some(old) = state.messages.pop_front() {
                self.bytes.fetch_sub(old.weight(), Ordering::Relaxed);
            }
        }
        self.bytes.fetch_add(message.weight(), Ordering::Relaxed);
        state.messages.push_back(message);
        // Waiters only sleep on an empty inbox, so one wake-up per batch is enough.
        if state.messages.len() == 1 {
            self.wake();
        }
    }

    /// Adds a message without waking anyone: the producer calls `announce` once its batch is in,
    /// so a reader wakes once per batch rather than for the batch's first message.
    pub fn push_quietly(&self, message: T) {
        let mut state = lock(&self.state);
        self.bytes.fetch_add(message.weight(), Ordering::Relaxed);
        state.messages.push_back(message);
        self.unannounced.store(true, Ordering::Release);
    }

    /// Wakes the readers if `push_quietly` added anything since the last call. Takes no lock: a
    /// reader checks the queue under the lock before it sleeps, so it cannot miss this wake-up.
    pub fn announce(&self) {
        if self.unannounced.swap(false, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// A sleeper counts itself in under the `state` lock, and every producer adds under that lock
    /// before it wakes, so any sleeper that could miss the new item is counted here.
    fn wake(&self) {
        if self.asleep.load(Ordering::SeqCst) > 0 {
            self.arrived.notify_all();
        }
        self.notify.notify_waiters();
    }

    /// Marks the link as gone for good (`Some`) or back (`None`); wakes every waiter.
    pub fn set_lost(&self, reason: Option<DriverError>) {
        lock(&self.state).lost = reason;
        self.wake();
    }

    /// Returns messages a callback did not get to (it raised) to the front, in order. Readers
    /// that came meanwhile wait on the empty inbox the take left: they are woken.
    pub fn put_back(&self, rest: Vec<T>) {
        let mut state = lock(&self.state);
        let was_empty = state.messages.is_empty();
        for message in rest.into_iter().rev() {
            self.bytes.fetch_add(message.weight(), Ordering::Relaxed);
            state.messages.push_front(message);
        }
        if was_empty && !state.messages.is_empty() {
            self.wake();
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.state).messages.len()
    }

    /// Takes up to `max` items, waiting (GIL released, signals checked) until there is one, the
    /// link is lost for good, or the deadline passes.
    pub fn take(
        &self,
        py: Python<'_>,
        deadline: Deadline,
        max: usize,
        waiting: Waiting,
    ) -> PyResult<Taken<T>> {
        loop {
            if let Some(taken) = self.try_take(max) {
                return Ok(taken);
            }
            if deadline.expired() {
                return Ok(Taken::TimedOut);
            }
            match waiting {
                Waiting::Driving(busy_poll) => {
                    block_on(py, deadline, busy_poll, self.ready())?;
                }
                Waiting::Asleep => self.sleep(py, &deadline)?,
            }
        }
    }

    /// Sleeps one signal slice at most, until an item arrives or the link is lost for good.
    fn sleep(&self, py: Python<'_>, deadline: &Deadline) -> PyResult<()> {
        let slice = signal_slice(deadline);
        py.detach(|| self.sleep_unless_ready(slice));
        py.check_signals()
    }

    /// Sleeps up to `slice`, unless something can be taken or the link is lost for good.
    fn sleep_unless_ready(&self, slice: Duration) {
        let state = lock(&self.state);
        if state.messages.is_empty() && state.lost.is_none() {
            self.asleep.fetch_add(1, Ordering::SeqCst);
            let (state, _) = self
                .arrived
                .wait_timeout(state, slice)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.asleep.fetch_sub(1, Ordering::SeqCst);
            drop(state);
        }
    }

    /// Waits, without blocking a thread, until something can be taken or the link is lost for
    /// good. Takes nothing, so cancelling the wait loses nothing.
    pub async fn ready(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let state = lock(&self.state);
                if !state.messages.is_empty() || state.lost.is_some() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Takes up to `max` items without waiting; None when there are none.
    pub fn try_take(&self, max: usize) -> Option<Taken<T>> {
        self.take_now(&mut lock(&self.state), max)
    }

    /// Waits until fewer than `limit` bytes wait: the producer's back-pressure.
    pub async fn wait_for_room(&self, limit: usize) {
        loop {
            let taken = self.taken.notified();
            let mut taken = std::pin::pin!(taken);
            taken.as_mut().enable();
            if self.bytes() < limit {
                return;
            }
            taken.await;
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn take_now(&self, state: &mut State<T>, max: usize) -> Option<Taken<T>> {
        if !state.messages.is_empty() {
            let count = max.min(state.messages.len());
            let items: Vec<T> = state.messages.drain(..count).collect();
            let weight = items.iter().map(Weight::weight).sum::<usize>();
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
            self.taken.notify_waiters();
            return Some(Taken::Items(items));
        }
        state.lost.clone().map(Taken::Lost)
    }
}

#[cfg(test)]
mod tests;
