//! The redb tables, their encodings, and the one writer every write goes
//! through.
//!
//! Invariant: only this module declares tables and meta keys and encodes
//! their keys and values (a tidy test holds it to that). Every key and value
//! is bytes, encoded and decoded here with typed errors, because redb's
//! `Value::from_bytes` cannot report failure — and because redb compiles its
//! B-tree once per key and value type: one byte-to-byte type instead of five
//! keeps the wasm build about a fifth smaller. Integers are big-endian, so
//! byte order is numeric order and ranges work as on integer keys.
//!
//! Invariant: every event is appended through the [`Writer`], the store's
//! [`Log`], by the one pipeline in `pipeline.rs`: every `CreateUser` — a
//! local command, a pushed event, a pulled event — is decided by
//! [`Pipeline::execute`](crate::pipeline::Pipeline::execute). Local
//! commands and both sides of sync are callers of that pipeline, not copies
//! of it; the hub on PostgreSQL runs the same one over a
//! [`Staged`](crate::pipeline::Staged) log.

use std::sync::{Arc, Mutex};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    TableHandle, WriteTransaction,
};
use uuid::{ContextV7, Timestamp, Uuid};

use crate::clock::Clock;
use crate::codec;
use crate::error::StoreError;
use crate::event::{MAX_RECORDED_AT_MS, RecordedEvent};
use crate::user::{self, User};

// The journal's redo records are native only: one whole file per platform.
#[cfg(not(target_family = "wasm"))]
mod redo;
#[cfg(not(target_family = "wasm"))]
use redo::Recorder;
#[cfg(not(target_family = "wasm"))]
pub(crate) use redo::{
    META_JOURNAL_SEQ, Redo, apply_redo, changes, from_before_format_3, journal_seq, set_journal_seq,
};
#[cfg(target_family = "wasm")]
mod no_redo;
#[cfg(target_family = "wasm")]
use no_redo::Recorder;

/// The one key and value type of every table.
pub(crate) type Bytes = &'static [u8];

/// position (u64, 1, 2, 3 … no gaps) → envelope bytes: the log itself.
pub(crate) const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
/// user id (16 bytes) ++ version (u64) → position (u64): one user's events.
pub(crate) const STREAMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("streams");
/// email key (UTF-8, see `event::email_key`) ++ 0xFF ++ user id (16 bytes)
/// → nothing: the users holding each mailbox. One, except while a device
/// holds a claim the hub has not answered beside a user the hub accepted
/// (see `Source::Hub`); 0xFF never occurs in UTF-8, so a key's rows are
/// the range after `key ++ 0xFF`.
pub(crate) const EMAILS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("emails");
/// event id (16 bytes) → position (u64): recognises events across stores.
/// Events appended by a sync step are indexed as they are appended; this
/// store's own `UserCreated` events only when a sync step lists them, since
/// only sync looks them up and a create then commits fewer tables; own
/// compensations never.
pub(crate) const EVENT_IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("event_ids");
/// name (UTF-8) → bytes: the `META_*` rows.
pub(crate) const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
/// position (u64) → nothing: this store's own `UserCreated` events the hub
/// has not yet accepted or rejected — those up to [`META_LISTED_TO`]; newer
/// creations are pending without a row.
pub(crate) const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// user id (16 bytes) → the user's current state (`codec::encode_state`):
/// written with every event of the user, in the same transaction, so a
/// lookup reads one row instead of folding a stream.
pub(crate) const USERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("users");
/// position (u64) → nothing: the `UserCreationRejected` events, for listing.
pub(crate) const REJECTIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rejections");

/// Meta row: the store format, u32 little-endian.
pub(crate) const META_FORMAT: &[u8] = b"format";
/// Meta row: this store's id, 16 bytes.
pub(crate) const META_STORE_ID: &[u8] = b"store_id";
/// Meta row: the hub position this device has imported up to, u64.
pub(crate) const META_PULL_CURSOR: &[u8] = b"pull_cursor";
/// Meta row: the hub this device syncs with, 16 bytes.
pub(crate) const META_HUB_ID: &[u8] = b"hub_id";
/// Meta row: the position up to which this store's own `UserCreated`
/// events have their `PENDING` and `EVENT_IDS` rows, u64. Creating a user
/// writes no sync bookkeeping (two tables fewer in every create's commit,
/// which is what a store that never syncs wants); every sync step first
/// lists the newer creations.
pub(crate) const META_LISTED_TO: &[u8] = b"pending_listed_to";
/// Meta row, present (empty) while an erased user's values may remain in
/// the file's free pages or the journal: a store closing or opening with it
/// rewrites its file and cuts its journal (see `Store::close`).
pub(crate) const META_SCRUB: &[u8] = b"scrub";

