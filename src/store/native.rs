//! What a store keeps on native targets beside its redb database, and how
//! it opens there: the shared read snapshot, group commit, commit
//! announcements, the journal (`journaled.rs`), the block checksums and the
//! lock on their file. `wasm.rs` answers the same calls for the browser;
//! `mod.rs` picks one of the two files, never a line of either.

use std::sync::{Mutex, MutexGuard};

use redb::{ConcurrencyMode, ReadOnlyDatabase, TransactionError, WriteTransaction};

use super::*;
use crate::checksums::Checked;
use crate::commits::Commits;
use crate::error::duplicate;
use crate::group::{Group, answer_each};
use crate::journal::Journal;
use crate::log::Redo;

/// Locks a mutex whose data stays consistent even if a holder panicked (every
/// critical section here is a plain read or replacement).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The database a store reads and writes: its own redb handle, or — for a
/// reader beside another process's writer ([`StoreBuilder::shared`]) — a
/// read-only handle that follows that writer's commits.
pub(super) enum Db {
    Own(Database),
    Follower(ReadOnlyDatabase),
}

/// A database this store opened to write.
pub(super) fn own(db: Database) -> Db {
    Db::Own(db)
}

impl Db {
    pub(super) fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        match self {
            Db::Own(db) => db.begin_read(),
            Db::Follower(db) => db.begin_read(),
        }
    }

    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] on a follower, which never writes.
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        match self {
            Db::Own(db) => Ok(db.begin_write()?),
            Db::Follower(_) => Err(StoreError::ReadOnly),
        }
    }

    pub(super) fn close(self) -> Result<(), redb::DatabaseError> {
        match self {
            Db::Own(db) => db.close(),
            Db::Follower(db) => db.close(),
        }
    }
}

/// The store's native parts. Field order is drop order: the checksum
/// file's lock goes last, after redb has written the checksums back.
pub(super) struct Platform {
    /// The read snapshot every read shares until the next commit. Opening a
    /// redb read transaction and its tables costs more than a point lookup
    /// itself (about 0.65 µs against 0.2 µs); read-mostly callers pay it
    /// once per commit instead of once per call.
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    group: Group<Intent, Result<Outcome, StoreError>>,
    /// Announces commits to waiting subscriptions and listeners.
    commits: Commits,
    /// The journal of a durable store that keeps one (see `journal.rs`).
    /// Writers lock it before redb's write lock, and hold it to the end of
    /// their commit.
    pub(super) journal: Option<Mutex<Journal>>,
    /// The block checksums the store is read through, for `verify`'s scrub.
    checks: Option<Checked>,
    /// The checksum file beside a store opened by path, locked (shared for
    /// a read-only store) until the store is dropped.
    side_lock: Option<std::fs::File>,
    /// Reads beside another process's writer: no snapshot is kept.
    follows: bool,
    /// The store file, for a store opened by path to write: closing
    /// rewrites it after an erasure.
    path: Option<std::path::PathBuf>,
    /// Written beside other processes' readers ([`StoreBuilder::shared`]).
    shared: bool,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            snapshot: Mutex::new(None),
            group: Group::default(),
            commits: Commits::default(),
            journal: None,
            checks: None,
            side_lock: None,
            follows: false,
            path: None,
            shared: false,
        }
    }
}

/// The builder's native settings.
pub(super) struct Settings {
    /// Opened beside other processes: see [`StoreBuilder::shared`].
    shared: bool,
    journal: Option<Box<dyn StorageBackend>>,
    checkpoint_every: u64,
    checksums: Option<Box<dyn StorageBackend>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shared: false,
            journal: None,
            checkpoint_every: crate::journal::CHECKPOINT_RECORDS,
            checksums: None,
        }
    }
}

impl StoreBuilder {
    /// The journal's storage, for a store opened with
    /// [`backend`](Self::backend): durable commands are then acknowledged
    /// once appended to it and synced, and redb's own durable commits are
    /// checkpoints (see [`open`](Self::open)). The backend belongs to the
    /// store like the store's own. Not available in wasm builds, whose
    /// stores commit through redb.
    pub fn journal(mut self, backend: impl StorageBackend) -> Self {
        self.platform.journal = Some(Box::new(backend));
        self
    }

    /// How many journaled commits a checkpoint waits for (default 1,024;
    /// at least 1), as SQLite's `wal_autocheckpoint`: fewer make the
    /// journal shorter to replay and redb's file grow less between
    /// checkpoints, more make each command cheaper. A checkpoint also runs
    /// once the journal holds 8 MiB, and on close.
    pub fn checkpoint_every(mut self, commits: u64) -> Self {
        self.platform.checkpoint_every = commits.max(1);
        self
    }

