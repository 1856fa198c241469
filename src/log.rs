//! The redb tables and the reads and appends over them.
//!
//! Invariant: this module and `store` are the only ones that know redb. The
//! tables are declared once, here; every value is raw bytes or integers and
//! is decoded in our own layer (`codec`), because redb's `Value::from_bytes`
//! cannot report failure.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use uuid::Uuid;

use crate::codec;
use crate::error::StoreError;
use crate::event::{Event, RecordedEvent};
use crate::user::{self, User};

/// position (1, 2, 3 … no gaps) → envelope bytes: the log itself.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// (aggregate id, version) → position: one aggregate's events.
pub(crate) const STREAMS: TableDefinition<(u128, u64), u64> = TableDefinition::new("streams");
/// normalized email → user id: unique emails.
pub(crate) const EMAILS: TableDefinition<&str, u128> = TableDefinition::new("emails");
/// event id → position: dedupes retries and sync imports.
pub(crate) const EVENT_IDS: TableDefinition<u128, u64> = TableDefinition::new("event_ids");
/// name → bytes: format version, store id.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The tables a command writes, opened once per write transaction.
pub(crate) struct LogTables<'txn> {
    pub events: Table<'txn, u64, &'static [u8]>,
    pub streams: Table<'txn, (u128, u64), u64>,
    pub emails: Table<'txn, &'static str, u128>,
    pub event_ids: Table<'txn, u128, u64>,
}

impl<'txn> LogTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(LogTables {
            events: txn.open_table(EVENTS)?,
            streams: txn.open_table(STREAMS)?,
            emails: txn.open_table(EMAILS)?,
            event_ids: txn.open_table(EVENT_IDS)?,
        })
    }

    /// Appends an event and its index rows. The caller has decided the event
    /// is valid; position and version must be the next ones.
    pub fn append(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError> {
        let aggregate = recorded.aggregate_id().as_u128();
        self.events
            .insert(recorded.position, codec::encode(recorded).as_slice())?;
        self.streams
            .insert((aggregate, recorded.version), recorded.position)?;
        self.event_ids
            .insert(recorded.event_id.as_u128(), recorded.position)?;
        match &recorded.event {
            Event::UserCreated(created) => {
                self.emails
                    .insert(created.email_key().as_str(), aggregate)?;
            }
        }
        Ok(())
    }
}

/// The last position in the log, 0 when empty.
pub(crate) fn head(events: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, StoreError> {
    Ok(events.last()?.map_or(0, |(position, _)| position.value()))
}

/// Reads and decodes the event at `position`.
pub(crate) fn read_event(
    events: &impl ReadableTable<u64, &'static [u8]>,
    position: u64,
) -> Result<Option<RecordedEvent>, StoreError> {
    events
        .get(position)?
        .map(|bytes| decode_row(position, bytes.value()))
        .transpose()
}

/// Decodes the envelope stored at `position`, which must say it is there: a
/// valid envelope under the wrong key is as wrong as a damaged one.
pub(crate) fn decode_row(position: u64, bytes: &[u8]) -> Result<RecordedEvent, StoreError> {
    let recorded =
        codec::decode(bytes).map_err(|source| StoreError::Corrupt { position, source })?;
    if recorded.position != position {
        return Err(StoreError::Inconsistent(format!(
            "log row {position} holds the event of position {}",
            recorded.position
        )));
    }
    Ok(recorded)
}

/// Reads one aggregate's events in version order.
pub(crate) fn stream(
    events: &impl ReadableTable<u64, &'static [u8]>,
    streams: &impl ReadableTable<(u128, u64), u64>,
    aggregate: Uuid,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let id = aggregate.as_u128();
    let mut out = Vec::new();
    for row in streams.range((id, 0)..=(id, u64::MAX))? {
        let (key, position) = row?;
        let (_, version) = key.value();
        let position = position.value();
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
    events: &impl ReadableTable<u64, &'static [u8]>,
    streams: &impl ReadableTable<(u128, u64), u64>,
    aggregate: Uuid,
) -> Result<Option<User>, StoreError> {
    Ok(stream(events, streams, aggregate)?
        .iter()
        .fold(None, user::apply))
}

/// The user holding `email` (case ignored), if any.
pub(crate) fn email_owner(
    emails: &impl ReadableTable<&'static str, u128>,
    email_key: &str,
) -> Result<Option<Uuid>, StoreError> {
    Ok(emails.get(email_key)?.map(|id| Uuid::from_u128(id.value())))
}
