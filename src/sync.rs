//! Offline-first sync: devices record at once, push to a hub, apply its
//! reply, and pull what it accepted. The hub is authoritative; every step is
//! idempotent (event ids), every batch is untrusted input, and a rejection
//! becomes a compensating `UserCreationRejected` event on the device, so
//! nothing blocks behind it and nothing vanishes.
//!
//! ```text
//!  device D                           hub H
//!  create_user ─► log (pending)
//!  push() ─────── push batch ───────► accept(): re-validate, decide, append
//!  apply_reply() ◄──── reply ──────── accepted (hub position) | rejected (409…)
//!    accepted: no longer pending
//!    rejected: UserCreationRejected appended, email released
//!  import() ◄──── pull batch ──────── export(since cursor)
//!    own events recognised by id; others appended; a pending local event
//!    they contradict is rejected (the rebase); cursor saved in the same
//!    transaction
//! ```
//!
//! The hub's side (`accept`, `export`) and the device's side (`push`,
//! `apply_reply`, `import`, and the reads) are both callers of the log's one
//! [`Writer`]: each step lists new own creations first
//! ([`Writer::list_pending`]), then decides through [`Writer::execute`] or
//! settles and compensates, then marks what it appended listed.

use redb::ReadableTable;
use serde::Serialize;
use uuid::Uuid;

use crate::batch::{self, BatchError, BatchKind, EventsV1, OutcomeV1, ReplyItemV1, ReplyV1};
use crate::codec;
use crate::error::StoreError;
use crate::event::{Event, MAX_RECORDED_AT_MS, RecordedEvent, UserCreated};
use crate::log::{self, Bytes, EVENTS, Executed, META, PENDING, REJECTIONS, Source, Writer};
use crate::store::Store;
use crate::user::{CreateUser, Field, FieldError, Rejection};

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

fn bad(index: usize, reason: impl Into<String>) -> StoreError {
    StoreError::Batch(BatchError::BadEvent {
        index,
        reason: reason.into(),
    })
}

/// Decodes and checks one event of a batch from another store: a
/// `UserCreated` whose every field is what this library itself would have
/// recorded — fields exactly as validation leaves them, ids that are ids, a
/// time the wire can show, a version and a position.
fn untrusted_user_created(index: usize, bytes: &[u8]) -> Result<RecordedEvent, StoreError> {
    let recorded = codec::decode(bytes).map_err(|e| bad(index, e.to_string()))?;
    let Event::UserCreated(created) = &recorded.event else {
        return Err(bad(
            index,
            format!("{} is not shared", recorded.event.event_type()),
        ));
    };
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
    let mut command = CreateUser::new(created.user_id.to_string(), created.email.clone());
    command.first_name = created.first_name.clone();
    command.last_name = created.last_name.clone();
    command.phone_number = created.phone_number.clone();
    match command.validate() {
        Ok(valid) if valid == *created => Ok(recorded),
        Ok(_) => Err(bad(index, "fields are not in their validated form")),
        Err(errors) => Err(bad(
            index,
            format!("invalid: {}", Rejection::Invalid(errors)),
        )),
    }
}

/// Opens a push or pull batch and decodes and checks every event in it; any
/// bad event refuses the whole batch, and so does a batch this store sent
/// itself (its own id is in every reply and export).
fn untrusted_events(
    store: &Store,
    bytes: &[u8],
    kind: BatchKind,
) -> Result<(Uuid, Vec<RecordedEvent>), StoreError> {
    let parsed: EventsV1 = batch::parse(batch::open(bytes, kind)?)?;
    let sender = from_another_store(store, parsed.sender)?;
    let events = parsed
        .events
        .iter()
        .enumerate()
        .map(|(index, bytes)| untrusted_user_created(index, bytes))
        .collect::<Result<_, _>>()?;
    Ok((sender, events))
}

fn from_another_store(store: &Store, sender: [u8; 16]) -> Result<Uuid, StoreError> {
    let sender = Uuid::from_bytes(sender);
    if sender == store.store_id() {
        return Err(BatchError::FromThisStore.into());
    }
    Ok(sender)
}

