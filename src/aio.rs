//! asyncio without a thread hop: operations are polled on the event loop's own thread, which
//! also drives the runtime while it expects replies.
//!
//! Each event loop has one [`LoopBridge`]. A call polls its operation at once and returns a
//! [`Call`], umqtt's own awaitable (asyncio's future protocol, in `call.rs`): one done then (a
//! QoS 0 publish, queued for the connection) returns a finished `Call`, which `await` goes
//! through without giving the loop a turn. Otherwise the operation is kept by the bridge, and
//! the wakers it leaves (for a PUBACK, a message, a timer) name it: when one fires, on whichever
//! thread holds the runtime's core, the operation is queued as ready and the loop is woken
//! through a socket pair it watches (`loop.add_reader`), once per batch; the loop polls it again
//! and finishes its `Call`.
//!
//! A call that sent a request also drives the runtime for one short turn on the loop's thread
//! (`runtime::tick`), so the request is written at once and a reply already in is read there,
//! and while operations wait within the busy-poll budget after that request the loop keeps
//! taking turns (`loop.call_soon`): a local broker's reply is read on the loop's thread with no
//! wake-up at all. Past the budget the loop hands the core back to the background thread.

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{intern, IntoPyObjectExt};

use crate::errors::DriverError;
use crate::lock::lock;
use crate::runtime::{self, BusyPoll};

mod call;
pub use call::Call;

/// How many calls done at once (requests queued, a QoS 0 publish) a loop makes between two of its
/// turns before the next such call hands the loop a turn: its task then waits for that turn, which
/// writes them all with one flush. A task that only publishes at QoS 0 never gives the loop a turn
/// otherwise; each request would then wake the background thread (the core's holder meanwhile) to
/// write it alone. Fewer than a connection's request channel holds (256).
const TURN_AFTER_QUEUED: u64 = 128;

/// What an operation ends with, turned into its future's value or exception on the loop's thread.
type Outcome = Result<Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>, DriverError>;
type Operation = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What the loop's thread and the runtime's threads share: which operations were woken.
struct Woken {
    ids: Mutex<Vec<u64>>,
    /// The loop's thread is taking a turn and polls what was woken when it leaves: no wake-up.
    ticking: AtomicBool,
    /// A byte is in the socket pair that the loop has not read yet.
    signalled: AtomicBool,
    writer: UnixStream,
}

impl Woken {
    fn push(&self, id: u64) {
        lock(&self.ids).push(id);
        if !self.ticking.load(Ordering::SeqCst) && !self.signalled.swap(true, Ordering::SeqCst) {
            // Non-blocking: a full pair already holds bytes, which is all the loop needs.
            let _ = (&self.writer).write(&[1]);
        }
    }
}

/// The waker an operation leaves: it queues the operation to be polled again.
struct OperationWaker {
    woken: Arc<Woken>,
    id: u64,
}

impl Wake for OperationWaker {
    fn wake(self: Arc<Self>) {
        self.woken.push(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.push(self.id);
    }
}

/// An operation in progress and the call it finishes.
struct Waiting {
    operation: Operation,
    call: Py<Call>,
    waker: Waker,
}

/// The operations of one loop, by id; ids are never reused, so a stale wake-up finds nothing.
#[derive(Default)]
struct Operations {
    waiting: Mutex<HashMap<u64, Waiting>>,
    next_id: AtomicU64,
}

impl Operations {
    /// Drops a cancelled call's operation: operations are cancel-safe.
    fn cancel(&self, id: u64) -> PyResult<()> {
        let removed = lock(&self.waiting).remove(&id);
        // Dropped outside the lock, in the runtime's context (it may hold timers).
        let _context = runtime::runtime()?.enter();
        drop(removed);
        Ok(())
    }
}

/// One event loop's end of the core, made once per loop by `umqtt.aio`, which watches
/// `fileno()` with `loop.add_reader(fd, bridge.drain)`. Used from the loop's thread only.
#[pyclass(frozen, module = "umqtt._native")]
pub struct LoopBridge {
    woken: Arc<Woken>,
    operations: Arc<Operations>,
    reader: UnixStream,
    event_loop: Py<PyAny>,
    /// `self.poll`, bound once, for `loop.call_soon`.
    poll_callback: PyOnceLock<Py<PyAny>>,
    /// A turn is scheduled with `call_soon` and has not run yet.
    turn_scheduled: AtomicBool,
    /// Calls done at once since the loop's last turn (see `TURN_AFTER_QUEUED`).
    queued_since_turn: AtomicU64,
    /// The loop's thread drove the runtime since it last handed the core back.
    driving: AtomicBool,
    /// Until when the loop keeps taking turns for the replies it expects.
    busy_until: Mutex<Option<Instant>>,
}

#[pymethods]
impl LoopBridge {
    #[new]
    fn new(event_loop: Py<PyAny>) -> PyResult<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(LoopBridge {
            woken: Arc::new(Woken {
                ids: Mutex::new(Vec::new()),
                ticking: AtomicBool::new(false),
                signalled: AtomicBool::new(false),
                writer,
            }),
            operations: Arc::default(),
            reader,
            event_loop,
            poll_callback: PyOnceLock::new(),
            turn_scheduled: AtomicBool::new(false),
            queued_since_turn: AtomicU64::new(0),
            driving: AtomicBool::new(false),
            busy_until: Mutex::new(None),
        })
    }

