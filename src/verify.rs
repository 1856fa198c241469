//! `verify()`: the log and its indexes checked against each other.
//!
//! Each check is one direction of a bijection: every event has exactly its
//! index rows (event → row), and every index row is the row of the event it
//! points at (row → event). Together they leave no room for a missing, extra
//! or misdirected row, without holding anything per event in memory. The
//! sync tables are held to their rules the same way: `pending` rows are own,
//! listed, unrefused command events; `rejections` rows are exactly the
//! compensations.

use std::fmt;

use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use crate::codec::{self, DecodeError};
use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::log::{
    self, Bytes, EMAILS, EVENT_IDS, EVENTS, META, PENDING, REJECTIONS, STREAMS, USERS, own_command,
    stream_key,
};
use crate::user::User;

/// What [`Store::verify`](crate::Store::verify) found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Events read from the log.
    pub events: u64,
    /// Users (aggregates) seen in the log.
    pub users: u64,
    /// Every inconsistency found; empty when the store is sound.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn is_sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One inconsistency [`Store::verify`](crate::Store::verify) found. Its
/// `Display` is a sentence for a person; match on the variant in code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// A key or value that is not its table's encoding.
    MalformedRow {
        /// The table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The log skips positions.
    LogGap {
        /// The position found.
        position: u64,
        /// The position before it.
        after: u64,
    },
    /// An envelope that does not decode (checksum, structure, format).
    Undecodable {
        /// Its log position.
        position: u64,
        /// What the decoder found.
        error: DecodeError,
    },
    /// An envelope stored under another position than its own.
    Misplaced {
        /// The log position it is stored at.
        position: u64,
        /// The position it says it has.
        claims: u64,
    },
    /// An event whose user's version is 0, or whose previous version is
    /// missing or later.
    VersionGap {
        /// Its log position.
        position: u64,
        /// The user.
        user: Uuid,
        /// Its version.
        version: u64,
    },
    /// An event without the `streams` row that points at it.
    MissingStreamRow {
        /// Its log position.
        position: u64,
        /// The user.
        user: Uuid,
        /// Its version.
        version: u64,
    },
    /// An event that must be indexed by id and is not (or points elsewhere).
    MissingEventIdRow {
        /// Its log position.
        position: u64,
        /// Its event id.
        event_id: Uuid,
    },
    /// An own creation indexed by id before a sync step listed it.
    UnlistedEventIdRow {
        /// Its log position.
        position: u64,
        /// Its event id.
        event_id: Uuid,
    },
    /// A user's current creation whose email row does not point at it.
    MissingEmailRow {
        /// Its log position.
        position: u64,
        /// The email.
        email: String,
        /// The user.
        user: Uuid,
    },
    /// A user's `users` row is missing, unreadable, or not what its events
    /// fold to; or a row of a user without events.
    StateRowMismatch {
        /// The user.
        user: Uuid,
    },
    /// An erased user's event that still holds its fields: an erasure
    /// that was not whole.
    UnredactedEvent {
        /// Its log position.
        position: u64,
        /// The erased user.
        user: Uuid,
    },
    /// A user's events could not be read to check its email.
    UnreadableUser {
        /// The log position of the event being checked.
        position: u64,
        /// Why.
        error: String,
    },
    /// A `streams` row pointing at an event of another user or version.
    StreamRowMismatch {
        /// The row's user.
        user: Uuid,
        /// The row's version.
        version: u64,
        /// The position it points at.
        position: u64,
    },
    /// An `event_ids` row pointing at another event.
    EventIdRowMismatch {
        /// The row's event id.
        event_id: Uuid,
        /// The position it points at.
        position: u64,
    },
    /// An `emails` row naming a user who does not hold that email.
    EmailRowMismatch {
        /// The row's email key.
        email: String,
        /// The user it names.
        user: Uuid,
    },
    /// An index or listing row pointing past the log.
    DanglingRow {
        /// The table.
        table: &'static str,
        /// The position it points at.
        position: u64,
    },
    /// A `pending` row at an event that is not this store's own command
    /// event (a creation or an update).
    PendingNotOwnCreation {
        /// The position.
        position: u64,
    },
    /// A `pending` row past the listed position (own creations there are
    /// pending without rows).
    PendingUnlisted {
        /// The position.
        position: u64,
    },
    /// A `pending` row for an event the hub already refused.
    PendingRefused {
        /// The position.
        position: u64,
    },
    /// A `rejections` row at an event that is not a compensation.
    RejectionRowMismatch {
        /// The position.
        position: u64,
    },
    /// A compensation without its `rejections` row.
    MissingRejectionRow {
        /// The position.
        position: u64,
    },
    /// The journal cannot be read as a journal of this store.
    JournalUnreadable {
        /// Why.
        error: String,
    },
    /// The journal's last record is not the last one the store applied.
    JournalOutOfStep {
        /// The journal's last record.
        journal: u64,
        /// The store's last applied record.
        store: u64,
    },
    /// A row the journal's records leave in one state and the store holds
    /// in another.
    JournalRowMismatch {
        /// The table.
        table: &'static str,
        /// The row's key, in hex.
        key: String,
    },
    /// A 4 KiB block of the store file that no longer holds what the store
    /// wrote there: the file was changed or damaged behind its back.
    DamagedBlock {
        /// The block: bytes `block * 4096` to `(block + 1) * 4096`.
        block: u64,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::MalformedRow { table, detail } => write!(f, "{table} row: {detail}"),
            Finding::LogGap { position, after } => {
                write!(f, "log gap: position {position} follows {after}")
            }
            Finding::Undecodable { position, error } => write!(f, "position {position}: {error}"),
            Finding::Misplaced { position, claims } => {
                write!(f, "position {position}: envelope says position {claims}")
            }
            Finding::VersionGap {
                position,
                user,
                version,
            } => write!(
                f,
                "position {position}: {user} version {version} has no earlier version before it"
            ),
            Finding::MissingStreamRow {
                position,
                user,
                version,
            } => write!(
                f,
                "position {position}: no stream row {user}/{version} for it"
            ),
            Finding::MissingEventIdRow { position, event_id } => write!(
                f,
                "position {position}: event id row does not point at event {event_id}"
            ),
            Finding::UnlistedEventIdRow { position, event_id } => write!(
                f,
                "position {position}: own event {event_id} has an event id row before it was listed"
            ),
            Finding::MissingEmailRow {
                position,
                email,
                user,
            } => write!(
                f,
                "position {position}: email row {email} does not point at {user}"
            ),
            Finding::StateRowMismatch { user } => {
                write!(
                    f,
                    "the state row of user {user} is not what its events fold to"
                )
            }
            Finding::UnredactedEvent { position, user } => write!(
                f,
                "position {position}: user {user} was erased, but this event keeps its fields"
            ),
            Finding::UnreadableUser { position, error } => {
                write!(f, "position {position}: {error}")
            }
            Finding::StreamRowMismatch {
                user,
                version,
                position,
            } => write!(
                f,
                "stream row {user}/{version} points at another event (position {position})"
            ),
            Finding::EventIdRowMismatch { event_id, position } => write!(
                f,
                "event id row {event_id} points at another event (position {position})"
            ),
            Finding::EmailRowMismatch { email, user } => {
                write!(
                    f,
                    "email row {email} points at {user}, who does not hold it"
                )
            }
            Finding::DanglingRow { table, position } => {
                write!(f, "{table} row points at missing position {position}")
            }
            Finding::PendingNotOwnCreation { position } => write!(
                f,
                "pending row {position} is not at one of this store's creations"
            ),
            Finding::PendingUnlisted { position } => {
                write!(f, "pending row {position} is past the listed position")
            }
            Finding::PendingRefused { position } => write!(
                f,
                "pending row {position} is at a creation the hub already refused"
            ),
            Finding::RejectionRowMismatch { position } => write!(
                f,
                "rejections row {position} is not at a UserCreationRejected"
            ),
            Finding::MissingRejectionRow { position } => write!(
                f,
                "position {position}: UserCreationRejected without a rejections row"
            ),
            Finding::JournalUnreadable { error } => write!(f, "journal: {error}"),
            Finding::JournalOutOfStep { journal, store } => write!(
                f,
                "journal ends at record {journal}, the store has applied up to record {store}"
            ),
            Finding::JournalRowMismatch { table, key } => write!(
                f,
                "{table} row {key}: the journal leaves it otherwise than the store holds it"
            ),
            Finding::DamagedBlock { block } => write!(
                f,
                "block {block} of the store file (bytes {}..{}) fails its checksum",
                block * 4096,
                (block + 1) * 4096
            ),
        }
    }
}

