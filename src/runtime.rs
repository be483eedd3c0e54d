//! One tokio runtime shared by every client, the blocking wait that Python threads use (GIL
//! released, signals checked every slice), and the short turns an asyncio event loop takes.
//!
//! The runtime is a current-thread runtime whose scheduler and I/O driver (its "core") are held by
//! whichever thread is waiting on it: a Python thread blocked in a call drives every connection
//! itself, so the packet it waits for is read by the thread that wants it, with no wake-up of a
//! second thread in between. When no caller is waiting, the background thread `umqtt-io` holds the
//! core; it hands it over when a caller arrives and takes it back once callers have been gone for
//! one to two `RECLAIM_AFTER` pauses (a caller making call after call keeps the core between
//! calls). A QoS 0 publish made while nobody holds the core takes it for one poll (`poll_now`).
//!
//! A caller that expects a reply soon (it just sent a request, or a `wait_msg()` follows one)
//! busy-polls for it: while it holds the core, the runtime's before-park hook turns the sleep in
//! `epoll_wait` into a zero-timeout poll until the budget (`set_busy_poll`, 200 µs by default)
//! after the request is spent. Waking a sleeping thread costs about 100 µs on a VM; the reply
//! from a local broker comes within that budget, so the round trip loses the wake-up.
//!
//! An asyncio event loop's thread takes the core the same way for a short turn (`tick`): it runs
//! what is ready, polls the sockets without waiting and leaves, never waiting for a blocked caller
//! (which may hold the core for long) to give the core up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

use crate::arguments;
use crate::lock::lock;

/// How often a blocked call wakes up to let Ctrl-C through.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// How often the background thread looks whether callers are gone, while calls keep coming: it
/// takes the core back one to two pauses after the last one, so the I/O of idle connections waits
/// at most that long.
const RECLAIM_AFTER: Duration = Duration::from_millis(1);

/// The busy-poll budget when neither `set_busy_poll` nor the environment says otherwise.
const DEFAULT_BUSY_POLL_MICROS: u64 = 200;
/// Longer busy polls only burn a core: a reply that takes this long is not a local one.
const MAX_BUSY_POLL_MICROS: u64 = 10_000;
/// Sets the busy-poll budget for a process that runs a script unchanged.
const BUSY_POLL_VARIABLE: &str = "UMQTT_BUSY_POLL_US";

static BUSY_POLL_MICROS: AtomicU64 = AtomicU64::new(DEFAULT_BUSY_POLL_MICROS);

thread_local! {
    /// Until when this thread's blocked caller busy-polls, and its waker: the before-park hook
    /// of the thread that holds the core wakes it instead of letting the runtime sleep.
    static BUSY_POLLING: RefCell<Option<(Instant, Waker)>> = const { RefCell::new(None) };
}

static RUNTIME: OnceLock<Result<&'static Runtime, String>> = OnceLock::new();
static HANDOVER: Handover = Handover::new();

pub fn runtime() -> PyResult<&'static Runtime> {
    RUNTIME
        .get_or_init(start)
        .clone()
        .map_err(PyRuntimeError::new_err)
}

/// Builds the runtime and starts the background thread, both before any caller can see it (`OnceLock` runs this once; other callers wait for it). A
/// failure (no thread or no epoll for this process) is kept and raised by every later call.
fn start() -> Result<&'static Runtime, String> {
    let built = build().map_err(|e| format!("cannot start the umqtt I/O runtime: {e}"))?;
    // Lives as long as the process, like the static it would otherwise be.
    let runtime: &'static Runtime = Box::leak(Box::new(built));
    std::thread::Builder::new()
        .name("umqtt-io".into())
        .spawn(|| HANDOVER.drive_in_background(runtime))
        .map_err(|e| format!("cannot start the umqtt I/O thread: {e}"))?;
    Ok(runtime)
}

/// A current-thread runtime, whose core the hand-over passes between its waiting threads.
fn build() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        // DNS lookups and the credential callables use the blocking pool; uncapped (512), a
        // thousand clients connecting at once would mean hundreds of threads.
        .max_blocking_threads(6)
        .thread_keep_alive(Duration::from_secs(2))
        .thread_name("umqtt-blocking")
        // Runs before the core's holder would sleep. Since tokio 1.54 (tokio#8212), a wake-up
        // from it makes the runtime poll the I/O driver with a zero timeout instead of skipping
        // it; before, busy polling would never have read the socket.
        .on_thread_park(busy_poll_before_park)
        .enable_all()
        .build()
}

