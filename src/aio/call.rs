//! What an awaited call returns: umqtt's own awaitable, with asyncio's future protocol done in
//! Rust, so that a call makes no `asyncio.Future` (and no done callback of its own to cancel it).
//!
//! A [`Call`] is both a future and a coroutine to asyncio. `await call` goes through a finished
//! one at once (`__next__` ends the iteration with its value), and yields a pending one to the
//! task with `_asyncio_future_blocking` set, as an `asyncio.Future` does: the task adds its
//! wake-up as a done callback, which runs (`loop.call_soon`, with the task's context) once the
//! bridge finishes the call. `asyncio.isfuture()` is true, so `ensure_future`, `gather` and
//! `wait_for` use it as it is; it has `send`, `throw` and `close`, so `create_task` takes it as a
//! coroutine. Cancelling it (`cancel()`, the task's cancellation, `throw`, `close`) drops its
//! operation, which is cancel-safe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use pyo3::{intern, PyTraverseError, PyVisit};

use super::{Operations, Outcome};
use crate::lock::lock;

/// A done callback and the context it runs in.
type DoneCallback = (Py<PyAny>, Option<Py<PyAny>>);

/// A copy of the state, for answers that run Python code.
enum Seen {
    Pending,
    Returned(Py<PyAny>),
    Raised(Py<PyAny>),
    Cancelled(Option<Py<PyAny>>),
}

enum State {
    /// The operation runs; the done callbacks wait for its end.
    Pending(Vec<DoneCallback>),
    Returned(Py<PyAny>),
    Raised(Py<PyAny>),
    /// Cancelled, with the message given to `cancel()`, if any.
    Cancelled(Option<Py<PyAny>>),
}

#[pyclass(frozen, weakref, module = "umqtt._native")]
pub struct Call {
    state: Mutex<State>,
    /// asyncio's `_asyncio_future_blocking`: set when yielded to the task that awaits it.
    blocking: AtomicBool,
    event_loop: Py<PyAny>,
    /// Where a pending call's operation waits, to drop it when the call is cancelled.
    operation: Option<(Arc<Operations>, u64)>,
}

impl Call {
    /// A call whose operation ended on its first poll.
    pub(super) fn finished<'py>(
        py: Python<'py>,
        event_loop: &Py<PyAny>,
        outcome: Outcome,
    ) -> PyResult<Bound<'py, Call>> {
        Bound::new(
            py,
            Call {
                state: Mutex::new(ended(py, outcome)),
                blocking: AtomicBool::new(false),
                event_loop: event_loop.clone_ref(py),
                operation: None,
            },
        )
    }

    /// A call whose operation `id` waits in `operations`.
    pub(super) fn pending<'py>(
        py: Python<'py>,
        event_loop: &Py<PyAny>,
        operations: Arc<Operations>,
        id: u64,
    ) -> PyResult<Bound<'py, Call>> {
        Bound::new(
            py,
            Call {
                state: Mutex::new(State::Pending(Vec::new())),
                blocking: AtomicBool::new(false),
                event_loop: event_loop.clone_ref(py),
                operation: Some((operations, id)),
            },
        )
    }

    /// The operation ended: keeps its outcome and runs the done callbacks, unless the call was
    /// cancelled meanwhile.
    pub(super) fn finish(slf: &Bound<'_, Self>, outcome: Outcome) -> PyResult<()> {
        let end = ended(slf.py(), outcome);
        slf.get().end_with(slf, end).map(drop)
    }

    /// How it ended so far, taken out of the lock before any Python code runs.
    fn seen(&self, py: Python<'_>) -> Seen {
        match &*lock(&self.state) {
            State::Pending(_) => Seen::Pending,
            State::Returned(value) => Seen::Returned(value.clone_ref(py)),
            State::Raised(error) => Seen::Raised(error.clone_ref(py)),
            State::Cancelled(message) => {
                Seen::Cancelled(message.as_ref().map(|message| message.clone_ref(py)))
            }
        }
    }

    /// Ends a pending call with `end` and schedules its done callbacks; false if it had ended.
    fn end_with(&self, slf: &Bound<'_, Self>, end: State) -> PyResult<bool> {
        let callbacks = {
            let mut state = lock(&self.state);
            match &mut *state {
                State::Pending(callbacks) => {
                    let callbacks = std::mem::take(callbacks);
                    *state = end;
                    callbacks
                }
                _ => return Ok(false),
            }
        };
        for (callback, context) in callbacks {
            self.call_soon(slf, callback.bind(slf.py()), context)?;
        }
        Ok(true)
    }

    /// Cancels a pending call and drops its operation; false if it had ended.
    fn cancel_with(&self, slf: &Bound<'_, Self>, message: Option<Py<PyAny>>) -> PyResult<bool> {
        if !self.end_with(slf, State::Cancelled(message))? {
            return Ok(false);
        }
        if let Some((operations, id)) = &self.operation {
            operations.cancel(*id)?;
        }
        Ok(true)
    }

    fn call_soon(
        &self,
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let event_loop = self.event_loop.bind(py);
        let kwargs = match context {
            Some(context) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "context"), context)?;
                Some(kwargs)
            }
            None => None,
        };
        // Interned: this runs once per pending call that ends, on the loop's thread.
        event_loop.call_method(intern!(py, "call_soon"), (callback, slf), kwargs.as_ref())?;
        Ok(())
    }

    /// The next step of `await`: the call itself while pending (with the blocking flag set, as
    /// asyncio expects of a future yielded to its task), else its value (`Ok(None)` ends the
    /// iteration with None) or its exception.
    fn step<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        match this.seen(py) {
            Seen::Pending => {
                this.blocking.store(true, Ordering::SeqCst);
                Ok(Some(slf.clone().into_any()))
            }
            Seen::Returned(value) if value.is_none(py) => Ok(None),
            Seen::Returned(value) => Err(PyStopIteration::new_err((value,))),
            Seen::Raised(error) => Err(PyErr::from_value(error.into_bound(py))),
            Seen::Cancelled(message) => Err(cancelled_error(py, message.as_ref())?),
        }
    }
}

