//! The browser's answers to the calls `native.rs` answers on native
//! targets. A browser's store has one thread and commits through redb
//! alone: no group to join, no journal, no block checksums, no waiters to
//! wake (its JS wrapper announces changes itself), and a fresh snapshot
//! per read — the package keeps its bytes for other things.

use redb::WriteTransaction;

use super::*;

/// The database: redb's own handle (a browser has no other process).
pub(super) type Db = Database;

pub(super) fn own(db: Database) -> Db {
    db
}

/// Nothing beside the database.
#[derive(Default)]
pub(super) struct Platform {}

/// No settings beside the common ones.
#[derive(Default)]
pub(super) struct Settings {}

impl StoreBuilder {
    /// Whether the store is shared with other processes: on this target a
    /// store has one process (a browser tab's worker, a WASI program), so
    /// this changes nothing. See the native builder's `shared`.
    pub fn shared(self, _shared: bool) -> Self {
        self
    }

    pub(super) fn side(&self, path: &Path) -> Result<Side, StoreError> {
        side_file(path, true)
    }

    pub(super) fn tune(&self, _builder: &mut Builder) {}

    pub(super) fn open_file(&self, file: std::fs::File, _side: &Side) -> Result<Store, StoreError> {
        self.plain(redb::backends::FileBackend::new(file)?, false)
    }

    pub(super) fn attach(
        &self,
        store: Store,
        _path: &Path,
        _side: Side,
    ) -> Result<Store, StoreError> {
        Ok(store)
    }

    pub(super) fn open_read_only_file(
        &self,
        backend: crate::readonly::ReadOnlyFile,
        _path: &Path,
    ) -> Result<Store, StoreError> {
        self.plain(backend, true)
    }

    pub(super) fn open_backend(self, backend: impl StorageBackend) -> Result<Store, StoreError> {
        self.plain(backend, false)
    }
}

/// A write's platform part: none.
pub(super) struct Commit;

impl Commit {
    pub(super) fn journaled(&self) -> bool {
        false
    }

    pub(super) fn record(&self, _writer: &mut Writer<'_, '_>) {}

    pub(super) fn collect(&mut self, _writer: &mut Writer<'_, '_>) {}
}

impl Store {
    /// A browser's store is not rewritten after an erasure (see the
    /// README's "Erasure"): its backend has no rename.
    pub(super) fn scrubs(&self) -> bool {
        false
    }

    pub(super) fn scrub(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    pub(super) fn begin_commit(&self) -> Commit {
        Commit
    }

    pub(super) fn commit(&self, _commit: Commit, txn: WriteTransaction) -> Result<(), StoreError> {
        Ok(txn.commit()?)
    }

    pub(super) fn announce(&self, _head: u64) {}

    /// One thread: there is never a group to join.
    pub(super) fn grouped(
        &self,
        intent: Intent,
        run: impl FnOnce(Vec<Intent>) -> Result<Vec<Outcome>, StoreError>,
    ) -> Result<Outcome, StoreError> {
        run(vec![intent])?
            .pop()
            .ok_or_else(|| StoreError::Inconsistent("a batch of one gave no outcome".into()))
    }

    pub(super) fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.open_snapshot()
    }

    pub(super) fn forget_snapshot(&self) {}

    pub(super) fn vouch_new(&self) {}

    pub(super) fn verify_beside(&self) -> Result<Option<VerifyReport>, StoreError> {
        Ok(None)
    }

    pub(super) fn close_platform(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Nothing is kept beside a store file here.
pub(super) struct Side {}

pub(super) fn side_file(_path: &Path, _write: bool) -> Result<Side, StoreError> {
    Ok(Side {})
}

/// One thread that starts no process: nothing to wait for.
pub(super) fn patiently(open: impl Fn() -> Result<Store, StoreError>) -> Result<Store, StoreError> {
    open()
}