/// Who holds the runtime's core: the background thread, the callers blocked in `block_on`, or an
/// event loop's thread taking a turn.
struct Handover {
    /// Callers inside `Runtime::block_on` now, event loops' turns included.
    callers: AtomicUsize,
    /// Of those, the blocked callers: one may hold the core for as long as its call lasts.
    blocked: AtomicUsize,
    /// An event loop stopped polling while it waits for replies: the background thread should
    /// take the core back now rather than after a pause, so that nobody leaves them unread.
    handed_back: AtomicBool,
    /// Calls so far that waited: tells the background thread whether a caller came, drove the
    /// I/O and went while it slept.
    entries: AtomicU64,
    /// Tells the background thread, while it drives, that a caller wants the core.
    wanted: Notify,
    /// The background thread is in `Runtime::block_on` (holds the core, or is about to).
    background_driving: AtomicBool,
    /// Tells the background thread, while it waits, that the last caller left; `awaiting_idle`
    /// spares callers that system call when it does not wait.
    awaiting_idle: AtomicBool,
    idle_lock: Mutex<()>,
    idle: Condvar,
}

impl Handover {
    const fn new() -> Self {
        Handover {
            callers: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            handed_back: AtomicBool::new(false),
            entries: AtomicU64::new(0),
            awaiting_idle: AtomicBool::new(false),
            wanted: Notify::const_new(),
            background_driving: AtomicBool::new(false),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    fn drive_in_background(&self, runtime: &Runtime) {
        loop {
            self.background_driving.store(true, Ordering::SeqCst);
            runtime.block_on(self.until_wanted());
            self.background_driving.store(false, Ordering::SeqCst);
            self.wait_until_idle();
        }
    }

    async fn until_wanted(&self) {
        loop {
            let notified = self.wanted.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.callers.load(Ordering::SeqCst) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Returns once no caller is in and none that waited has left for a `RECLAIM_AFTER` pause; or
    /// as soon as no caller is in if none of those since the hand-over waited: calls done on their
    /// first poll (refused at once, say) drove nothing, and the core must not sit idle. While
    /// calls keep coming this wakes once per pause, and callers need not wake it; only a caller
    /// that stays in through a whole pause (a long `wait_msg()`) is waited for on the condvar.
    fn wait_until_idle(&self) {
        let mut counted = self.entries.load(Ordering::SeqCst);
        loop {
            if self.callers.load(Ordering::SeqCst) > 0
                && self.entries.load(Ordering::SeqCst) == counted
            {
                self.wait_for_no_callers();
            }
            // `Leave` counts an entry before it counts the caller out, so with no caller in this
            // sees every call that waited.
            let seen = self.entries.load(Ordering::SeqCst);
            if self.callers.load(Ordering::SeqCst) == 0
                && (seen == counted || self.handed_back.swap(false, Ordering::SeqCst))
            {
                return;
            }
            self.pause();
            counted = seen;
        }
    }

    /// Sleeps one `RECLAIM_AFTER` pause, or less when an event loop hands the core back.
    fn pause(&self) {
        let guard = lock(&self.idle_lock);
        if !self.handed_back.load(Ordering::SeqCst) {
            let _ = self.idle.wait_timeout(guard, RECLAIM_AFTER);
        }
    }

    /// Tells the background thread to take the core back at once (see `handed_back`).
    fn hand_back(&self) {
        self.handed_back.store(true, Ordering::SeqCst);
        let _guard = lock(&self.idle_lock);
        self.idle.notify_one();
    }

    fn wait_for_no_callers(&self) {
        let mut guard = lock(&self.idle_lock);
        self.awaiting_idle.store(true, Ordering::SeqCst);
        while self.callers.load(Ordering::SeqCst) > 0 {
            guard = self
                .idle
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        self.awaiting_idle.store(false, Ordering::SeqCst);
    }

    /// Whether a thread drives the runtime now (or is about to). A guess that may be stale by the
    /// time it is used: it only chooses the cheaper way for `poll_now`, never what is correct.
    fn core_is_held(&self) -> bool {
        self.callers.load(Ordering::SeqCst) > 0 || self.background_driving.load(Ordering::SeqCst)
    }

    /// Runs `future` on the calling thread, taking the core from the background thread.
    fn block_on<F: Future>(&self, runtime: &Runtime, busy_poll: BusyPoll, future: F) -> F::Output {
        self.blocked.fetch_add(1, Ordering::SeqCst);
        self.callers.fetch_add(1, Ordering::SeqCst);
        let leave = Leave {
            handover: self,
            waited: Cell::new(false),
            blocked: true,
        };
        self.wanted.notify_waiters();
        let mut future = std::pin::pin!(future);
        runtime.block_on(std::future::poll_fn(|context| {
            let poll = future.as_mut().poll(context);
            if poll.is_pending() {
                leave.waited.set(true);
                busy_poll.arm(context.waker());
            }
            poll
        }))
    }

    /// One short turn of the runtime on an event loop's thread (see [`tick`]). Returns whether
    /// this thread held the core (and so drove the I/O).
    fn tick(&self, runtime: &Runtime) -> bool {
        self.callers.fetch_add(1, Ordering::SeqCst);
        let leave = Leave {
            handover: self,
            waited: Cell::new(false),
            blocked: false,
        };
        self.wanted.notify_waiters();
        // Armed before the check below, so a blocked caller that comes after it wakes this turn.
        let mut caller_came = std::pin::pin!(self.wanted.notified());
        caller_came.as_mut().enable();
        if self.blocked.load(Ordering::SeqCst) > 0 {
            // A blocked caller holds the core, or is about to: it drives.
            return false;
        }
        let mut turn = Turn::Started;
        runtime.block_on(std::future::poll_fn(|context| {
            match turn {
                Turn::Started => {
                    // Only the thread holding the core runs the before-park hook, so a wake-up
                    // from it says this thread holds the core and has run what was ready.
                    swap_busy_polling(Some((far_future(), context.waker().clone())));
                    turn = Turn::WaitingForCore;
                }
                Turn::WaitingForCore if busy_polling_taken() => {
                    // The hook's wake-up polled the sockets; once more runs what they woke.
                    leave.waited.set(true);
                    turn = Turn::Driving;
                    context.waker().wake_by_ref();
                }
                Turn::WaitingForCore => {
                    // Polled before the hook ran: a caller came for the core (give way to a
                    // blocked one), or this thread has just taken it. The waker differs with and
                    // without the core, so the hook must get this one.
                    if self.blocked.load(Ordering::SeqCst) > 0 {
                        swap_busy_polling(None);
                        return Poll::Ready(());
                    }
                    swap_busy_polling(Some((far_future(), context.waker().clone())));
                    caller_came.set(self.wanted.notified());
                    caller_came.as_mut().enable();
                }
                Turn::Driving => return Poll::Ready(()),
            }
            let _ = caller_came.as_mut().poll(context);
            Poll::Pending
        }));
        leave.waited.get()
    }

    /// Polls `future` once with `waker`, without waiting for the core (see [`poll_now`]).
    fn poll_now<F: Future + ?Sized>(
        &self,
        runtime: &Runtime,
        mut future: Pin<&mut F>,
        waker: &Waker,
    ) -> Poll<F::Output> {
        if self.core_is_held() || tokio::runtime::Handle::try_current().is_ok() {
            let _context = runtime.enter();
            return future.poll(&mut Context::from_waker(waker));
        }
        // `Runtime::block_on` polls its future before anything else, and this one is done then.
        runtime.block_on(std::future::poll_fn(|_| {
            Poll::Ready(future.as_mut().poll(&mut Context::from_waker(waker)))
        }))
    }
}

/// Counts a caller out, even when its future panicked, and disarms its busy poll: a later call
/// on this thread that expects no reply must not poll on this one's leftover waker. Only a call
/// that waited (and so ran the I/O) counts as an entry that defers the take-back: a thread making
/// calls refused at once (publishing on a dead link in a loop) drives nothing, and must not leave
/// the I/O of every other connection undriven for a pause after each call.
struct Leave<'a> {
    handover: &'a Handover,
    waited: Cell<bool>,
    blocked: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        swap_busy_polling(None);
        let handover = self.handover;
        if self.waited.get() {
            handover.entries.fetch_add(1, Ordering::SeqCst);
        }
        if self.blocked {
            handover.blocked.fetch_sub(1, Ordering::SeqCst);
        }
        // SeqCst on both sides: either this sees `awaiting_idle` or the background thread sees
        // no callers before it waits.
        if handover.callers.fetch_sub(1, Ordering::SeqCst) == 1
            && handover.awaiting_idle.load(Ordering::SeqCst)
        {
            let _guard = lock(&handover.idle_lock);
            handover.idle.notify_one();
        }
    }
}

/// Until when a blocked caller busy-polls for the reply it expects; `NONE` sleeps at once.
#[derive(Clone, Copy, Debug)]
pub struct BusyPoll(Option<Instant>);

impl BusyPoll {
    pub const NONE: BusyPoll = BusyPoll(None);

    /// For the reply to a request sent at `sent`: the process's budget from then.
    pub fn after(sent: Instant) -> Self {
        match BUSY_POLL_MICROS.load(Ordering::Relaxed) {
            0 => BusyPoll::NONE,
            micros => BusyPoll(sent.checked_add(Duration::from_micros(micros))),
        }
    }

    /// When the busy poll ends, if it polls at all.
    pub fn until(self) -> Option<Instant> {
        self.0
    }

    /// Leaves `waker` for the before-park hook, which checks whether the budget lasts.
    fn arm(self, waker: &Waker) {
        if let Some(until) = self.0 {
            swap_busy_polling(Some((until, waker.clone())));
        }
    }
}

/// Runs on the thread that holds the core when it has nothing left to run: if that thread's
/// caller busy-polls, waking it makes the runtime poll the sockets with a zero timeout and poll
/// the caller again, instead of sleeping. Threads waiting for the core never run it: they sleep.
fn busy_poll_before_park() {
    if let Some((until, waker)) = swap_busy_polling(None) {
        if Instant::now() < until {
            // Lets another runnable thread on this CPU go first (the broker, on a busy machine);
            // returns at once when there is none.
            std::thread::yield_now();
            waker.wake();
        }
    }
}

/// How far an event loop's turn is (see `Handover::tick`).
enum Turn {
    Started,
    WaitingForCore,
    Driving,
}

/// Whether the before-park hook took this thread's busy poll (so this thread holds the core).
fn busy_polling_taken() -> bool {
    BUSY_POLLING
        .try_with(|slot| slot.borrow().is_none())
        .unwrap_or(true)
}

/// A busy-poll end that the hook always finds ahead: a turn is woken by its first park.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Replaces this thread's busy poll, returning the one it had; a thread being torn down has none.
fn swap_busy_polling(busy_poll: Option<(Instant, Waker)>) -> Option<(Instant, Waker)> {
    BUSY_POLLING
        .try_with(|slot| slot.replace(busy_poll))
        .ok()
        .flatten()
}

/// Sets how long, in microseconds, a blocking call that expects a reply busy-polls for it before
/// the thread sleeps (0: never); returns the previous budget. Applies to calls made after it.
#[pyfunction]
pub fn set_busy_poll(microseconds: &Bound<'_, PyAny>) -> PyResult<u64> {
    const WHAT: &str = "set_busy_poll(microseconds)";
    let micros = busy_poll_micros(arguments::integer(microseconds, WHAT)?, WHAT)?;
    Ok(BUSY_POLL_MICROS.swap(micros, Ordering::Relaxed))
}

/// Reads `UMQTT_BUSY_POLL_US` when the module is imported: a bad value fails the import, with
/// the variable named, rather than running with a budget nobody chose.
pub fn busy_poll_from_environment() -> PyResult<()> {
    let Some(value) = std::env::var_os(BUSY_POLL_VARIABLE) else {
        return Ok(());
    };
    let text = value.to_string_lossy();
    let number = text.trim().parse::<i64>().map_err(|_| {
        PyValueError::new_err(format!(
            "{BUSY_POLL_VARIABLE} must be a whole number of microseconds, not {text:?}"
        ))
    })?;
    let micros = busy_poll_micros(number, BUSY_POLL_VARIABLE)?;
    BUSY_POLL_MICROS.store(micros, Ordering::Relaxed);
    Ok(())
}

fn busy_poll_micros(number: i64, what: &str) -> PyResult<u64> {
    u64::try_from(number)
        .ok()
        .filter(|micros| *micros <= MAX_BUSY_POLL_MICROS)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what} must be between 0 and {MAX_BUSY_POLL_MICROS} microseconds, not {number}"
            ))
        })
}