    /// The storage of the store's block checksums, for a store opened with
    /// [`backend`](Self::backend): see [`open`](Self::open). The backend
    /// belongs to the store like the store's own. Not available in wasm
    /// builds.
    pub fn checksums(mut self, backend: impl StorageBackend) -> Self {
        self.platform.checksums = Some(Box::new(backend));
        self
    }

    /// Whether the store at a path is shared with other processes (`false`,
    /// the default: the first process to open it has it to itself, and
    /// another gets [`StoreError::Locked`]). An iOS app and its widget, an
    /// Android app and its sync service in another process: each opens the
    /// file shared. One process writes at a time: a second writer waits up
    /// to 200 ms for the first to close, then gets `Locked`. A store opened
    /// shared and [read-only](Self::open_read_only) reads beside the writer
    /// and sees each of its commits as soon as it is made: every read is a
    /// whole commit, never part of one.
    ///
    /// What sharing costs: the writer commits through redb itself, each
    /// command synced to the file (redb's multi-process mode has no
    /// in-memory commits, so the journal is not kept, and opening shared
    /// first replays and removes it); the block checksums file is removed
    /// (the next exclusive open runs the whole-file check and writes it
    /// again); a read opens a fresh snapshot; live changes see this
    /// process's commits only. Native stores opened by path only.
    pub fn shared(mut self, shared: bool) -> Self {
        self.platform.shared = shared;
        self
    }

    /// The checksum file to open a store at `path` through (see
    /// [`side_file`]); for a shared store none: its journal is replayed
    /// by an exclusive open first and then removed, with the checksums,
    /// which a shared writer would leave behind the file.
    pub(super) fn side(&self, path: &Path) -> Result<Side, StoreError> {
        if !self.platform.shared {
            return side_file(path, true);
        }
        let journal = journal_path(path);
        if journal.exists() {
            let settle = StoreBuilder {
                clock: self.clock.clone(),
                durable: true,
                check_on_open: self.check_on_open,
                cache_bytes: self.cache_bytes,
                platform: Settings::default(),
            };
            settle.open_once(path)?.close()?;
            remove(&journal)?;
        }
        remove(&checksums_path(path))?;
        Ok(None)
    }

    /// redb's settings for this store: a shared one in its single-writer
    /// mode.
    pub(super) fn tune(&self, builder: &mut Builder) {
        if self.platform.shared {
            builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
        }
    }

    /// Opens the store in `file`, through the checksums in `side`.
    pub(super) fn open_file(&self, file: std::fs::File, side: &Side) -> Result<Store, StoreError> {
        let store = file_backend(file)?;
        let Some(side) = side else {
            return self.plain(store, false);
        };
        let side = file_backend(side.try_clone().map_err(StoreError::io)?)?;
        self.open_checked(Box::new(store), Box::new(side), true, false)
    }

