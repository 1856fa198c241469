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

use crate::error::{StoreError, duplicate};

/// One caller's answer, once its group has committed.
type Slot<A> = Arc<Mutex<Option<Result<A, StoreError>>>>;

struct Queue<C, A> {
    waiting: Vec<(C, Slot<A>)>,
    leading: bool,
    /// How many commands the last group held, and how long it took.
    last_size: usize,
    last_took: Duration,
}

impl<C, A> Default for Queue<C, A> {
    fn default() -> Self {
        Queue {
            waiting: Vec::new(),
            leading: false,
            last_size: 0,
            last_took: Duration::ZERO,
        }
    }
}

/// The longest a leader lingers, whatever the last commit took.
const MAX_LINGER: Duration = Duration::from_millis(1);

/// The queue of commands (`C`) waiting for the next group commit, each
/// caller answered with an `A`. Generic only so that
/// `examples/group_ceiling.rs` can time this very algorithm with commands
/// that cost nothing; the store runs it with `UserCreated` and `Outcome`.
pub(crate) struct Group<C, A> {
    queue: Mutex<Queue<C, A>>,
    /// Signalled when a command joins the queue: only a lingering leader
    /// waits here, so an arrival does not wake every waiting caller.
    arrived: Condvar,
    /// Signalled when a group has been answered and leadership is free.
    answered: Condvar,
}

impl<C, A> Default for Group<C, A> {
    fn default() -> Self {
        Group {
            queue: Mutex::default(),
            arrived: Condvar::new(),
            answered: Condvar::new(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while leading is contained by the store and answered as an
    // error; the queue itself is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C, A> Group<C, A> {
    /// Runs `command` in the next group; `run` executes a whole group as one
    /// batch, in the order its commands were submitted (the leader's own
    /// `run` is the one called).
    pub fn submit(
        &self,
        command: C,
        run: impl FnOnce(Vec<C>) -> Result<Vec<A>, StoreError>,
    ) -> Result<A, StoreError> {
        let slot: Slot<A> = Arc::new(Mutex::new(None));
        let mut queue = lock(&self.queue);
        queue.waiting.push((command, slot.clone()));
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
        let result = run(commands);
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
