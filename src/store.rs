//! The store: one redb write transaction per command or batch.
//!
//! Invariant: this module knows nothing of JSON. It turns typed commands into
//! [`Outcome`]s; `contract` turns those into the API's bodies.

use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::backends::InMemoryBackend;
use redb::{
    Builder, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageBackend, WriteTransaction,
};
use uuid::{ContextV7, Timestamp, Uuid};

use crate::clock::Clock;
use crate::error::StoreError;
use crate::event::{Event, RecordedEvent};
#[cfg(not(target_family = "wasm"))]
use crate::group::Group;
use crate::log::{self, Bytes, EMAILS, EVENTS, LogTables, META, STREAMS};
use crate::user::{self, CreateUser, Decision, Rejection, User};
use crate::verify::VerifyReport;

/// The store file format this version writes and reads.
pub const STORE_FORMAT: u32 = 1;

/// The page cache redb may use unless told otherwise: small enough for a
/// phone or a browser tab, large enough to hold the hot index pages.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The latest time the wire format can express: 9999-12-31T23:59:59.999Z.
const MAX_RECORDED_AT_MS: i64 = 253_402_300_799_999;

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
}

impl Default for StoreBuilder {
    fn default() -> Self {
        StoreBuilder {
            clock: None,
            durable: true,
            check_on_open: true,
            cache_bytes: DEFAULT_CACHE_BYTES,
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

    /// Whether opening verifies the checksum of every page of the file
    /// (`true`, the default). redb does not check page checksums on ordinary
    /// reads, so without this a damaged index page could answer a lookup
    /// wrongly; with it, a damaged file fails to open. The check reads the
    /// whole file: turn it off only for very large stores opened often.
    pub fn check_on_open(mut self, check: bool) -> Self {
        self.check_on_open = check;
        self
    }

    /// redb's page cache size in bytes (default [`DEFAULT_CACHE_BYTES`]).
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Opens the store in the file at `path`, creating it when missing.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        contain(|| {
            let db = match self.redb().create(path) {
                Err(error) if reset_if_never_initialized(path)? => {
                    drop(error);
                    self.redb().create(path)?
                }
                other => other?,
            };
            self.finish(db)
        })
    }

    /// Opens a store that lives in memory and is gone when dropped.
    pub fn in_memory(self) -> Result<Store, StoreError> {
        self.backend(InMemoryBackend::new())
    }

    /// Opens the store on any redb storage backend (OPFS, a fault-injecting
    /// test disk, …).
    /// A backend holding the remains of a creation that never finished is
    /// emptied first, as [`open`](Self::open) does for files; the backend
    /// must not be open elsewhere.
    pub fn backend(self, backend: impl StorageBackend) -> Result<Store, StoreError> {
        contain(|| {
            let len = backend.len().map_err(redb::StorageError::from)?;
            let mut head = vec![0; REDB_MAGIC_LEN.min(len as usize)];
            backend
                .read(0, &mut head)
                .map_err(redb::StorageError::from)?;
            if never_initialized(len, &head) {
                backend.set_len(0).map_err(redb::StorageError::from)?;
            }
            let db = self.redb().create_with_backend(backend)?;
            self.finish(db)
        })
    }

    fn redb(&self) -> Builder {
        let mut builder = Builder::new();
        builder
            .set_cache_size(self.cache_bytes)
            .set_check_integrity_on_open(self.check_on_open);
        builder
    }

    fn finish(self, db: Database) -> Result<Store, StoreError> {
        let clock = match self.clock {
            Some(clock) => clock,
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
            clock,
            durability,
            store_id,
            ids: Mutex::new(ContextV7::new()),
            #[cfg(not(target_family = "wasm"))]
            snapshot: Mutex::new(None),
            #[cfg(not(target_family = "wasm"))]
            group: Group::default(),
        })
    }
}

/// Length of redb's magic number, the first bytes of every redb file.
const REDB_MAGIC_LEN: usize = 9;

