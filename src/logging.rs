//! Rust-side logs go to Python's `logging` through pyo3-log, all under the `umqtt` logger: ours
//! under `umqtt` and `umqtt.packets` (every packet, at DEBUG: `packets`), other crates' under
//! `umqtt.` and their target (`rumqttc::state` becomes `umqtt.rumqttc.state`). With corrections:
//! - pyo3-log caches each logger's level at its first record, so an application that raises a
//!   level later (`basicConfig`, `setLevel`) would never see more; the levels are read again at
//!   every connect and once a second (a thread of ours, with the GIL for a few microseconds);
//! - whether `umqtt.packets` takes DEBUG records is kept in one flag, read for every packet
//!   (`packets_logged`), so a packet nobody logs costs one atomic load;
//! - records are dropped once the interpreter is shutting down, when attaching to Python would
//!   panic on a runtime thread;
//! - an exception escaping a handler is reported, not left pending on the logging thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3_log::{Caching, ResetHandle};

/// The target of the packet records: the Python logger `umqtt.packets`.
pub const PACKETS: &str = "umqtt::packets";
const PACKETS_LOGGER: &str = "umqtt.packets";
/// How often the levels are read again while clients exist.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
static PACKETS_DEBUG: AtomicBool = AtomicBool::new(false);
static LEVEL_CACHE: OnceLock<ResetHandle> = OnceLock::new();
static REFRESHER: Once = Once::new();

struct Bridge {
    inner: pyo3_log::Logger,
}

/// A record's target under `umqtt`: `None` when it is there already (ours), else the target
/// prefixed (`rumqttc::state` -> `umqtt::rumqttc::state`, the logger `umqtt.rumqttc.state`).
fn under_umqtt(target: &str) -> Option<String> {
    let ours = target == "umqtt" || target.starts_with("umqtt::");
    (!ours).then(|| format!("umqtt::{target}"))
}

impl Bridge {
    fn forward(&self, record: &Record<'_>) {
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
}

impl Log for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if SHUTTING_DOWN.load(Ordering::Relaxed) {
            return false;
        }
        match under_umqtt(metadata.target()) {
            None => self.inner.enabled(metadata),
            Some(target) => {
                let renamed = Metadata::builder()
                    .level(metadata.level())
                    .target(&target)
                    .build();
                self.inner.enabled(&renamed)
            }
        }
    }

    fn log(&self, record: &Record<'_>) {
        if SHUTTING_DOWN.load(Ordering::Relaxed) {
            return;
        }
        match under_umqtt(record.target()) {
            None => self.forward(record),
            Some(target) => self.forward(
                &Record::builder()
                    .args(*record.args())
                    .level(record.level())
                    .target(&target)
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Whether the packet records are wanted: `umqtt.packets` took DEBUG records when last read.
pub fn packets_logged() -> bool {
    PACKETS_DEBUG.load(Ordering::Relaxed)
}

/// Reads the levels again: now (a connect, with the GIL), and from then on once a second.
pub fn refresh_levels(py: Python<'_>) {
    read_levels(py);
    REFRESHER.call_once(|| {
        // Without the thread, a level changed after connect() is read at the next connect().
        let _ = std::thread::Builder::new()
            .name("umqtt-log-levels".into())
            .spawn(keep_levels_fresh);
    });
}

fn read_levels(py: Python<'_>) {
    if let Some(cache) = LEVEL_CACHE.get() {
        cache.reset();
    }
    let debug = || -> PyResult<bool> {
        let logging = py.import("logging")?;
        let logger = logging.call_method1("getLogger", (PACKETS_LOGGER,))?;
        logger
            .call_method1("isEnabledFor", (logging.getattr("DEBUG")?,))?
            .is_truthy()
    };
    // A logging setup that raises here logs nothing, as it would log nothing itself.
    let wanted = debug().unwrap_or_else(|error| {
        error.write_unraisable(py, None);
        false
    });
    PACKETS_DEBUG.store(wanted, Ordering::Relaxed);
}

fn keep_levels_fresh() {
    loop {
        std::thread::sleep(REFRESH_EVERY);
        if SHUTTING_DOWN.load(Ordering::Relaxed) || Python::try_attach(read_levels).is_none() {
            return;
        }
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
    let reset = inner.reset_handle();
    // Err means a logger is already installed (the module was loaded twice): keep that one.
    if log::set_boxed_logger(Box::new(Bridge { inner })).is_ok() {
        let _ = LEVEL_CACHE.set(reset);
        log::set_max_level(LevelFilter::Debug);
        let stop = wrap_pyfunction!(_stop_logging, module)?;
        py.import("atexit")?.call_method1("register", (stop,))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_records_go_under_umqtt() {
        assert_eq!(under_umqtt("umqtt"), None);
        assert_eq!(under_umqtt(PACKETS), None);
        assert_eq!(
            under_umqtt("rumqttc::state").as_deref(),
            Some("umqtt::rumqttc::state")
        );
        assert_eq!(under_umqtt("umqttx").as_deref(), Some("umqtt::umqttx"));
    }
}