fn malformed(table: &'static str, error: StoreError) -> Finding {
    Finding::MalformedRow {
        table,
        detail: error.to_string(),
    }
}

/// Checks the store whose id is `store_id` (its own events are indexed by id
/// only once listed).
pub(crate) fn verify(txn: &ReadTransaction, store_id: Uuid) -> Result<VerifyReport, StoreError> {
    let events = txn.open_table(EVENTS)?;
    let streams = txn.open_table(STREAMS)?;
    let emails = txn.open_table(EMAILS)?;
    let event_ids = txn.open_table(EVENT_IDS)?;
    let pending = txn.open_table(PENDING)?;
    let rejections = txn.open_table(REJECTIONS)?;
    let users = txn.open_table(USERS)?;
    let listed_to = log::meta_u64(&txn.open_table(META)?, log::META_LISTED_TO)?;
    let mut report = VerifyReport::default();
    let findings = &mut report.findings;

    // Event → rows.
    let mut expected_position = 1;
    for row in events.iter()? {
        let (key, bytes) = row?;
        report.events += 1;
        let position = match log::read_u64("log key", key.value()) {
            Ok(position) => position,
            Err(error) => {
                findings.push(malformed("events", error));
                continue;
            }
        };
        if position != expected_position {
            findings.push(Finding::LogGap {
                position,
                after: expected_position - 1,
            });
        }
        expected_position = position + 1;
        let recorded = match codec::decode(bytes.value()) {
            Ok(recorded) => recorded,
            Err(error) => {
                findings.push(Finding::Undecodable { position, error });
                continue;
            }
        };
        if recorded.position != position {
            findings.push(Finding::Misplaced {
                position,
                claims: recorded.position,
            });
        }
        let user = recorded.aggregate_id();
        let version = recorded.version;
        if row_position(&streams, &stream_key(user, version)) != Some(position) {
            findings.push(Finding::MissingStreamRow {
                position,
                user,
                version,
            });
        }
        let earlier_ok = match version {
            0 => false,
            1 => {
                report.users += 1;
                true
            }
            _ => matches!(
                row_position(&streams, &stream_key(user, version - 1)),
                Some(earlier) if earlier < position
            ),
        };
        if !earlier_ok {
            findings.push(Finding::VersionGap {
                position,
                user,
                version,
            });
        }
        // Events appended by a sync step are indexed by id at once; own
        // creations once listed; own compensations never.
        let indexed = recorded.origin != store_id
            || (own_command(&recorded, store_id) && position <= listed_to);
        let id_row = row_position(&event_ids, recorded.event_id.as_bytes());
        let event_id = recorded.event_id;
        // An own event erased may have been listed before its erasure, or
        // not: either is sound.
        let erased_own = recorded.origin == store_id
            && matches!(recorded.event, crate::event::Event::Redacted(..));
        if indexed && id_row != Some(position) {
            findings.push(Finding::MissingEventIdRow { position, event_id });
        }
        if !indexed && id_row.is_some() && !(erased_own && id_row == Some(position)) {
            findings.push(Finding::UnlistedEventIdRow { position, event_id });
        }
        let listed_as_rejection = rejections.get(key.value())?.is_some();
        let is_refusal = recorded.event.refusal().is_some();
        if is_refusal && !listed_as_rejection {
            findings.push(Finding::MissingRejectionRow { position });
        }
        if !is_refusal && listed_as_rejection {
            findings.push(Finding::RejectionRowMismatch { position });
        }
        // Each user once, where its stream begins: its current email's key
        // must be indexed to it, unless the hub refused it.
        if version != 1 {
            continue;
        }
        let current = match log::load_user(&events, &streams, user) {
            Ok(current) => current,
            Err(error) => {
                findings.push(Finding::UnreadableUser {
                    position,
                    error: error.to_string(),
                });
                continue;
            }
        };
        // The state row holds what the events fold to.
        if log::state_row(&users, user).ok().flatten() != current {
            findings.push(Finding::StateRowMismatch { user });
        }
        // An erased user keeps none of its fields, in any event.
        if current.as_ref().is_some_and(User::is_erased) {
            for event in log::stream(&events, &streams, user).unwrap_or_default() {
                if event.event.redacted().is_some() {
                    findings.push(Finding::UnredactedEvent {
                        position: event.position,
                        user,
                    });
                }
            }
        }
        let Some(current) = current.filter(|u| u.holds_email()) else {
            continue;
        };
        let key = current.profile.email_key();
        if row_position_exists(&emails, &log::email_row(&key, user)) != Some(true) {
            findings.push(Finding::MissingEmailRow {
                position,
                email: current.profile.email.clone(),
                user,
            });
        }
    }

    // Rows → event.
    for row in streams.iter()? {
        let (key, position) = row?;
        let ((user, version), position) = match (
            log::read_stream_key(key.value()),
            log::read_u64("stream row", position.value()),
        ) {
            (Ok(key), Ok(position)) => (key, position),
            (Err(error), _) | (_, Err(error)) => {
                findings.push(malformed("streams", error));
                continue;
            }
        };
        if let Some(recorded) = readable(&events, "streams", position, findings)?
            && (recorded.aggregate_id() != user || recorded.version != version)
        {
            findings.push(Finding::StreamRowMismatch {
                user,
                version,
                position,
            });
        }
    }
    for row in event_ids.iter()? {
        let (id, position) = row?;
        let (event_id, position) = match (
            log::read_uuid("event id key", id.value()),
            log::read_u64("event id row", position.value()),
        ) {
            (Ok(id), Ok(position)) => (id, position),
            (Err(error), _) | (_, Err(error)) => {
                findings.push(malformed("event_ids", error));
                continue;
            }
        };
        if let Some(recorded) = readable(&events, "event_ids", position, findings)?
            && recorded.event_id != event_id
        {
            findings.push(Finding::EventIdRowMismatch { event_id, position });
        }
    }
    for row in emails.iter()? {
        let (email, user) = match log::read_email_row(row?.0.value()) {
            Ok(row) => row,
            Err(error) => {
                findings.push(malformed("emails", error));
                continue;
            }
        };
        let holds = match log::load_user(&events, &streams, user) {
            Ok(state) => {
                state.is_some_and(|u| u.held_email_key().as_deref() == Some(email.as_str()))
            }
            // A damaged event was already reported by the log pass.
            Err(StoreError::Corrupt { .. } | StoreError::Inconsistent(_)) => true,
            Err(other) => return Err(other),
        };
        if !holds {
            findings.push(Finding::EmailRowMismatch { email, user });
        }
    }
    for row in users.iter()? {
        let user = match log::read_uuid("users key", row?.0.value()) {
            Ok(user) => user,
            Err(error) => {
                findings.push(malformed("users", error));
                continue;
            }
        };
        // A user with events was checked by the log pass; here, a row of
        // a user without any.
        let known = streams
            .range(&log::stream_key(user, 1)[..]..=&log::stream_key(user, u64::MAX)[..])?
            .next()
            .is_some();
        if !known {
            findings.push(Finding::StateRowMismatch { user });
        }
    }
    for row in pending.iter()? {
        let position = match log::read_u64("pending key", row?.0.value()) {
            Ok(position) => position,
            Err(error) => {
                findings.push(malformed("pending", error));
                continue;
            }
        };
        if position > listed_to {
            findings.push(Finding::PendingUnlisted { position });
        }
        let Some(recorded) = readable(&events, "pending", position, findings)? else {
            continue;
        };
        if !own_command(&recorded, store_id) {
            findings.push(Finding::PendingNotOwnCreation { position });
        } else if refused(&events, &streams, &recorded)? {
            findings.push(Finding::PendingRefused { position });
        }
    }
    for row in rejections.iter()? {
        let position = match log::read_u64("rejections key", row?.0.value()) {
            Ok(position) => position,
            Err(error) => {
                findings.push(malformed("rejections", error));
                continue;
            }
        };
        // The log pass reported rows at creations; this one, rows past the log.
        readable(&events, "rejections", position, findings)?;
    }
    Ok(report)
}

