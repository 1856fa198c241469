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

use redb::{ReadableTable, Table};
use uuid::Uuid;

use crate::batch::{self, BatchError, BatchKind, EventsV1, OutcomeV1, ReplyItemV1, ReplyV1};
use crate::codec;
use crate::error::StoreError;
use crate::event::{Event, RecordedEvent, UserCreated, UserCreationRejected};
use crate::log::{self, Bytes, EVENTS, LogTables, META, PENDING, REJECTIONS};
use crate::store::Store;
use crate::user::{self, CreateUser, Decision, Field, FieldError, Rejection};

const PULL_CURSOR: &[u8] = b"pull_cursor";
const HUB_ID: &[u8] = b"hub_id";
/// The position up to which this store's own `UserCreated` events have
/// their `PENDING` and `EVENT_IDS` rows. Creating a user writes no sync
/// bookkeeping (two tables fewer in every create's commit, which is what a
/// store that never syncs wants); every sync step, and `pending()`, first
/// lists the newer creations.
pub(crate) const PENDING_LISTED_TO: &[u8] = b"pending_listed_to";

/// What [`Store::apply_reply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplySummary {
    /// Pending events the hub accepted.
    pub accepted: usize,
    /// Pending events the hub rejected, each now compensated.
    pub rejected: usize,
    /// Items already applied before (a reply delivered twice).
    pub already_applied: usize,
}

/// What [`Store::import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// Decodes and re-validates one event of a batch from another store: only a
/// `UserCreated` whose fields pass validation exactly as stored.
fn untrusted_user_created(
    index: usize,
    bytes: &[u8],
) -> Result<(RecordedEvent, UserCreated), StoreError> {
    let recorded = codec::decode(bytes).map_err(|e| bad(index, e.to_string()))?;
    let Event::UserCreated(created) = &recorded.event else {
        return Err(bad(
            index,
            format!("{} is not shared", recorded.event.event_type()),
        ));
    };
    let mut command = CreateUser::new(created.user_id.to_string(), created.email.clone());
    command.first_name = created.first_name.clone();
    command.last_name = created.last_name.clone();
    command.phone_number = created.phone_number.clone();
    match command.validate() {
        Ok(valid) if valid == *created => Ok((recorded.clone(), valid)),
        Ok(_) => Err(bad(index, "fields are not in their validated form")),
        Err(errors) => Err(bad(
            index,
            format!("invalid: {}", Rejection::Invalid(errors)),
        )),
    }
}

/// Opens a push or pull batch and decodes and re-validates every event in
/// it; any bad event refuses the whole batch.
fn untrusted_events(
    bytes: &[u8],
    kind: BatchKind,
) -> Result<(Uuid, Vec<(RecordedEvent, UserCreated)>), StoreError> {
    let parsed: EventsV1 = batch::parse(batch::open(bytes, kind)?)?;
    batch::check_count(parsed.events.len())?;
    let events = parsed
        .events
        .iter()
        .enumerate()
        .map(|(index, bytes)| untrusted_user_created(index, bytes))
        .collect::<Result<_, _>>()?;
    Ok((Uuid::from_bytes(parsed.sender), events))
}

fn read_meta(
    meta: &impl ReadableTable<Bytes, Bytes>,
    name: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(meta.get(name)?.map(|v| v.value().to_vec()))
}

pub(crate) fn listed_to(meta: &impl ReadableTable<Bytes, Bytes>) -> Result<u64, StoreError> {
    match read_meta(meta, PENDING_LISTED_TO)? {
        Some(bytes) => log::read_u64("pending listed to", &bytes),
        None => Ok(0),
    }
}

/// Records that every own creation up to `head` has its rows. A sync step
/// lists first and then appends only events from elsewhere and
/// compensations, never an own creation, so it marks its own appends listed
/// too: otherwise the next step would decode them all again to find none.
fn listed_through(meta: &mut Table<'_, Bytes, Bytes>, head: u64) -> Result<(), StoreError> {
    meta.insert(PENDING_LISTED_TO, &log::u64_bytes(head)[..])?;
    Ok(())
}

/// Whether `recorded` is a creation of the store `store_id`: the events
/// listed lazily into `PENDING` and `EVENT_IDS`.
pub(crate) fn own_creation(recorded: &RecordedEvent, store_id: Uuid) -> bool {
    recorded.origin == store_id && matches!(recorded.event, Event::UserCreated(_))
}

/// Checks that `sender` is the hub this store syncs with, recording it the
/// first time.
fn check_hub(meta: &mut Table<'_, Bytes, Bytes>, sender: Uuid) -> Result<(), StoreError> {
    match read_meta(meta, HUB_ID)? {
        Some(bytes) => {
            let expected = log::read_uuid("hub id", &bytes)?;
            if expected != sender {
                return Err(BatchError::WrongHub {
                    expected,
                    found: sender,
                }
                .into());
            }
        }
        None => {
            meta.insert(HUB_ID, &sender.as_bytes()[..])?;
        }
    }
    Ok(())
}

