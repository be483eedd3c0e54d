//! The hand-over and busy polling, on a runtime and a hand-over of the tests' own, built as the
//! process's are. Every assertion is about outcomes (which thread ran a task, whether a call
//! returned, how many polls a structure allows), never about how fast a thread ran: on a loaded
//! machine a check may pass without having been put under much pressure, but it cannot fail by
//! chance. Timeouts only turn a hang into a failure.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::{mpsc as channel, oneshot};

use super::{build, swap_busy_polling, BusyPoll, Handover, RECLAIM_AFTER};
use crate::test_support::{wait_for, within, HANG};

type Errand = Box<dyn FnOnce() + Send>;

/// A runtime, its hand-over, and a task that runs errands the way a connection's driver runs
/// (only on the thread that holds the core).
#[derive(Clone)]
struct Fixture {
    runtime: &'static Runtime,
    handover: &'static Handover,
    errands: channel::UnboundedSender<Errand>,
    /// The thread that drives the runtime while no caller does.
    background: Option<ThreadId>,
}

impl Fixture {
    /// With `background`, a thread drives the runtime while no caller does, as `umqtt-io` does.
    fn new(background: bool) -> Self {
        // Both live as long as the background thread, which never ends: as in the process.
        let runtime: &'static Runtime = Box::leak(Box::new(build().expect("a runtime")));
        let handover: &'static Handover = Box::leak(Box::new(Handover::new()));
        let background = background.then(|| {
            std::thread::Builder::new()
                .name("test-umqtt-io".into())
                .spawn(move || handover.drive_in_background(runtime))
                .expect("a background thread")
                .thread()
                .id()
        });
        let (errands, mut queue) = channel::unbounded_channel::<Errand>();
        runtime.spawn(async move {
            while let Some(errand) = queue.recv().await {
                errand();
            }
        });
        Fixture {
            runtime,
            handover,
            errands,
            background,
        }
    }

    /// Runs `future` as a blocked Python caller does.
    fn call<F: Future>(&self, busy_poll: BusyPoll, future: F) -> F::Output {
        self.handover.block_on(self.runtime, busy_poll, future)
    }

    /// A reply from the errand task, which only the core's holder can run.
    fn reply(&self) -> impl Future<Output = ()> + Send + 'static {
        let (done, finished) = oneshot::channel();
        self.send(move || {
            let _ = done.send(());
        });
        async move { finished.await.expect("the errand task dropped a reply") }
    }

    /// The thread that runs the errand task now, waited for from outside the runtime: a hang
    /// here means that nobody drives the runtime.
    fn holder(&self) -> ThreadId {
        let (done, finished) = mpsc::channel();
        self.send(move || {
            let _ = done.send(std::thread::current().id());
        });
        finished
            .recv_timeout(HANG)
            .expect("nobody drives the runtime")
    }

    fn send(&self, errand: impl FnOnce() + Send + 'static) {
        if self.errands.send(Box::new(errand)).is_err() {
            panic!("the errand task ended");
        }
    }

    /// A caller, on a thread of its own, that holds the core until its gate is released.
    fn caller_holding_the_core(&self) -> (Gate, std::thread::JoinHandle<()>) {
        let gate = Gate::default();
        let caller = {
            let (fixture, gate) = (self.clone(), gate.clone());
            std::thread::spawn(move || fixture.call(BusyPoll::NONE, gate.wait()))
        };
        let id = caller.thread().id();
        wait_for("a caller holding the core", || self.holder() == id);
        (gate, caller)
    }

    /// Makes a first poll (`poll_now`) of a future that spawns a task, as a QoS 0 publish wakes its
    /// connection's; the task tells `ran_on` the thread it ran on.
    fn first_poll_spawning(&self, ran_on: impl FnOnce(ThreadId) + Send + 'static) {
        let mut spawning = Box::pin(async move {
            tokio::spawn(async move { ran_on(std::thread::current().id()) });
        });
        let first_poll = self
            .handover
            .poll_now(self.runtime, spawning.as_mut(), Waker::noop());
        assert!(first_poll.is_ready());
    }

    /// No caller is left, and the background thread has taken the core back.
    fn assert_driven_in_background(&self) {
        assert_eq!(self.handover.callers.load(SeqCst), 0);
        assert_eq!(Some(self.holder()), self.background);
    }
}

fn busy_until(until: Instant) -> BusyPoll {
    BusyPoll(Some(until))
}