/// A u64 as a key or value.
pub(crate) fn u64_bytes(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The `STREAMS` key of one version of one user.
pub(crate) fn stream_key(user: Uuid, version: u64) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(user.as_bytes());
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

fn malformed(what: &str, bytes: &[u8]) -> StoreError {
    StoreError::Inconsistent(format!("{what} has {} bytes, damaged", bytes.len()))
}

/// Reads a u64 key or value.
pub(crate) fn read_u64(what: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| malformed(what, bytes))
}

/// Reads a 16-byte id.
pub(crate) fn read_uuid(what: &str, bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|_| malformed(what, bytes))
}

/// Reads a `STREAMS` key.
pub(crate) fn read_stream_key(bytes: &[u8]) -> Result<(Uuid, u64), StoreError> {
    if bytes.len() != 24 {
        return Err(malformed("stream key", bytes));
    }
    Ok((
        read_uuid("stream key", &bytes[..16])?,
        read_u64("stream key", &bytes[16..])?,
    ))
}

/// Reads a u64 meta row, 0 when absent.
pub(crate) fn meta_u64(
    meta: &impl ReadableTable<Bytes, Bytes>,
    name: &'static [u8],
) -> Result<u64, StoreError> {
    match meta.get(name)? {
        Some(bytes) => read_u64(meta_name(name), bytes.value()),
        None => Ok(0),
    }
}

/// Reads a 16-byte id meta row.
pub(crate) fn meta_uuid(
    meta: &impl ReadableTable<Bytes, Bytes>,
    name: &'static [u8],
) -> Result<Option<Uuid>, StoreError> {
    meta.get(name)?
        .map(|bytes| read_uuid(meta_name(name), bytes.value()))
        .transpose()
}

fn meta_name(name: &'static [u8]) -> &'static str {
    std::str::from_utf8(name).unwrap_or("meta row")
}

/// Reads the format meta row.
pub(crate) fn meta_format(
    meta: &impl ReadableTable<Bytes, Bytes>,
) -> Result<Option<u32>, StoreError> {
    meta.get(META_FORMAT)?
        .map(|bytes| {
            <[u8; 4]>::try_from(bytes.value())
                .map(u32::from_le_bytes)
                .map_err(|_| StoreError::Inconsistent("meta format row is damaged".into()))
        })
        .transpose()
}

/// Writes the format meta row.
pub(crate) fn set_meta_format(
    meta: &mut Table<'_, Bytes, Bytes>,
    format: u32,
) -> Result<(), StoreError> {
    meta.insert(META_FORMAT, format.to_le_bytes().as_slice())?;
    Ok(())
}

/// Opens every table of the store, creating those missing; returns whether
/// any was missing.
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<bool, StoreError> {
    let before = txn.list_tables()?.count();
    for table in TABLES {
        txn.open_table(table)?;
    }
    Ok(txn.list_tables()?.count() != before)
}

/// Every table of a store.
const TABLES: [TableDefinition<Bytes, Bytes>; 8] = [
    EVENTS, STREAMS, EMAILS, EVENT_IDS, META, PENDING, REJECTIONS, USERS,
];

/// Copies every row of every table of `from` into `to`, a new store's
/// transaction, but the [`META_SCRUB`] row: the copy is the scrub.
fn copy_tables(from: &ReadTransaction, to: &WriteTransaction) -> Result<(), StoreError> {
    for definition in TABLES {
        let source = from.open_table(definition)?;
        let mut target = to.open_table(definition)?;
        for row in source.iter()? {
            let (key, value) = row?;
            if definition.name() == META.name() && key.value() == META_SCRUB {
                continue;
            }
            target.insert(key.value(), value.value())?;
        }
    }
    Ok(())
}

/// Copies the store in `old` into `new`, an empty database, in one
/// transaction (the copy is whole or absent), then closes both: the
/// rewrite after an erasure, by path or through a scratch backend.
pub(crate) fn copy_store(old: Database, new: Database) -> Result<(), StoreError> {
    let from = old.begin_read()?;
    let to = new.begin_write()?;
    copy_tables(&from, &to)?;
    to.commit()?;
    drop(from);
    new.close()?;
    old.close()?;
    Ok(())
}

/// Whether the store's file may still hold an erased user's values (see
/// [`META_SCRUB`]).
pub(crate) fn scrub_due(txn: &ReadTransaction) -> Result<bool, StoreError> {
    Ok(txn.open_table(META)?.get(META_SCRUB)?.is_some())
}

/// Rebuilds the email index and the users' state rows from the log, under
/// the current key rule and row shapes: each user not refused holds its
/// current email's key. Where
/// two users recorded under an older, looser rule now share a key
/// (`ñandú@…` and `ÑANDÚ@…`), both hold it; both stay recorded. Memory stays
/// flat: one event at a time.
pub(crate) fn rebuild_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    let events = txn.open_table(EVENTS)?;
    let streams = txn.open_table(STREAMS)?;
    let mut emails = txn.open_table(EMAILS)?;
    emails.retain(|_, _| false)?;
    let mut users = txn.open_table(USERS)?;
    users.retain(|_, _| false)?;
    for row in events.iter()? {
        let (position, bytes) = row?;
        let recorded = decode_row(read_u64("log key", position.value())?, bytes.value())?;
        // Each user once, where its stream begins.
        if recorded.version != 1 {
            continue;
        }
        let user = recorded.aggregate_id();
        let Some(state) = load_user(&events, &streams, user)? else {
            continue;
        };
        if let Some(key) = state.held_email_key() {
            emails.insert(&email_row(&key, user)[..], &[][..])?;
        }
        users.insert(
            user.as_bytes().as_slice(),
            codec::encode_state(&state).as_slice(),
        )?;
    }
    Ok(())
}