/// Whether the hub's refusal of `event` is recorded in its user's stream.
fn refused(
    events: &impl ReadableTable<Bytes, Bytes>,
    streams: &impl ReadableTable<Bytes, Bytes>,
    event: &RecordedEvent,
) -> Result<bool, StoreError> {
    Ok(log::stream(events, streams, event.aggregate_id())
        .unwrap_or_default()
        .iter()
        .any(|e| {
            e.event
                .refusal()
                .is_some_and(|r| r.rejected_event_id == event.event_id)
        }))
}

/// Whether a row is at `key`: `None` when the table cannot say (a damaged
/// row is reported by its own pass).
fn row_position_exists(index: &impl ReadableTable<Bytes, Bytes>, key: &[u8]) -> Option<bool> {
    index.get(key).ok().map(|row| row.is_some())
}

/// The position an index row holds, `None` when there is no row or it is
/// not a position (a damaged value counts as absent: it is reported then).
fn row_position(index: &impl ReadableTable<Bytes, Bytes>, key: &[u8]) -> Option<u64> {
    log::position_at(index, key).ok().flatten()
}

/// The event a row of `table` points at; a row pointing past the log is a
/// finding, a damaged event was already reported by the log pass.
fn readable(
    events: &impl ReadableTable<Bytes, Bytes>,
    table: &'static str,
    position: u64,
    findings: &mut Vec<Finding>,
) -> Result<Option<RecordedEvent>, StoreError> {
    match events.get(&log::u64_bytes(position)[..])? {
        None => {
            findings.push(Finding::DanglingRow { table, position });
            Ok(None)
        }
        Some(bytes) => Ok(codec::decode(bytes.value()).ok()),
    }
}