impl Store {
    /// This store's own events the hub has not yet accepted or rejected, in
    /// log order. Creations made since the last sync step are listed first,
    /// a small write that commits only when there are any.
    pub fn pending(&self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.list_new_pending()?;
        self.read(|txn| listed(&txn.open_table(PENDING)?, &txn.open_table(EVENTS)?))
    }

    /// Lists creations made since the last sync step, in a transaction of
    /// its own that commits only if there were any.
    fn list_new_pending(&self) -> Result<(), StoreError> {
        self.write(|tables, txn| {
            let listed = self.list_pending(tables, &mut txn.open_table(META)?)?;
            Ok(((), listed))
        })
    }

    /// Writes the `PENDING` and `EVENT_IDS` rows of this store's creations
    /// after the listed position, so what follows can find, read or resolve
    /// them by row. Returns whether it wrote anything.
    fn list_pending(
        &self,
        tables: &mut LogTables<'_>,
        meta: &mut Table<'_, Bytes, Bytes>,
    ) -> Result<bool, StoreError> {
        let from = listed_to(meta)?;
        let mut head = from;
        for row in tables.events.range(&log::u64_bytes(from + 1)[..]..)? {
            let (position, stored) = row?;
            head = log::read_u64("log key", position.value())?;
            let recorded = log::decode_row(head, stored.value())?;
            if own_creation(&recorded, self.store_id()) {
                let position = log::u64_bytes(head);
                tables.pending.insert(&position[..], &[][..])?;
                tables
                    .event_ids
                    .insert(&recorded.event_id.as_bytes()[..], &position[..])?;
            }
        }
        if head != from {
            listed_through(meta, head)?;
        }
        Ok(head != from)
    }

    /// The `UserCreationRejected` events: every command the hub refused, in
    /// log order.
    pub fn rejections(&self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(|txn| listed(&txn.open_table(REJECTIONS)?, &txn.open_table(EVENTS)?))
    }

    /// The hub position this store has imported up to (0 before any pull).
    pub fn pull_cursor(&self) -> Result<u64, StoreError> {
        self.read(|txn| match txn.open_table(META)?.get(PULL_CURSOR)? {
            Some(v) => log::read_u64("pull cursor", v.value()),
            None => Ok(0),
        })
    }