/// The last position in the log, 0 when empty.
pub(crate) fn head(events: &impl ReadableTable<Bytes, Bytes>) -> Result<u64, StoreError> {
    match events.last()? {
        Some((key, _)) => read_u64("log key", key.value()),
        None => Ok(0),
    }
}

/// Reads and decodes the event at `position`.
pub(crate) fn read_event(
    events: &impl ReadableTable<Bytes, Bytes>,
    position: u64,
) -> Result<Option<RecordedEvent>, StoreError> {
    events
        .get(&u64_bytes(position)[..])?
        .map(|bytes| decode_row(position, bytes.value()))
        .transpose()
}

/// Decodes the envelope stored at `position`, which must say it is there: a
/// valid envelope under the wrong key is as wrong as a damaged one.
pub(crate) fn decode_row(position: u64, bytes: &[u8]) -> Result<RecordedEvent, StoreError> {
    let recorded =
        codec::decode(bytes).map_err(|source| StoreError::Corrupt { position, source })?;
    check_row(position, &recorded)?;
    Ok(recorded)
}

/// As [`decode_row`], into the memory of an earlier event (see
/// [`codec::decode_into`]); `out` holds the event after `Ok`.
pub(crate) fn decode_row_into<'a>(
    position: u64,
    bytes: &[u8],
    out: &'a mut Option<RecordedEvent>,
) -> Result<&'a RecordedEvent, StoreError> {
    let corrupt = |source| StoreError::Corrupt { position, source };
    let recorded = match out {
        Some(earlier) => {
            codec::decode_into(bytes, earlier).map_err(corrupt)?;
            earlier
        }
        None => out.insert(codec::decode(bytes).map_err(corrupt)?),
    };
    check_row(position, recorded)?;
    Ok(recorded)
}

fn check_row(position: u64, recorded: &RecordedEvent) -> Result<(), StoreError> {
    if recorded.position != position {
        return Err(StoreError::Inconsistent(format!(
            "log row {position} holds the event of position {}",
            recorded.position
        )));
    }
    Ok(())
}

