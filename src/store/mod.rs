//! The store: one redb write transaction per command or batch.
//!
//! Invariant: this module knows nothing of JSON. It turns typed commands into
//! [`Outcome`]s; `contract` turns those into the API's bodies.

use std::path::Path;
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::{
    Builder, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, StorageBackend,
};
use uuid::Uuid;

use crate::clock::Clock;
use crate::command::{Command, CreateUser, DeleteUser, Intent, Outcome, UpdateUser};
use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::log::{self, Bytes, EMAILS, EVENTS, META, STREAMS, USERS, Writer};
use crate::pipeline::{Log, Pipeline, Stamper};
use crate::user::User;
use crate::verify::VerifyReport;

#[cfg(not(target_family = "wasm"))]
mod journaled;
mod open;
mod read;
mod scratch;

// The platform's part of the store, one whole file each (as redb picks its
// file backend): what `Store` keeps beside its database and the steps of
// opening, writing, reading and verifying that differ.
#[cfg(not(target_family = "wasm"))]
mod native;
#[cfg(not(target_family = "wasm"))]
use native as platform;
#[cfg(target_family = "wasm")]
mod wasm;
#[cfg(target_family = "wasm")]
use wasm as platform;

pub use open::StoreBuilder;
use platform::{Platform, Side, patiently};

/// The store file format this version writes and reads. Format 2 keys the
/// email index by the signup-grade rule (Unicode case folding, punycode
/// domains); format 3 records every holder of a mailbox (a device may
/// briefly hold a claim the hub has not answered beside the hub's user);
/// format 4 may hold erasures (`UserErased`, `UserErasureRejected`,
/// `Redacted`), which an older version could not read. An older store is
/// migrated when it is opened.
pub const STORE_FORMAT: u32 = 4;

/// The page cache redb may use unless told otherwise: small enough for a
/// phone or a browser tab, large enough to hold the hot index pages.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Runs `f`, turning a panic inside the storage engine into
/// [`StoreError::Damaged`]. redb may panic on a damaged file; no input, a
/// damaged file included, may panic through this library's API. Built
/// with `panic = "abort"` (wasm32 always is) there is nothing to catch, and
/// `f` runs as it is: the unreachable handler cost the npm package 0.4 KB
/// per call site.
#[cfg(not(panic = "unwind"))]
fn contain<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    f()
}

/// See the other `contain`: this is the one that catches.
#[cfg(panic = "unwind")]
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

/// An embedded event store for SmartphoneKey users, in one redb file.
///
/// `Store` is `Send + Sync`: share it between threads behind an `Arc`. Writes
/// are serialized by redb; reads run beside them on a consistent snapshot.
pub struct Store {
    /// Always `Some` while the store can be used; taken only by `close` and
    /// `drop`, which end the store.
    db: Option<platform::Db>,
    durability: Durability,
    store_id: Uuid,
    /// Opened by [`StoreBuilder::open_read_only`]: every write is refused.
    read_only: bool,
    stamper: Stamper,
    /// Set by a commit that erased a user: its values remain in the file's
    /// free pages and the journal until [`close`](Store::close) rewrites them.
    erased: std::sync::atomic::AtomicBool,
    /// The store's backend and a scratch to rewrite it through, for a
    /// store opened with [`StoreBuilder::backend_and_scratch`].
    pair: Option<scratch::Pair>,
    /// What this platform keeps beside the database (`native.rs`: the
    /// shared read snapshot, group commit, commit announcements, the
    /// journal, the block checksums; `wasm.rs`: nothing). Declared last,
    /// so dropped last: the checksum file's lock outlives redb's final
    /// write-back.
    #[allow(dead_code, reason = "wasm.rs keeps nothing here to read")]
    platform: Platform,
}

/// A read transaction with the tables point reads use already open.
pub(crate) struct Snapshot {
    pub txn: ReadTransaction,
    pub events: ReadOnlyTable<Bytes, Bytes>,
    pub streams: ReadOnlyTable<Bytes, Bytes>,
    pub emails: ReadOnlyTable<Bytes, Bytes>,
    pub users: ReadOnlyTable<Bytes, Bytes>,
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
        let Some(_) = &self.db else { return };
        let scrub =
            self.rewrites() && !self.read_only && self.read(log::scrub_due).unwrap_or(false);
        self.forget_snapshot();
        // On failure the journal keeps its records for the next open.
        let _ = self.close_platform();
        if let Some(db) = self.db.take() {
            // redb commits on close and may panic on a damaged file; a panic
            // must not escape a drop (during unwinding it would abort).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
        }
        // Left undone, the next open does it.
        let _ = self.end(scrub);
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

