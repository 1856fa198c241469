//! The store: one redb write transaction per command or batch.
//!
//! Invariant: this module knows nothing of JSON. It turns typed commands into
//! [`Outcome`]s; `contract` turns those into the API's bodies.

use std::path::Path;
use std::sync::Arc;
#[cfg(not(target_family = "wasm"))]
use std::sync::Mutex;

use redb::backends::InMemoryBackend;
use redb::{
    Builder, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, StorageBackend,
};
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::event::{RecordedEvent, UserCreated};
#[cfg(not(target_family = "wasm"))]
use crate::group::Group;
#[cfg(not(target_family = "wasm"))]
use crate::journal::Journal;
use crate::log::{self, Bytes, EMAILS, EVENTS, META, STREAMS, Writer};
use crate::pipeline::{self, Log, Pipeline, Stamper};
#[cfg(not(target_family = "wasm"))]
use crate::subscribe::Commits;
use crate::user::{CreateUser, Rejection, User};
use crate::verify::VerifyReport;

/// The store file format this version writes and reads. Format 2 keys the
/// email index by the signup-grade rule (Unicode case folding, punycode
/// domains); a format-1 store is migrated when it is opened.
pub const STORE_FORMAT: u32 = 2;

/// The page cache redb may use unless told otherwise: small enough for a
/// phone or a browser tab, large enough to hold the hot index pages.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new event was recorded (HTTP 201).
    Created(RecordedEvent),
    /// The identical command had been recorded before; this is its original
    /// event and nothing new was written (HTTP 200).
    Replayed(RecordedEvent),
    /// The command was rejected and nothing was written (HTTP 400 or 409).
    Rejected(Rejection),
}

impl Outcome {
    /// The recorded event, for `Created` and `Replayed`.
    pub fn event(&self) -> Option<&RecordedEvent> {
        match self {
            Outcome::Created(event) | Outcome::Replayed(event) => Some(event),
            Outcome::Rejected(_) => None,
        }
    }
}

/// Settings for opening a [`Store`]. Start from [`Store::builder`].
#[must_use]
pub struct StoreBuilder {
    clock: Option<Arc<dyn Clock>>,
    durable: bool,
    check_on_open: bool,
    cache_bytes: usize,
    #[cfg(not(target_family = "wasm"))]
    journal: Option<Box<dyn StorageBackend>>,
    #[cfg(not(target_family = "wasm"))]
    checkpoint_every: u64,
    #[cfg(not(target_family = "wasm"))]
    checksums: Option<Box<dyn StorageBackend>>,
}

impl Default for StoreBuilder {
    fn default() -> Self {
        StoreBuilder {
            clock: None,
            durable: true,
            check_on_open: true,
            cache_bytes: DEFAULT_CACHE_BYTES,
            #[cfg(not(target_family = "wasm"))]
            journal: None,
            #[cfg(not(target_family = "wasm"))]
            checkpoint_every: crate::journal::CHECKPOINT_RECORDS,
            #[cfg(not(target_family = "wasm"))]
            checksums: None,
        }
    }
}

impl StoreBuilder {
    /// The clock that stamps recorded events. Defaults to the system clock;
    /// required on `wasm32-unknown-unknown`, which has none.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Whether each commit waits for the disk (`true`, the default). With
    /// `false` a crash may lose the latest acknowledged commands (never
    /// corrupt the file): for imports and tests, not for user data.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Whether a damaged file is refused rather than read (`true`, the
    /// default). redb does not check page checksums on ordinary reads, so
    /// without this a damaged index page could answer a lookup wrongly.
    /// With it, opening verifies the checksum of every page of the file,
    /// which reads all of it — unless the store keeps block checksums
    /// beside it (native [`open`](Self::open)s do) and was closed cleanly:
    /// then every block is checked as it is read instead, and opening
    /// reads a few kilobytes. Turning it off skips the whole-file check
    /// where it would run; blocks are still checked against checksums
    /// that vouch for the file.
    pub fn check_on_open(mut self, check: bool) -> Self {
        self.check_on_open = check;
        self
    }

    /// The journal's storage, for a store opened with
    /// [`backend`](Self::backend): durable commands are then acknowledged
    /// once appended to it and synced, and redb's own durable commits are
    /// checkpoints (see [`open`](Self::open)). The backend belongs to the
    /// store like the store's own. Not available in wasm builds, whose
    /// stores commit through redb.
    #[cfg(not(target_family = "wasm"))]
    pub fn journal(mut self, backend: impl StorageBackend) -> Self {
        self.journal = Some(Box::new(backend));
        self
    }

    /// How many journaled commits a checkpoint waits for (default 1,024;
    /// at least 1), as SQLite's `wal_autocheckpoint`: fewer make the
    /// journal shorter to replay and redb's file grow less between
    /// checkpoints, more make each command cheaper. A checkpoint also runs
    /// once the journal holds 8 MiB, and on close.
    #[cfg(not(target_family = "wasm"))]
    pub fn checkpoint_every(mut self, commits: u64) -> Self {
        self.checkpoint_every = commits.max(1);
        self
    }