/// Reads one aggregate's events in version order.
pub(crate) fn stream(
    events: &impl ReadableTable<Bytes, Bytes>,
    streams: &impl ReadableTable<Bytes, Bytes>,
    aggregate: Uuid,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let (first, last) = (stream_key(aggregate, 0), stream_key(aggregate, u64::MAX));
    let mut out = Vec::new();
    for row in streams.range(&first[..]..=&last[..])? {
        let (key, position) = row?;
        let (_, version) = read_stream_key(key.value())?;
        let position = read_u64("stream row", position.value())?;
        let recorded = read_event(events, position)?.ok_or_else(|| {
            StoreError::Inconsistent(format!(
                "stream row {aggregate}/{version} points at missing position {position}"
            ))
        })?;
        if recorded.aggregate_id() != aggregate || recorded.version != version {
            return Err(StoreError::Inconsistent(format!(
                "stream row {aggregate}/{version} points at another event (position {position})"
            )));
        }
        out.push(recorded);
    }
    Ok(out)
}

/// The user's state as its `users` row keeps it, `None` when there is no
/// row.
pub(crate) fn state_row(
    users: &impl ReadableTable<Bytes, Bytes>,
    user: Uuid,
) -> Result<Option<User>, StoreError> {
    users
        .get(&user.as_bytes()[..])?
        .map(|bytes| {
            codec::decode_state(user, bytes.value())
                .map_err(|e| StoreError::Inconsistent(e.to_string()))
        })
        .transpose()
}

/// Folds one aggregate's events into the user's current state.
pub(crate) fn load_user(
    events: &impl ReadableTable<Bytes, Bytes>,
    streams: &impl ReadableTable<Bytes, Bytes>,
    aggregate: Uuid,
) -> Result<Option<User>, StoreError> {
    Ok(user::fold(stream(events, streams, aggregate)?))
}

/// The `EMAILS` key of `user` holding `email_key`.
pub(crate) fn email_row(email_key: &str, user: Uuid) -> Vec<u8> {
    let mut row = Vec::with_capacity(email_key.len() + 17);
    row.extend_from_slice(email_key.as_bytes());
    row.push(0xFF);
    row.extend_from_slice(user.as_bytes());
    row
}

/// Reads an `EMAILS` key: the email key and its holder.
pub(crate) fn read_email_row(bytes: &[u8]) -> Result<(String, Uuid), StoreError> {
    let at = bytes.len().checked_sub(17).filter(|at| bytes[*at] == 0xFF);
    let key = at.and_then(|at| String::from_utf8(bytes[..at].to_vec()).ok());
    match (at, key) {
        (Some(at), Some(key)) => Ok((key, read_uuid("email row", &bytes[at + 1..])?)),
        _ => Err(malformed("email row", bytes)),
    }
}

/// The first user holding `email_key` (see `event::email_key`) other than
/// `except`, if any.
pub(crate) fn email_holder(
    emails: &impl ReadableTable<Bytes, Bytes>,
    email_key: &str,
    except: Option<Uuid>,
) -> Result<Option<Uuid>, StoreError> {
    let (first, last) = (
        email_row(email_key, Uuid::nil()),
        email_row(email_key, Uuid::max()),
    );
    for row in emails.range(&first[..]..=&last[..])? {
        let (_, user) = read_email_row(row?.0.value())?;
        if Some(user) != except {
            return Ok(Some(user));
        }
    }
    Ok(None)
}

