//! Live changes: every event after a position, once each, in order, as
//! they are committed — local commands, compensations and events that
//! arrive by sync alike, since all of them are appended to the one log.
//!
//! The core has no async runtime: a [`Subscription`] is a cursor that
//! [`poll`](Subscription::poll)s the log (never blocks) and, natively, can
//! [`wait`](Subscription::wait) for the next commit on a thread; an async
//! app wakes its own task from [`Store::on_commit`]. Exactly-once needs no
//! bookkeeping beyond the cursor: positions are gap-free and never reused.

#[cfg(not(target_family = "wasm"))]
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(target_family = "wasm"))]
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::store::Store;

/// A listener told the new head after each commit.
#[cfg(not(target_family = "wasm"))]
pub(crate) type Listener = Arc<dyn Fn(u64) + Send + Sync>;

/// What commits announce: the head, a condition variable for threads that
/// wait, and the registered listeners. Native only: the browser package
/// announces changes in its JS.
#[cfg(not(target_family = "wasm"))]
#[derive(Default)]
pub(crate) struct Commits {
    head: Mutex<Option<u64>>,
    moved: Condvar,
    listeners: Mutex<Vec<(u64, Listener)>>,
    next_id: Mutex<u64>,
}

#[cfg(not(target_family = "wasm"))]
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain assignment or push: a panic
    // elsewhere cannot leave the data half-changed.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(not(target_family = "wasm"))]
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
}

/// Removes its listener from the store when dropped (see
/// [`Store::on_commit`]).
#[cfg(not(target_family = "wasm"))]
#[must_use = "the listener is removed when this is dropped"]
pub struct CommitListener<'s> {
    store: &'s Store,
    id: u64,
}

#[cfg(not(target_family = "wasm"))]
impl Drop for CommitListener<'_> {
    fn drop(&mut self) {
        lock(&self.store.commits().listeners).retain(|(id, _)| *id != self.id);
    }
}

/// A cursor over the log that yields every event after it once, in
/// position order. Made by [`Store::subscribe`].
pub struct Subscription<'s> {
    store: &'s Store,
    cursor: u64,
}

impl Subscription<'_> {
    /// The position of the last event yielded (the `from` it started at,
    /// before any).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The events committed after the cursor, at most `limit`, in position
    /// order; the cursor moves past them. Never blocks; empty when there is
    /// nothing new.
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`] (the cursor stays where it was).
    pub fn poll(&mut self, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.store.events(self.cursor.saturating_add(1), limit)?;
        if let Some(last) = events.last() {
            self.cursor = last.position;
        }
        Ok(events)
    }

    /// Blocks until an event after the cursor is committed or `timeout`
    /// passes; returns whether one has been. Wakes on the commit, not by
    /// polling. Native only (a browser's one thread must not block).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    #[cfg(not(target_family = "wasm"))]
    pub fn wait(&self, timeout: Duration) -> Result<bool, StoreError> {
        let commits = self.store.commits();
        let deadline = Instant::now() + timeout;
        let mut head = lock(&commits.head);
        loop {
            // Read under the lock a commit announces under: no commit can
            // slip between this check and the wait.
            let now = match *head {
                Some(head) => head,
                None => self.store.head_position()?,
            };
            if now > self.cursor {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            head = commits
                .moved
                .wait_timeout(head, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Store {
    /// A subscription to every event after position `from` (0 for all),
    /// once each, in position order, as they are committed by anyone
    /// holding this store: commands, compensations, and sync imports.
    pub fn subscribe(&self, from: u64) -> Subscription<'_> {
        Subscription {
            store: self,
            cursor: from,
        }
    }

    /// Calls `listener` with the new head after every commit of this store,
    /// on the committing thread, until the returned guard is dropped. For
    /// waking an async task that then [`poll`](Subscription::poll)s; keep
    /// it short and do not write to the store from it.
    #[cfg(not(target_family = "wasm"))]
    pub fn on_commit(&self, listener: impl Fn(u64) + Send + Sync + 'static) -> CommitListener<'_> {
        let commits = self.commits();
        let id = {
            let mut next = lock(&commits.next_id);
            *next += 1;
            *next
        };
        lock(&commits.listeners).push((id, Arc::new(listener)));
        CommitListener { store: self, id }
    }
}
