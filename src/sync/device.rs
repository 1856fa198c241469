//! The device's side of sync: what it has not yet pushed, the push, the
//! hub's reply, and the pull.

use redb::ReadableTable;
use serde::Serialize;
use uuid::Uuid;

use super::{Pulled, bad, from_another_store};
use crate::batch::{
    self, BatchError, BatchKind, EventsV1, OutcomeV1, ReplyV1, VERSION_1, VERSION_2,
};
use crate::command::Intent;
use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::field::{Field, FieldError};
use crate::log::{self, Bytes, EVENTS, META, PENDING, REJECTIONS, Writer};
use crate::pipeline::{Executed, Log, Pipeline, Source, find, pushed_intent};
use crate::scope::Scope;
use crate::store::Store;

/// What [`Store::apply_reply`] did. Serializes as
/// `{"accepted","rejected","alreadyApplied"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplySummary {
    /// Pending events the hub accepted.
    pub accepted: usize,
    /// Pending events the hub rejected, each now compensated.
    pub rejected: usize,
    /// Items already applied before (a reply delivered twice).
    pub already_applied: usize,
}

/// What [`Store::import`] did. Serializes as
/// `{"imported","own","rebased","cursor"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    /// Events of other stores appended.
    pub imported: usize,
    /// This store's own events, recognised by id (and no longer pending).
    pub own: usize,
    /// Pending local events the hub's events contradicted, now rejected.
    pub rebased: usize,
    /// The hub position imported up to: pass it to the next `export`.
    pub cursor: u64,
}

/// Checks that `sender` is the hub this device syncs with, recording it the
/// first time.
fn check_hub(writer: &mut Writer<'_, '_>, sender: Uuid) -> Result<(), StoreError> {
    match writer.hub_id()? {
        Some(expected) if expected != sender => Err(BatchError::WrongHub {
            expected,
            found: sender,
        }
        .into()),
        Some(_) => Ok(()),
        None => writer.set_hub_id(sender),
    }
}

/// A reply's rejection, checked as the device will store it: a 400 or 409
/// (from format 2, a 403; from format 3, a 404), with the API's field names and at most a
/// handful of short messages.
fn untrusted_rejection(
    index: usize,
    version: u8,
    code: u16,
    details: &[(&str, &str)],
) -> Result<Vec<FieldError>, StoreError> {
    let known = match version {
        VERSION_1 => matches!(code, 400 | 409),
        VERSION_2 => matches!(code, 400 | 403 | 409),
        _ => matches!(code, 400 | 403 | 404 | 409),
    };
    if !known {
        return Err(bad(
            index,
            format!("rejection code {code} is not one the hub sends (400, 403, 404 or 409)"),
        ));
    }
    if details.is_empty() {
        return Err(bad(index, "a rejection names at least one field"));
    }
    details
        .iter()
        .map(|(field, message)| {
            let field = Field::ALL
                .into_iter()
                .find(|f| f.as_str() == *field)
                .ok_or_else(|| bad(index, format!("unknown field '{field}'")))?;
            if message.len() > batch::MAX_DETAIL_BYTES {
                return Err(bad(
                    index,
                    format!("a detail message is over {} bytes", batch::MAX_DETAIL_BYTES),
                ));
            }
            Ok(FieldError {
                field,
                message: (*message).to_owned(),
            })
        })
        .collect()
}

