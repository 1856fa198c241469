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
use std::sync::Arc;
#[cfg(not(target_family = "wasm"))]
use std::time::Duration;

use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::store::Store;

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
        self.store.commits().forget(self.id);
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
        self.store
            .commits()
            .wait_past(self.cursor, timeout, || self.store.head_position())
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
        let id = self.commits().listen(Arc::new(listener));
        CommitListener { store: self, id }
    }
}
