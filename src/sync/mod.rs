//! Offline-first sync: devices record at once, push to a hub, apply its
//! reply, and pull what it accepted. The hub is authoritative; every step is
//! idempotent (event ids), every batch is untrusted input, and a rejection
//! becomes a compensating event on the device (`UserCreationRejected`,
//! `UserUpdateRejected`) that voids the refused one, so nothing blocks
//! behind it and nothing vanishes.
//!
//! ```text
//!  device D                           hub H
//!  create_user ─► log (pending)
//!  push() ─────── push batch ───────► accept(): re-validate, decide, append
//!  apply_reply() ◄──── reply ──────── accepted (hub position) | rejected (409…)
//!    accepted: no longer pending
//!    rejected: its compensation appended, the email index kept
//!  import() ◄──── pull batch ──────── export(since cursor)
//!    own events recognised by id; others appended; a pending local event
//!    they contradict is rejected (the rebase); cursor saved in the same
//!    transaction
//! ```
//!
//! The hub's side (`hub.rs`: `accept`, `export`) and the device's side
//! (`device.rs`: `push`, `apply_reply`, `import`, and the reads) are both
//! callers of the log's one [`Writer`]: each step lists new own creations
//! first ([`Writer::list_pending`]), then decides through the pipeline
//! ([`Pipeline::execute`](crate::pipeline::Pipeline::execute)) or settles and compensates, then marks what it
//! appended listed. What both sides share — reading untrusted batches —
//! is here.

use uuid::Uuid;

use crate::batch::{self, BATCH_FORMAT, BatchError, BatchKind, EventsV1, PullV2, VERSION_1};
use crate::codec;
use crate::command::Intent;
use crate::error::StoreError;
use crate::event::{Event, MAX_RECORDED_AT_MS, RecordedEvent};
#[cfg(doc)]
use crate::log::Writer;
use crate::scope::Scope;
use crate::store::Store;

mod device;
mod hub;

pub use device::{ImportSummary, ReplySummary};
pub use hub::{pull_batch, reply_batch, watermark};

pub(super) fn bad(index: usize, reason: impl Into<String>) -> StoreError {
    StoreError::Batch(BatchError::BadEvent {
        index,
        reason: reason.into(),
    })
}

/// Decodes and checks one event of a batch from another store: an event a
/// command records (never a compensation) whose every field is what this
/// library itself would have recorded — fields exactly as validation
/// leaves them, ids that are ids, a time the wire can show, a version and a
/// position.
fn untrusted_command(
    index: usize,
    bytes: &[u8],
    kind: BatchKind,
) -> Result<RecordedEvent, StoreError> {
    let recorded = codec::decode(bytes).map_err(|e| bad(index, e.to_string()))?;
    let intent = Intent::of_event(&recorded.event);
    // What erasure left of an event is in the hub's log, and pulled; a
    // device never pushes one.
    let redacted = kind == BatchKind::Pull && matches!(recorded.event, Event::Redacted(..));
    if intent.is_none() && !redacted {
        return Err(bad(
            index,
            format!("{} is not shared", recorded.event.event_type()),
        ));
    }
    if recorded.event_id.is_nil() || recorded.origin.is_nil() {
        return Err(bad(index, "event id and origin must not be nil"));
    }
    if !(0..=MAX_RECORDED_AT_MS).contains(&recorded.recorded_at_ms) {
        return Err(bad(
            index,
            format!(
                "recorded at {} ms, outside years 1970 to 9999",
                recorded.recorded_at_ms
            ),
        ));
    }
    if recorded.version == 0 || recorded.position == 0 {
        return Err(bad(index, "version and position start at 1"));
    }
    if let Some(intent) = intent {
        intent.revalidate().map_err(|reason| bad(index, reason))?;
    }
    Ok(recorded)
}

/// Decodes and checks every event of a batch's body; any bad event refuses
/// the whole batch.
fn untrusted_list(events: &[&[u8]], kind: BatchKind) -> Result<Vec<RecordedEvent>, StoreError> {
    events
        .iter()
        .enumerate()
        .map(|(index, bytes)| untrusted_command(index, bytes, kind))
        .collect()
}

/// A pull batch, opened and checked event by event: who sent it, whose
/// events it carries, and the hub position it is complete to for them.
pub(super) struct Pulled {
    pub sender: Uuid,
    pub scope: Scope,
    /// Format 1 batches say nothing: they are complete to their last event.
    pub complete_to: Option<u64>,
    pub events: Vec<RecordedEvent>,
}