    fn db(&self) -> &platform::Db {
        // Only close() and drop() take the database, and both consume the store.
        self.db
            .as_ref()
            .expect("the database is present until the store ends")
    }

    /// Closes the store, reporting what dropping it would swallow: redb's
    /// final commit on close can fail (or meet a damaged file).
    ///
    /// A store that erased a user since it was opened is rewritten here:
    /// its rows are copied into a new file that replaces it, and its journal
    /// is cut to its header, so that no free page or old journal record
    /// still holds the erased values (native stores opened by path, and
    /// stores opened with [`StoreBuilder::backend_and_scratch`], rewritten
    /// through their scratch; a store reopened after a crash before this
    /// does it on opening).
    pub fn close(mut self) -> Result<(), StoreError> {
        let scrub = self.rewrites() && !self.read_only && self.read(log::scrub_due)?;
        // After the read above: no snapshot may outlive the database.
        self.forget_snapshot();
        self.close_platform()?;
        let db = self
            .db
            .take()
            .expect("the database is present until the store ends");
        contain(|| Ok(db.close()?))?;
        self.end(scrub)
    }

    /// What follows the database's close, in `close` and in a drop: the
    /// rewrite after an erasure when `scrub` says one is due, then the
    /// scratch pair's backends released, whatever the rewrite did.
    fn end(&mut self, scrub: bool) -> Result<(), StoreError> {
        let rewritten = if scrub { self.rewrite() } else { Ok(()) };
        if let Some(pair) = self.pair.take() {
            pair.close();
        }
        rewritten
    }

    /// Whether closing this store rewrites it after an erasure: a native
    /// store opened by path, or one opened with a scratch backend.
    fn rewrites(&self) -> bool {
        self.pair.is_some() || self.scrubs()
    }

    /// Rewrites the closed store without the pages that may hold erased
    /// values: through its scratch backend, or (by path) its platform's way.
    fn rewrite(&mut self) -> Result<(), StoreError> {
        match &self.pair {
            Some(pair) => pair.rewrite(),
            None => self.scrub(),
        }
    }

    /// Whether a user erased since this store was opened still has values
    /// in the file's free pages or the journal, which [`close`](Self::close)
    /// removes: a long-running holder (a hub) closes and reopens the store
    /// when this says so.
    pub fn holds_erased_values(&self) -> bool {
        self.erased.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This store's id, stamped as the origin of every event it records.
    pub fn store_id(&self) -> Uuid {
        self.store_id
    }

    /// Executes one `CreateUser`: [`execute`](Self::execute) for a
    /// creation.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn create_user(&self, command: &CreateUser) -> Result<Outcome, StoreError> {
        self.submit(&|| command.validate().map(Intent::Create))
    }