/// Runs `scenario` on a fixture of its own (see `Fixture::new`), with the hang detector.
fn scenario(background: bool, what: &str, scenario: impl FnOnce(Fixture) + Send + 'static) {
    let fixture = Fixture::new(background);
    within(what, move || scenario(fixture));
}

/// A future that is pending until `release` is called, and counts its polls.
#[derive(Clone, Default)]
struct Gate {
    released: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
    polls: Arc<AtomicUsize>,
}

impl Gate {
    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let gate = self.clone();
        std::future::poll_fn(move |context| {
            gate.polls.fetch_add(1, SeqCst);
            // The waker is left before the flag is read, so a release cannot fall in between.
            *gate.waker.lock().expect("the gate's lock") = Some(context.waker().clone());
            if gate.released.load(SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn release(&self) {
        self.released.store(true, SeqCst);
        if let Some(waker) = self.waker.lock().expect("the gate's lock").take() {
            waker.wake();
        }
    }

    fn polls(&self) -> usize {
        self.polls.load(SeqCst)
    }
}

/// Several threads make call after call of every kind the client makes (done on the first poll,
/// waiting for a reply with and without a busy poll, staying in for longer than a reclaim
/// pause), so the core passes between them and the background thread thousands of times. After
/// each round, with every caller gone, the background thread must have taken the core back: a
/// lost wake-up (of the background thread, or of a caller waiting for the core) hangs.
#[test]
fn callers_and_the_background_thread_hand_the_core_over_without_losing_a_wake_up() {
    const ROUNDS: usize = 20;
    const CALLERS: usize = 4;
    const CALLS: usize = 100;
    scenario(true, "the hand-over under contention", |fixture| {
        for round in 0..ROUNDS {
            let callers: Vec<_> = (0..CALLERS)
                .map(|caller| {
                    let fixture = fixture.clone();
                    std::thread::spawn(move || {
                        for call in 0..CALLS {
                            match (round + caller + call) % 16 {
                                // Done on the first poll: drove nothing.
                                0..=3 => fixture.call(BusyPoll::NONE, async {}),
                                // In for a whole pause: the background thread waits on its condvar.
                                4 => fixture.call(BusyPoll::NONE, async {
                                    tokio::time::sleep(RECLAIM_AFTER * 2).await;
                                }),
                                5..=9 => {
                                    let budget = Instant::now() + Duration::from_micros(200);
                                    fixture.call(busy_until(budget), fixture.reply());
                                }
                                _ => fixture.call(BusyPoll::NONE, fixture.reply()),
                            }
                        }
                    })
                })
                .collect();
            for caller in callers {
                caller.join().expect("a caller panicked");
            }
            fixture.assert_driven_in_background();
        }
    });
}

/// A caller that stays in holds the core, so it runs every connection's task (not only its
/// own); the background thread meanwhile waits on its condition variable, and takes the core
/// back once woken by the caller leaving.
#[test]
fn a_caller_that_stays_in_drives_every_task_and_hands_the_core_back_when_it_leaves() {
    scenario(true, "a long call", |fixture| {
        let (gate, caller) = fixture.caller_holding_the_core();
        let caller_id = caller.thread().id();
        wait_for(
            "the background thread waiting for the caller to leave",
            || fixture.handover.awaiting_idle.load(SeqCst),
        );
        assert_eq!(fixture.holder(), caller_id);
        gate.release();
        caller.join().expect("the caller panicked");
        fixture.assert_driven_in_background();
    });
}

/// A panic in a caller's future (a bug) propagates to that caller only: it is counted out, its
/// busy poll disarmed, and the core goes back to the background thread.
#[test]
fn a_caller_whose_future_panics_is_counted_out() {
    scenario(true, "a panicking call", |fixture| {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fixture.call(busy_until(Instant::now() + HANG), async {
                tokio::task::yield_now().await;
                panic!("a request's future panicked (as the test wants)");
            })
        }));
        assert!(outcome.is_err());
        assert!(swap_busy_polling(None).is_none());
        assert_eq!(
            fixture.handover.entries.load(SeqCst),
            1,
            "a call that waited"
        );
        fixture.assert_driven_in_background();
    });
}