    /// The storage of the store's block checksums, for a store opened with
    /// [`backend`](Self::backend): see [`open`](Self::open). The backend
    /// belongs to the store like the store's own. Not available in wasm
    /// builds.
    #[cfg(not(target_family = "wasm"))]
    pub fn checksums(mut self, backend: impl StorageBackend) -> Self {
        self.checksums = Some(Box::new(backend));
        self
    }

    /// redb's page cache size in bytes (default [`DEFAULT_CACHE_BYTES`]).
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Opens the store in the file at `path`, creating it when missing.
    ///
    /// A new store is created whole or not at all: it is built and synced
    /// under a temporary name in the same directory, then linked into place
    /// only if nothing is there yet, and the directory is synced. So any file
    /// at `path` is a complete store or not a store, whatever crashes, and
    /// processes racing to create the same path end up on one store.
    ///
    /// A durable store keeps a journal beside it, at `path` with `-journal`
    /// appended (as SQLite does): each command is acknowledged once its
    /// changes are appended there and synced, one sequential write; redb
    /// makes them durable in its own file at checkpoints, every 1,024
    /// commits (or 8 MiB of journal, or 8,192 changed rows) and on close,
    /// which also cuts the journal back to its 32-byte header. Opening
    /// replays what the journal holds past redb's state. A store copied while open needs its journal beside it; after
    /// [`Store::close`] the store file alone is complete.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another handle has the store open (after
    /// waiting up to 200 ms for locks held only for a moment, as a child
    /// process holds them between its start and its `exec`);
    /// [`StoreError::NotAStore`] when `path` is not a regular file or does
    /// not hold a store (it is left untouched);
    /// [`StoreError::UnsupportedFormat`] for a store from a newer version;
    /// [`StoreError::Storage`] / [`StoreError::Damaged`] when the file cannot
    /// be read or written, or fails its checksum check; `NotAStore` too
    /// when the journal beside it is not a journal or is another store's,
    /// and `Damaged` when it holds a damaged record before a whole one.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        patiently(|| self.open_once(path))
    }

    fn open_once(&self, path: &Path) -> Result<Store, StoreError> {
        contain(|| {
            let existing = existing_store_file(path)?;
            // After the check above: a path holding something else gets no
            // files beside it.
            #[cfg(not(target_family = "wasm"))]
            let side = side_file(path, true)?;
            #[cfg(target_family = "wasm")]
            let side = ();
            #[cfg_attr(target_family = "wasm", allow(unused_mut))]
            let mut store = match existing {
                Some(_) => {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path)
                        .map_err(StoreError::io)?;
                    self.open_file(file, &side)?
                }
                None => self.create_new(path, &side)?,
            };
            #[cfg(not(target_family = "wasm"))]
            {
                store.side_lock = side;
                if self.durable {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(journal_path(path))
                        .map_err(StoreError::io)?;
                    let file = file_backend(file)?;
                    return store.with_journal(Box::new(file), self.checkpoint_every);
                }
            }
            Ok(store)
        })
    }

    /// Opens the existing store at `path` for reading only: no byte of the
    /// file changes, so it works on read-only media and on a file this
    /// process may not write. A store that was not closed cleanly is
    /// recovered in memory. Writing through the store fails with
    /// [`StoreError::ReadOnly`]. Another process may read it at the same
    /// time, but not write it (redb's locks).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`StoreError::NotAStore`] when there is
    /// no file at `path`.
    pub fn open_read_only(self, path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        patiently(|| self.open_read_only_once(path))
    }

    fn open_read_only_once(&self, path: &Path) -> Result<Store, StoreError> {
        contain(|| {
            let Some(file) = existing_store_file(path)? else {
                return Err(StoreError::NotAStore(format!(
                    "{}: no such file",
                    path.display()
                )));
            };
            let backend = crate::readonly::ReadOnlyFile::new(file).map_err(StoreError::io)?;
            // The checksums are only read, and only when they can be: a
            // store without them opens with the whole-file check.
            #[cfg(not(target_family = "wasm"))]
            let side = side_file(path, false)?;
            #[cfg(not(target_family = "wasm"))]
            #[allow(unused_mut)]
            let mut store = match &side {
                Some(side) => {
                    let side = crate::readonly::ReadOnlyFile::new(
                        side.try_clone().map_err(StoreError::io)?,
                    )
                    .map_err(StoreError::io)?;
                    self.open_checked(Box::new(backend), Box::new(side), false, true)?
                }
                None => self.plain(backend, true)?,
            };
            #[cfg(target_family = "wasm")]
            let store = self.plain(backend, true)?;
            // The journal's records are replayed in memory like redb's
            // recovery; the journal itself is only read.
            #[cfg(not(target_family = "wasm"))]
            {
                store.side_lock = side;
                match std::fs::File::open(journal_path(path)) {
                    Ok(file) => {
                        let file =
                            crate::readonly::ReadOnlyFile::new(file).map_err(StoreError::io)?;
                        return store.with_journal(Box::new(file), self.checkpoint_every);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(StoreError::io(error)),
                }
            }
            Ok(store)
        })
    }

    /// Builds a new store under a temporary name beside `path` and links it
    /// into place; when another process linked its store there first, opens
    /// that one instead.
    fn create_new(&self, path: &Path, side: &Side) -> Result<Store, StoreError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| StoreError::NotAStore(format!("{}: not a file name", path.display())))?;
        let temporary = dir.join(format!(
            ".{}.{}.creating",
            name.to_string_lossy(),
            Uuid::new_v4().simple()
        ));
        let created = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(StoreError::io);
        // The store stays open on the temporary name: redb's lock is on the
        // file, so the name it is linked to is locked from the first moment.
        let linked = created
            .and_then(|file| self.open_file(file, side))
            .and_then(|store| link_new(&temporary, path, dir).map(|won| won.then_some(store)));
        // Whether linked, beaten or failed, the temporary name goes.
        let _ = std::fs::remove_file(&temporary);
        match linked? {
            Some(store) => {
                sync_dir(dir)?;
                // Every byte of a new store was written through its sums.
                #[cfg(not(target_family = "wasm"))]
                if let Some(checks) = &store.checks {
                    checks.vouch();
                }
                Ok(store)
            }
            None => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(StoreError::io)?;
                self.open_file(file, side)
            }
        }
    }

    /// Opens a store that lives in memory and is gone when dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] only if redb fails to set up its memory.
    pub fn in_memory(self) -> Result<Store, StoreError> {
        self.backend(InMemoryBackend::new())
    }

    /// Opens the store on any redb storage backend (OPFS, a fault-injecting
    /// test disk, …). The backend belongs to the store: one holding the
    /// remains of a creation that never finished (redb writes its magic
    /// number last, so those read as zeros there) is emptied first, as no
    /// other data may live in it.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    // `mut` for taking the journal, which wasm builds do not have.
    #[cfg_attr(target_family = "wasm", allow(unused_mut))]
    pub fn backend(mut self, backend: impl StorageBackend) -> Result<Store, StoreError> {
        contain(|| {
            let len = backend.len().map_err(StoreError::io)?;
            let mut head = vec![0; REDB_MAGIC.len().min(len as usize)];
            backend.read(0, &mut head).map_err(StoreError::io)?;
            if len > 0 && head.iter().all(|b| *b == 0) {
                backend.set_len(0).map_err(StoreError::io)?;
            }
            #[cfg(not(target_family = "wasm"))]
            let store = match self.checksums.take() {
                Some(side) => self.open_checked(Box::new(backend), side, true, false)?,
                None => self.plain(backend, false)?,
            };
            #[cfg(target_family = "wasm")]
            let store = self.plain(backend, false)?;
            #[cfg(not(target_family = "wasm"))]
            if let Some(journal) = self.journal.take() {
                return store.with_journal(journal, self.checkpoint_every);
            }
            Ok(store)
        })
    }

    /// redb's settings; `check` runs its whole-file check on open.
    fn redb(&self, check: bool) -> Builder {
        let mut builder = Builder::new();
        builder
            .set_cache_size(self.cache_bytes)
            .set_check_integrity_on_open(check);
        builder
    }

    /// Opens the store in `file`, through the checksums in `side` where the
    /// target keeps them.
    #[cfg(not(target_family = "wasm"))]
    fn open_file(&self, file: std::fs::File, side: &Side) -> Result<Store, StoreError> {
        let store = file_backend(file)?;
        let Some(side) = side else {
            return self.plain(store, false);
        };
        let side = file_backend(side.try_clone().map_err(StoreError::io)?)?;
        self.open_checked(Box::new(store), Box::new(side), true, false)
    }

    #[cfg(target_family = "wasm")]
    fn open_file(&self, file: std::fs::File, _side: &Side) -> Result<Store, StoreError> {
        self.plain(redb::backends::FileBackend::new(file)?, false)
    }

    /// Opens the store in `backend` as it is (`read_only`: the store
    /// refuses writes), redb's whole-file check as
    /// [`check_on_open`](Self::check_on_open) says.
    fn plain(&self, backend: impl StorageBackend, read_only: bool) -> Result<Store, StoreError> {
        self.finish(
            self.redb(self.check_on_open).create_with_backend(backend)?,
            read_only,
        )
    }

    /// Opens the store in `store` through the block checksums in `side`
    /// (`writable`: kept up to date there; `read_only`: the store refuses
    /// writes). redb's whole-file check runs only when the checksums do
    /// not vouch for the file, and once it has passed they do.
    #[cfg(not(target_family = "wasm"))]
    fn open_checked(
        &self,
        store: Box<dyn StorageBackend>,
        side: Box<dyn StorageBackend>,
        writable: bool,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        let checks = crate::checksums::Checked::open(store, side, writable)?;
        let check = self.check_on_open && !checks.trusted();
        let db = self.redb(check).create_with_backend(checks.clone())?;
        let mut store = self.finish(db, read_only)?;
        if check {
            checks.vouch();
        }
        store.checks = Some(checks);
        Ok(store)
    }

    fn finish(&self, db: Database, read_only: bool) -> Result<Store, StoreError> {
        let clock = match &self.clock {
            Some(clock) => clock.clone(),
            None => default_clock()?,
        };
        let durability = if self.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        let store_id = init(&db)?;
        Ok(Store {
            db: Some(db),
            durability,
            store_id,
            read_only,
            stamper: Stamper::new(clock),
            #[cfg(not(target_family = "wasm"))]
            snapshot: Mutex::new(None),
            #[cfg(not(target_family = "wasm"))]
            group: Group::default(),
            #[cfg(not(target_family = "wasm"))]
            commits: Commits::default(),
            #[cfg(not(target_family = "wasm"))]
            journal: None,
            #[cfg(not(target_family = "wasm"))]
            checks: None,
            #[cfg(not(target_family = "wasm"))]
            side_lock: None,
        })
    }
}