impl Store {
    /// This store's own command events the hub has not yet accepted or
    /// rejected, in log order. Reads only.
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    pub fn pending(&self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            let mut out = listed(&txn.open_table(PENDING)?, &events)?;
            // Creations since the last sync step are pending without a row.
            let from = log::meta_u64(&txn.open_table(META)?, log::META_LISTED_TO)?;
            for row in events.range(&log::u64_bytes(from + 1)[..]..)? {
                let (position, bytes) = row?;
                let position = log::read_u64("log key", position.value())?;
                let recorded = log::decode_row(position, bytes.value())?;
                if log::own_command(&recorded, self.store_id()) {
                    out.push(recorded);
                }
            }
            Ok(out)
        })
    }

    /// The compensations (`UserCreationRejected`, `UserUpdateRejected`):
    /// every command the hub refused, in log order.
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    pub fn rejections(&self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(|txn| listed(&txn.open_table(REJECTIONS)?, &txn.open_table(EVENTS)?))
    }

    /// The hub position this store has imported up to (0 before any pull).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    pub fn pull_cursor(&self) -> Result<u64, StoreError> {
        self.read(|txn| log::meta_u64(&txn.open_table(META)?, log::META_PULL_CURSOR))
    }

    /// A push batch of every pending event, for the hub's
    /// [`accept`](Self::accept). Pushing again before the reply is harmless:
    /// the hub recognises events it has seen.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] with [`BatchError::TooManyItems`] when more
    /// events are pending than one batch carries; the storage failures of
    /// [`StoreError`].
    pub fn push(&self) -> Result<Vec<u8>, StoreError> {
        self.sync_step(|_| Ok(()))?;
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            let mut bytes = Vec::new();
            for row in txn.open_table(PENDING)?.iter()? {
                let (position, _) = row?;
                let stored = events.get(position.value())?.ok_or_else(|| {
                    StoreError::Inconsistent("a pending row points past the log".into())
                })?;
                bytes.push(stored.value().to_vec());
            }
            batch::check_count(bytes.len())?;
            Ok(batch::encode(
                BatchKind::Push,
                &EventsV1 {
                    sender: self.store_id().into_bytes(),
                    events: bytes.iter().map(Vec::as_slice).collect::<Vec<_>>().into(),
                },
            ))
        })
    }

    /// The device's side of a reply: accepted events stop being pending; each
    /// rejected one gets its compensation in its aggregate, which voids it
    /// (and keeps the email index). Applying the same reply twice changes nothing the second
    /// time.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the reply is damaged, from another hub or
    /// this store, names events this store never pushed, or carries a
    /// rejection the API could not have sent (a code the reply's format does
    /// not allow, unknown fields, oversized details): nothing is applied. Otherwise the
    /// storage failures of [`StoreError`].
    pub fn apply_reply(&self, reply: &[u8]) -> Result<ReplySummary, StoreError> {
        let (version, body) = batch::open(reply, BatchKind::Reply)?;
        let parsed: ReplyV1 = batch::parse(body)?;
        let sender = from_another_store(self.store_id(), parsed.sender)?;
        let mut outcomes = Vec::with_capacity(parsed.items.len());
        for (index, item) in parsed.items.iter().enumerate() {
            outcomes.push(match &item.outcome {
                OutcomeV1::Accepted { hub_position: 0 } => {
                    return Err(bad(index, "hub positions start at 1"));
                }
                OutcomeV1::Accepted { .. } => None,
                OutcomeV1::Rejected { code, details } => {
                    Some((*code, untrusted_rejection(index, version, *code, details)?))
                }
            });
        }
        self.sync_step(|writer| {
            check_hub(writer, sender)?;
            let mut summary = ReplySummary::default();
            for (index, (item, outcome)) in parsed.items.iter().zip(outcomes).enumerate() {
                let event_id = Uuid::from_bytes(item.event_id);
                let Some(position) = writer.position_of(event_id)? else {
                    return Err(bad(index, format!("event {event_id} is not this store's")));
                };
                if !writer.settle(position)? {
                    summary.already_applied += 1;
                    continue;
                }
                match outcome {
                    None => summary.accepted += 1,
                    Some((code, details)) => {
                        let refused = writer
                            .event_at(position)?
                            .ok_or_else(|| bad(index, "the pushed event is gone"))?;
                        writer.compensate(&refused, code, details)?;
                        summary.rejected += 1;
                    }
                }
            }
            Ok(summary)
        })
    }

    /// The device's side of a pull: imports the hub's events after this
    /// store's cursor. Its own events are recognised by id (and stop being
    /// pending); others are appended under this store's positions. A hub
    /// event that contradicts a pending local event wins, and the local one
    /// is rejected as a reply would (the rebase). The cursor moves to the
    /// batch's watermark — the hub position it is complete to, which for a
    /// pull of one user's events lies past positions the device never sees
    /// — in the same transaction; importing the same batch twice changes
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the batch is damaged, from another hub or
    /// this store, carries an invalid event, or could lose one: positions
    /// out of order, a gap in a batch of the whole log, an event past the
    /// watermark, another user's event in a batch of one user's. Nothing
    /// is applied.
    /// Otherwise the storage failures of [`StoreError`].
    pub fn import(&self, pull: &[u8]) -> Result<ImportSummary, StoreError> {
        let pulled = Pulled::open(self.store_id(), pull)?;
        self.sync_step(|writer| {
            check_hub(writer, pulled.sender)?;
            let start = writer.pull_cursor()?;
            let mut summary = ImportSummary {
                cursor: start,
                ..ImportSummary::default()
            };
            for (index, recorded) in pulled.events.iter().enumerate() {
                if recorded.position <= summary.cursor {
                    continue;
                }
                if pulled.scope == Scope::All && recorded.position != summary.cursor + 1 {
                    return Err(bad(
                        index,
                        format!(
                            "position {} after cursor {}: events in between would be lost",
                            recorded.position, summary.cursor
                        ),
                    ));
                }
                import_one(writer, &mut summary, index, recorded)?;
                summary.cursor = recorded.position;
            }
            if let Some(watermark) = pulled.complete_to
                && watermark > summary.cursor
            {
                if pulled.scope == Scope::All {
                    // The whole log has no gaps: a watermark past the last
                    // event would skip the events in between.
                    return Err(bad(
                        pulled.events.len(),
                        format!(
                            "the batch claims the log to position {watermark} but ends at {}",
                            summary.cursor
                        ),
                    ));
                }
                summary.cursor = watermark;
            }
            if summary.cursor != start {
                writer.set_pull_cursor(summary.cursor)?;
            }
            Ok(summary)
        })
    }
}

