//! A store whose storage cannot be renamed (a browser's OPFS file, a
//! snapshot in memory) rewritten after an erasure through a second,
//! scratch backend: the rows are copied into a new database there, and its
//! bytes then written over the store's. What a crash leaves is told apart
//! by the scratch alone: empty, or a copy that did not commit, means the
//! store is whole (its `scrub` flag still set, so the rewrite runs again);
//! a committed copy means the store may be half overwritten, and opening
//! writes the copy over it again. A native store opened by path renames a
//! new file over its own instead (`native.rs`).

use std::io;
use std::ops::Bound;
use std::sync::Arc;

use redb::{BackendError, Builder, ReadableDatabase, StorageBackend};

use super::contain;
use crate::error::StoreError;
use crate::log::{self, META};

/// The store's backend and its scratch, shared between the store and the
/// databases opened on them.
#[derive(Clone)]
pub(super) struct Pair {
    main: Shared,
    scratch: Shared,
}

/// A backend several databases open in turn. redb closes a backend when
/// its database ends; the pair's backends stay open until the store does.
#[derive(Clone)]
pub(super) struct Shared(Arc<dyn StorageBackend>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl StorageBackend for Shared {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        Ok(())
    }
    // Every lock forwarded: the backend may be a file another process opens.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

impl Pair {
    pub(super) fn new(main: impl StorageBackend, scratch: impl StorageBackend) -> Pair {
        Pair {
            main: Shared(Arc::new(main)),
            scratch: Shared(Arc::new(scratch)),
        }
    }

    /// The store's backend, for its database.
    pub(super) fn main(&self) -> Shared {
        self.main.clone()
    }

    /// Finishes what a crash cut short: a committed copy in the scratch is
    /// written over the store again; any other scratch is emptied.
    pub(super) fn recover(&self) -> Result<(), StoreError> {
        if self.scratch.len().map_err(StoreError::io)? == 0 {
            return Ok(());
        }
        if self.holds_copy() {
            self.copy_back()?;
        }
        self.empty_scratch()
    }

    /// Whether the scratch holds a committed copy: the copy is one
    /// transaction, so its tables are there whole or not at all.
    fn holds_copy(&self) -> bool {
        contain(|| {
            let db = Builder::new().create_with_backend(self.scratch.clone())?;
            let txn = db.begin_read()?;
            let found = txn.open_table(META).is_ok();
            Ok(found)
        })
        .unwrap_or(false)
    }

    /// Rewrites the closed store: its rows copied into a new database in
    /// the scratch, then those bytes written over the store's, then the
    /// scratch emptied. Each step is synced before the next.
    pub(super) fn rewrite(&self) -> Result<(), StoreError> {
        contain(|| {
            self.empty_scratch()?;
            log::copy_store(
                Builder::new().create_with_backend(self.main.clone())?,
                Builder::new().create_with_backend(self.scratch.clone())?,
            )
        })?;
        self.copy_back()?;
        self.empty_scratch()
    }

    /// The scratch's bytes over the store's, the store cut to their length.
    fn copy_back(&self) -> Result<(), StoreError> {
        const CHUNK: u64 = 1 << 20;
        let len = self.scratch.len().map_err(StoreError::io)?;
        self.main.set_len(len).map_err(StoreError::io)?;
        let mut buffer = vec![0; CHUNK.min(len) as usize];
        let mut at = 0;
        while at < len {
            let part = &mut buffer[..CHUNK.min(len - at) as usize];
            self.scratch.read(at, part).map_err(StoreError::io)?;
            self.main.write(at, part).map_err(StoreError::io)?;
            at += part.len() as u64;
        }
        self.main.sync_data().map_err(StoreError::io)
    }

    fn empty_scratch(&self) -> Result<(), StoreError> {
        self.scratch
            .set_len(0)
            .and_then(|()| self.scratch.sync_data())
            .map_err(StoreError::io)
    }

    /// Releases both backends: the store has ended.
    pub(super) fn close(&self) {
        let _ = self.main.0.close();
        let _ = self.scratch.0.close();
    }
}
