//! What the Rust tests of concurrent code share: running a scenario with a hang detector.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Far longer than any of these tests takes on a loaded machine: only a hang runs into it.
pub const HANG: Duration = Duration::from_secs(60);

/// Runs `scenario` on a thread of its own and fails if it does not end within `HANG`.
pub fn within<T: Send + 'static>(what: &str, scenario: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || drop(done.send(scenario())));
    match finished.recv_timeout(HANG) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: hung"),
        Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: ended without an outcome"),
        },
    }
}

/// Waits for `condition`, checking every millisecond; fails after `HANG`.
pub fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}