/// While its budget lasts, a busy-polling caller's future is polled again and again even though
/// nothing wakes it: the park hook does. Without the hook this call would never return.
#[test]
fn a_busy_poll_polls_a_future_nobody_wakes_while_its_budget_lasts() {
    scenario(true, "a busy poll", |fixture| {
        let mut polls = 0;
        fixture.call(
            busy_until(Instant::now() + HANG),
            std::future::poll_fn(|_| {
                polls += 1;
                if polls < 1000 {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }),
        );
    });
}

/// Once its budget is spent, a caller sleeps: its future is polled again only when woken. A
/// budget that was not honoured would poll it thousands of times in the 100 ms it then waits.
#[test]
fn a_busy_poll_stops_when_its_budget_is_spent() {
    scenario(true, "the end of a busy poll", |fixture| {
        let until = Instant::now() + Duration::from_millis(20);
        let gate = Gate::default();
        let late_polls = Arc::new(AtomicUsize::new(0));
        let releaser = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let release_at = until + Duration::from_millis(100);
                std::thread::sleep(release_at.saturating_duration_since(Instant::now()));
                gate.release();
            })
        };
        let counted = {
            let (late_polls, mut waiting) = (late_polls.clone(), Box::pin(gate.wait()));
            std::future::poll_fn(move |context| {
                if Instant::now() >= until {
                    late_polls.fetch_add(1, SeqCst);
                }
                waiting.as_mut().poll(context)
            })
        };
        fixture.call(busy_until(until), counted);
        releaser.join().expect("the releaser panicked");
        // At most: one poll whose budget check came just before the end, one when the caller
        // took the core late (after the end), and the release.
        let late = late_polls.load(SeqCst);
        assert!(late <= 3, "{late} polls after the budget was spent");
    });
}

/// A call that expects no reply does not poll on what an earlier call on the same thread left
/// armed: leaving disarms it (here the call was woken without the park hook, which would have
/// taken it).
#[test]
fn a_call_leaves_no_busy_poll_behind() {
    scenario(true, "a busy-polling call", |fixture| {
        fixture.call(busy_until(Instant::now() + HANG), tokio::task::yield_now());
        assert!(swap_busy_polling(None).is_none());
    });
}

/// A caller waiting for the core (another caller holds it) sleeps until the core or its own
/// wake-up comes, whatever its budget: only the core's holder busy-polls.
#[test]
fn a_caller_waiting_for_the_core_does_not_busy_poll() {
    scenario(true, "two callers", |fixture| {
        let (holding, holder) = fixture.caller_holding_the_core();
        let holder_id = holder.thread().id();
        let waiting = Gate::default();
        let waiter = {
            let (fixture, waiting) = (fixture.clone(), waiting.clone());
            std::thread::spawn(move || {
                fixture.call(busy_until(Instant::now() + HANG), waiting.wait());
            })
        };
        wait_for("the second caller's first poll", || waiting.polls() > 0);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(fixture.holder(), holder_id);
        // One poll; a waiting caller that busy-polled would have made thousands by now.
        assert!(waiting.polls() <= 2, "{} polls", waiting.polls());
        waiting.release();
        waiter.join().expect("the second caller panicked");
        holding.release();
        holder.join().expect("the first caller panicked");
    });
}

/// A first poll made while nobody holds the core (no background thread here) polls inside it:
/// the task it spawns is queued there and run by the next holder.
#[test]
fn a_first_poll_with_the_core_free_leaves_its_task_to_the_next_holder() {
    scenario(false, "a first poll with the core free", |fixture| {
        let (ran_on, ran) = oneshot::channel();
        fixture.first_poll_spawning(move |thread| {
            let _ = ran_on.send(thread);
        });
        let ran_on = fixture.call(BusyPoll::NONE, ran);
        assert_eq!(ran_on, Ok(std::thread::current().id()));
    });
}

/// A first poll made while a caller holds the core polls outside it; the task it spawns is run
/// by the holder, woken through the runtime.
#[test]
fn a_first_poll_while_a_caller_holds_the_core_leaves_its_task_to_that_caller() {
    scenario(true, "a first poll beside a caller", |fixture| {
        let (gate, caller) = fixture.caller_holding_the_core();
        let caller_id = caller.thread().id();
        let (ran_on, ran) = mpsc::channel();
        fixture.first_poll_spawning(move |thread| {
            let _ = ran_on.send(thread);
        });
        assert_eq!(ran.recv_timeout(HANG), Ok(caller_id));
        gate.release();
        caller.join().expect("the caller panicked");
    });
}

impl Fixture {
    /// An event loop's turn, from the calling thread (see `Handover::tick`).
    fn turn(&self) -> bool {
        self.handover.tick(self.runtime)
    }