/// Where the journal of the store at `path` lives.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn journal_path(path: &Path) -> std::path::PathBuf {
    beside(path, "-journal")
}

/// `path` with `suffix` appended to its file name, as SQLite names the
/// files beside a database.
#[cfg(not(target_family = "wasm"))]
fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The block checksums' file beside the store at `path` (see
/// `checksums.rs`).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn checksums_path(path: &Path) -> std::path::PathBuf {
    beside(path, "-checksums")
}

/// The checksum file of a store opened by path, locked while it is open;
/// nothing on targets that keep none.
#[cfg(not(target_family = "wasm"))]
type Side = Option<std::fs::File>;
#[cfg(target_family = "wasm")]
type Side = ();

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
#[cfg(not(target_family = "wasm"))]
fn side_file(path: &Path, write: bool) -> Result<Side, StoreError> {
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

/// A file as a redb backend.
#[cfg(not(target_family = "wasm"))]
fn file_backend(file: std::fs::File) -> Result<redb::backends::FileBackend, StoreError> {
    redb::backends::FileBackend::new(file).map_err(StoreError::from)
}

/// redb's magic number, the first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// The store file at `path` opened for reading, `None` when there is none.
/// Anything else at the path — a directory, a FIFO (opening one would
/// block), a file without redb's magic number — is refused untouched:
/// creation is atomic, so a store file always starts with it.
fn existing_store_file(path: &Path) -> Result<Option<std::fs::File>, StoreError> {
    use std::io::Read;
    let not_a_store = |why: &str| StoreError::NotAStore(format!("{}: {why}", path.display()));
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::io(error)),
    };
    if !metadata.is_file() {
        return Err(not_a_store("not a regular file"));
    }
    let mut file = std::fs::File::open(path).map_err(StoreError::io)?;
    let mut magic = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .map_err(StoreError::io)?;
    if magic != REDB_MAGIC {
        return Err(not_a_store(
            "not a store file (no redb header); left untouched",
        ));
    }
    Ok(Some(file))
}