/// A point in time after which a wait gives up; `None` waits for ever.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// `seconds` from now; a wait too long to represent (inf, 1e300) is a wait for ever.
    pub fn after(seconds: Option<f64>) -> Self {
        Deadline(seconds.and_then(|s| {
            let wait = Duration::try_from_secs_f64(s.max(0.0)).ok()?;
            Instant::now().checked_add(wait)
        }))
    }

    pub fn never() -> Self {
        Deadline(None)
    }

    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }
}

/// The next slice to sleep: at most `SIGNAL_SLICE`, never past the deadline.
pub fn signal_slice(deadline: &Deadline) -> Duration {
    deadline
        .remaining()
        .map_or(SIGNAL_SLICE, |left| left.min(SIGNAL_SLICE))
}

/// Runs `future` to completion on the calling thread with the GIL released, raising
/// `KeyboardInterrupt` (or whatever a signal handler raises) promptly. Returns `None` on timeout.
pub fn block_on<F>(
    py: Python<'_>,
    deadline: Deadline,
    busy_poll: BusyPoll,
    future: F,
) -> PyResult<Option<F::Output>>
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a blocking umqtt call was made from inside the umqtt I/O runtime; use umqtt.aio there",
        ));
    }
    let runtime = runtime()?;
    let mut future = std::pin::pin!(future);
    loop {
        let slice = signal_slice(&deadline);
        let step = py.detach(|| {
            HANDOVER.block_on(runtime, busy_poll, async {
                tokio::time::timeout(slice, future.as_mut()).await
            })
        });
        if let Ok(output) = step {
            return Ok(Some(output));
        }
        py.check_signals()?;
        if deadline.expired() {
            return Ok(None);
        }
    }
}

