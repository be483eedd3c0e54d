//! How a call waits. An [`Operation`] is a validated request's future, how long it may take and
//! what ends it; the Python class runs it blocking on the calling thread (GIL released, busy
//! polling when a packet from the broker ends it, see `runtime`) or hands it to asyncio.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::aio::{self, Expect, LoopBridge};
use crate::arguments;
use crate::errors::DriverError;
use crate::lock::lock;
use crate::runtime::{self, block_on, BusyPoll, Deadline};
use crate::session::Core;

/// A validated operation, ready to run blocking or as an awaitable: its future, how long it
/// may take, and what it waits for (named in the timeout's message).
pub struct Operation<F> {
    future: F,
    timeout: Option<Duration>,
    what: &'static str,
    ends_with: Ending,
}

/// What ends an operation's wait, which decides how a blocking call waits.
pub enum Ending {
    /// A packet from the broker (CONNACK, SUBACK, UNSUBACK, PUBACK, PUBCOMP, a message): a
    /// blocking call busy-polls for it.
    Packet,
    /// Handing the request to the driver (a QoS 0 publish): usually done on the first poll, which
    /// a blocking call tries before it takes the runtime's core (see `runtime`). When it must wait
    /// after all (a full queue, an outage), no packet would end that wait sooner: no busy poll.
    Queued,
    /// The driver's own work (DISCONNECT written, the task gone): no reply comes.
    Closed,
    /// A message, which the broker sends when it likes: no request of this call makes it soon.
    Arrival,
}

impl<F> Operation<F> {
    pub fn new(
        future: F,
        timeout: Option<Duration>,
        what: &'static str,
        ends_with: Ending,
    ) -> Self {
        Operation {
            future,
            timeout,
            what,
            ends_with,
        }
    }

    /// Runs the operation on the calling thread, GIL released, until it ends or its time is up.
    pub fn wait<T>(self, py: Python<'_>, core: &Core, last_request: &LastRequest) -> PyResult<T>
    where
        F: Future<Output = Result<T, DriverError>> + Send,
        T: Send,
    {
        let deadline = Deadline::after(self.timeout.map(|t| t.as_secs_f64()));
        let sent = last_request.mark();
        let mut future = std::pin::pin!(self.future);
        let (done, busy_poll) = match self.ends_with {
            Ending::Packet => (Poll::Pending, BusyPoll::after(sent)),
            Ending::Queued => (runtime::poll_now(future.as_mut())?, BusyPoll::NONE),
            Ending::Closed | Ending::Arrival => (Poll::Pending, BusyPoll::NONE),
        };
        let outcome = match done {
            Poll::Ready(result) => Some(result),
            Poll::Pending => block_on(py, deadline, busy_poll, future)?,
        };
        match outcome {
            Some(result) => result.map_err(|error| error.into_pyerr(py)),
            None => Err(core.expired(self.what).into_pyerr(py)),
        }
    }

    /// The same operation as an asyncio awaitable of `bridge`'s event loop, driven on the loop's
    /// thread (see `aio`); cancelling it drops the future (cancel-safe).
    pub fn awaitable<'py, T>(
        self,
        bridge: &Bound<'py, LoopBridge>,
        core: &Arc<Core>,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Result<T, DriverError>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let core = core.clone();
        let Operation {
            future,
            timeout,
            what,
            ends_with,
        } = self;
        let (sent, expect) = match ends_with {
            Ending::Packet => (true, Expect::Reply),
            Ending::Queued => (true, Expect::Nothing),
            Ending::Closed | Ending::Arrival => (false, Expect::Nothing),
        };
        let timed = async move {
            match timeout {
                Some(limit) => tokio::time::timeout(limit, future)
                    .await
                    .unwrap_or_else(|_| Err(core.expired(what))),
                None => future.await,
            }
        };
        aio::start(bridge, timed, sent, expect).map(Bound::into_any)
    }
}

/// When a client last sent a request, so that a `wait_msg()` soon after a publish busy-polls
/// for the message it brings back (see `runtime`).
#[derive(Default)]
pub struct LastRequest(Mutex<Option<Instant>>);

impl LastRequest {
    /// Records a request sent now; returns the time, from which its own reply is polled for.
    fn mark(&self) -> Instant {
        let now = Instant::now();
        *lock(&self.0) = Some(now);
        now
    }

    /// How long a wait for messages starting now polls: until the budget after the last request.
    pub fn busy_poll(&self) -> BusyPoll {
        lock(&self.0).map_or(BusyPoll::NONE, BusyPoll::after)
    }
}

/// A `timeout` argument of the polling calls: 0 or less looks once, else a valid number of seconds.
pub fn poll_deadline(timeout: f64) -> PyResult<Deadline> {
    if timeout <= 0.0 {
        return Ok(Deadline::after(Some(0.0)));
    }
    Ok(Deadline::after(Some(
        arguments::seconds(timeout, "timeout")?.as_secs_f64(),
    )))
}
