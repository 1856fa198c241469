//! Failures of the store, as opposed to rejections of a command
//! ([`crate::Rejection`]), which are answers and change nothing.

use crate::batch::BatchError;
use crate::codec::DecodeError;

/// The store could not do what was asked. Nothing was written: a failed
/// command or batch commits nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process, or another handle in this one, has the store file
    /// open. Handling: close the other handle, or retry once it has exited.
    #[error("store is locked: another process has it open")]
    Locked,
    /// An event in the log failed to decode: the file was damaged after it was
    /// written. Handling: run `verify()` for the full list of findings and
    /// restore the store from a backup or a hub.
    #[error("damaged event at position {position}: {source}")]
    Corrupt {
        /// The log position of the damaged event.
        position: u64,
        /// What the decoder found.
        source: DecodeError,
    },
    /// The indexes contradict the log (a row points at the wrong event).
    /// Handling: as for `Corrupt`.
    #[error("inconsistent store: {0}")]
    Inconsistent(String),
    /// The path holds something that is not a store: a directory, a FIFO, a
    /// file without a store's header, or nothing where a store must exist
    /// (a read-only open). It was left untouched. Handling: check the path.
    #[error("not a store: {0}")]
    NotAStore(String),
    /// The store was opened read-only and was asked to write. Handling: open
    /// it with `StoreBuilder::open` to write.
    #[error("the store was opened read-only")]
    ReadOnly,
    /// The file was written by a newer version of this library. Handling:
    /// upgrade the library; never write to the file with this version.
    #[error("store format {found} is newer than this version supports ({supported})")]
    UnsupportedFormat {
        /// The format version found in the file.
        found: u32,
        /// The newest format version this library reads.
        supported: u32,
    },
    /// The clock returned a time outside years 1970–9999. Handling: fix the
    /// clock supplied to the store.
    #[error("clock returned {0} ms since the epoch, outside years 1970 to 9999")]
    ClockOutOfRange(i64),
    /// No clock was supplied on a target that has no system clock
    /// (`wasm32-unknown-unknown`). Handling: pass one to
    /// [`StoreBuilder::clock`](crate::StoreBuilder::clock).
    #[error("no clock was supplied and this target has no system clock")]
    NoClock,
    /// The storage engine met data it could not make sense of and panicked;
    /// the panic was contained at the store's boundary. Handling: as for
    /// `Corrupt`: drop the store, reopen, run `verify()`, restore if damaged.
    #[error("storage engine failed on damaged data: {0}")]
    Damaged(String),
    /// A sync batch was refused whole: damaged, oversized, of the wrong kind,
    /// from another hub, or carrying an unacceptable event. Nothing was
    /// written. Handling: do not retry the same bytes; fetch a fresh batch.
    #[error("batch refused: {0}")]
    Batch(#[from] BatchError),
    /// The storage engine failed: I/O error, full disk, a damaged file.
    /// Handling: the operation did not happen; report it, and retry only
    /// after the cause is fixed.
    #[error("storage failure: {0}")]
    Storage(#[from] redb::Error),
}

impl From<redb::DatabaseError> for StoreError {
    fn from(error: redb::DatabaseError) -> Self {
        match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => StoreError::Storage(other.into()),
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(error: $t) -> Self {
                StoreError::Storage(error.into())
            }
        }
    )*};
}

storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What kind of failure a [`StoreError`] is, as every binding names it
/// (the npm package's `err.name`, the mobile SDK's exception classes): one
/// mapping, here, so the targets cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`StoreError::Locked`].
    Locked,
    /// The store's bytes are damaged: [`StoreError::Corrupt`],
    /// [`StoreError::Inconsistent`], [`StoreError::Damaged`].
    Corrupt,
    /// [`StoreError::UnsupportedFormat`].
    UnsupportedFormat,
    /// [`StoreError::NotAStore`].
    NotAStore,
    /// [`StoreError::ReadOnly`].
    ReadOnly,
    /// [`StoreError::Batch`].
    BatchRefused,
    /// Everything else: I/O, the clock, the storage engine.
    Storage,
}

impl ErrorKind {
    /// The stable name bindings give this kind (`"StoreLockedError"`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Locked => "StoreLockedError",
            ErrorKind::Corrupt => "CorruptStoreError",
            ErrorKind::UnsupportedFormat => "UnsupportedFormatError",
            ErrorKind::NotAStore => "NotAStoreError",
            ErrorKind::ReadOnly => "ReadOnlyStoreError",
            ErrorKind::BatchRefused => "BatchRefusedError",
            ErrorKind::Storage => "StorageError",
        }
    }
}

impl StoreError {
    /// This failure's kind: how a binding names it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Locked => ErrorKind::Locked,
            StoreError::Corrupt { .. } | StoreError::Inconsistent(_) | StoreError::Damaged(_) => {
                ErrorKind::Corrupt
            }
            StoreError::UnsupportedFormat { .. } => ErrorKind::UnsupportedFormat,
            StoreError::NotAStore(_) => ErrorKind::NotAStore,
            StoreError::ReadOnly => ErrorKind::ReadOnly,
            StoreError::Batch(_) => ErrorKind::BatchRefused,
            StoreError::ClockOutOfRange(_) | StoreError::NoClock | StoreError::Storage(_) => {
                ErrorKind::Storage
            }
        }
    }

    /// An I/O failure of a file the store reads or writes (the store file
    /// outside redb, its journal), as redb reports its own.
    pub(crate) fn io(error: std::io::Error) -> StoreError {
        StoreError::Storage(redb::StorageError::from(error).into())
    }
}

/// A copy of `error` for each caller of a group commit that failed as a
/// whole. redb's errors cannot be cloned; they are carried over as their text.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn duplicate(error: &StoreError) -> StoreError {
    match error {
        StoreError::Locked => StoreError::Locked,
        StoreError::Corrupt { position, source } => StoreError::Corrupt {
            position: *position,
            source: source.clone(),
        },
        StoreError::Inconsistent(what) => StoreError::Inconsistent(what.clone()),
        StoreError::NotAStore(what) => StoreError::NotAStore(what.clone()),
        StoreError::ReadOnly => StoreError::ReadOnly,
        StoreError::UnsupportedFormat { found, supported } => StoreError::UnsupportedFormat {
            found: *found,
            supported: *supported,
        },
        StoreError::ClockOutOfRange(ms) => StoreError::ClockOutOfRange(*ms),
        StoreError::NoClock => StoreError::NoClock,
        StoreError::Damaged(what) => StoreError::Damaged(what.clone()),
        StoreError::Batch(error) => StoreError::Batch(error.clone()),
        StoreError::Storage(error) => {
            StoreError::Storage(redb::Error::Io(std::io::Error::other(error.to_string())))
        }
    }
}