/// One short turn of the runtime on an event loop's thread, GIL released: runs everything
/// ready, polls the sockets without waiting, runs what they woke and returns, so the loop's
/// requests are written and the replies already in are read on the loop's own thread. Takes the
/// core from the background thread (waiting for it to let go, as a blocked caller does) but
/// never from a blocked caller, which drives meanwhile. Returns whether this thread drove.
pub fn tick(py: Python<'_>) -> PyResult<bool> {
    let runtime = runtime()?;
    Ok(py.detach(|| HANDOVER.tick(runtime)))
}

/// Whether a thread drives the runtime now (a guess that may be stale: see `core_is_held`).
pub fn core_is_held() -> bool {
    HANDOVER.core_is_held()
}

/// Polls an event loop's operation once with its own waker, GIL released, as [`poll_now`] does.
pub fn poll_detached<T: Send>(
    py: Python<'_>,
    future: Pin<&mut (dyn Future<Output = T> + Send)>,
    waker: &Waker,
) -> PyResult<Poll<T>> {
    let runtime = runtime()?;
    Ok(py.detach(|| HANDOVER.poll_now(runtime, future, waker)))
}

/// An event loop that drove the runtime stops polling and waits for its replies elsewhere: the
/// background thread takes the core back now, to read them.
pub fn hand_back() {
    HANDOVER.hand_back();
}

/// Polls `future` once, for calls that are usually done then (a QoS 0 publish), without waiting
/// for the core: a thread that holds it (the background thread, or a caller) would have to give it
/// up first. When one does, this polls outside the core, in the runtime's context (so the future
/// may create timers and sockets); the connection's task it wakes is then run by the holder,
/// woken through the runtime's eventfd. When nobody does, it polls inside the core, which queues
/// that task there without a system call for the next holder: the caller's next blocking call (in
/// a publish-then-`wait_msg()` loop) or the background thread, which takes the core back within
/// one to two `RECLAIM_AFTER` pauses, as it would for the eventfd. Never blocks, so it keeps the
/// GIL: that first poll must therefore neither log nor run Python code (a log handler waiting for
/// a lock held by a thread that waits for this core would deadlock). If the future is not done,
/// `block_on` polls it again, and whatever it waits for wakes that.
pub fn poll_now<F: Future>(future: Pin<&mut F>) -> PyResult<Poll<F::Output>> {
    Ok(HANDOVER.poll_now(runtime()?, future, Waker::noop()))
}

#[cfg(test)]
mod tests;