    /// A push batch of every pending event, for the hub's
    /// [`accept`](Self::accept). Pushing again before the reply is harmless:
    /// the hub recognises events it has seen. Lists new creations first, as
    /// [`pending`](Self::pending) does.
    pub fn push(&self) -> Result<Vec<u8>, StoreError> {
        self.list_new_pending()?;
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
                    events: bytes.iter().map(Vec::as_slice).collect(),
                },
            ))
        })
    }

    /// The hub's side of a push: decodes and re-validates every event, decides
    /// each against the hub's state, appends the accepted ones in one
    /// transaction, and returns the reply. An event seen before is accepted
    /// again at its first position, so a repeated push changes nothing. A
    /// damaged or invalid batch is refused whole.
    pub fn accept(&self, push: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (sender, events) = untrusted_events(push, BatchKind::Push)?;
        if let Some(index) = events.iter().position(|(e, _)| e.origin != sender) {
            return Err(bad(index, "was not recorded by the batch's sender"));
        }
        let items = self.write(|tables, txn| {
            // Indexes this store's own creations by id too, so a store
            // handed its own push recognises every event in it.
            let mut meta = txn.open_table(META)?;
            self.list_pending(tables, &mut meta)?;
            let mut head = log::head(&tables.events)?;
            let mut items = Vec::with_capacity(events.len());
            for (recorded, created) in &events {
                let outcome = self.accept_one(tables, &mut head, recorded, created)?;
                items.push((recorded.event_id, outcome));
            }
            listed_through(&mut meta, head)?;
            let appended = items.iter().any(|(_, o)| matches!(o, Accepted::New(_)));
            Ok((items, appended))
        })?;
        let details: Vec<Vec<(&str, &str)>> = items
            .iter()
            .map(|(_, outcome)| match outcome {
                Accepted::Rejected(rejection) => rejection
                    .details()
                    .iter()
                    .map(|d| (d.field.as_str(), d.message.as_str()))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let reply = ReplyV1 {
            sender: self.store_id().into_bytes(),
            items: items
                .iter()
                .zip(&details)
                .map(|((event_id, outcome), details)| ReplyItemV1 {
                    event_id: event_id.into_bytes(),
                    outcome: match outcome {
                        Accepted::New(position) | Accepted::Before(position) => {
                            OutcomeV1::Accepted {
                                hub_position: *position,
                            }
                        }
                        Accepted::Rejected(rejection) => OutcomeV1::Rejected {
                            code: rejection.code(),
                            details: details.clone(),
                        },
                    },
                })
                .collect(),
        };
        Ok(batch::encode(BatchKind::Reply, &reply))
    }

    fn accept_one(
        &self,
        tables: &mut LogTables<'_>,
        head: &mut u64,
        recorded: &RecordedEvent,
        created: &UserCreated,
    ) -> Result<Accepted, StoreError> {
        let row = tables.event_ids.get(&recorded.event_id.as_bytes()[..])?;
        if let Some(position) = row.map(|p| log::read_u64("event id row", p.value())) {
            return Ok(Accepted::Before(position?));
        }
        let current = log::load_user(&tables.events, &tables.streams, created.user_id)?;
        let owner = log::email_owner(&tables.emails, &created.email_key())?;
        match user::decide(current.as_ref(), owner, created.clone()) {
            Ok(Decision::Record(event)) => {
                let version = current.map_or(0, |u| u.version) + 1;
                let position = append_foreign(tables, head, recorded, event, version)?;
                Ok(Accepted::New(position))
            }
            // The same data, but created by another event (another device):
            // this one is not the user's creation.
            Ok(Decision::AlreadyRecorded) => {
                Ok(Accepted::Rejected(Rejection::Conflict(vec![FieldError {
                    field: Field::UserId,
                    message: "was already created by another device".into(),
                }])))
            }
            Err(rejection) => Ok(Accepted::Rejected(rejection)),
        }
    }

    /// The device's side of a reply: accepted events stop being pending; each
    /// rejected one gets a `UserCreationRejected` in its aggregate (its email
    /// released). Applying the same reply twice changes nothing the second
    /// time. A damaged reply, or one naming events this store never pushed,
    /// is refused whole.
    pub fn apply_reply(&self, reply: &[u8]) -> Result<ReplySummary, StoreError> {
        let body = batch::open(reply, BatchKind::Reply)?;
        let parsed: ReplyV1 = batch::parse(body)?;
        batch::check_count(parsed.items.len())?;
        let sender = Uuid::from_bytes(parsed.sender);
        self.write(|tables, txn| {
            let mut meta = txn.open_table(META)?;
            check_hub(&mut meta, sender)?;
            self.list_pending(tables, &mut meta)?;
            let mut head = log::head(&tables.events)?;
            let mut summary = ReplySummary::default();
            for (index, item) in parsed.items.iter().enumerate() {
                let event_id = Uuid::from_bytes(item.event_id);
                let row = tables.event_ids.get(&event_id.as_bytes()[..])?;
                let Some(position) = row.map(|p| log::read_u64("event id row", p.value())) else {
                    return Err(bad(index, format!("event {event_id} is not this store's")));
                };
                let position = log::u64_bytes(position?);
                if tables.pending.remove(&position[..])?.is_none() {
                    summary.already_applied += 1;
                    continue;
                }
                match &item.outcome {
                    OutcomeV1::Accepted { .. } => summary.accepted += 1,
                    OutcomeV1::Rejected { code, details } => {
                        let details = details
                            .iter()
                            .map(|(field, message)| {
                                let field = Field::ALL
                                    .into_iter()
                                    .find(|f| f.as_str() == *field)
                                    .ok_or_else(|| {
                                    bad(index, format!("unknown field '{field}'"))
                                })?;
                                Ok(FieldError {
                                    field,
                                    message: (*message).to_owned(),
                                })
                            })
                            .collect::<Result<Vec<_>, StoreError>>()?;
                        let position = log::read_u64("position", &position)?;
                        let refused = log::read_event(&tables.events, position)?
                            .ok_or_else(|| bad(index, "the pushed event is gone"))?;
                        self.compensate(tables, &mut head, &refused, *code, details)?;
                        summary.rejected += 1;
                    }
                }
            }
            listed_through(&mut meta, head)?;
            let wrote = summary.accepted + summary.rejected > 0;
            Ok((summary, wrote))
        })
    }

    /// Appends the `UserCreationRejected` for a refused local event.
    fn compensate(
        &self,
        tables: &mut LogTables<'_>,
        head: &mut u64,
        refused: &RecordedEvent,
        code: u16,
        details: Vec<FieldError>,
    ) -> Result<(), StoreError> {
        let user_id = refused.aggregate_id();
        let current = log::load_user(&tables.events, &tables.streams, user_id)?;
        let event = Event::UserCreationRejected(UserCreationRejected {
            user_id,
            rejected_event_id: refused.event_id,
            code,
            details,
        });
        let recorded = self.stamp(event, current.as_ref(), *head + 1)?;
        tables.append(&recorded)?;
        *head = recorded.position;
        Ok(())
    }

    /// The hub's side of a pull: its events after hub position `since`, at
    /// most `limit` of them, as a pull batch for [`import`](Self::import).
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
                    events: bytes.iter().map(Vec::as_slice).collect(),
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
    pub fn import(&self, pull: &[u8]) -> Result<ImportSummary, StoreError> {
        let (sender, events) = untrusted_events(pull, BatchKind::Pull)?;
        self.write(|tables, txn| {
            let mut meta = txn.open_table(META)?;
            check_hub(&mut meta, sender)?;
            self.list_pending(tables, &mut meta)?;
            let mut summary = ImportSummary {
                cursor: match read_meta(&meta, PULL_CURSOR)? {
                    Some(bytes) => log::read_u64("pull cursor", &bytes)?,
                    None => 0,
                },
                ..ImportSummary::default()
            };
            let start = summary.cursor;
            let mut head = log::head(&tables.events)?;
            for (index, (recorded, created)) in events.iter().enumerate() {
                if recorded.position <= summary.cursor {
                    continue;
                }
                self.import_one(tables, &mut head, &mut summary, index, recorded, created)?;
                summary.cursor = recorded.position;
            }
            listed_through(&mut meta, head)?;
            let moved = summary.cursor != start;
            if moved {
                meta.insert(PULL_CURSOR, &log::u64_bytes(summary.cursor)[..])?;
            }
            Ok((summary, moved))
        })
    }

    fn import_one(
        &self,
        tables: &mut LogTables<'_>,
        head: &mut u64,
        summary: &mut ImportSummary,
        index: usize,
        recorded: &RecordedEvent,
        created: &UserCreated,
    ) -> Result<(), StoreError> {
        let row = tables.event_ids.get(&recorded.event_id.as_bytes()[..])?;
        if let Some(position) = row.map(|p| log::read_u64("event id row", p.value())) {
            let position = log::u64_bytes(position?);
            tables.pending.remove(&position[..])?;
            summary.own += 1;
            return Ok(());
        }
        // Local users the hub's event contradicts: the same id with other
        // data, or another user holding its email.
        let mut contradicted = Vec::new();
        if let Some(local) = log::load_user(&tables.events, &tables.streams, created.user_id)?
            && !local.is_rejected()
        {
            contradicted.push((created.user_id, Field::UserId));
        }
        if let Some(owner) = log::email_owner(&tables.emails, &created.email_key())?
            && owner != created.user_id
        {
            contradicted.push((owner, Field::Email));
        }
        for (user_id, field) in contradicted {
            let stream = log::stream(&tables.events, &tables.streams, user_id)?;
            let creation = stream
                .iter()
                .rev()
                .find(|e| matches!(e.event, Event::UserCreated(_)))
                .ok_or_else(|| {
                    StoreError::Inconsistent(format!("user {user_id} has no creation"))
                })?;
            let was_pending = tables
                .pending
                .remove(&log::u64_bytes(creation.position)[..])?
                .is_some();
            if !was_pending {
                // An accepted local event the hub now contradicts: the hub
                // broke its own rules. Refuse rather than guess.
                return Err(bad(
                    index,
                    format!("contradicts accepted user {user_id} ({field})"),
                ));
            }
            let details = vec![FieldError {
                field,
                message: match field {
                    Field::Email => "is already registered to another user".into(),
                    _ => "a user with this userId already exists with different data".into(),
                },
            }];
            self.compensate(tables, head, creation, 409, details)?;
            summary.rebased += 1;
        }
        let current = log::load_user(&tables.events, &tables.streams, created.user_id)?;
        let version = current.map_or(0, |u| u.version) + 1;
        let event = Event::UserCreated(created.clone());
        append_foreign(tables, head, recorded, event, version)?;
        summary.imported += 1;
        Ok(())
    }
}

/// Appends an event recorded by another store under this store's next
/// position and the given version, keeping its id, time and origin (so ids
/// recognise it everywhere). Returns its position here.
fn append_foreign(
    tables: &mut LogTables<'_>,
    head: &mut u64,
    from: &RecordedEvent,
    event: Event,
    version: u64,
) -> Result<u64, StoreError> {
    let stamped = RecordedEvent {
        event_id: from.event_id,
        version,
        position: *head + 1,
        recorded_at_ms: from.recorded_at_ms,
        origin: from.origin,
        event,
    };
    tables.append(&stamped)?;
    *head = stamped.position;
    Ok(stamped.position)
}

/// How the hub answered one pushed event.
enum Accepted {
    /// Appended now, at this hub position.
    New(u64),
    /// Appended by an earlier push, at this hub position.
    Before(u64),
    /// Refused.
    Rejected(Rejection),
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