    /// A store just opened at `path` takes the lock on its checksum file
    /// and, when durable, its journal.
    pub(super) fn attach(
        &self,
        mut store: Store,
        path: &Path,
        side: Side,
    ) -> Result<Store, StoreError> {
        store.platform.side_lock = side;
        store.platform.path = Some(path.to_owned());
        if self.platform.shared {
            store.platform.shared = true;
            // An exclusive open that came between `side` and this one left
            // a journal: open again, to replay it.
            if journal_path(path).exists() {
                return Err(StoreError::Locked);
            }
            // redb's multi-process modes have no in-memory commits: each
            // commit is synced to the file.
            store.durability = Durability::Immediate;
            return Ok(store);
        }
        if !self.durable {
            return Ok(store);
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(journal_path(path))
            .map_err(StoreError::io)?;
        store.with_journal(
            Box::new(file_backend(file)?),
            self.platform.checkpoint_every,
        )
    }

    /// Opens the store at `path`, read through `backend`, for reading only:
    /// through its checksums when they can be read (else with the
    /// whole-file check), its journal replayed in memory like redb's
    /// recovery, the journal itself only read.
    pub(super) fn open_read_only_file(
        &self,
        backend: crate::readonly::ReadOnlyFile,
        path: &Path,
    ) -> Result<Store, StoreError> {
        if self.platform.shared {
            drop(backend);
            return self.follow(path);
        }
        let side = side_file(path, false)?;
        let mut store = match &side {
            Some(side) => {
                let side =
                    crate::readonly::ReadOnlyFile::new(side.try_clone().map_err(StoreError::io)?)
                        .map_err(StoreError::io)?;
                self.open_checked(Box::new(backend), Box::new(side), false, true)?
            }
            None => self.plain(backend, true)?,
        };
        store.platform.side_lock = side;
        match std::fs::File::open(journal_path(path)) {
            Ok(file) => {
                let file = crate::readonly::ReadOnlyFile::new(file).map_err(StoreError::io)?;
                store.with_journal(Box::new(file), self.platform.checkpoint_every)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(store),
            Err(error) => Err(StoreError::io(error)),
        }
    }

    /// Opens the store at `path` to read beside the process that writes it
    /// shared: redb's read-only handle in its single-writer mode, which
    /// follows that writer's commits.
    fn follow(&self, path: &Path) -> Result<Store, StoreError> {
        if std::fs::metadata(journal_path(path)).is_ok_and(|m| m.len() > crate::journal::HEADER_LEN)
        {
            return Err(StoreError::Inconsistent(format!(
                "{}: its journal holds commits the file does not yet have; \
                 open it once to write (shared or not) to replay them",
                path.display()
            )));
        }
        let mut builder = self.redb(false);
        builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
        let db = builder.open_read_only(path)?;
        let store_id = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            match log::meta_format(&meta)? {
                Some(STORE_FORMAT) => {}
                Some(found) if found > STORE_FORMAT => {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                found => {
                    return Err(StoreError::Inconsistent(format!(
                        "{}: store format {found:?}: open it once to write, to migrate it",
                        path.display()
                    )));
                }
            }
            log::meta_uuid(&meta, log::META_STORE_ID)?
                .ok_or_else(|| StoreError::Inconsistent("meta store_id row is missing".into()))?
        };
        let mut store = self.finish_with(Db::Follower(db), store_id, true)?;
        store.platform.follows = true;
        Ok(store)
    }

    /// Opens the store in `backend`, with the checksums and journal the
    /// builder was given.
    pub(super) fn open_backend(
        mut self,
        backend: impl StorageBackend,
    ) -> Result<Store, StoreError> {
        let store = match self.platform.checksums.take() {
            Some(side) => self.open_checked(Box::new(backend), side, true, false)?,
            None => self.plain(backend, false)?,
        };
        match self.platform.journal.take() {
            Some(journal) => store.with_journal(journal, self.platform.checkpoint_every),
            None => Ok(store),
        }
    }

    /// Opens the store in `store` through the block checksums in `side`
    /// (`writable`: kept up to date there; `read_only`: the store refuses
    /// writes). redb's whole-file check runs only when the checksums do
    /// not vouch for the file, and once it has passed they do.
    fn open_checked(
        &self,
        store: Box<dyn StorageBackend>,
        side: Box<dyn StorageBackend>,
        writable: bool,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        let checks = Checked::open(store, side, writable)?;
        let check = self.check_on_open && !checks.trusted();
        let db = self.redb(check).create_with_backend(checks.clone())?;
        let mut store = self.finish(db, read_only)?;
        if check {
            checks.vouch();
        }
        store.platform.checks = Some(checks);
        Ok(store)
    }
}

/// A write's native part: the journal, locked before redb's write lock by
/// every writer (the journal's order is the commits' order), and the
/// changes the write recorded for it.
pub(super) struct Commit<'s> {
    journal: Option<MutexGuard<'s, Journal>>,
    redo: Option<(Redo, u64)>,
}

impl Commit<'_> {
    /// Whether the journal makes this commit durable (redb's durable
    /// commits are then the checkpoints).
    pub(super) fn journaled(&self) -> bool {
        self.journal.is_some()
    }

    /// Has `writer` record its changes for the journal, if there is one.
    pub(super) fn record(&self, writer: &mut Writer<'_, '_>) {
        if self.journaled() {
            writer.record_redo();
        }
    }

    /// Takes what `writer` recorded.
    pub(super) fn collect(&mut self, writer: &mut Writer<'_, '_>) {
        self.redo = writer.take_redo();
    }
}