/// Links the finished store at `temporary` to `path` unless something is
/// there already; returns whether it was linked.
fn link_new(temporary: &Path, path: &Path, dir: &Path) -> Result<bool, StoreError> {
    match std::fs::hard_link(temporary, path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: a rename after a check, which
        // two racing creators could both pass. The first open of a path is
        // rarely raced there; the store is whole either way.
        Err(_) if !path.exists() => {
            std::fs::rename(temporary, path).map_err(StoreError::io)?;
            sync_dir(dir)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Makes a directory entry just created durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(not(target_family = "wasm"))]
/// Locks a mutex whose data stays consistent even if a holder panicked (every
/// critical section here is a plain read or replacement).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
#[cfg(not(target_family = "wasm"))]
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs `open` again while it finds the store locked, for up to
/// [`LOCK_PATIENCE`]. Retrying is safe: an open that finds a lock leaves the
/// store as it was.
fn patiently(open: impl Fn() -> Result<Store, StoreError>) -> Result<Store, StoreError> {
    // A wasm store has one thread and starts no process (and its clock
    // panics there); nothing to wait for.
    #[cfg(not(target_family = "wasm"))]
    {
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
    #[cfg(target_family = "wasm")]
    open()
}

/// Runs `f`, turning a panic inside the storage engine into
/// [`StoreError::Damaged`]. redb may panic on a damaged file; no input, a
/// damaged file included, may panic through this library's API. (On targets
/// built with `panic = "abort"` there is nothing to catch.)
fn contain<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic without a message".into());
        Err(StoreError::Damaged(message))
    })
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn default_clock() -> Result<Arc<dyn Clock>, StoreError> {
    Ok(Arc::new(crate::clock::SystemClock))
}

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn default_clock() -> Result<Arc<dyn Clock>, StoreError> {
    Err(StoreError::NoClock)
}

/// Creates the tables and meta rows of a new store, or checks an existing
/// store's format; returns the store id.
fn init(db: &Database) -> Result<Uuid, StoreError> {
    let txn = db.begin_write()?;
    let (store_id, mut wrote) = {
        let mut meta = txn.open_table(META)?;
        match log::meta_format(&meta)? {
            Some(found) if found > STORE_FORMAT => {
                return Err(StoreError::UnsupportedFormat {
                    found,
                    supported: STORE_FORMAT,
                });
            }
            Some(found) => {
                let id = log::meta_uuid(&meta, log::META_STORE_ID)?.ok_or_else(|| {
                    StoreError::Inconsistent("meta store_id row is missing".into())
                })?;
                (id, found < STORE_FORMAT)
            }
            None => {
                let id = Uuid::new_v4();
                log::set_meta_format(&mut meta, STORE_FORMAT)?;
                meta.insert(log::META_STORE_ID, id.as_bytes().as_slice())?;
                (id, true)
            }
        }
    };
    // Creates the tables missing (all of them in a new store; the sync
    // tables in a store from before sync), so that later reads never meet a
    // missing table. A complete store is opened without writing to it.
    wrote |= log::create_tables(&txn)?;
    if wrote {
        // Older formats are brought to this one in the same transaction (a
        // new store's rebuild finds nothing to do).
        log::rekey_emails(&txn)?;
        log::set_meta_format(&mut txn.open_table(META)?, STORE_FORMAT)?;
    }
    if wrote {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(store_id)
}

/// An embedded event store for SmartphoneKey users, in one redb file.
///
/// `Store` is `Send + Sync`: share it between threads behind an `Arc`. Writes
/// are serialized by redb; reads run beside them on a consistent snapshot.
pub struct Store {
    /// Always `Some` while the store can be used; taken only by `close` and
    /// `drop`, which end the store.
    db: Option<Database>,
    durability: Durability,
    store_id: Uuid,
    /// Opened by [`StoreBuilder::open_read_only`]: every write is refused.
    read_only: bool,
    stamper: Stamper,
    /// The read snapshot every read shares until the next commit. Opening a
    /// redb read transaction and its tables costs more than a point lookup
    /// itself (about 0.65 µs against 0.2 µs); read-mostly callers pay it
    /// once per commit instead of once per call.
    #[cfg(not(target_family = "wasm"))]
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    #[cfg(not(target_family = "wasm"))]
    group: Group<UserCreated, Outcome>,
    /// Announces commits to waiting subscriptions and listeners.
    #[cfg(not(target_family = "wasm"))]
    commits: Commits,
    /// The journal of a durable store that keeps one (see `journal.rs`).
    /// Writers lock it before redb's write lock, and hold it to the end of
    /// their commit.
    #[cfg(not(target_family = "wasm"))]
    journal: Option<Mutex<Journal>>,
    /// The block checksums the store is read through, for `verify`'s scrub.
    #[cfg(not(target_family = "wasm"))]
    checks: Option<crate::checksums::Checked>,
    /// The checksum file beside a store opened by path, locked (shared for
    /// a read-only store) until the store is dropped, after redb has
    /// written the checksums back: declared last, so dropped last.
    #[cfg(not(target_family = "wasm"))]
    side_lock: Option<std::fs::File>,
}

/// A read transaction with the tables point reads use already open.
pub(crate) struct Snapshot {
    pub txn: ReadTransaction,
    pub events: ReadOnlyTable<Bytes, Bytes>,
    pub streams: ReadOnlyTable<Bytes, Bytes>,
    pub emails: ReadOnlyTable<Bytes, Bytes>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("store_id", &self.store_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.forget_snapshot();
        // On failure the journal keeps its records for the next open.
        #[cfg(not(target_family = "wasm"))]
        let _ = self.close_journal();
        if let Some(db) = self.db.take() {
            // redb commits on close and may panic on a damaged file; a panic
            // must not escape a drop (during unwinding it would abort).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
        }
    }
}

impl Store {
    /// Settings for opening a store.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// Opens (or creates) the store file at `path` with default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::builder().open(path)
    }

    /// Opens an empty store in memory with default settings.
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::builder().in_memory()
    }

    fn db(&self) -> &Database {
        // Only close() and drop() take the database, and both consume the store.
        self.db
            .as_ref()
            .expect("the database is present until the store ends")
    }

    /// Closes the store, reporting what dropping it would swallow: redb's
    /// final commit on close can fail (or meet a damaged file).
    pub fn close(mut self) -> Result<(), StoreError> {
        self.forget_snapshot();
        #[cfg(not(target_family = "wasm"))]
        self.close_journal()?;
        let db = self
            .db
            .take()
            .expect("the database is present until the store ends");
        contain(|| Ok(db.close()?))
    }

    /// This store's id, stamped as the origin of every event it records.
    pub fn store_id(&self) -> Uuid {
        self.store_id
    }

    /// Executes one `CreateUser`: validates it, decides it against the
    /// recorded state, and records the event in a durable transaction. A
    /// rejection or a replay writes nothing. Concurrent calls from several
    /// threads share transactions and fsyncs (group commit); each returns
    /// only once its own command is durable. An invalid command is answered
    /// at once: validation reads nothing of the log, so it runs in the
    /// caller's thread before the command joins a group.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] on a store opened read-only;
    /// [`StoreError::ClockOutOfRange`] when the clock is off; otherwise the
    /// storage failures of [`StoreError`]. On any error nothing is written.
    pub fn create_user(&self, command: &CreateUser) -> Result<Outcome, StoreError> {
        // As any write: a read-only store refuses before anything is checked.
        self.writable()?;
        let created = match contain(|| Ok(pipeline::validated(command)))? {
            Ok(created) => created,
            Err(rejection) => return Ok(Outcome::Rejected(rejection)),
        };
        #[cfg(not(target_family = "wasm"))]
        return self.group.submit(created, |group| self.create_valid(group));
        // wasm has one thread: there is never a group to join, and the
        // machinery would only cost the browser package bytes.
        #[cfg(target_family = "wasm")]
        return self
            .create_valid(vec![created])?
            .pop()
            .ok_or_else(|| StoreError::Inconsistent("a batch of one gave no outcome".into()));
    }

    /// Creates users that passed validation, in one transaction, in order.
    fn create_valid(&self, created: Vec<UserCreated>) -> Result<Vec<Outcome>, StoreError> {
        self.write(|writer| {
            created
                .into_iter()
                .map(|created| writer.create(created))
                .collect()
        })
    }

    /// Executes many commands in one transaction, in order, returning an
    /// outcome for each. Later commands see the effects of earlier ones (a
    /// second command for the same email is a conflict). Either every
    /// `Created` outcome is committed, or (on `Err`) nothing is.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] on a store opened read-only;
    /// [`StoreError::ClockOutOfRange`] when the clock is off; otherwise the
    /// storage failures of [`StoreError`]. On any error nothing is written.
    pub fn execute_batch(&self, commands: &[CreateUser]) -> Result<Vec<Outcome>, StoreError> {
        self.write(|writer| {
            // Pending for the hub, without a row yet: see log::META_LISTED_TO.
            commands
                .iter()
                .map(|command| writer.execute_command(command))
                .collect()
        })
    }

    /// `Err(ReadOnly)` on a store opened read-only.
    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        Ok(())
    }

    /// Runs `f` in one write transaction through the log's one [`Writer`],
    /// and commits only when it wrote something (a transaction that writes
    /// nothing is aborted, leaving the file as it was). On `Err` nothing is
    /// written.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Writer<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.writable()?;
        contain(|| {
            // Taken before redb's write lock, by every writer: the journal's
            // order is the commits' order.
            #[cfg(not(target_family = "wasm"))]
            let mut journal = self.journal.as_ref().map(lock);
            #[cfg(target_family = "wasm")]
            let journal: Option<&mut ()> = None;
            let mut txn = self.db().begin_write()?;
            // With a journal, the journal's sync is what makes a commit
            // durable; redb's durable commits are the checkpoints.
            let durability = match journal {
                Some(_) => Durability::None,
                None => self.durability,
            };
            txn.set_durability(durability)
                .map_err(|e| StoreError::Storage(e.into()))?;
            let mut writer = Writer::open(&txn, self.store_id, &self.stamper)?;
            #[cfg(not(target_family = "wasm"))]
            if journal.is_some() {
                writer.record_redo();
            }
            let value = f(&mut writer)?;
            #[cfg(not(target_family = "wasm"))]
            let redo = writer.take_redo();
            let (dirty, head) = (writer.dirty(), writer.head());
            drop(writer);
            if dirty {
                #[cfg(not(target_family = "wasm"))]
                if let (Some(journal), Some((redo, changes))) = (journal.as_deref_mut(), redo) {
                    self.commit_journaled(txn, journal, &redo, changes)?;
                } else {
                    txn.commit()?;
                }
                #[cfg(target_family = "wasm")]
                txn.commit()?;
                self.forget_snapshot();
                // A browser's store has one thread and its JS wrapper
                // announces changes itself: no waiters to wake there.
                #[cfg(not(target_family = "wasm"))]
                self.commits.committed(head);
                #[cfg(target_family = "wasm")]
                let _ = head;
            } else {
                txn.abort()?;
            }
            Ok(value)
        })
    }

    /// Commits `txn`, whose changes are `redo`, through the journal: the
    /// record is synced first, then redb commits without waiting for the
    /// disk; a checkpoint follows when one is due.
    #[cfg(not(target_family = "wasm"))]
    fn commit_journaled(
        &self,
        txn: redb::WriteTransaction,
        journal: &mut Journal,
        redo: &[u8],
        changes: u64,
    ) -> Result<(), StoreError> {
        let seq = log::journal_seq(&txn)? + 1;
        log::set_journal_seq(&txn, seq)?;
        // On failure the transaction is dropped, so aborted: nothing was
        // acknowledged and redb holds nothing of it.
        journal.append(seq, redo, changes)?;
        if let Err(error) = txn.commit() {
            // The journal holds a record redb lacks: only a reopen, which
            // replays it, may write again.
            journal.fail();
            return Err(error.into());
        }
        if journal.full() {
            // The command is durable already: a failed checkpoint is retried
            // at the next commit, and the journal keeps every record.
            let _ = self.checkpoint(journal);
        }
        Ok(())
    }

    /// Closing's part for the journal: a checkpoint, then the journal cut
    /// back to its header, so a store closed cleanly is whole in its own
    /// file.
    #[cfg(not(target_family = "wasm"))]
    fn close_journal(&mut self) -> Result<(), StoreError> {
        let Some(journal) = self.journal.take() else {
            return Ok(());
        };
        let mut journal = journal.into_inner().unwrap_or_else(|e| e.into_inner());
        if self.read_only || !journal.holds_records() {
            return Ok(());
        }
        contain(|| {
            self.checkpoint(&mut journal)?;
            journal.cut()
        })
    }

    /// Makes every commit durable in redb's own file; the journal then
    /// starts a new lap over the records redb now holds.
    #[cfg(not(target_family = "wasm"))]
    fn checkpoint(&self, journal: &mut Journal) -> Result<(), StoreError> {
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Storage(e.into()))?;
        txn.commit()?;
        journal.restart();
        Ok(())
    }

    /// Attaches the journal in `file`: replays its records past redb's
    /// state into redb, durably (in memory for a read-only store); the
    /// journal's next lap then starts over them.
    #[cfg(not(target_family = "wasm"))]
    fn with_journal(
        mut self,
        file: Box<dyn StorageBackend>,
        checkpoint_every: u64,
    ) -> Result<Store, StoreError> {
        let txn = self.db().begin_write()?;
        let applied = log::journal_seq(&txn)?;
        let (mut journal, records) = Journal::open(
            file,
            self.store_id,
            applied,
            !self.read_only,
            checkpoint_every,
        )?;
        let mut seq = applied;
        for record in records.iter().filter(|record| record.seq > applied) {
            if record.seq != seq + 1 {
                return Err(StoreError::Damaged(format!(
                    "journal: record {} follows record {seq} of the store",
                    record.seq
                )));
            }
            log::apply_redo(&txn, &record.redo)?;
            seq = record.seq;
        }
        if seq > applied {
            log::set_journal_seq(&txn, seq)?;
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        // Replayed durably (or nothing to replay): every record is in redb.
        journal.restart();
        self.journal = Some(Mutex::new(journal));
        Ok(self)
    }

    /// Runs `f` on a consistent read snapshot of the log.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_tables(|snapshot| f(&snapshot.txn))
    }

    /// Runs `f` on the shared read snapshot, opening one if the last commit
    /// retired it.
    pub(crate) fn read_tables<T>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        contain(|| {
            #[cfg(not(target_family = "wasm"))]
            let snapshot = {
                // Held while a new snapshot is opened: a writer retiring the
                // old one waits, so a snapshot older than a finished commit
                // can never be installed after it.
                let mut shared = lock(&self.snapshot);
                match &*shared {
                    Some(snapshot) => snapshot.clone(),
                    None => {
                        let snapshot = Arc::new(self.open_snapshot()?);
                        *shared = Some(snapshot.clone());
                        snapshot
                    }
                }
            };
            // The browser package keeps its bytes for other things: a fresh
            // snapshot per read there.
            #[cfg(target_family = "wasm")]
            let snapshot = self.open_snapshot()?;
            f(&snapshot)
        })
    }

    fn open_snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(Snapshot {
            events: txn.open_table(EVENTS)?,
            streams: txn.open_table(STREAMS)?,
            emails: txn.open_table(EMAILS)?,
            txn,
        })
    }

    #[cfg(not(target_family = "wasm"))]
    pub(crate) fn commits(&self) -> &Commits {
        &self.commits
    }

    /// Retires the shared snapshot after a commit (so reads see it) and
    /// before closing (redb will not close under a live transaction).
    fn forget_snapshot(&self) {
        #[cfg(not(target_family = "wasm"))]
        lock(&self.snapshot).take();
    }

    /// Up to `limit` events from `from` (inclusive) on, in position order.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_tables(|snapshot| {
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in snapshot
                .events
                .range(&log::u64_bytes(from)[..]..)?
                .take(limit)
            {
                let (position, bytes) = row?;
                let position = log::read_u64("log key", position.value())?;
                out.push(log::decode_row(position, bytes.value())?);
            }
            Ok(out)
        })
    }

    /// Visits the events from position `from` on, in position order, until
    /// `visit` returns `false` or the log ends; returns how many it visited.
    /// Each event is decoded into the memory of the one before, so a scan
    /// allocates nothing per event once warm (clone what you keep), unlike
    /// collecting pages with [`events`](Self::events). The whole scan reads
    /// one snapshot of the log; a damaged event ends it with the error.
    pub fn scan(
        &self,
        from: u64,
        mut visit: impl FnMut(&RecordedEvent) -> bool,
    ) -> Result<u64, StoreError> {
        self.read_tables(|snapshot| {
            let (mut current, mut visited) = (None, 0);
            for row in snapshot.events.range(&log::u64_bytes(from)[..]..)? {
                let (position, bytes) = row?;
                let position = log::read_u64("log key", position.value())?;
                visited += 1;
                if !visit(log::decode_row_into(position, bytes.value(), &mut current)?) {
                    break;
                }
            }
            Ok(visited)
        })
    }

    /// One user's events in version order; empty for an unknown id.
    pub fn aggregate_events(&self, user_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_tables(|s| log::stream(&s.events, &s.streams, user_id))
    }

    /// A user's current state, or `None` for an unknown id.
    pub fn user(&self, user_id: Uuid) -> Result<Option<User>, StoreError> {
        self.read_tables(|s| log::load_user(&s.events, &s.streams, user_id))
    }

    /// The user holding `email` (case and surrounding space ignored), if any.
    pub fn user_id_by_email(&self, email: &str) -> Result<Option<Uuid>, StoreError> {
        self.read_tables(|s| log::email_owner(&s.emails, &crate::event::email_key(email)))
    }

    /// The position of the last recorded event; 0 for an empty store.
    pub fn head_position(&self) -> Result<u64, StoreError> {
        self.read_tables(|s| log::head(&s.events))
    }

    /// Checks the whole store: every envelope decodes and its checksum holds,
    /// positions and versions run without gaps, and the indexes and the log
    /// match row for row, both ways. Returns the findings; `Err` only when
    /// the store cannot be read at all. Memory stays flat: nothing is
    /// collected per event (the journal's rows excepted, at most one
    /// checkpoint's worth). The journal is checked too: each record whole
    /// and in sequence, and the rows its records change holding what they
    /// last wrote. A store kept with block checksums (native stores opened
    /// by path) has every 4 KiB block of its file read from the disk and
    /// checked first; when any fails, the report lists those blocks
    /// ([`Finding::DamagedBlock`](crate::Finding::DamagedBlock)) and
    /// nothing else (its counts are 0), as the other checks would only
    /// meet them as read errors.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when the store or its journal cannot be read.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        // Every block of the file as the disk holds it first, redb's cache
        // aside: damage no read has met yet. What fails is the report; the
        // checks below would only stumble on it as read errors.
        #[cfg(not(target_family = "wasm"))]
        if let Some(checks) = &self.checks {
            let damaged = checks.scrub().map_err(StoreError::io)?;
            if !damaged.is_empty() {
                return Ok(VerifyReport {
                    findings: damaged
                        .into_iter()
                        .map(|block| crate::verify::Finding::DamagedBlock { block })
                        .collect(),
                    ..VerifyReport::default()
                });
            }
        }
        // The journal first, under its lock: no commit can then come
        // between reading it and the snapshot it is checked against.
        #[cfg(not(target_family = "wasm"))]
        if let Some(journal) = &self.journal {
            let journal = lock(journal);
            let bytes = journal.bytes()?;
            let txn = self.db().begin_read()?;
            let mut report = crate::verify::verify(&txn, self.store_id)?;
            crate::verify::verify_journal(&txn, &bytes, journal.base(), &mut report.findings);
            return Ok(report);
        }
        self.read(|txn| crate::verify::verify(txn, self.store_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_clock_before_the_epoch_fails_the_command_and_writes_nothing() {
        let clock = ManualClock::new(-1);
        let store = Store::builder().clock(clock.clone()).in_memory().unwrap();
        let command = CreateUser::new(Uuid::from_u128(5).to_string(), "a@b.co");
        assert!(matches!(
            store.create_user(&command),
            Err(StoreError::ClockOutOfRange(-1))
        ));
        assert_eq!(store.head_position().unwrap(), 0);
        clock.set(1);
        assert!(matches!(
            store.create_user(&command),
            Ok(Outcome::Created(_))
        ));
    }

    #[test]
    fn stamping_uses_the_supplied_clock() {
        let store = Store::builder()
            .clock(ManualClock::new(1_700_000_000_123))
            .in_memory()
            .unwrap();
        let command = CreateUser::new(Uuid::from_u128(5).to_string(), "a@b.co");
        let Outcome::Created(event) = store.create_user(&command).unwrap() else {
            panic!("expected Created");
        };
        assert_eq!(event.recorded_at_ms, 1_700_000_000_123);
        assert_eq!(event.event_id.get_version_num(), 7);
        assert_eq!(event.origin, store.store_id());
    }
}
