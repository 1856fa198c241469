//! The hub's side of sync: accepting a device's push, and the pull batch of
//! what the hub has accepted. The decisions are the pipeline's
//! ([`Pipeline::accept_push`]); the batches are built here, once, for the
//! redb hub and for any other engine's.

use uuid::Uuid;

use super::Push;
use crate::batch::{self, BatchKind, EventsV1, OutcomeV1, ReplyItemV1, ReplyV1};
use crate::error::StoreError;
use crate::log::{self, EVENTS};
use crate::pipeline::{Accepted, Pipeline};
use crate::store::Store;

impl Store {
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
        let push = Push::open(self.store_id(), push)?;
        let items = self.sync_step(|writer| writer.accept_push(&push))?;
        Ok(reply_batch(self.store_id(), &items))
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
            Ok(pull_batch(self.store_id(), &bytes))
        })
    }
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

/// The pull batch of the hub `hub_id`: `events` are its log's envelopes (as
/// [`codec::encode`](crate::codec::encode) wrote them), in position order.
pub fn pull_batch<E: AsRef<[u8]>>(hub_id: Uuid, events: &[E]) -> Vec<u8> {
    batch::encode(
        BatchKind::Pull,
        &EventsV1 {
            sender: hub_id.into_bytes(),
            events: events.iter().map(AsRef::as_ref).collect::<Vec<_>>().into(),
        },
    )
}