/// The position an index row holds.
pub(crate) fn position_at(
    index: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<u64>, StoreError> {
    index
        .get(key)?
        .map(|v| read_u64("index row", v.value()))
        .transpose()
}

/// Whether `recorded` is a command event of the store `store_id` (not a
/// compensation): the events listed lazily into `PENDING` and `EVENT_IDS`.
pub(crate) fn own_command(recorded: &RecordedEvent, store_id: Uuid) -> bool {
    recorded.origin == store_id && recorded.event.is_command()
}

/// The reads and writes the pipeline needs from a log. A backend implements
/// these and nothing else; the rules are the pipeline's
/// ([`Pipeline`](crate::pipeline::Pipeline)).
pub trait Log {
    /// The id stamped as the origin of the events this log records itself.
    fn origin(&self) -> Uuid;

    /// The last position in the log, 0 when empty; moved by
    /// [`put_event`](Self::put_event).
    fn head(&self) -> u64;

    /// A new event id and the time to record, for an event recorded here.
    ///
    /// # Errors
    ///
    /// [`StoreError::ClockOutOfRange`] when the clock reads outside years
    /// 1970–9999.
    fn stamp(&self) -> Result<(Uuid, i64), StoreError>;

    /// One user's events, in version order.
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn stream(&self, user: Uuid) -> Result<Vec<RecordedEvent>, StoreError>;

    /// A user other than `except` holding `email_key` (see
    /// [`email_key`](crate::email_key)).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn email_holder(&self, email_key: &str, except: Uuid) -> Result<Option<Uuid>, StoreError>;

    /// The position of the event with this id, if it came from another log
    /// (or has been listed for sync).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError>;

    /// Writes `recorded` at its position (the head's next) with its stream
    /// row, and its event-id row when it `came_from_elsewhere`.
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn put_event(
        &mut self,
        recorded: &RecordedEvent,
        came_from_elsewhere: bool,
    ) -> Result<(), StoreError>;

    /// Keeps `state` as the current state of its user (written after each
    /// of its events). A log without a row per user keeps nothing.
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn put_state(&mut self, _state: &User) -> Result<(), StoreError> {
        Ok(())
    }

    /// Writes `recorded` over the event at its position: an event of an
    /// erased user, redacted. Its stream and id rows stay; a pending event
    /// stops being pending (it is no longer what its command recorded, and
    /// is never pushed).
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn rewrite(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError>;

    /// Records that `user` holds `email_key`.
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn hold_email(&mut self, email_key: &str, user: Uuid) -> Result<(), StoreError>;

    /// Records that `user` no longer holds `email_key`.
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn release_email(&mut self, email_key: &str, user: Uuid) -> Result<(), StoreError>;
}

/// Gives a log's new events their id and time: event ids are v7 UUIDs from
/// one counter, so they increase within a log and an id index is appended
/// at its right edge like the log (random ids within a millisecond left its
/// pages half full and dirtied a random page each).
pub struct Stamper {
    clock: Arc<dyn Clock>,
    ids: Mutex<ContextV7>,
}

impl Stamper {
    /// A stamper reading `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Stamper {
            clock,
            ids: Mutex::new(ContextV7::new()),
        }
    }

    /// A new event id and the time to record.
    ///
    /// # Errors
    ///
    /// [`StoreError::ClockOutOfRange`] when the clock reads outside years
    /// 1970–9999.
    pub fn next(&self) -> Result<(Uuid, i64), StoreError> {
        let now = self.clock.now_ms();
        if !(0..=MAX_RECORDED_AT_MS).contains(&now) {
            return Err(StoreError::ClockOutOfRange(now));
        }
        // In range, so both conversions are exact.
        let (secs, millis) = ((now / 1000) as u64, (now % 1000) as u32);
        // Held only to draw one id; a panic while holding it leaves a valid
        // counter.
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let ts = Timestamp::from_unix(&*ids, secs, millis * 1_000_000);
        Ok((Uuid::new_v7(ts), now))
    }
}

/// One write transaction's view of the log: every table open, the head
/// position threaded through each append, and whether anything was written
/// (a transaction that wrote nothing is aborted, leaving the file as it was).
pub(crate) struct Writer<'txn, 's> {
    store_id: Uuid,
    stamper: &'s Stamper,
    events: Table<'txn, Bytes, Bytes>,
    streams: Table<'txn, Bytes, Bytes>,
    emails: Table<'txn, Bytes, Bytes>,
    event_ids: Lazy<'txn>,
    pending: Lazy<'txn>,
    rejections: Lazy<'txn>,
    meta: Lazy<'txn>,
    users: Table<'txn, Bytes, Bytes>,
    head: u64,
    dirty: bool,
    /// Whether an event was written over (an erasure's redaction).
    rewrote: bool,
    /// Every row written, for the journal when the store keeps one
    /// (`log/redo.rs`; nothing in wasm, `log/no_redo.rs`).
    recorder: Recorder,
}

/// A table the [`Writer`] writes, by its code in a redo record. The codes
/// are part of the journal's format: never renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tab {
    Events = 1,
    Streams = 2,
    Emails = 3,
    EventIds = 4,
    Pending = 5,
    Rejections = 6,
    Meta = 7,
    Users = 8,
}

/// A table the [`Writer`] opens on first use: a create touches three of
/// the seven, and each of redb's `open_table` costs a lookup in its table
/// of tables and an entry in its list of open tables.
struct Lazy<'txn> {
    txn: &'txn WriteTransaction,
    definition: TableDefinition<'static, Bytes, Bytes>,
    table: std::cell::OnceCell<Table<'txn, Bytes, Bytes>>,
}