    fn fileno(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// The reader callback: polls the operations woken from other threads.
    fn drain(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        // Empty the pair before clearing the flag: a byte written after the flag is cleared must
        // stay there for the next wake-up.
        let mut sink = [0u8; 64];
        while matches!((&this.reader).read(&mut sink), Ok(n) if n > 0) {}
        this.woken.signalled.store(false, Ordering::SeqCst);
        this.poll_woken(slf.py())?;
        this.keep_polling(slf)
    }

    /// A scheduled turn: drives the runtime, polls what it woke.
    fn poll(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        this.turn_scheduled.store(false, Ordering::SeqCst);
        this.turn(slf.py())?;
        this.keep_polling(slf)
    }
}

impl LoopBridge {
    /// Takes one turn of the runtime on the loop's thread, then polls what it woke.
    fn turn(&self, py: Python<'_>) -> PyResult<()> {
        self.woken.ticking.store(true, Ordering::SeqCst);
        let drove = runtime::tick(py);
        self.woken.ticking.store(false, Ordering::SeqCst);
        self.queued_since_turn.store(0, Ordering::SeqCst);
        if drove? {
            self.driving.store(true, Ordering::SeqCst);
        }
        self.poll_woken(py)
    }

    /// Polls the woken operations (GIL released, as the runtime's threads poll theirs) and
    /// finishes the calls of those that ended.
    fn poll_woken(&self, py: Python<'_>) -> PyResult<()> {
        let ids = std::mem::take(&mut *lock(&self.woken.ids));
        if ids.is_empty() {
            return Ok(());
        }
        let ended = py.detach(|| -> PyResult<Vec<(Waiting, Outcome)>> {
            let _context = runtime::runtime()?.enter();
            let mut waiting = lock(&self.operations.waiting);
            let mut ended = Vec::new();
            for id in ids {
                let Some(entry) = waiting.get_mut(&id) else {
                    continue; // ended or cancelled already
                };
                let mut context = Context::from_waker(&entry.waker);
                if let Poll::Ready(outcome) = entry.operation.as_mut().poll(&mut context) {
                    if let Some(entry) = waiting.remove(&id) {
                        ended.push((entry, outcome));
                    }
                }
            }
            Ok(ended)
        })?;
        for (entry, outcome) in ended {
            Call::finish(entry.call.bind(py), outcome)?;
        }
        Ok(())
    }

    /// Keeps a pending call's operation until it ends (or the call is cancelled).
    fn keep(&self, id: u64, operation: Operation, call: &Bound<'_, Call>, waker: Waker) {
        let call = call.clone().unbind();
        let waiting = Waiting {
            operation,
            call,
            waker,
        };
        lock(&self.operations.waiting).insert(id, waiting);
    }

    fn pending(&self) -> bool {
        !lock(&self.operations.waiting).is_empty()
    }