/// redb writes its magic number last when it creates a file, after the rest
/// is on disk, and never commits before that. A file that is not empty but
/// whose magic bytes are still zero is therefore a creation cut short (a
/// crash or power loss during the very first open): it holds nothing, and
/// redb would refuse it forever as "not a redb database". Any other content
/// is left alone: it may be someone's data.
fn never_initialized(len: u64, head: &[u8]) -> bool {
    len > 0 && head.iter().all(|b| *b == 0)
}

/// Empties the file at `path` when it is a creation cut short. Called only
/// after redb refused the file while holding its lock: no other process can
/// be creating it then, since redb creates only in an empty file.
fn reset_if_never_initialized(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;
    let Ok(mut file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return Ok(false);
    };
    let len = file.metadata().map_err(redb::StorageError::from)?.len();
    let mut head = Vec::with_capacity(REDB_MAGIC_LEN);
    (&mut file)
        .take(REDB_MAGIC_LEN as u64)
        .read_to_end(&mut head)
        .map_err(redb::StorageError::from)?;
    if !never_initialized(len, &head) {
        return Ok(false);
    }
    file.set_len(0).map_err(redb::StorageError::from)?;
    file.sync_all().map_err(redb::StorageError::from)?;
    Ok(true)
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every
/// critical section here is a plain read or replacement).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
    let (store_id, created) = {
        let mut meta = txn.open_table(META)?;
        let format = meta.get(&b"format"[..])?.map(|v| v.value().to_vec());
        match format {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Inconsistent("meta format row is damaged".into()))?;
                if found > STORE_FORMAT {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                let id = meta.get(&b"store_id"[..])?.map(|v| v.value().to_vec());
                let id = id
                    .and_then(|bytes| Uuid::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        StoreError::Inconsistent("meta store_id row is damaged".into())
                    })?;
                (id, false)
            }
            None => {
                let id = Uuid::new_v4();
                meta.insert(&b"format"[..], STORE_FORMAT.to_le_bytes().as_slice())?;
                meta.insert(&b"store_id"[..], id.as_bytes().as_slice())?;
                (id, true)
            }
        }
    };
    // Opening the tables creates those missing (all of them in a new store;
    // the sync tables in a store from before sync), so that later reads
    // never meet a missing table. A complete store is opened without
    // writing to it.
    let tables = txn.list_tables()?.count();
    drop(LogTables::open(&txn, store_id)?);
    if created || txn.list_tables()?.count() != tables {
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
    clock: Arc<dyn Clock>,
    durability: Durability,
    store_id: Uuid,
    /// Makes this store's event ids increase, so the `EVENT_IDS` index is
    /// appended at its right edge like the log: random ids within a
    /// millisecond left its pages half full and dirtied a random page each.
    ids: Mutex<ContextV7>,
    /// The read snapshot every read shares until the next commit. Opening a
    /// redb read transaction and its tables costs more than a point lookup
    /// itself (about 0.65 µs against 0.2 µs); read-mostly callers pay it
    /// once per commit instead of once per call.
    #[cfg(not(target_family = "wasm"))]
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    #[cfg(not(target_family = "wasm"))]
    group: Group,
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
    /// only once its own command is durable.
    pub fn create_user(&self, command: &CreateUser) -> Result<Outcome, StoreError> {
        #[cfg(not(target_family = "wasm"))]
        return self
            .group
            .submit(command, |commands| self.execute_batch(commands));
        // wasm has one thread: there is never a group to join, and the
        // machinery would only cost the browser package bytes.
        #[cfg(target_family = "wasm")]
        return self
            .execute_batch(std::slice::from_ref(command))?
            .pop()
            .ok_or_else(|| StoreError::Inconsistent("a batch of one gave no outcome".into()));
    }

    /// Executes many commands in one transaction, in order, returning an
    /// outcome for each. Later commands see the effects of earlier ones (a
    /// second command for the same email is a conflict). Either every
    /// `Created` outcome is committed, or (on `Err`) nothing is.
    pub fn execute_batch(&self, commands: &[CreateUser]) -> Result<Vec<Outcome>, StoreError> {
        self.write(|tables, _| {
            let mut head = log::head(&tables.events)?;
            let mut outcomes = Vec::with_capacity(commands.len());
            for command in commands {
                outcomes.push(self.execute_in(tables, &mut head, command)?);
            }
            let created = outcomes.iter().any(|o| matches!(o, Outcome::Created(_)));
            Ok((outcomes, created))
        })
    }

    /// Runs `f` in one write transaction with the log's tables open, and
    /// commits only when `f` says it wrote something (a transaction that
    /// writes nothing is aborted, leaving the file as it was). On `Err`
    /// nothing is written.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut LogTables<'_>, &WriteTransaction) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        contain(|| {
            let mut txn = self.db().begin_write()?;
            txn.set_durability(self.durability)
                .map_err(|e| StoreError::Storage(e.into()))?;
            let (value, wrote) = {
                let mut tables = LogTables::open(&txn, self.store_id)?;
                f(&mut tables, &txn)?
            };
            if wrote {
                txn.commit()?;
                self.forget_snapshot();
            } else {
                txn.abort()?;
            }
            Ok(value)
        })
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

    /// Retires the shared snapshot after a commit (so reads see it) and
    /// before closing (redb will not close under a live transaction).
    fn forget_snapshot(&self) {
        #[cfg(not(target_family = "wasm"))]
        lock(&self.snapshot).take();
    }

    fn execute_in(
        &self,
        tables: &mut LogTables<'_>,
        head: &mut u64,
        command: &CreateUser,
    ) -> Result<Outcome, StoreError> {
        let created = match command.validate() {
            Ok(created) => created,
            Err(details) => return Ok(Outcome::Rejected(Rejection::Invalid(details))),
        };
        let user_id = created.user_id;
        let current = log::load_user(&tables.events, &tables.streams, user_id)?;
        let owner = log::email_owner(&tables.emails, &created.email_key())?;
        match user::decide(current.as_ref(), owner, created) {
            Err(rejection) => Ok(Outcome::Rejected(rejection)),
            Ok(Decision::AlreadyRecorded) => {
                // UserCreated is always version 1 of its aggregate.
                let original = log::stream(&tables.events, &tables.streams, user_id)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        StoreError::Inconsistent(format!("user {user_id} has no events"))
                    })?;
                Ok(Outcome::Replayed(original))
            }
            Ok(Decision::Record(event)) => {
                let recorded = self.stamp(event, current.as_ref(), *head + 1)?;
                // Pending for the hub, without a row yet: see sync.rs.
                tables.append(&recorded)?;
                *head = recorded.position;
                Ok(Outcome::Created(recorded))
            }
        }
    }

    /// Gives a decided event its envelope: id, version, position and time.
    pub(crate) fn stamp(
        &self,
        event: Event,
        current: Option<&User>,
        position: u64,
    ) -> Result<RecordedEvent, StoreError> {
        let now = self.clock.now_ms();
        if !(0..=MAX_RECORDED_AT_MS).contains(&now) {
            return Err(StoreError::ClockOutOfRange(now));
        }
        // In range, so both conversions are exact.
        let (secs, millis) = ((now / 1000) as u64, (now % 1000) as u32);
        // Stamping happens inside the write transaction, so the lock is never
        // contended.
        let ids = lock(&self.ids);
        let ts = Timestamp::from_unix(&*ids, secs, millis * 1_000_000);
        Ok(RecordedEvent {
            event_id: Uuid::new_v7(ts),
            version: current.map_or(0, |user| user.version) + 1,
            position,
            recorded_at_ms: now,
            origin: self.store_id,
            event,
        })
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
    /// collected per event.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
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
