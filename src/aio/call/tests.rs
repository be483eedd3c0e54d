//! A call's ends, each reached once: a cancel after the end changes nothing, an end after a
//! cancel is dropped, and every done callback is scheduled exactly once, in its context. The
//! event loop is a stand-in that records what `call_soon` was given.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::ffi::c_str;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{Call, Outcome};
use crate::aio::Operations;

fn with_python(test: impl for<'py> FnOnce(Python<'py>) -> PyResult<()>) {
    Python::initialize();
    Python::attach(|py| test(py).unwrap_or_else(|error| panic!("{error}")));
}

/// An object with `call_soon(callback, *args, context=None)` that only records its calls.
fn recording_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let namespace = PyDict::new(py);
    py.run(
        c_str!(
            "class Loop:\n    def __init__(self):\n        self.scheduled = []\n    def call_soon(self, callback, *args, context=None):\n        self.scheduled.append((callback, args, context))\n"
        ),
        Some(&namespace),
        None,
    )?;
    namespace.get_item("Loop")?.expect("defined").call0()
}

fn scheduled(event_loop: &Bound<'_, PyAny>) -> PyResult<usize> {
    event_loop.getattr("scheduled")?.len()
}

/// Runs `test` with a pending call of a recording loop.
fn with_pending_call(
    test: impl for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>, &Bound<'py, Call>) -> PyResult<()>,
) {
    with_python(|py| {
        let event_loop = recording_loop(py)?;
        let operations = Arc::new(Operations::default());
        let call = Call::pending(py, &event_loop.clone().unbind(), operations, 1)?;
        test(py, &event_loop, &call)
    });
}

fn returning(value: i64) -> Outcome {
    Ok(Box::new(move |py: Python<'_>| {
        Ok(value.into_pyobject(py)?.into_any().unbind())
    }))
}

#[test]
fn an_end_after_a_cancel_is_dropped_and_the_callbacks_run_once() {
    with_pending_call(|py, event_loop, call| {
        let callback = py.eval(c_str!("print"), None, None)?;
        Call::add_done_callback(call, callback, None)?;
        assert!(Call::cancel(call, None)?);
        assert_eq!(scheduled(event_loop)?, 1);
        Call::finish(call, returning(5))?;
        assert!(call.get().cancelled());
        assert_eq!(scheduled(event_loop)?, 1);
        assert!(!Call::cancel(call, None)?);
        Ok(())
    });
}

#[test]
fn an_end_schedules_each_callback_once_in_its_context_and_later_ones_at_once() {
    with_pending_call(|py, event_loop, call| {
        let context = py.import("contextvars")?.call_method0("copy_context")?;
        let callback = py.eval(c_str!("print"), None, None)?;
        Call::add_done_callback(call, callback.clone(), Some(context.clone().unbind()))?;
        Call::add_done_callback(call, callback.clone(), None)?;
        assert_eq!(scheduled(event_loop)?, 0);
        Call::finish(call, returning(5))?;
        assert_eq!(scheduled(event_loop)?, 2);
        let first = event_loop.getattr("scheduled")?.get_item(0)?;
        assert!(first.get_item(2)?.is(&context));
        assert!(first.get_item(1)?.get_item(0)?.is(call));
        assert_eq!(Call::result(call)?.extract::<i64>(py)?, 5);
        assert!(!Call::cancel(call, None)?);
        Call::finish(call, returning(6))?;
        assert_eq!(Call::result(call)?.extract::<i64>(py)?, 5);
        Call::add_done_callback(call, callback, None)?;
        assert_eq!(scheduled(event_loop)?, 3);
        Ok(())
    });
}

#[test]
fn a_failed_call_raises_the_same_exception_each_time() {
    with_pending_call(|py, event_loop, call| {
        let failing: Outcome = Ok(Box::new(|_py: Python<'_>| {
            Err(PyValueError::new_err("refused"))
        }));
        Call::finish(call, failing)?;
        assert_eq!(scheduled(event_loop)?, 0, "no callback, nothing scheduled");
        let first = Call::result(call).expect_err("failed");
        let second = Call::result(call).expect_err("failed");
        assert!(first.is_instance_of::<PyValueError>(py));
        assert!(first.value(py).is(second.value(py)));
        let exception = Call::exception(call)?.expect("an exception");
        assert!(exception.bind(py).is(first.value(py)));
        Ok(())
    });
}