    /// Schedules another turn while operations wait within the busy-poll budget; past it, hands
    /// the core back so that the background thread reads their replies.
    fn keep_polling(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        if !self.pending() {
            return Ok(());
        }
        let until = *lock(&self.busy_until);
        if until.is_some_and(|until| Instant::now() < until) {
            return self.schedule_turn(slf);
        }
        if self.driving.swap(false, Ordering::SeqCst) {
            runtime::hand_back();
        }
        Ok(())
    }

    fn schedule_turn(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        if self.turn_scheduled.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let py = slf.py();
        let callback = self
            .poll_callback
            .get_or_try_init(py, || slf.getattr("poll").map(Bound::unbind))?;
        self.event_loop
            .bind(py)
            .call_method1(intern!(py, "call_soon"), (callback.clone_ref(py),))?;
        Ok(())
    }
}

/// A message was taken (and acknowledged, at QoS 1/2): the loop drives the acknowledgement out
/// itself and polls for the messages that follow while they keep coming, as after a request.
pub fn expect_more(bridge: &Bound<'_, LoopBridge>) -> PyResult<()> {
    let this = bridge.get();
    *lock(&this.busy_until) = BusyPoll::after(Instant::now()).until();
    this.schedule_turn(bridge)
}

/// How a call's operation goes on after its first poll.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A reply to the request just sent (CONNACK, SUBACK, PUBACK…): drive the runtime now and
    /// poll for it within the busy-poll budget.
    Reply,
    /// Nothing sent: wait for the broker (a message) or the driver (DISCONNECT written).
    Nothing,
}

/// Starts `operation` for the running loop of `bridge`; returns its call, already finished when
/// the operation ended on its first poll. `sent` says whether the call sent a request, which
/// makes a reply (or a message it brings back) likely soon.
pub fn start<'py, T, F>(
    bridge: &Bound<'py, LoopBridge>,
    operation: F,
    sent: bool,
    expect: Expect,
) -> PyResult<Bound<'py, Call>>
where
    F: Future<Output = Result<T, DriverError>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let py = bridge.py();
    let this = bridge.get();
    if sent {
        *lock(&this.busy_until) = BusyPoll::after(Instant::now()).until();
    }
    let mut operation: Operation = Box::pin(async move {
        operation.await.map(|value| {
            Box::new(move |py: Python<'_>| python_value(py, value))
                as Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>
        })
    });
    let id = this.operations.next_id.fetch_add(1, Ordering::Relaxed);
    let waker = Waker::from(Arc::new(OperationWaker {
        woken: this.woken.clone(),
        id,
    }));
    let first = runtime::poll_detached(py, operation.as_mut(), &waker)?;
    if let Poll::Ready(outcome) = first {
        if sent && this.queued_since_turn.fetch_add(1, Ordering::SeqCst) + 1 >= TURN_AFTER_QUEUED {
            // Ended, but finished by the loop's next turn, which writes what is queued.
            let call = Call::pending(py, &this.event_loop, this.operations.clone(), id)?;
            let ended: Operation = Box::pin(std::future::ready(outcome));
            this.keep(id, ended, &call, waker);
            lock(&this.woken.ids).push(id);
            this.schedule_turn(bridge)?;
            return Ok(call);
        }
        let call = Call::finished(py, &this.event_loop, outcome)?;
        if sent && !runtime::core_is_held() {
            // The request waits in the core for its next holder: this loop, soon.
            this.schedule_turn(bridge)?;
        }
        return Ok(call);
    }
    let call = Call::pending(py, &this.event_loop, this.operations.clone(), id)?;
    this.keep(id, operation, &call, waker);
    if expect == Expect::Reply && !this.turn_scheduled.load(Ordering::SeqCst) {
        this.turn(py)?;
    }
    this.keep_polling(bridge)?;
    Ok(call)
}

/// An operation's value in Python: None for `()` (which PyO3 makes an empty tuple), since the
/// call is what `await` returns from (`publish` has no coroutine of its own to return None).
fn python_value<T>(py: Python<'_>, value: T) -> PyResult<Py<PyAny>>
where
    T: for<'a> IntoPyObject<'a> + 'static,
{
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return Ok(py.None());
    }
    value.into_py_any(py)
}
