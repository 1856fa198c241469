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
use crate::log::{self, EMAILS, EVENT_IDS, EVENTS, STREAMS};

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

pub(crate) fn verify(txn: &ReadTransaction) -> Result<VerifyReport, StoreError> {
    let events = txn.open_table(EVENTS)?;
    let streams = txn.open_table(STREAMS)?;
    let emails = txn.open_table(EMAILS)?;
    let event_ids = txn.open_table(EVENT_IDS)?;
    let mut report = VerifyReport::default();
    let findings = &mut report.findings;

    // Event → rows.
    let mut expected_position = 1;
    for row in events.iter()? {
        let (position, bytes) = row?;
        let position = position.value();
        report.events += 1;
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
        let id = aggregate.as_u128();
        if streams.get((id, version))?.map(|p| p.value()) != Some(position) {
            findings.push(format!(
                "position {position}: no stream row {aggregate}/{version} for it"
            ));
        }
        match version {
            0 => findings.push(format!("position {position}: version 0")),
            1 => report.users += 1,
            _ => match streams.get((id, version - 1))? {
                Some(p) if p.value() < position => {}
                _ => findings.push(format!(
                    "position {position}: {aggregate} version {version} has no earlier version {}",
                    version - 1
                )),
            },
        }
        if event_ids
            .get(recorded.event_id.as_u128())?
            .map(|p| p.value())
            != Some(position)
        {
            findings.push(format!(
                "position {position}: event id row does not point at event {}",
                recorded.event_id
            ));
        }
        match &recorded.event {
            Event::UserCreated(created) => {
                if version != 1 {
                    findings.push(format!(
                        "position {position}: UserCreated at version {version}"
                    ));
                }
                let owner = emails.get(created.email_key().as_str())?.map(|v| v.value());
                if owner != Some(id) {
                    findings.push(format!(
                        "position {position}: email row {} does not point at {aggregate}",
                        created.email
                    ));
                }
            }
        }
    }

    // Rows → event.
    for row in streams.iter()? {
        let (key, position) = row?;
        let ((id, version), position) = (key.value(), position.value());
        let aggregate = Uuid::from_u128(id);
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
        let (id, position) = (Uuid::from_u128(id.value()), position.value());
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
        let owner = Uuid::from_u128(owner.value());
        let holds = match log::load_user(&events, &streams, owner) {
            Ok(user) => user.is_some_and(|u| email_key(&u.profile.email) == email.value()),
            // A damaged event was already reported by the log pass.
            Err(StoreError::Corrupt { .. } | StoreError::Inconsistent(_)) => true,
            Err(other) => return Err(other),
        };
        if !holds {
            findings.push(format!(
                "email row {} points at {owner}, who does not hold it",
                email.value()
            ));
        }
    }
    Ok(report)
}

/// The event an index row points at; a row pointing past the log is a
/// finding, a damaged event was already reported by the log pass.
fn readable(
    events: &impl ReadableTable<u64, &'static [u8]>,
    position: u64,
    findings: &mut Vec<String>,
) -> Result<Option<crate::event::RecordedEvent>, StoreError> {
    match events.get(position)? {
        None => {
            findings.push(format!("index row points at missing position {position}"));
            Ok(None)
        }
        Some(bytes) => Ok(codec::decode(bytes.value()).ok()),
    }
}