impl Store {
    /// Starts a write's native part: see [`Commit`].
    pub(super) fn begin_commit(&self) -> Commit<'_> {
        Commit {
            journal: self.platform.journal.as_ref().map(lock),
            redo: None,
        }
    }

    /// Commits `txn`: through the journal when there is one.
    pub(super) fn commit(
        &self,
        commit: Commit<'_>,
        txn: WriteTransaction,
    ) -> Result<(), StoreError> {
        match (commit.journal, commit.redo) {
            (Some(mut journal), Some((redo, changes))) => {
                self.commit_journaled(txn, &mut journal, &redo, changes)
            }
            _ => Ok(txn.commit()?),
        }
    }

    /// Wakes the subscriptions and listeners waiting for `head`.
    pub(super) fn announce(&self, head: u64) {
        self.platform.commits.committed(head);
    }

    /// Runs `intent` in the next group commit: `run` executes a whole group
    /// in one transaction.
    pub(super) fn grouped(
        &self,
        intent: Intent,
        run: impl FnOnce(Vec<Intent>) -> Result<Vec<Outcome>, StoreError>,
    ) -> Result<Outcome, StoreError> {
        self.platform
            .group
            .submit(intent, |group| {
                answer_each(group.len(), run(group), duplicate)
            })
            .unwrap_or_else(|lost| Err(StoreError::Inconsistent(lost.to_string())))
    }

    /// The shared read snapshot, opened if the last commit retired it.
    pub(super) fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        // Held while a new snapshot is opened: a writer retiring the old
        // one waits, so a snapshot older than a finished commit can never
        // be installed after it.
        if self.platform.follows {
            // Another process commits: a kept snapshot would fall behind.
            return Ok(Arc::new(self.open_snapshot()?));
        }
        let mut shared = lock(&self.platform.snapshot);
        match &*shared {
            Some(snapshot) => Ok(snapshot.clone()),
            None => {
                let snapshot = Arc::new(self.open_snapshot()?);
                *shared = Some(snapshot.clone());
                Ok(snapshot)
            }
        }
    }

    /// Retires the shared snapshot after a commit (so reads see it) and
    /// before closing (redb will not close under a live transaction).
    pub(super) fn forget_snapshot(&self) {
        lock(&self.platform.snapshot).take();
    }

    pub(crate) fn commits(&self) -> &Commits {
        &self.platform.commits
    }

    /// Every block of a new store was written through its checksums.
    pub(super) fn vouch_new(&self) {
        if let Some(checks) = &self.platform.checks {
            checks.vouch();
        }
    }

    /// `verify`'s native part: every block of the file as the disk holds
    /// it first, redb's cache aside (damage no read has met yet: what fails
    /// is the report, the other checks would only stumble on it as read
    /// errors); then the log checked with the journal, under its lock, so
    /// that no commit comes between reading the journal and the snapshot it
    /// is checked against. `None`: neither applies.
    pub(super) fn verify_beside(&self) -> Result<Option<VerifyReport>, StoreError> {
        if let Some(checks) = &self.platform.checks {
            let damaged = checks.scrub().map_err(StoreError::io)?;
            if !damaged.is_empty() {
                return Ok(Some(VerifyReport {
                    findings: damaged
                        .into_iter()
                        .map(|block| crate::verify::Finding::DamagedBlock { block })
                        .collect(),
                    ..VerifyReport::default()
                }));
            }
        }
        let Some(journal) = &self.platform.journal else {
            return Ok(None);
        };
        let journal = lock(journal);
        let bytes = journal.bytes()?;
        let txn = self.db().begin_read()?;
        let mut report = crate::verify::verify(&txn, self.store_id)?;
        crate::verify::verify_journal(&txn, &bytes, journal.base(), &mut report.findings);
        Ok(Some(report))
    }

    /// Whether closing this store rewrites its file after an erasure.
    pub(super) fn scrubs(&self) -> bool {
        self.platform.path.is_some()
    }

    /// Rewrites the closed store's file without the free pages that may
    /// hold an erased user's values: every row is copied into a new file
    /// beside it, synced, and renamed over it; the journal is cut to its
    /// header and the block checksums emptied (they were the old file's).
    /// The checksum file's lock, still held, keeps other processes out.
    ///
    /// A store written shared is rewritten only when no other process
    /// holds it (a reader would be left on the replaced file): through an
    /// exclusive open, which rewrites a store whose erasure is due. While
    /// one does, the erasure stays due, for this writer's next close or the
    /// next exclusive open.
    pub(super) fn scrub(&mut self) -> Result<(), StoreError> {
        let Some(path) = self.platform.path.clone() else {
            return Ok(());
        };
        if self.platform.shared {
            return match Store::open(&path) {
                Ok(store) => store.close(),
                Err(StoreError::Locked) => Ok(()),
                Err(error) => Err(error),
            };
        }
        contain(|| {
            let (dir, temporary) = open::temporary_beside(&path, "scrubbing")?;
            let copied = (|| {
                log::copy_store(
                    Builder::new().open(&path)?,
                    Builder::new().create(&temporary)?,
                )?;
                // The new file takes the old one's mode (a hub's are 0600).
                let mode = std::fs::metadata(&path)
                    .map_err(StoreError::io)?
                    .permissions();
                std::fs::set_permissions(&temporary, mode).map_err(StoreError::io)?;
                std::fs::rename(&temporary, &path).map_err(StoreError::io)?;
                open::sync_dir(dir)
            })();
            if copied.is_err() {
                let _ = std::fs::remove_file(&temporary);
            }
            copied?;
            let journal = journal_path(&path);
            if journal.exists() {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&journal)
                    .map_err(StoreError::io)?;
                file.set_len(crate::journal::HEADER_LEN)
                    .and_then(|()| file.sync_all())
                    .map_err(StoreError::io)?;
            }
            if let Some(side) = &self.platform.side_lock {
                side.set_len(0)
                    .and_then(|()| side.sync_all())
                    .map_err(StoreError::io)?;
            }
            Ok(())
        })
    }

    /// Closing's native part: the journal's (see `close_journal`).
    pub(super) fn close_platform(&mut self) -> Result<(), StoreError> {
        self.close_journal()
    }
}