impl<'txn> Lazy<'txn> {
    fn new(
        txn: &'txn WriteTransaction,
        definition: TableDefinition<'static, Bytes, Bytes>,
    ) -> Self {
        Lazy {
            txn,
            definition,
            table: std::cell::OnceCell::new(),
        }
    }

    /// The table, opened now if it is not yet.
    fn get(&self) -> Result<&Table<'txn, Bytes, Bytes>, StoreError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = self.txn.open_table(self.definition)?;
        Ok(self.table.get_or_init(|| table))
    }

    /// The table for writing, opened now if it is not yet.
    fn get_mut(&mut self) -> Result<&mut Table<'txn, Bytes, Bytes>, StoreError> {
        self.get()?;
        self.table
            .get_mut()
            .ok_or_else(|| StoreError::Inconsistent(format!("table {} not open", self.definition)))
    }
}

impl<'txn, 's> Writer<'txn, 's> {
    /// Opens the tables in `txn` that every write reads (the rest on first
    /// use).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when a table cannot be opened;
    /// [`StoreError::Inconsistent`] when the last log key is damaged.
    pub fn open(
        txn: &'txn WriteTransaction,
        store_id: Uuid,
        stamper: &'s Stamper,
    ) -> Result<Self, StoreError> {
        let events = txn.open_table(EVENTS)?;
        Ok(Writer {
            store_id,
            stamper,
            head: head(&events)?,
            events,
            streams: txn.open_table(STREAMS)?,
            emails: txn.open_table(EMAILS)?,
            event_ids: Lazy::new(txn, EVENT_IDS),
            pending: Lazy::new(txn, PENDING),
            rejections: Lazy::new(txn, REJECTIONS),
            meta: Lazy::new(txn, META),
            users: txn.open_table(USERS)?,
            dirty: false,
            rewrote: false,
            recorder: Recorder::default(),
        })
    }

    /// Writes (`Some`) or removes (`None`) one row: the only way the writer
    /// changes a table, so the redo record holds every change. Returns
    /// whether a row was there before.
    fn put(&mut self, tab: Tab, key: &[u8], value: Option<&[u8]>) -> Result<bool, StoreError> {
        let table = match tab {
            Tab::Events => &mut self.events,
            Tab::Streams => &mut self.streams,
            Tab::Emails => &mut self.emails,
            Tab::EventIds => self.event_ids.get_mut()?,
            Tab::Pending => self.pending.get_mut()?,
            Tab::Rejections => self.rejections.get_mut()?,
            Tab::Meta => self.meta.get_mut()?,
            Tab::Users => &mut self.users,
        };
        let existed = match value {
            Some(value) => table.insert(key, value)?.is_some(),
            None => table.remove(key)?.is_some(),
        };
        self.recorder.record(tab, key, value)?;
        Ok(existed)
    }

    /// Whether anything was written: the transaction commits only then.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Whether an event was written over: an erasure, whose values the
    /// file's free pages and the journal still hold until the store is
    /// rewritten.
    pub fn rewrote(&self) -> bool {
        self.rewrote
    }

