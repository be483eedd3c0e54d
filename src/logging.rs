//! Rust-side logs (ours under "umqtt", rumqttc's under "rumqttc.*") go to Python's `logging`
//! through pyo3-log, with two corrections:
//! - pyo3-log caches each logger's level at its first record, so an application that raises a
//!   level later (`basicConfig`, `setLevel`) would never see more; the cache is dropped at most
//!   once a second instead, keeping the per-record cost a cache lookup;
//! - records are dropped once the interpreter is shutting down, when attaching to Python would
//!   panic on a runtime thread;
//! - an exception escaping a handler is reported, not left pending on the logging thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use log::{LevelFilter, Log, Metadata, Record};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3_log::{Caching, ResetHandle};

const REFRESH_MILLIS: u64 = 1000;

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

struct Bridge {
    inner: pyo3_log::Logger,
    reset: ResetHandle,
    started: Instant,
    last_refresh: AtomicU64,
}

impl Bridge {
    fn refresh(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_refresh.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFRESH_MILLIS
            && self
                .last_refresh
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.reset.reset();
        }
    }
}

impl Log for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !SHUTTING_DOWN.load(Ordering::Relaxed) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if SHUTTING_DOWN.load(Ordering::Relaxed) {
            return;
        }
        self.refresh();
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        Python::attach(|py| {
            let earlier = PyErr::take(py);
            self.inner.log(record);
            if let Some(raised) = PyErr::take(py) {
                report_escaped(py, raised);
            }
            if let Some(earlier) = earlier {
                earlier.restore(py);
            }
        });
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// An exception that escaped a handler or filter: pyo3-log would leave it pending on this thread,
/// which may be a caller blocked in a umqtt call (see docs/design.md, "Threads and logging").
fn report_escaped(py: Python<'_>, raised: PyErr) {
    if raised.is_instance_of::<PyKeyboardInterrupt>(py) && ctrl_c_raises_here(py) {
        // A Ctrl-C that landed in the handler: raised again at the main thread's next check, by
        // the same default handler that raised it.
        // SAFETY: PyErr_SetInterrupt only sets a flag; it may be called from any thread.
        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
    } else {
        raised.write_unraisable(py, None);
    }
}

/// True on the main thread while SIGINT has Python's default handler: only there can a Ctrl-C
/// raise KeyboardInterrupt inside a log handler, and only there does `PyErr_SetInterrupt` raise it
/// again (an application's own handler would run twice; SIG_IGN or SIG_DFL would do nothing).
fn ctrl_c_raises_here(py: Python<'_>) -> bool {
    let check = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        let signal = py.import("signal")?;
        let on_main = threading
            .call_method0("current_thread")?
            .is(&threading.call_method0("main_thread")?);
        let handler = signal.call_method1("getsignal", (signal.getattr("SIGINT")?,))?;
        Ok(on_main && handler.is(&signal.getattr("default_int_handler")?))
    };
    check().unwrap_or(false)
}

/// Called by `atexit`: from here on, Rust logs are dropped.
#[pyfunction]
fn _stop_logging() {
    SHUTTING_DOWN.store(true, Ordering::Relaxed);
}

pub fn install(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    let inner = pyo3_log::Logger::new(py, Caching::LoggersAndLevels)?;
    let bridge = Bridge {
        reset: inner.reset_handle(),
        inner,
        started: Instant::now(),
        last_refresh: AtomicU64::new(0),
    };
    // Err means a logger is already installed (the module was loaded twice): keep that one.
    if log::set_boxed_logger(Box::new(bridge)).is_ok() {
        log::set_max_level(LevelFilter::Debug);
        let stop = wrap_pyfunction!(_stop_logging, module)?;
        py.import("atexit")?.call_method1("register", (stop,))?;
    }
    Ok(())
}