fn import_one(
    writer: &mut Writer<'_, '_>,
    summary: &mut ImportSummary,
    index: usize,
    recorded: &RecordedEvent,
) -> Result<(), StoreError> {
    if let Some(position) = writer.position_of(recorded.event_id)? {
        writer.settle(position)?;
        summary.own += 1;
        return Ok(());
    }
    if Intent::of_event(&recorded.event).is_none() {
        // What the hub's erasure left of an event (checked as the batch was
        // opened): kept as it is.
        writer.keep(recorded)?;
        summary.imported += 1;
        return Ok(());
    }
    let intent = pushed_intent(recorded)?;
    // A pending local creation of the same user loses. A pending local
    // claim of the email it sets does not, yet: a later hub event may free
    // the email and the hub accept the claim after it. The hub's user holds
    // the index row meanwhile (see `Source::Hub`); the claim's own reply
    // decides it, and a step ends by giving freed emails back to pending
    // claims.
    let user_id = intent.user_id();
    if intent.creates()
        && let Some(local) = writer.user(user_id)?
        && !local.is_rejected()
    {
        let creation = find(writer.stream(user_id)?, local.sources.creation)?;
        let why = if creation.event == recorded.event {
            FieldError::created_elsewhere()
        } else {
            FieldError::user_id_taken()
        };
        rebase(writer, summary, index, &creation, why)?;
    }
    match writer.execute(intent, Source::Hub(recorded))? {
        Executed::Recorded(_) => {
            summary.imported += 1;
            Ok(())
        }
        Executed::AlreadyRecorded(_) => Err(bad(index, "is already recorded by another event")),
        Executed::Rejected(rejection) => {
            Err(bad(index, format!("contradicts this store: {rejection}")))
        }
    }
}

/// Compensates `local`, a pending event of this store that an event the
/// hub accepted contradicts.
fn rebase(
    writer: &mut Writer<'_, '_>,
    summary: &mut ImportSummary,
    index: usize,
    local: &RecordedEvent,
    why: FieldError,
) -> Result<(), StoreError> {
    if !writer.settle(local.position)? {
        // An accepted local event the hub now contradicts: the hub broke
        // its own rules. Refuse rather than guess.
        return Err(bad(
            index,
            format!(
                "contradicts accepted user {} ({})",
                local.aggregate_id(),
                why.field
            ),
        ));
    }
    writer.compensate(local, 409, vec![why])?;
    summary.rebased += 1;
    Ok(())
}

/// The events at the positions a listing table holds.
fn listed(
    list: &impl ReadableTable<Bytes, Bytes>,
    events: &impl ReadableTable<Bytes, Bytes>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut out = Vec::with_capacity(list.len()? as usize);
    for row in list.iter()? {
        let position = log::read_u64("listing row", row?.0.value())?;
        out.push(log::read_event(events, position)?.ok_or_else(|| {
            StoreError::Inconsistent(format!(
                "a listing row points at missing position {position}"
            ))
        })?);
    }
    Ok(out)
}