/// Where the journal of the store at `path` lives.
fn journal_path(path: &Path) -> std::path::PathBuf {
    beside(path, "-journal")
}

/// `path` with `suffix` appended to its file name, as SQLite names the
/// files beside a database.
fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The block checksums' file beside the store at `path` (see
/// `checksums.rs`).
fn checksums_path(path: &Path) -> std::path::PathBuf {
    beside(path, "-checksums")
}

/// The checksum file of a store opened by path, locked while it is open.
pub(super) type Side = Option<std::fs::File>;

/// Opens and locks the checksum file beside the store at `path`: created
/// and locked exclusively for writing; for reading (`write` false) locked
/// shared, and `None` when it cannot be read, as the store opens without
/// it. The lock is what lets the checksums be read before redb takes the
/// store's own locks: no writer changes them until it is released.
///
/// # Errors
///
/// [`StoreError::Locked`] when another handle has it locked;
/// [`StoreError::NotAStore`] when something other than a regular file is
/// at its path; [`StoreError::Storage`] when it cannot be created.
pub(super) fn side_file(path: &Path, write: bool) -> Result<Side, StoreError> {
    let side = checksums_path(path);
    match std::fs::metadata(&side) {
        Ok(metadata) if !metadata.is_file() => {
            return Err(StoreError::NotAStore(format!(
                "{}: not a regular file (left untouched)",
                side.display()
            )));
        }
        Err(_) if !write => return Ok(None),
        _ => {}
    }
    let file = if write {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&side)
            .map_err(StoreError::io)?
    } else {
        match std::fs::File::open(&side) {
            Ok(file) => file,
            Err(_) => return Ok(None),
        }
    };
    let locked = if write {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked),
        Err(std::fs::TryLockError::Error(error)) if write => Err(StoreError::io(error)),
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}

/// Removes the file at `path` if there is one.
fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(error)),
        _ => Ok(()),
    }
}

/// A file as a redb backend.
fn file_backend(file: std::fs::File) -> Result<redb::backends::FileBackend, StoreError> {
    redb::backends::FileBackend::new(file).map_err(StoreError::from)
}

/// How long opening a store by path waits for its locks before answering
/// [`StoreError::Locked`]. A process that starts another shares its open
/// files, and so their locks, with the child until the child's `exec`
/// closes them: while any thread of the process starts one, a store just
/// closed by another thread still reads as locked for that moment (beside
/// a thread starting processes, 126 of 200 reopens failed without the
/// wait: `reopening_while_another_thread_starts_processes_finds_no_lock`). The wait
/// outlasts that moment; a store really in use is still reported within
/// it.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs `open` again while it finds the store locked, for up to
/// [`LOCK_PATIENCE`]. Retrying is safe: an open that finds a lock leaves the
/// store as it was.
pub(super) fn patiently(open: impl Fn() -> Result<Store, StoreError>) -> Result<Store, StoreError> {
    let until = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match open() {
            Err(StoreError::Locked) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            outcome => return outcome,
        }
    }
}