/// The created user of an event [`untrusted_user_created`] let through.
fn creation(recorded: &RecordedEvent) -> UserCreated {
    match &recorded.event {
        Event::UserCreated(created) => created.clone(),
        // untrusted_user_created refuses every other event.
        Event::UserCreationRejected(_) => unreachable!("only creations pass the batch check"),
    }
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

/// A reply's rejection, checked as the device will store it: a 400 or 409,
/// with the API's field names and at most a handful of short messages.
fn untrusted_rejection(
    index: usize,
    code: u16,
    details: &[(&str, &str)],
) -> Result<Vec<FieldError>, StoreError> {
    if !matches!(code, 400 | 409) {
        return Err(bad(
            index,
            format!("rejection code {code} is not 400 or 409"),
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
    /// This store's own creations the hub has not yet accepted or rejected,
    /// in log order. Reads only.
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
                if log::own_creation(&recorded, self.store_id()) {
                    out.push(recorded);
                }
            }
            Ok(out)
        })
    }

    /// The `UserCreationRejected` events: every command the hub refused, in
    /// log order.
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

    /// Runs one sync step through the writer: new own creations listed
    /// first, what the step appended marked listed last.
    fn sync_step<T>(
        &self,
        step: impl FnOnce(&mut Writer<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|writer| {
            writer.list_pending()?;
            let value = step(writer)?;
            writer.mark_listed()?;
            Ok(value)
        })
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

    /// The hub's side of a push: decodes and re-validates every event, decides
    /// each against the hub's state, appends the accepted ones in one
    /// transaction, and returns the reply. An event seen before is accepted
    /// again at its first position, so a repeated push gets the same reply
    /// and changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the batch is damaged, oversized, of another
    /// kind, from this store itself, or carries an event that is not a valid
    /// creation by its sender: nothing is applied. Otherwise the storage
    /// failures of [`StoreError`].
    pub fn accept(&self, push: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (sender, events) = untrusted_events(self, push, BatchKind::Push)?;
        if let Some(index) = events.iter().position(|e| e.origin != sender) {
            return Err(bad(index, "was not recorded by the batch's sender"));
        }
        let items = self.sync_step(|writer| {
            events
                .iter()
                .map(|recorded| {
                    let outcome = match writer.position_of(recorded.event_id)? {
                        Some(position) => Ok(position),
                        None => match writer.execute(creation(recorded), Source::From(recorded))? {
                            Executed::Recorded(event) => Ok(event.position),
                            // The same data, but created by another event
                            // (another device): this one is not the user's
                            // creation.
                            Executed::AlreadyRecorded(_) => {
                                Err(Rejection::Conflict(vec![FieldError::created_elsewhere()]))
                            }
                            Executed::Rejected(rejection) => Err(rejection),
                        },
                    };
                    Ok((recorded.event_id, outcome))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let details: Vec<Vec<(&str, &str)>> = items
            .iter()
            .map(|(_, outcome)| match outcome {
                Err(rejection) => rejection
                    .details()
                    .iter()
                    .map(|d| (d.field.as_str(), d.message.as_str()))
                    .collect(),
                Ok(_) => Vec::new(),
            })
            .collect();
        let reply = ReplyV1 {
            sender: self.store_id().into_bytes(),
            items: items
                .iter()
                .zip(details)
                .map(|((event_id, outcome), details)| ReplyItemV1 {
                    event_id: event_id.into_bytes(),
                    outcome: match outcome {
                        Ok(position) => OutcomeV1::Accepted {
                            hub_position: *position,
                        },
                        Err(rejection) => OutcomeV1::Rejected {
                            code: rejection.code(),
                            details: details.into(),
                        },
                    },
                })
                .collect::<Vec<_>>()
                .into(),
        };
        Ok(batch::encode(BatchKind::Reply, &reply))
    }

    /// The device's side of a reply: accepted events stop being pending; each
    /// rejected one gets a `UserCreationRejected` in its aggregate (its email
    /// released). Applying the same reply twice changes nothing the second
    /// time.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the reply is damaged, from another hub or
    /// this store, names events this store never pushed, or carries a
    /// rejection the API could not have sent (a code other than 400 or 409,
    /// unknown fields, oversized details): nothing is applied. Otherwise the
    /// storage failures of [`StoreError`].
    pub fn apply_reply(&self, reply: &[u8]) -> Result<ReplySummary, StoreError> {
        let parsed: ReplyV1 = batch::parse(batch::open(reply, BatchKind::Reply)?)?;
        let sender = from_another_store(self, parsed.sender)?;
        let mut outcomes = Vec::with_capacity(parsed.items.len());
        for (index, item) in parsed.items.iter().enumerate() {
            outcomes.push(match &item.outcome {
                OutcomeV1::Accepted { hub_position: 0 } => {
                    return Err(bad(index, "hub positions start at 1"));
                }
                OutcomeV1::Accepted { .. } => None,
                OutcomeV1::Rejected { code, details } => {
                    Some((*code, untrusted_rejection(index, *code, details)?))
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

    /// The hub's side of a pull: its events after hub position `since`, at
    /// most `limit` of them, as a pull batch for [`import`](Self::import).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    pub fn export(&self, since: u64, limit: usize) -> Result<Vec<u8>, StoreError> {
        let limit = limit.min(batch::MAX_BATCH_ITEMS);
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            let from = log::u64_bytes(since.saturating_add(1));
            let mut bytes = Vec::new();
            for row in events.range(&from[..]..)?.take(limit) {
                bytes.push(row?.1.value().to_vec());
            }
            Ok(batch::encode(
                BatchKind::Pull,
                &EventsV1 {
                    sender: self.store_id().into_bytes(),
                    events: bytes.iter().map(Vec::as_slice).collect::<Vec<_>>().into(),
                },
            ))
        })
    }

    /// The device's side of a pull: imports the hub's events after this
    /// store's cursor. Its own events are recognised by id (and stop being
    /// pending); others are appended under this store's positions. A hub
    /// event that contradicts a pending local event wins, and the local one
    /// is rejected as a reply would (the rebase). The cursor is saved in the
    /// same transaction; importing the same batch twice changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the batch is damaged, from another hub or
    /// this store, carries an invalid event, or its positions are not the
    /// hub's gap-free sequence after this store's cursor (a batch that
    /// skips or reorders events would lose them): nothing is applied.
    /// Otherwise the storage failures of [`StoreError`].
    pub fn import(&self, pull: &[u8]) -> Result<ImportSummary, StoreError> {
        let (sender, events) = untrusted_events(self, pull, BatchKind::Pull)?;
        for (index, pair) in events.windows(2).enumerate() {
            if pair[1].position != pair[0].position + 1 {
                return Err(bad(
                    index + 1,
                    format!(
                        "position {} follows {}: the hub's positions have no gaps",
                        pair[1].position, pair[0].position
                    ),
                ));
            }
        }
        self.sync_step(|writer| {
            check_hub(writer, sender)?;
            let start = writer.pull_cursor()?;
            let mut summary = ImportSummary {
                cursor: start,
                ..ImportSummary::default()
            };
            for (index, recorded) in events.iter().enumerate() {
                if recorded.position <= summary.cursor {
                    continue;
                }
                if recorded.position != summary.cursor + 1 {
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
    let created = creation(recorded);
    // Local users the hub's event contradicts: the same id, or another user
    // holding its email. Each must still be pending, and loses.
    let mut contradicted = Vec::new();
    if let Some(local) = writer.user(created.user_id)?
        && !local.is_rejected()
    {
        let why = if local.profile == created {
            FieldError::created_elsewhere()
        } else {
            FieldError::user_id_taken()
        };
        contradicted.push((created.user_id, why));
    }
    if let Some(owner) = writer.email_owner(&created.email_key())?
        && owner != created.user_id
    {
        contradicted.push((owner, FieldError::email_taken()));
    }
    for (user_id, why) in contradicted {
        let local = writer.current_creation(user_id)?;
        if !writer.settle(local.position)? {
            // An accepted local event the hub now contradicts: the hub broke
            // its own rules. Refuse rather than guess.
            return Err(bad(
                index,
                format!("contradicts accepted user {user_id} ({})", why.field),
            ));
        }
        writer.compensate(&local, 409, vec![why])?;
        summary.rebased += 1;
    }
    match writer.execute(created, Source::From(recorded))? {
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
