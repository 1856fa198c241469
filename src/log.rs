//! The redb tables and the reads and appends over them.
//!
//! Invariant: this module, `store` and `verify` are the only ones that know
//! redb. The tables are declared once, here. Every key and value is bytes,
//! encoded and decoded here with typed errors, because redb's
//! `Value::from_bytes` cannot report failure — and because redb compiles its
//! B-tree once per key and value type: one byte-to-byte type instead of five
//! keeps the wasm build about a fifth smaller. Integers are big-endian, so
//! byte order is numeric order and ranges work as on integer keys.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use uuid::Uuid;

use crate::codec;
use crate::error::StoreError;
use crate::event::{Event, RecordedEvent};
use crate::user::{self, User};

/// The one key and value type of every table.
pub(crate) type Bytes = &'static [u8];

/// position (u64, 1, 2, 3 … no gaps) → envelope bytes: the log itself.
pub(crate) const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
/// user id (16 bytes) ++ version (u64) → position (u64): one user's events.
pub(crate) const STREAMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("streams");
/// normalized email (UTF-8) → user id (16 bytes): unique emails.
pub(crate) const EMAILS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("emails");
/// event id (16 bytes) → position (u64): recognises events across stores.
/// Events from other stores are indexed as they are appended; this store's
/// own `UserCreated` events only when a sync step lists them (see sync.rs),
/// since only sync looks them up and a create then commits fewer tables.
pub(crate) const EVENT_IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("event_ids");
/// name (UTF-8) → bytes: format version, store id, sync cursor, hub id.
pub(crate) const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
/// position (u64) → nothing: this store's own `UserCreated` events the hub
/// has not yet accepted or rejected — those up to the meta row
/// `pending_listed_to`; newer creations are pending without a row (sync.rs).
pub(crate) const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// position (u64) → nothing: the `UserCreationRejected` events, for listing.
pub(crate) const REJECTIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rejections");

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

/// The tables a command writes, opened once per write transaction.
pub(crate) struct LogTables<'txn> {
    /// The store whose log this is: its own events are not indexed by id
    /// on append.
    pub store_id: Uuid,
    pub events: Table<'txn, Bytes, Bytes>,
    pub streams: Table<'txn, Bytes, Bytes>,
    pub emails: Table<'txn, Bytes, Bytes>,
    pub event_ids: Table<'txn, Bytes, Bytes>,
    pub pending: Table<'txn, Bytes, Bytes>,
    pub rejections: Table<'txn, Bytes, Bytes>,
}

impl<'txn> LogTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction, store_id: Uuid) -> Result<Self, StoreError> {
        Ok(LogTables {
            store_id,
            events: txn.open_table(EVENTS)?,
            streams: txn.open_table(STREAMS)?,
            emails: txn.open_table(EMAILS)?,
            event_ids: txn.open_table(EVENT_IDS)?,
            pending: txn.open_table(PENDING)?,
            rejections: txn.open_table(REJECTIONS)?,
        })
    }

    /// Appends an event and its index rows. The caller has decided the event
    /// is valid; position and version must be the next ones.
    pub fn append(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError> {
        let position = u64_bytes(recorded.position);
        let aggregate = recorded.aggregate_id();
        if let Event::UserCreationRejected(_) = &recorded.event {
            // The refused user's email is free again, unless someone else
            // holds it already.
            if let Some(user) = load_user(&self.events, &self.streams, aggregate)? {
                let key = user.profile.email_key();
                if email_owner(&self.emails, &key)? == Some(aggregate) {
                    self.emails.remove(key.as_bytes())?;
                }
            }
            self.rejections.insert(&position[..], &[][..])?;
        }
        self.events
            .insert(&position[..], codec::encode(recorded).as_slice())?;
        self.streams
            .insert(&stream_key(aggregate, recorded.version)[..], &position[..])?;
        if recorded.origin != self.store_id {
            self.event_ids
                .insert(&recorded.event_id.as_bytes()[..], &position[..])?;
        }
        match &recorded.event {
            Event::UserCreated(created) => {
                self.emails
                    .insert(created.email_key().as_bytes(), &aggregate.as_bytes()[..])?;
            }
            Event::UserCreationRejected(_) => {}
        }
        Ok(())
    }
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

/// Folds one aggregate's events into the user's current state.
pub(crate) fn load_user(
    events: &impl ReadableTable<Bytes, Bytes>,
    streams: &impl ReadableTable<Bytes, Bytes>,
    aggregate: Uuid,
) -> Result<Option<User>, StoreError> {
    Ok(stream(events, streams, aggregate)?
        .iter()
        .fold(None, user::apply))
}

/// The user holding `email_key` (a normalized email), if any.
pub(crate) fn email_owner(
    emails: &impl ReadableTable<Bytes, Bytes>,
    email_key: &str,
) -> Result<Option<Uuid>, StoreError> {
    emails
        .get(email_key.as_bytes())?
        .map(|id| read_uuid("email row", id.value()))
        .transpose()
}