    /// The thread an errand queued now runs on, asked without waiting: `ran_on` is told.
    fn errand_reporting_its_thread(&self) -> mpsc::Receiver<ThreadId> {
        let (done, ran_on) = mpsc::channel();
        self.send(move || {
            let _ = done.send(std::thread::current().id());
        });
        ran_on
    }
}

#[test]
fn a_turn_with_the_core_free_runs_what_is_ready_on_its_own_thread() {
    scenario(false, "a turn on a free core", |fixture| {
        let ran_on = fixture.errand_reporting_its_thread();
        assert!(fixture.turn(), "the turn did not drive");
        assert_eq!(ran_on.try_recv().ok(), Some(std::thread::current().id()));
        assert_eq!(fixture.handover.callers.load(SeqCst), 0);
    });
}

/// The background thread lets go for a turn as it does for a blocked caller, and takes the core
/// back once the loop stops taking turns.
#[test]
fn a_turn_takes_the_core_from_the_background_thread_which_takes_it_back() {
    scenario(
        true,
        "a turn while the background thread drives",
        |fixture| {
            fixture.assert_driven_in_background();
            for _ in 0..100 {
                let ran_on = fixture.errand_reporting_its_thread();
                if fixture.turn() {
                    // What was queued before the turn ran by the time it ended, here or before.
                    let ran_on = ran_on.recv_timeout(HANG).expect("the errand never ran");
                    assert!(
                        ran_on == std::thread::current().id() || Some(ran_on) == fixture.background
                    );
                }
            }
            fixture.handover.hand_back();
            wait_for("the background thread holding the core", || {
                Some(fixture.holder()) == fixture.background
            });
            fixture.assert_driven_in_background();
        },
    );
}

/// A blocked caller may hold the core for as long as its call lasts: an event loop's turn must not
/// wait for it, and what the turn's operations queued is run by that caller.
#[test]
fn a_turn_never_waits_for_a_blocked_caller() {
    scenario(true, "a turn while a caller holds the core", |fixture| {
        let (gate, caller) = fixture.caller_holding_the_core();
        let caller_thread = caller.thread().id();
        for _ in 0..100 {
            assert!(
                !fixture.turn(),
                "the turn drove while a caller held the core"
            );
        }
        assert_eq!(fixture.holder(), caller_thread);
        gate.release();
        caller.join().expect("the caller panicked");
        fixture.assert_driven_in_background();
    });
}

/// A turn that waits for the core (held by something that is not a blocked caller, as another
/// loop's turn) gives way as soon as a blocked caller comes for the core too.
#[test]
fn a_turn_waiting_for_the_core_gives_way_to_a_blocked_caller() {
    scenario(false, "a turn giving way", |fixture| {
        // Holds the core outside the hand-over's count, as a turn of another loop would.
        let other_turn = Gate::default();
        let other = {
            let (runtime, gate) = (fixture.runtime, other_turn.clone());
            std::thread::spawn(move || runtime.block_on(gate.wait()))
        };
        let other_thread = other.thread().id();
        wait_for("the other turn holding the core", || {
            fixture.holder() == other_thread
        });
        let turn = {
            let fixture = fixture.clone();
            std::thread::spawn(move || fixture.turn())
        };
        wait_for("the turn waiting for the core", || {
            fixture.handover.callers.load(SeqCst) == 1
        });
        let caller_came = Gate::default();
        let caller = {
            let (fixture, gate) = (fixture.clone(), caller_came.clone());
            std::thread::spawn(move || fixture.call(BusyPoll::NONE, gate.wait()))
        };
        assert!(!turn.join().expect("the turn panicked"), "the turn drove");
        other_turn.release();
        other.join().expect("the other turn panicked");
        caller_came.release();
        caller.join().expect("the caller panicked");
        assert_eq!(fixture.handover.callers.load(SeqCst), 0);
    });
}

/// Many threads taking turns while callers come and go: every turn returns, nothing hangs.
#[test]
fn turns_and_callers_share_the_core_without_a_hang() {
    scenario(true, "turns among callers", |fixture| {
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let fixture = fixture.clone();
                std::thread::spawn(move || {
                    for call in 0..200 {
                        match (thread + call) % 4 {
                            0 => fixture.call(BusyPoll::NONE, fixture.reply()),
                            1 => fixture.handover.hand_back(),
                            _ => {
                                fixture.turn();
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a thread panicked");
        }
        wait_for("the background thread holding the core", || {
            Some(fixture.holder()) == fixture.background
        });
        fixture.assert_driven_in_background();
    });
}
