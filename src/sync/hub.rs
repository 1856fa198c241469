//! The hub's side of sync: accepting a device's push, and the pull batch of
//! what the hub has accepted. The decisions are the pipeline's
//! ([`Pipeline::accept_push`]); the batches are built here, once, for the
//! redb hub and for any other engine's.

use uuid::Uuid;

use super::Push;
use crate::batch::{self, BatchKind, OutcomeV1, PullV2, ReplyItemV1, ReplyV1};
use crate::error::StoreError;
use crate::log::{self, EVENTS, STREAMS};
use crate::pipeline::{Accepted, Pipeline};
use crate::scope::Scope;
use crate::store::Store;

impl Store {
    /// The hub's side of a push from a caller who may act for every user:
    /// [`accept_as`](Self::accept_as) with [`Scope::All`].
    ///
    /// # Errors
    ///
    /// As [`accept_as`](Self::accept_as).
    pub fn accept(&self, push: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.accept_as(push, Scope::All)
    }

    /// The hub's side of a push by a caller of `scope`: decodes and
    /// re-validates every event, refuses (403) each event of a user outside
    /// the scope, decides the others against the hub's state, appends the
    /// accepted ones in one transaction, and returns the reply. An event
    /// seen before is accepted again at its first position, so a repeated
    /// push gets the same reply and changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the batch is damaged, oversized, of another
    /// kind or format, from this store itself, or carries an event that is
    /// not a valid creation by its sender: nothing is applied. Otherwise the
    /// storage failures of [`StoreError`].
    pub fn accept_as(&self, push: &[u8], scope: Scope) -> Result<Vec<u8>, StoreError> {
        let push = Push::open(self.store_id(), push)?;
        let items = self.sync_step(|writer| writer.accept_push(&push.events, scope))?;
        Ok(reply_batch(self.store_id(), &items))
    }

    /// The hub's side of a pull for a caller who sees every user:
    /// [`export_as`](Self::export_as) with [`Scope::All`].
    ///
    /// # Errors
    ///
    /// As [`export_as`](Self::export_as).
    pub fn export(&self, since: u64, limit: usize) -> Result<Vec<u8>, StoreError> {
        self.export_as(since, limit, Scope::All)
    }

    /// The hub's side of a pull: the events of `scope`'s users after hub
    /// position `since`, at most `limit` of them, as a pull batch for
    /// [`import`](Self::import), complete to a watermark read in the same
    /// snapshot (for one user's events, the log's head unless the limit
    /// cut the batch short).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    pub fn export_as(&self, since: u64, limit: usize, scope: Scope) -> Result<Vec<u8>, StoreError> {
        let limit = limit.min(batch::MAX_BATCH_ITEMS);
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            let mut bytes = Vec::new();
            let mut last = None;
            match scope {
                Scope::All => {
                    let from = log::u64_bytes(since.saturating_add(1));
                    for row in events.range(&from[..]..)?.take(limit) {
                        let (position, envelope) = row?;
                        last = Some(log::read_u64("log key", position.value())?);
                        bytes.push(envelope.value().to_vec());
                    }
                }
                Scope::User(user) => {
                    let streams = txn.open_table(STREAMS)?;
                    let (first, end) = (log::stream_key(user, 0), log::stream_key(user, u64::MAX));
                    for row in streams.range(&first[..]..=&end[..])? {
                        let position = log::read_u64("stream row", row?.1.value())?;
                        if position <= since {
                            continue;
                        }
                        if bytes.len() == limit {
                            break;
                        }
                        let envelope =
                            events.get(&log::u64_bytes(position)[..])?.ok_or_else(|| {
                                StoreError::Inconsistent(format!(
                                    "a stream row points at missing position {position}"
                                ))
                            })?;
                        last = Some(position);
                        bytes.push(envelope.value().to_vec());
                    }
                }
            }
            let complete_to = watermark(scope, since, limit, bytes.len(), last, || {
                log::head(&events)
            })?;
            Ok(pull_batch(self.store_id(), scope, complete_to, &bytes))
        })
    }
}

/// The hub position a pull batch of `count` events, the last at `last`, is
/// complete to: its last event's when the
/// limit cut it short or it is the whole log's (gap-free, so its last event
/// is as far as it knows); for one user's events otherwise, the head read in
/// the same snapshot as them. Never behind `since`.
pub fn watermark(
    scope: Scope,
    since: u64,
    limit: usize,
    count: usize,
    last: Option<u64>,
    head: impl FnOnce() -> Result<u64, StoreError>,
) -> Result<u64, StoreError> {
    let covered = match scope {
        Scope::User(_) if count < limit => head()?,
        _ => last.unwrap_or(since),
    };
    Ok(covered.max(since))
}

/// The reply batch of the hub `hub_id` to a push it decided as `items`.
pub fn reply_batch(hub_id: Uuid, items: &[Accepted]) -> Vec<u8> {
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
        sender: hub_id.into_bytes(),
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
    batch::encode(BatchKind::Reply, &reply)
}

/// The pull batch of the hub `hub_id` for `scope`: `events` are its log's
/// envelopes (as [`codec::encode`](crate::codec::encode) wrote them) of that
/// scope after the device's cursor, in position order, and the batch is
/// complete to hub position `complete_to` (see [`watermark`]).
pub fn pull_batch<E: AsRef<[u8]>>(
    hub_id: Uuid,
    scope: Scope,
    complete_to: u64,
    events: &[E],
) -> Vec<u8> {
    batch::encode(
        BatchKind::Pull,
        &PullV2 {
            sender: hub_id.into_bytes(),
            scope: match scope {
                Scope::All => None,
                Scope::User(user) => Some(user.into_bytes()),
            },
            complete_to,
            events: events.iter().map(AsRef::as_ref).collect::<Vec<_>>().into(),
        },
    )
}