    /// Executes one `UpdateUser`: [`execute`](Self::execute) for an
    /// update. A changed email frees the old one in the same transaction.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn update_user(&self, command: &UpdateUser) -> Result<Outcome, StoreError> {
        self.submit(&|| command.validate().map(Intent::Update))
    }

    /// Executes one `DeleteUser`: [`execute`](Self::execute) for an
    /// erasure. In the same transaction every earlier event of the user
    /// that holds its data is written over by what is left of it (its id,
    /// type and time) and its email is freed; its id stays taken. The
    /// erased values leave the file when the store is closed (it is
    /// rewritten then, and its journal cut): see the README's "Erasure".
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn delete_user(&self, command: &DeleteUser) -> Result<Outcome, StoreError> {
        self.submit(&|| command.validate().map(Intent::Delete))
    }

    /// Executes one command: validates it, decides it against the recorded
    /// state, and records its event in a durable transaction. A rejection
    /// or a replay writes nothing. Concurrent calls from several threads
    /// share transactions and fsyncs (group commit); each returns only once
    /// its own command is durable. An invalid command is answered at once:
    /// validation reads nothing of the log, so it runs in the caller's
    /// thread before the command joins a group. The command's text may be
    /// owned or borrowed (as [`contract::read_command`](crate::contract::read_command)
    /// reads it from a body).
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] on a store opened read-only;
    /// [`StoreError::ClockOutOfRange`] when the clock is off; otherwise the
    /// storage failures of [`StoreError`]. On any error nothing is written.
    pub fn execute<T: AsRef<str>>(&self, command: &Command<T>) -> Result<Outcome, StoreError> {
        self.submit(&|| command.intent())
    }

    /// Validates a command with `validate` and runs it in the next group.
    /// (`dyn`: one copy of this path in the browser package, not one per
    /// command.)
    fn submit(
        &self,
        validate: &dyn Fn() -> Result<Intent, Vec<crate::field::FieldError>>,
    ) -> Result<Outcome, StoreError> {
        // As any write: a read-only store refuses before anything is checked.
        self.writable()?;
        let intent = match contain(|| Ok(validate()))? {
            Ok(intent) => intent,
            Err(details) => {
                return Ok(Outcome::Rejected(crate::field::Rejection::Invalid(details)));
            }
        };
        // wasm has one thread: there it runs alone.
        self.grouped(intent, |group| self.run_valid(group))
    }

    /// Runs commands that passed validation, in one transaction, in order.
    fn run_valid(&self, intents: Vec<Intent>) -> Result<Vec<Outcome>, StoreError> {
        self.write(|writer| intents.into_iter().map(|i| writer.run(i)).collect())
    }

    /// Executes many commands in one transaction, in order, returning an
    /// outcome for each. Later commands see the effects of earlier ones (a
    /// second command for the same email is a conflict). Either every
    /// `Recorded` outcome is committed, or (on `Err`) nothing is.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] on a store opened read-only;
    /// [`StoreError::ClockOutOfRange`] when the clock is off; otherwise the
    /// storage failures of [`StoreError`]. On any error nothing is written.
    pub fn execute_batch<C>(&self, commands: &[C]) -> Result<Vec<Outcome>, StoreError>
    where
        C: Clone + Into<Command>,
    {
        self.write(|writer| {
            // Pending for the hub, without a row yet: see log::META_LISTED_TO.
            commands
                .iter()
                .map(|command| writer.execute_command(&command.clone().into()))
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
        let mut f = Some(f);
        let mut value = None;
        self.write_once(&mut |writer| {
            if let Some(f) = f.take() {
                value = Some(f(writer)?);
            }
            Ok(())
        })?;
        value.ok_or_else(|| StoreError::Inconsistent("a write ran no step".into()))
    }

    /// The body of [`write`](Self::write), not generic: one copy of the
    /// transaction's code whatever the step (the browser package pays for
    /// each copy).
    fn write_once(
        &self,
        f: &mut dyn FnMut(&mut Writer<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        contain(|| {
            // Taken before redb's write lock, by every writer.
            let mut commit = self.begin_commit();
            let mut txn = self.db().begin_write()?;
            // With a journal, the journal's sync is what makes a commit
            // durable; redb's durable commits are the checkpoints.
            let durability = if commit.journaled() {
                Durability::None
            } else {
                self.durability
            };
            txn.set_durability(durability)
                .map_err(|e| StoreError::Storage(e.into()))?;
            let mut writer = Writer::open(&txn, self.store_id, &self.stamper)?;
            commit.record(&mut writer);
            f(&mut writer)?;
            commit.collect(&mut writer);
            let (dirty, head, rewrote) = (writer.dirty(), writer.head(), writer.rewrote());
            drop(writer);
            if dirty {
                self.commit(commit, txn)?;
                if rewrote {
                    self.erased
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                self.forget_snapshot();
                self.announce(head);
            } else {
                txn.abort()?;
            }
            Ok(())
        })
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
            Ok(Outcome::Recorded(_))
        ));
    }

    #[test]
    fn stamping_uses_the_supplied_clock() {
        let store = Store::builder()
            .clock(ManualClock::new(1_700_000_000_123))
            .in_memory()
            .unwrap();
        let command = CreateUser::new(Uuid::from_u128(5).to_string(), "a@b.co");
        let Outcome::Recorded(event) = store.create_user(&command).unwrap() else {
            panic!("expected Created");
        };
        assert_eq!(event.recorded_at_ms, 1_700_000_000_123);
        assert_eq!(event.event_id.get_version_num(), 7);
        assert_eq!(event.origin, store.store_id());
    }
}