/// Checks the journal `bytes` against the store `txn` sees: the records
/// after `base` (the last record redb held durably at the last checkpoint)
/// whole and in sequence, the last one the store's last applied record, and
/// every row they change holding what the last change wrote (every write
/// since the checkpoint is in them, so nothing else can have changed those
/// rows).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn verify_journal(
    txn: &ReadTransaction,
    bytes: &[u8],
    base: u64,
    findings: &mut Vec<Finding>,
) {
    use std::collections::BTreeMap;

    use crate::log::Tab;

    let applied = match txn
        .open_table(META)
        .map_err(StoreError::from)
        .and_then(|meta| log::meta_u64(&meta, log::META_JOURNAL_SEQ))
    {
        Ok(applied) => applied,
        Err(error) => {
            findings.push(malformed("meta", error));
            return;
        }
    };
    // Read as an open would after a crash now: the current lap's records
    // are those past the last checkpoint, and all of them must already be
    // in the store.
    let records = match crate::journal::parse(bytes, base) {
        Ok((mut records, _)) => {
            records.retain(|record| record.seq > base);
            records
        }
        Err(error) => {
            findings.push(Finding::JournalUnreadable {
                error: error.to_string(),
            });
            return;
        }
    };
    let Some(last) = records.last() else {
        if applied != base {
            findings.push(Finding::JournalOutOfStep {
                journal: base,
                store: applied,
            });
        }
        return;
    };
    if last.seq != applied {
        findings.push(Finding::JournalOutOfStep {
            journal: last.seq,
            store: applied,
        });
    }
    // The last state of each row the journal touches.
    let mut rows: BTreeMap<(Tab, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
    for record in &records {
        for change in log::changes(&record.redo) {
            match change {
                Ok((tab, key, value)) => {
                    rows.insert((tab, key.to_vec()), value.map(<[u8]>::to_vec));
                }
                Err(error) => {
                    findings.push(Finding::JournalUnreadable {
                        error: format!("record {}: {error}", record.seq),
                    });
                    return;
                }
            }
        }
    }
    for ((tab, key), value) in rows {
        let definition = tab.definition();
        let held = txn
            .open_table(definition)
            .map_err(StoreError::from)
            .and_then(|table| {
                Ok(table
                    .get(&key[..])
                    .map_err(StoreError::from)?
                    .map(|v| v.value().to_vec()))
            });
        if !matches!(held, Ok(ref held) if *held == value) {
            findings.push(Finding::JournalRowMismatch {
                table: tab.name(),
                key: key.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
    }
}