impl Pulled {
    /// Opens a pull batch for the reader `me` (a batch it sent itself is
    /// refused). Every event must be a valid creation, in increasing
    /// positions, none past the watermark; a batch of the organization's
    /// log must have no gaps; a batch of one user's events may carry no
    /// other user's.
    pub(super) fn open(me: Uuid, bytes: &[u8]) -> Result<Pulled, StoreError> {
        let (version, body) = batch::open(bytes, BatchKind::Pull)?;
        let pulled = if version == VERSION_1 {
            let parsed: EventsV1 = batch::parse(body)?;
            Pulled {
                sender: from_another_store(me, parsed.sender)?,
                scope: Scope::All,
                complete_to: None,
                events: untrusted_list(&parsed.events, BatchKind::Pull)?,
            }
        } else {
            let parsed: PullV2 = batch::parse(body)?;
            Pulled {
                sender: from_another_store(me, parsed.sender)?,
                scope: match parsed.scope {
                    None => Scope::All,
                    Some(user) => Scope::User(Uuid::from_bytes(user)),
                },
                complete_to: Some(parsed.complete_to),
                events: untrusted_list(&parsed.events, BatchKind::Pull)?,
            }
        };
        for (index, pair) in pulled.events.windows(2).enumerate() {
            let (before, after) = (pair[0].position, pair[1].position);
            let in_order = match pulled.scope {
                Scope::All => after == before + 1,
                Scope::User(_) => after > before,
            };
            if !in_order {
                return Err(bad(
                    index + 1,
                    match pulled.scope {
                        Scope::All => format!(
                            "position {after} follows {before}: the hub's positions have no gaps"
                        ),
                        Scope::User(_) => {
                            format!("position {after} follows {before}: positions increase")
                        }
                    },
                ));
            }
        }
        for (index, recorded) in pulled.events.iter().enumerate() {
            if !pulled.scope.covers(recorded.aggregate_id()) {
                return Err(bad(
                    index,
                    format!(
                        "is user {}'s event, in a batch of another user's",
                        recorded.aggregate_id()
                    ),
                ));
            }
            if let Some(to) = pulled.complete_to
                && recorded.position > to
            {
                return Err(bad(
                    index,
                    format!(
                        "position {} is past the batch's watermark {to}",
                        recorded.position
                    ),
                ));
            }
        }
        Ok(pulled)
    }
}

pub(super) fn from_another_store(me: Uuid, sender: [u8; 16]) -> Result<Uuid, StoreError> {
    let sender = Uuid::from_bytes(sender);
    if sender == me {
        return Err(BatchError::FromThisStore.into());
    }
    Ok(sender)
}

/// A device's push batch, opened and checked: every event a valid creation
/// recorded by its sender.
#[derive(Debug, Clone)]
pub struct Push {
    /// The device that sent it.
    pub sender: Uuid,
    /// Its events, in the device's order.
    pub events: Vec<RecordedEvent>,
}

impl Push {
    /// Opens a push batch sent to the hub whose id is `hub_id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the batch is damaged, oversized, of another
    /// kind or an older format (a device that could not read this hub's
    /// reply), sent by `hub_id` itself, or carries an event that is not a
    /// valid creation by its sender.
    pub fn open(hub_id: Uuid, bytes: &[u8]) -> Result<Push, StoreError> {
        let (version, body) = batch::open(bytes, BatchKind::Push)?;
        if version != BATCH_FORMAT {
            return Err(BatchError::UnsupportedVersion(version).into());
        }
        let parsed: EventsV1 = batch::parse(body)?;
        let sender = from_another_store(hub_id, parsed.sender)?;
        let events = untrusted_list(&parsed.events, BatchKind::Push)?;
        if let Some(index) = events.iter().position(|e| e.origin != sender) {
            return Err(bad(index, "was not recorded by the batch's sender"));
        }
        Ok(Push { sender, events })
    }
}

impl Store {
    /// Runs one sync step through the writer: new own command events
    /// listed first, what the step appended marked listed last.
    pub(super) fn sync_step<T>(
        &self,
        step: impl FnOnce(&mut crate::log::Writer<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|writer| {
            writer.list_pending()?;
            let value = step(writer)?;
            writer.mark_listed()?;
            Ok(value)
        })
    }
}