    /// The event at `position`.
    pub fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
        read_event(&self.events, position)
    }

    /// Starts a sync step: writes the `PENDING` and `EVENT_IDS` rows of this
    /// store's creations after [`META_LISTED_TO`], so what follows can find,
    /// read or resolve them by row.
    pub fn list_pending(&mut self) -> Result<(), StoreError> {
        let from = meta_u64(self.meta.get()?, META_LISTED_TO)?;
        // Read first, then write: the rows go through `put`, which needs
        // the whole writer.
        let mut own = Vec::new();
        for row in self.events.range(&u64_bytes(from + 1)[..]..)? {
            let (position, stored) = row?;
            let position = read_u64("log key", position.value())?;
            let recorded = decode_row(position, stored.value())?;
            if own_command(&recorded, self.store_id) {
                own.push((u64_bytes(position), recorded.event_id));
            }
        }
        for (key, event_id) in own {
            self.put(Tab::Pending, &key, Some(&[]))?;
            self.put(Tab::EventIds, event_id.as_bytes(), Some(&key))?;
        }
        self.mark_listed()
    }

    /// Ends a sync step. A step lists first and then appends only events
    /// from elsewhere and compensations, never an own creation, so its own
    /// appends count as listed too: otherwise the next step would decode
    /// them all again to find none.
    pub fn mark_listed(&mut self) -> Result<(), StoreError> {
        if meta_u64(self.meta.get()?, META_LISTED_TO)? != self.head {
            self.put(Tab::Meta, META_LISTED_TO, Some(&u64_bytes(self.head)))?;
            self.dirty = true;
        }
        Ok(())
    }

    /// Removes the pending row at `position`; returns whether there was one.
    pub fn settle(&mut self, position: u64) -> Result<bool, StoreError> {
        let removed = self.put(Tab::Pending, &u64_bytes(position), None)?;
        self.dirty |= removed;
        Ok(removed)
    }

    /// The hub position this device has imported up to.
    pub fn pull_cursor(&self) -> Result<u64, StoreError> {
        meta_u64(self.meta.get()?, META_PULL_CURSOR)
    }

    /// Saves the pull cursor.
    pub fn set_pull_cursor(&mut self, cursor: u64) -> Result<(), StoreError> {
        self.put(Tab::Meta, META_PULL_CURSOR, Some(&u64_bytes(cursor)))?;
        self.dirty = true;
        Ok(())
    }

    /// The hub this device syncs with, if it has synced.
    pub fn hub_id(&self) -> Result<Option<Uuid>, StoreError> {
        meta_uuid(self.meta.get()?, META_HUB_ID)
    }

    /// Records the hub this device syncs with.
    pub fn set_hub_id(&mut self, hub: Uuid) -> Result<(), StoreError> {
        self.put(Tab::Meta, META_HUB_ID, Some(hub.as_bytes()))?;
        self.dirty = true;
        Ok(())
    }
}

impl Log for Writer<'_, '_> {
    fn origin(&self) -> Uuid {
        self.store_id
    }

    fn head(&self) -> u64 {
        self.head
    }

    fn stamp(&self) -> Result<(Uuid, i64), StoreError> {
        self.stamper.next()
    }

    fn stream(&self, user: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        stream(&self.events, &self.streams, user)
    }

    fn email_holder(&self, email_key: &str, except: Uuid) -> Result<Option<Uuid>, StoreError> {
        email_holder(&self.emails, email_key, Some(except))
    }

    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        position_at(self.event_ids.get()?, event_id.as_bytes())
    }

    fn put_event(
        &mut self,
        recorded: &RecordedEvent,
        came_from_elsewhere: bool,
    ) -> Result<(), StoreError> {
        let key = u64_bytes(recorded.position);
        if recorded.event.refusal().is_some() {
            self.put(Tab::Rejections, &key, Some(&[]))?;
        }
        self.put(Tab::Events, &key, Some(&codec::encode(recorded)))?;
        self.put(
            Tab::Streams,
            &stream_key(recorded.aggregate_id(), recorded.version),
            Some(&key),
        )?;
        if came_from_elsewhere {
            self.put(Tab::EventIds, recorded.event_id.as_bytes(), Some(&key))?;
        }
        self.head = recorded.position;
        self.dirty = true;
        Ok(())
    }

    fn put_state(&mut self, state: &User) -> Result<(), StoreError> {
        let user = state.profile.user_id;
        self.put(
            Tab::Users,
            user.as_bytes(),
            Some(&codec::encode_state(state)),
        )?;
        self.dirty = true;
        Ok(())
    }

    fn rewrite(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError> {
        let key = u64_bytes(recorded.position);
        self.put(Tab::Events, &key, Some(&codec::encode(recorded)))?;
        self.put(Tab::Pending, &key, None)?;
        self.put(Tab::Meta, META_SCRUB, Some(&[]))?;
        self.dirty = true;
        self.rewrote = true;
        Ok(())
    }

    fn hold_email(&mut self, email_key: &str, user: Uuid) -> Result<(), StoreError> {
        self.put(Tab::Emails, &email_row(email_key, user), Some(&[]))?;
        self.dirty = true;
        Ok(())
    }

    fn release_email(&mut self, email_key: &str, user: Uuid) -> Result<(), StoreError> {
        self.dirty |= self.put(Tab::Emails, &email_row(email_key, user), None)?;
        Ok(())
    }
}
