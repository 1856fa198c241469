//! `verify()`: the log and its indexes checked against each other.
//!
//! Each check is one direction of a bijection: every event has exactly its
//! index rows (event → row), and every index row is the row of the event it
//! points at (row → event). Together they leave no room for a missing, extra
//! or misdirected row, without holding anything per event in memory.

use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use crate::codec;
use crate::error::StoreError;
use crate::event::{Event, email_key};
use crate::log::{self, Bytes, EMAILS, EVENT_IDS, EVENTS, META, STREAMS, stream_key};
use crate::sync::{listed_to, own_creation};

/// What [`Store::verify`](crate::Store::verify) found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Events read from the log.
    pub events: u64,
    /// Users (aggregates) seen in the log.
    pub users: u64,
    /// Every inconsistency found; empty when the store is sound.
    pub findings: Vec<String>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn is_sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the store whose id is `store_id` (its own events are indexed by id
/// only once listed).
pub(crate) fn verify(txn: &ReadTransaction, store_id: Uuid) -> Result<VerifyReport, StoreError> {
    let events = txn.open_table(EVENTS)?;
    let streams = txn.open_table(STREAMS)?;
    let emails = txn.open_table(EMAILS)?;
    let event_ids = txn.open_table(EVENT_IDS)?;
    let listed_to = listed_to(&txn.open_table(META)?)?;
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
                findings.push(error.to_string());
                continue;
            }
        };
        if position != expected_position {
            findings.push(format!(
                "log gap: position {position} follows {}",
                expected_position - 1
            ));
        }
        expected_position = position + 1;
        let recorded = match codec::decode(bytes.value()) {
            Ok(recorded) => recorded,
            Err(error) => {
                findings.push(format!("position {position}: {error}"));
                continue;
            }
        };
        if recorded.position != position {
            findings.push(format!(
                "position {position}: envelope says position {}",
                recorded.position
            ));
        }
        let aggregate = recorded.aggregate_id();
        let version = recorded.version;
        if position_at(&streams, &stream_key(aggregate, version))? != Some(position) {
            findings.push(format!(
                "position {position}: no stream row {aggregate}/{version} for it"
            ));
        }
        match version {
            0 => findings.push(format!("position {position}: version 0")),
            1 => report.users += 1,
            _ => match position_at(&streams, &stream_key(aggregate, version - 1))? {
                Some(earlier) if earlier < position => {}
                _ => findings.push(format!(
                    "position {position}: {aggregate} version {version} has no earlier version {}",
                    version - 1
                )),
            },
        }
        // Events from elsewhere are indexed by id on append; own creations
        // once listed; own compensations never.
        let indexed = recorded.origin != store_id
            || (own_creation(&recorded, store_id) && position <= listed_to);
        let id_row = position_at(&event_ids, recorded.event_id.as_bytes())?;
        if indexed && id_row != Some(position) {
            findings.push(format!(
                "position {position}: event id row does not point at event {}",
                recorded.event_id
            ));
        }
        if !indexed && id_row.is_some() {
            findings.push(format!(
                "position {position}: own event {} has an event id row before it was listed",
                recorded.event_id
            ));
        }
        if let Event::UserCreated(created) = &recorded.event {
            // Only the user's current, unrefused creation holds its email.
            let current = match log::load_user(&events, &streams, aggregate) {
                Ok(user) => user,
                Err(error) => {
                    findings.push(format!("position {position}: {error}"));
                    continue;
                }
            };
            let holds = current.is_some_and(|u| !u.is_rejected() && u.profile == *created);
            let owner = emails.get(created.email_key().as_bytes())?;
            if holds && owner.as_ref().map(|v| v.value()) != Some(&aggregate.as_bytes()[..]) {
                findings.push(format!(
                    "position {position}: email row {} does not point at {aggregate}",
                    created.email
                ));
            }
        }
    }

    // Rows → event.
    for row in streams.iter()? {
        let (key, position) = row?;
        let ((aggregate, version), position) = match (
            log::read_stream_key(key.value()),
            log::read_u64("stream row", position.value()),
        ) {
            (Ok(key), Ok(position)) => (key, position),
            (Err(error), _) | (_, Err(error)) => {
                findings.push(error.to_string());
                continue;
            }
        };
        if let Some(recorded) = readable(&events, position, findings)?
            && (recorded.aggregate_id() != aggregate || recorded.version != version)
        {
            findings.push(format!(
                "stream row {aggregate}/{version} points at another event (position {position})"
            ));
        }
    }
    for row in event_ids.iter()? {
        let (id, position) = row?;
        let (id, position) = match (
            log::read_uuid("event id key", id.value()),
            log::read_u64("event id row", position.value()),
        ) {
            (Ok(id), Ok(position)) => (id, position),
            (Err(error), _) | (_, Err(error)) => {
                findings.push(error.to_string());
                continue;
            }
        };
        if let Some(recorded) = readable(&events, position, findings)?
            && recorded.event_id != id
        {
            findings.push(format!(
                "event id row {id} points at another event (position {position})"
            ));
        }
    }
    for row in emails.iter()? {
        let (email, owner) = row?;
        let email = String::from_utf8_lossy(email.value()).into_owned();
        let owner = match log::read_uuid("email row", owner.value()) {
            Ok(owner) => owner,
            Err(error) => {
                findings.push(format!("{email}: {error}"));
                continue;
            }
        };
        let holds = match log::load_user(&events, &streams, owner) {
            Ok(user) => {
                user.is_some_and(|u| !u.is_rejected() && email_key(&u.profile.email) == email)
            }
            // A damaged event was already reported by the log pass.
            Err(StoreError::Corrupt { .. } | StoreError::Inconsistent(_)) => true,
            Err(other) => return Err(other),
        };
        if !holds {
            findings.push(format!(
                "email row {email} points at {owner}, who does not hold it"
            ));
        }
    }
    Ok(report)
}

/// The position an index row holds, `None` when there is no row or it is
/// not a position (a damaged value counts as absent: it is reported then).
fn position_at(
    index: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<u64>, StoreError> {
    Ok(index
        .get(key)?
        .and_then(|v| log::read_u64("index row", v.value()).ok()))
}

/// The event an index row points at; a row pointing past the log is a
/// finding, a damaged event was already reported by the log pass.
fn readable(
    events: &impl ReadableTable<Bytes, Bytes>,
    position: u64,
    findings: &mut Vec<String>,
) -> Result<Option<crate::event::RecordedEvent>, StoreError> {
    match events.get(&log::u64_bytes(position)[..])? {
        None => {
            findings.push(format!("index row points at missing position {position}"));
            Ok(None)
        }
        Some(bytes) => Ok(codec::decode(bytes.value()).ok()),
    }
}