/// The state an outcome ends a call in.
fn ended(py: Python<'_>, outcome: Outcome) -> State {
    match outcome
        .map_err(|error| error.into_pyerr(py))
        .and_then(|value| value(py))
    {
        Ok(value) => State::Returned(value),
        Err(error) => State::Raised(error.into_value(py).into_any()),
    }
}

static ASYNCIO: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn asyncio_error(py: Python<'_>, name: &str, message: Option<&Py<PyAny>>) -> PyResult<PyErr> {
    let asyncio = ASYNCIO.get_or_try_init(py, || py.import("asyncio").map(Bound::unbind))?;
    let class = asyncio.bind(py).getattr(name)?;
    let error = match message {
        Some(message) => class.call1((message,))?,
        None => class.call0()?,
    };
    Ok(PyErr::from_value(error))
}

fn cancelled_error(py: Python<'_>, message: Option<&Py<PyAny>>) -> PyResult<PyErr> {
    asyncio_error(py, "CancelledError", message)
}

#[pymethods]
impl Call {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Call::step(slf)
    }

    /// As `__next__` (a task sends None; a value sent is ignored), but an end is always
    /// `StopIteration`.
    #[pyo3(signature = (value, /))]
    fn send<'py>(slf: &Bound<'py, Self>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let _ = value;
        Call::step(slf)?.ok_or_else(|| PyStopIteration::new_err(()))
    }

    /// Raises `error` here, where the call is awaited; a pending call is cancelled first.
    #[pyo3(signature = (error, value=None, traceback=None, /))]
    fn throw(
        slf: &Bound<'_, Self>,
        error: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = traceback; // the exception gets one where it is raised
        slf.get().cancel_with(slf, None)?;
        let error = match value {
            Some(value) if !value.is_none() => error.call1((value,))?,
            _ => error.clone(),
        };
        Err(PyErr::from_value(error))
    }

    /// Cancels a pending call (nobody will await it).
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().cancel_with(slf, None).map(drop)
    }

    #[getter(_asyncio_future_blocking)]
    fn get_blocking(&self) -> bool {
        self.blocking.load(Ordering::SeqCst)
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, blocking: bool) {
        self.blocking.store(blocking, Ordering::SeqCst);
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    #[pyo3(signature = (callback, /, *, context=None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let this = slf.get();
        {
            let mut state = lock(&this.state);
            if let State::Pending(callbacks) = &mut *state {
                callbacks.push((callback.unbind(), context));
                return Ok(());
            }
        }
        this.call_soon(slf, &callback, context)
    }

    #[pyo3(signature = (callback, /))]
    fn remove_done_callback(&self, callback: &Bound<'_, PyAny>) -> PyResult<usize> {
        // Compared outside the lock (`==` may run Python code), then taken out by identity.
        let py = callback.py();
        let listed: Vec<Py<PyAny>> = match &*lock(&self.state) {
            State::Pending(callbacks) => callbacks.iter().map(|(c, _)| c.clone_ref(py)).collect(),
            _ => return Ok(0),
        };
        let mut removed = Vec::new();
        for each in listed {
            if each.bind(py).eq(callback)? {
                removed.push(each);
            }
        }
        let mut state = lock(&self.state);
        let State::Pending(callbacks) = &mut *state else {
            return Ok(0);
        };
        let before = callbacks.len();
        callbacks.retain(|(each, _)| !removed.iter().any(|r| r.is(each)));
        Ok(before - callbacks.len())
    }

    fn result(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match slf.get().seen(py) {
            Seen::Pending => Err(asyncio_error(
                py,
                "InvalidStateError",
                Some(
                    &"Result is not ready."
                        .into_pyobject(py)?
                        .into_any()
                        .unbind(),
                ),
            )?),
            Seen::Returned(value) => Ok(value),
            Seen::Raised(error) => Err(PyErr::from_value(error.into_bound(py))),
            Seen::Cancelled(message) => Err(cancelled_error(py, message.as_ref())?),
        }
    }

    fn exception(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        match slf.get().seen(slf.py()) {
            Seen::Raised(error) => Ok(Some(error)),
            Seen::Returned(_) => Ok(None),
            Seen::Pending | Seen::Cancelled(_) => Call::result(slf).map(|_| None),
        }
    }

    fn done(&self) -> bool {
        !matches!(*lock(&self.state), State::Pending(_))
    }

    fn cancelled(&self) -> bool {
        matches!(*lock(&self.state), State::Cancelled(_))
    }

    #[pyo3(signature = (msg=None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        slf.get().cancel_with(slf, msg)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        // The collector runs with the GIL held, on a thread that holds no call's lock.
        let Ok(state) = self.state.try_lock() else {
            return Ok(());
        };
        match &*state {
            State::Pending(callbacks) => {
                for (callback, context) in callbacks {
                    visit.call(callback)?;
                    visit.call(context.as_ref())?;
                }
            }
            State::Returned(object) | State::Raised(object) => visit.call(object)?,
            State::Cancelled(message) => visit.call(message.as_ref())?,
        }
        Ok(())
    }

    fn __clear__(&self) {
        let cleared = std::mem::replace(&mut *lock(&self.state), State::Cancelled(None));
        drop(cleared);
    }
}

#[cfg(test)]
mod tests;
