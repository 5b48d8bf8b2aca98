//! How a control thread asks the notification loop: it queues the operation, wakes the
//! loop through an eventfd in its epoll set, and waits (bounded) for the answer. The
//! loop answers between notifications, so the engine's state is read by its owner, and
//! a request costs the tenant at most the time of building one answer.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::event::{eventfd, EventfdFlags};

use super::{Backend, Failure, Op, Privileged};

/// How long a control thread waits for the loop to start a request.
const LOOP_PATIENCE: Duration = Duration::from_secs(5);
/// How long it then waits for a request the loop has started: it is running, so its
/// outcome must be reported, never guessed.
const RUN_PATIENCE: Duration = Duration::from_secs(60);

/// Requests waiting for the loop beyond which new ones are refused as busy.
const MAX_QUEUED: usize = 64;

/// What a control thread asks the loop.
#[derive(Debug)]
pub enum Call {
    /// An unsigned, read-only operation.
    Open(Op),
    /// An operation a signed request was accepted for.
    Privileged(Privileged),
}

/// A queued request and who waits for it.
#[derive(Debug)]
pub struct Job {
    /// What to do.
    pub call: Call,
    /// Where the answer goes.
    pub reply: SyncSender<Result<serde_json::Value, Failure>>,
    /// QUEUED, then STARTED (by the loop) or ABANDONED (by the waiter): whichever
    /// comes first wins, so a request given up on never runs later.
    state: Arc<AtomicU8>,
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

impl Job {
    /// The loop's side: claims the job; false when its waiter gave up (skip it).
    pub fn start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The queue between control threads and the loop.
#[derive(Debug)]
pub struct Bridge {
    queue: Mutex<VecDeque<Job>>,
    wake: OwnedFd,
}

impl Bridge {
    /// A bridge; register [`Bridge::wake_fd`] for reading in the loop's epoll set.
    pub fn new() -> std::io::Result<Arc<Bridge>> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Arc::new(Bridge {
            queue: Mutex::new(VecDeque::new()),
            wake,
        }))
    }

    /// The descriptor that becomes readable when requests are queued.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The loop's side: takes every queued request (and clears the wake-up).
    pub fn take(&self) -> Vec<Job> {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut counter);
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.drain(..).collect()
    }
}

/// The control threads' side.
#[derive(Debug, Clone)]
pub struct LoopBackend(pub Arc<Bridge>);

impl Backend for LoopBackend {
    fn serve(&self, op: Op) -> Result<serde_json::Value, Failure> {
        self.call(Call::Open(op))
    }

    fn privileged(&self, op: Privileged) -> Result<serde_json::Value, Failure> {
        self.call(Call::Privileged(op))
    }
}

impl LoopBackend {
    fn call(&self, op: Call) -> Result<serde_json::Value, Failure> {
        let (reply, answer) = sync_channel(1);
        let state = Arc::new(AtomicU8::new(QUEUED));
        {
            let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= MAX_QUEUED {
                return Err(Failure::new(
                    "busy",
                    "too many requests are waiting for the supervisor",
                ));
            }
            queue.push_back(Job {
                call: op,
                reply,
                state: state.clone(),
            });
        }
        let _ = rustix::io::write(&self.0.wake, &1u64.to_ne_bytes());
        wait(&answer, &state)
    }
}

/// The answer; or, when the loop has not started the request in time, `not_run` (it
/// never will: it is abandoned).
fn wait(
    answer: &Receiver<Result<serde_json::Value, Failure>>,
    state: &AtomicU8,
) -> Result<serde_json::Value, Failure> {
    if let Ok(result) = answer.recv_timeout(LOOP_PATIENCE) {
        return result;
    }
    let abandoned = state
        .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if abandoned {
        return Err(Failure::new(
            "not_run",
            "the supervisor's loop did not take the request within 5 s; it was not run and will not be",
        ));
    }
    answer.recv_timeout(RUN_PATIENCE).unwrap_or_else(|_| {
        Err(Failure::new(
            "timeout",
            "the request was started but its outcome did not arrive within 60 s; check the component's state",
        ))
    })
}
