//! Commit announcements (native only: the browser package announces
//! changes in its JS): the head after each commit, for threads that wait on
//! it and for registered listeners. The store announces; `subscribe.rs`
//! waits and listens.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// A listener told the new head after each commit.
pub(crate) type Listener = Arc<dyn Fn(u64) + Send + Sync>;

/// What commits announce: the head, a condition variable for threads that
/// wait, and the registered listeners.
#[derive(Default)]
pub(crate) struct Commits {
    head: Mutex<Option<u64>>,
    moved: Condvar,
    listeners: Mutex<Vec<(u64, Listener)>>,
    next_id: Mutex<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain assignment or push: a panic
    // elsewhere cannot leave the data half-changed.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Commits {
    /// Announces a commit that moved the log's head to `head`.
    pub(crate) fn committed(&self, head: u64) {
        *lock(&self.head) = Some(head);
        self.moved.notify_all();
        // Called outside the lock: a listener may subscribe or read.
        let listeners: Vec<Listener> = lock(&self.listeners)
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for listener in listeners {
            listener(head);
        }
    }

    /// Blocks until the head is past `cursor` or `timeout` passes; returns
    /// whether it is. Before the first commit the head is `read_head`'s.
    pub(crate) fn wait_past(
        &self,
        cursor: u64,
        timeout: Duration,
        read_head: impl Fn() -> Result<u64, StoreError>,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        let mut head = lock(&self.head);
        loop {
            // Read under the lock a commit announces under: no commit can
            // slip between this check and the wait.
            let now = match *head {
                Some(head) => head,
                None => read_head()?,
            };
            if now > cursor {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            head = self
                .moved
                .wait_timeout(head, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Registers `listener`; returns its id for [`forget`](Self::forget).
    pub(crate) fn listen(&self, listener: Listener) -> u64 {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next
        };
        lock(&self.listeners).push((id, listener));
        id
    }

    /// Removes the listener `id`.
    pub(crate) fn forget(&self, id: u64) {
        lock(&self.listeners).retain(|(listener, _)| *listener != id);
    }
}
