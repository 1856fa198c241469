//! Group commit: concurrent `create_user` calls share one transaction and one
//! fsync. The first caller to find no commit under way leads: it takes every
//! command queued so far, runs them as one batch, hands each caller its own
//! outcome, and steps down; callers that arrived meanwhile form the next
//! group. Each caller is answered only after the commit holding its command
//! is durable, exactly as if it had committed alone.
//!
//! A new leader lingers briefly when fewer callers are queued than joined the
//! last group: the callers just answered are usually about to submit again,
//! and without the wait groups alternate between one straggler and everyone
//! else, which halves the sharing. The wait is at most half the last
//! commit's time (and a millisecond); a lone caller never waits at all, as
//! its last group had one command and one is queued.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::store::Outcome;
use crate::user::CreateUser;

/// One caller's command and, once its group has committed, its answer.
type Slot = Arc<Mutex<Option<Result<Outcome, StoreError>>>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<(CreateUser, Slot)>,
    leading: bool,
    /// How many commands the last group held, and how long it took.
    last_size: usize,
    last_took: Duration,
}

/// The longest a leader lingers, whatever the last commit took.
const MAX_LINGER: Duration = Duration::from_millis(1);

/// The queue of commands waiting for the next group commit.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<Queue>,
    /// Signalled when a command joins the queue: only a lingering leader
    /// waits here, so an arrival does not wake every waiting caller.
    arrived: Condvar,
    /// Signalled when a group has been answered and leadership is free.
    answered: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while leading is contained by the store and answered as an
    // error; the queue itself is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    /// Runs `command` in the next group; `run` executes a whole group as one
    /// batch.
    pub fn submit(
        &self,
        command: &CreateUser,
        run: impl Fn(&[CreateUser]) -> Result<Vec<Outcome>, StoreError>,
    ) -> Result<Outcome, StoreError> {
        let slot: Slot = Arc::default();
        let mut queue = lock(&self.queue);
        queue.waiting.push((command.clone(), slot.clone()));
        self.arrived.notify_one();
        loop {
            if let Some(answer) = lock(&slot).take() {
                return answer;
            }
            if !queue.leading {
                break;
            }
            // Never reached on single-threaded targets (wasm), where no
            // other caller can be leading.
            queue = self.answered.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        queue.leading = true;
        let linger = (queue.last_took / 2).min(MAX_LINGER);
        let until = Instant::now() + linger;
        while queue.waiting.len() < queue.last_size {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .arrived
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let group = std::mem::take(&mut queue.waiting);
        drop(queue);

        let (commands, slots): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let started = Instant::now();
        let result = run(&commands);
        let took = started.elapsed();
        match result {
            Ok(outcomes) => {
                for (slot, outcome) in slots.iter().zip(outcomes) {
                    *lock(slot) = Some(Ok(outcome));
                }
            }
            Err(error) => {
                for slot in &slots {
                    *lock(slot) = Some(Err(duplicate(&error)));
                }
            }
        }
        {
            let mut queue = lock(&self.queue);
            queue.leading = false;
            queue.last_size = slots.len();
            queue.last_took = took;
        }
        self.answered.notify_all();
        lock(&slot)
            .take()
            .expect("the leader's own command is in the group it ran")
    }
}

/// A copy of `error` for each caller of a group commit that failed as a
/// whole. redb's errors cannot be cloned; they are carried over as their text.
fn duplicate(error: &StoreError) -> StoreError {
    match error {
        StoreError::Locked => StoreError::Locked,
        StoreError::Corrupt { position, source } => StoreError::Corrupt {
            position: *position,
            source: source.clone(),
        },
        StoreError::Inconsistent(what) => StoreError::Inconsistent(what.clone()),
        StoreError::NotAStore(what) => StoreError::NotAStore(what.clone()),
        StoreError::ReadOnly => StoreError::ReadOnly,
        StoreError::UnsupportedFormat { found, supported } => StoreError::UnsupportedFormat {
            found: *found,
            supported: *supported,
        },
        StoreError::ClockOutOfRange(ms) => StoreError::ClockOutOfRange(*ms),
        StoreError::NoClock => StoreError::NoClock,
        StoreError::Damaged(what) => StoreError::Damaged(what.clone()),
        StoreError::Batch(error) => StoreError::Batch(error.clone()),
        StoreError::Storage(error) => {
            StoreError::Storage(redb::Error::Io(std::io::Error::other(error.to_string())))
        }
    }
}
